//! A bounded, seeded stand-in for cargo-fuzz (which needs nightly) for the HTTP/1.1 parser
//! targets: each run mutates the committed seeds of `fuzz/corpus/<target>/` into the same
//! inputs and feeds them to the target's function, so every `cargo test` exercises the
//! invariants on inputs nobody wrote by hand. A failure prints the input; keep it in
//! `fuzz/artifacts/<target>/` once the cause is fixed, where `tests/corpus.rs` replays it.

use std::path::Path;

/// Inputs per target: a few seconds in all in a debug build.
const INPUTS: usize = 20_000;

/// Pieces that matter to HTTP/1.1 framing, spliced in by the mutator: a random byte rarely
/// makes a line end, a field name or a length that a parser treats differently.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b" ",
    b"\t",
    b"\0",
    b"\x0c",
    b":",
    b",",
    b";",
    b"\"",
    b"=",
    b"0",
    b"5",
    b"+",
    b"-",
    b"ffffffffffffffff",
    b"18446744073709551616",
    b"Content-Length: ",
    b"content-length:5",
    b"Transfer-Encoding: ",
    b"transfer-encoding:chunked",
    b"chunked",
    b"identity",
    b"gzip, chunked",
    b"Connection: ",
    b"close",
    b"keep-alive",
    b"Upgrade",
    b"Expect: 100-continue",
    b"HTTP/1.0",
    b"HTTP/1.1",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"GET / HTTP/1.1\r\n",
    b"0\r\n\r\n",
    b"\xc3\xa9",
    b"\xff",
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    // Sorted, so the same seed number gives the same inputs everywhere.
    seeds.sort();
    seeds.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One to four edits of a seed: a byte changed, a token or another seed's piece spliced in, a
/// range dropped or repeated, the end cut off.
fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.usize(..seeds.len())].clone();
    // Half the inputs are one edit away from a seed: most of those still parse, and reach the
    // checks behind a parse.
    let edits = if rng.bool() { 1 } else { rng.usize(2..=4) };
    for _ in 0..edits {
        let at = rng.usize(..=input.len());
        match rng.u8(..6) {
            0 if at < input.len() => input[at] = rng.u8(..),
            1 => {
                let token = TOKENS[rng.usize(..TOKENS.len())];
                if rng.bool() && at + token.len() <= input.len() {
                    input[at..at + token.len()].copy_from_slice(token);
                } else {
                    input.splice(at..at, token.iter().copied());
                }
            }
            2 => {
                let end = rng.usize(at..=input.len().min(at + 16));
                input.drain(at..end);
            }
            3 => {
                let end = rng.usize(at..=input.len().min(at + 32));
                let piece = input[at..end].to_vec();
                input.splice(end..end, piece);
            }
            4 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let from = rng.usize(..=other.len());
                let to = rng.usize(from..=other.len());
                input.splice(at..at, other[from..to].iter().copied());
            }
            _ => input.truncate(at),
        }
    }
    input
}

fn run(target: &str, seed: u64, function: fn(&[u8])) {
    let seeds = seeds(target);
    let mut rng = fastrand::Rng::with_seed(seed);
    for n in 0..INPUTS {
        let input = mutate(&mut rng, &seeds);
        if std::panic::catch_unwind(|| function(&input)).is_err() {
            panic!(
                "{target}: input {n} of seed {seed} fails: b\"{}\"",
                input.escape_ascii()
            );
        }
    }
}

#[test]
fn request_head() {
    run(
        "request_head",
        0x7661_6c65_7401,
        valet_fuzzing::request_head,
    );
}

#[test]
fn response_head() {
    run(
        "response_head",
        0x7661_6c65_7402,
        valet_fuzzing::response_head,
    );
}

#[test]
fn chunked_body() {
    run(
        "chunked_body",
        0x7661_6c65_7403,
        valet_fuzzing::chunked_body,
    );
}
