//! Bad uploads: each gets a clear 4xx naming the problem, and leaves nothing behind: no
//! project in the store, no build folder, no half-installed requirement set.

use crate::deploy_support::*;
use crate::support::Valet;
use std::io::{Read, Write};

/// Build folders and staging folders left on disk.
fn leftovers(valet: &Valet) -> Vec<String> {
    let mut all = Vec::new();
    for sub in ["builds", "staging"] {
        let dir = valet.dir().join(".valet/deploy").join(sub);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            all.extend(
                rd.filter_map(Result::ok)
                    .map(|e| e.path().display().to_string()),
            );
        }
    }
    all
}

/// A .tar.gz holding one file of `size` zero bytes (compresses ~1000:1).
fn bomb(size: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_path("app.py").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append(&header, std::io::repeat(0).take(size)).unwrap();
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_upload_gets_a_clear_4xx_and_changes_nothing() {
    let (valet, api) = valet_with("").await;
    let app = plain_app("v1");
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "wrong type",
            Form::file("app.exe", "MZ..."),
            415,
            "upload index.ts",
        ),
        ("empty file", Form::file("app.py", ""), 400, "empty"),
        (
            "not gzip",
            Form::file("app.tar.gz", "plain text"),
            415,
            "not what its name says",
        ),
        (
            "name too long",
            Form::file("app.py", app.as_str()).field("name", "n".repeat(65)),
            400,
            "at most 64",
        ),
        (
            "name not UTF-8",
            Form::file("app.py", app.as_str()).field("name", vec![0xff, 0xfe, 0x41]),
            400,
            "not UTF-8",
        ),
        (
            "unknown runtime",
            Form::file("app.py", app.as_str()).field("runtime", "cobol"),
            400,
            "unknown runtime \"cobol\"",
        ),
        (
            "pip option in requirements",
            Form::file("app.py", app.as_str()).field("requirements", "-r /etc/passwd"),
            400,
            "no pip options",
        ),
        (
            "npm path requirement",
            Form::file("index.js", "console.log(1)").field("requirements", "file:../../x"),
            400,
            "npm registry packages",
        ),
        (
            "TypeScript that does not parse",
            Form::file("index.ts", "const x: = ;"),
            422,
            "does not compile: index.ts: line 1, column 10: ",
        ),
        (
            "archive with '..'",
            Form::file(
                "evil.tar.gz",
                tar_gz(&[
                    Entry::File("app.py", app.as_bytes()),
                    Entry::File("../escaped.py", b"x"),
                ]),
            ),
            400,
            "climbs out",
        ),
        (
            "archive with an absolute path",
            Form::file(
                "evil.tar.gz",
                tar_gz(&[Entry::File("/tmp/valet-abs.py", b"x")]),
            ),
            400,
            "absolute path",
        ),
        (
            "archive with a link out of the tree",
            Form::file(
                "evil.tar.gz",
                tar_gz(&[
                    Entry::File("app.py", app.as_bytes()),
                    Entry::Symlink("passwd", "../../../etc/passwd"),
                ]),
            ),
            400,
            "points out of the upload",
        ),
        (
            "archive with an absolute link",
            Form::file(
                "evil.tar.gz",
                tar_gz(&[
                    Entry::File("app.py", app.as_bytes()),
                    Entry::Symlink("passwd", "/etc/passwd"),
                ]),
            ),
            400,
            "points out of the upload",
        ),
        (
            "archive with a hard link",
            Form::file(
                "evil.tar.gz",
                tar_gz(&[
                    Entry::File("app.py", app.as_bytes()),
                    Entry::HardLink("shadow", "/etc/shadow"),
                ]),
            ),
            400,
            "hard link",
        ),
        (
            "decompression bomb",
            Form::file("bomb.tar.gz", bomb(210 * 1024 * 1024)),
            400,
            "decompression bomb",
        ),
        (
            "archive without an app",
            Form::file("x.tar.gz", tar_gz(&[Entry::File("README", b"hi")])),
            400,
            "no app.py, index.ts or index.js",
        ),
    ];
    for (what, form, want, says) in cases {
        let (status, body) = api.upload(form).await;
        assert_eq!(status, want, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{what}: {message:?} should say {says:?}"
        );
        assert!(
            !message.contains(".valet"),
            "{what}: no internal paths: {message}"
        );
        assert!(api.projects().await.is_empty(), "{what}: store unchanged");
        assert_eq!(
            leftovers(&valet),
            Vec::<String>::new(),
            "{what}: files left"
        );
    }
    assert!(!std::path::Path::new("/tmp/valet-abs.py").exists());
    // A multipart body without a file field.
    let response = api
        .client
        .post(format!("{}/api/containers/upload", api.base))
        .bearer_auth(&api.token)
        .multipart(reqwest::multipart::Form::new().text("name", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // And a good one still works afterwards.
    let (status, body) = api.upload(Form::file("app.py", app.as_str())).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirements_that_fail_to_install_fail_the_deploy_with_the_installers_message() {
    let (valet, api) = valet_with("").await;
    let (status, body) = api
        .upload(
            Form::file("app.py", plain_app("v1"))
                .field("requirements", "valet-test-no-such-package-4c1d"),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "install_failed");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("pip failed"), "{message}");
    assert!(
        message.contains("No matching distribution found for valet-test-no-such-package-4c1d"),
        "pip's own words: {message}"
    );
    assert!(api.projects().await.is_empty());
    assert_eq!(leftovers(&valet), Vec::<String>::new());
    let cache = valet.dir().join(".valet/deploy/cache/python");
    let sets: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert!(sets.is_empty(), "no half-installed set is kept: {sets:?}");

    let (status, body) = api
        .upload(
            Form::file("index.js", "console.log(1)")
                .field("requirements", "valet-test-no-such-package-4c1d"),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("npm failed") && message.contains("404"),
        "{message}"
    );
    assert!(api.projects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_largest_limit_gets_a_413_that_reaches_the_still_sending_client() {
    let (valet, api) = valet_with("").await;
    // 100 MB is the most valet reads when no plan allows more; the admin has no plan limit.
    let big = vec![b'#'; 101 * 1024 * 1024];
    let (status, body) = api.upload(Form::file("app.py", big)).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("larger than valet accepts"),
        "{body}"
    );
    assert!(api.projects().await.is_empty());
    assert_eq!(leftovers(&valet), Vec::<String>::new());
}
