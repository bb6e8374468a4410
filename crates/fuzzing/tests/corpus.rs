//! Replays every committed input of every fuzz target (`fuzz/corpus/<target>/`) and every
//! crash the fuzzer found (`fuzz/artifacts/<target>/`) through the target's function, so a
//! fixed crash stays fixed under plain `cargo test`.

use std::path::{Path, PathBuf};

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs: Vec<PathBuf> = Vec::new();
    for kind in ["corpus", "artifacts"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        inputs.extend(dir.filter_map(Result::ok).map(|e| e.path()));
    }
    inputs.retain(|p| p.is_file());
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for fuzz target {target}");
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} panics", input.display());
    }
}

#[test]
fn config() {
    replay("config", valet_fuzzing::config);
}

#[test]
fn routes_and_keys() {
    replay("routes_and_keys", valet_fuzzing::routes_and_keys);
}

#[test]
fn headers() {
    replay("headers", valet_fuzzing::headers);
}

#[test]
fn archive() {
    replay("archive", valet_fuzzing::archive);
}

#[test]
fn path() {
    replay("path", valet_fuzzing::path);
}

#[test]
fn request_head() {
    replay("request_head", valet_fuzzing::request_head);
}

#[test]
fn response_head() {
    replay("response_head", valet_fuzzing::response_head);
}

#[test]
fn chunked_body() {
    replay("chunked_body", valet_fuzzing::chunked_body);
}
