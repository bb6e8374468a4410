//! `valet start CLASS KEY` waiting on an image pull, end to end: on a terminal (util-linux
//! `script` runs it on a pseudo-terminal) a bar of the pull's layers is drawn and redrawn in
//! place, then cleared for the outcome; through a pipe, or with `--json`, no bar and no escape
//! codes. The image is only in Debian's `docker-registry` on 127.0.0.1, reached through a
//! proxy of the test's own that paces the registry's answers (256 KiB/s a connection), so the
//! pull lasts seconds, as from a registry on a real network, and the bar (which reads the
//! instance's log every 300 ms) is seen moving. (`valet deploy`'s bar: `deploy_docker.rs`.)
//!
//! Without an engine or the registry this is skipped, and fails under `CI=true`.

use crate::admin_support::with_token;
use crate::deploy_support::cli;
use crate::registry::{docker_ok, ready, Registry, RemoveImages};
use crate::support::docker::{busybox_context, put, Cleanup};
use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// What the registry may send down one connection each second.
const PACE: usize = 256 * 1024;
/// Layers of random bytes (gzip leaves them as they are), pulled side by side: at [`PACE`]
/// they are on the engine after about 1, 2 and 4 s, one after the other, so the bar's count
/// of layers moves (it counts layers, not bytes).
const BLOBS: [usize; 3] = [256 * 1024, 512 * 1024, 1024 * 1024];
const CLEAR: &str = "\r\x1b[2K";

/// A proxy on a loopback port to `upstream`, whose answers are paced to [`PACE`] bytes a
/// second on each connection (requests pass as they come). Its threads end with the test
/// process.
fn paced_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut client_in, mut server_out) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || pace(server, client));
        }
    });
    addr
}

fn pace(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 8192];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_secs_f64(n as f64 / PACE as f64));
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Builds a busybox httpd image with layers of random bytes of its own ([`BLOBS`]), pushes
/// it as `reference` and removes it from the engine: the registry is the only place it is.
fn push_image(reference: &str) {
    let mut dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\n".to_string();
    let context = busybox_context("");
    for (i, size) in BLOBS.into_iter().enumerate() {
        let mut blob = vec![0u8; size];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut blob)
            .unwrap();
        std::fs::write(context.path().join(format!("blob{i}")), blob).unwrap();
        dockerfile.push_str(&format!("COPY blob{i} /blob{i}\n"));
    }
    dockerfile.push_str("COPY www /www\n");
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    put(context.path(), "www/index.html", "pulled\n", false);
    let dir = context.path().to_str().unwrap();
    docker_ok(None, &["build", "-q", "-t", reference, dir], None);
    docker_ok(None, &["push", reference], None);
    docker_ok(None, &["rmi", reference], None);
}

fn class(name: &str, image: &str) -> String {
    format!(
        r#"
        [[containers]]
        class_name = "{name}"
        image = "{image}"
        command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
        readiness = {{ path = "/index.html", timeout = "60s" }}
        instance_type = "lite"
        stop_timeout = "1s"
        "#
    )
}

/// `valet ARGS --config CONFIG` on a pseudo-terminal (stdout to `stdout` when given, else
/// the terminal too): whether it succeeded, and what the terminal got.
fn on_terminal(
    args: &str,
    config: &std::path::Path,
    stdout: Option<&std::path::Path>,
) -> (bool, String) {
    let quote = |p: &std::path::Path| format!("'{}'", p.display());
    let mut command = format!(
        "{} {args} --config {}",
        quote(std::path::Path::new(env!("CARGO_BIN_EXE_valet"))),
        quote(config),
    );
    if let Some(file) = stdout {
        command.push_str(&format!(" > {}", quote(file)));
    }
    let run = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("VALET_ADMIN_URL")
        .env_remove("VALET_ADMIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux script runs");
    (
        run.status.success(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
    )
}

/// The bars drawn on `terminal` for `image`, in order: (layers on the engine, layers named).
fn bars(terminal: &str, image: &str) -> Vec<(usize, usize)> {
    let head = format!("pulling {image} [");
    terminal
        .split(CLEAR)
        .filter_map(|drawn| {
            let rest = drawn.strip_prefix(head.as_str())?;
            let counts = rest.split("] ").nth(1)?.strip_suffix(" layers")?;
            let (done, of) = counts.split_once('/')?;
            Some((done.parse().ok()?, of.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valet_start_draws_the_pull_as_a_bar_on_a_terminal_and_nothing_elsewhere() {
    if !ready() {
        return;
    }
    let registry = Registry::start(false);
    let proxy = paced_proxy(registry.host.parse().unwrap());
    let id = std::process::id();
    let image = |name: &str| format!("{proxy}/valet-e2e-{id}/{name}:v1");
    let (piped, terminal, json) = (image("piped"), image("terminal"), image("json"));
    for reference in [&piped, &terminal, &json] {
        push_image(reference);
    }
    let _remove = RemoveImages(vec![piped.clone(), terminal.clone(), json.clone()]);
    let names = [
        format!("BarPiped{id}"),
        format!("BarTerminal{id}"),
        format!("BarJson{id}"),
    ];
    let _cleanup: Vec<Cleanup> = names.iter().cloned().map(Cleanup).collect();
    let [c_piped, c_terminal, c_json] = &names;
    let toml = with_token(&format!(
        "driver = \"docker\"\n{}{}{}",
        class(c_piped, &piped),
        class(c_terminal, &terminal),
        class(c_json, &json)
    ));
    let valet = Valet::with_config(&toml).start().await;
    let config = valet.dir().join("valet.toml");

    // Through a pipe: the start waits the pull out and says so in one line; no bar.
    let (ok, out, err) = cli(&valet, &["start", c_piped, "k"]);
    assert!(ok, "{out}{err}\n{}", valet.log());
    assert!(out.starts_with(&format!("{c_piped}/k: ready")), "{out}");
    assert!(
        !out.contains(['\r', '\x1b']) && !err.contains(['\r', '\x1b']),
        "escapes through a pipe: {out:?} {err:?}"
    );
    assert!(!err.contains("pulling "), "a bar through a pipe: {err:?}");

    // On a terminal: the bar, redrawn in place while the layers arrive, then cleared for the
    // outcome.
    let (ok, shown) = on_terminal(&format!("start {c_terminal} k"), &config, None);
    eprintln!("valet start on a terminal:\n{shown:?}");
    assert!(ok, "{shown}\n{}", valet.log());
    let drawn = bars(&shown, &terminal);
    assert!(
        drawn.len() >= 3,
        "the bar of {terminal}, redrawn in place: {shown:?}"
    );
    let layers = drawn.iter().map(|(_, of)| *of).max().unwrap();
    assert_eq!(layers, 5, "busybox, three blobs and /www: {drawn:?}");
    assert!(
        drawn.iter().any(|(done, of)| done < of && *of == layers),
        "layers still arriving: {drawn:?}"
    );
    let moved: std::collections::BTreeSet<_> = drawn.iter().map(|(done, _)| done).collect();
    assert!(moved.len() >= 2, "the bar never moved: {drawn:?}");
    assert!(
        drawn.windows(2).all(|w| w[0].0 <= w[1].0),
        "layers on the engine only grow: {drawn:?}"
    );
    let outcome = shown.rsplit(CLEAR).next().unwrap();
    assert!(
        outcome
            .trim_start()
            .starts_with(&format!("{c_terminal}/k: ready")),
        "the bar cleared for the outcome: {outcome:?}"
    );

    // `--json` on a terminal: JSON alone, no bar.
    let stdout = valet.dir().join("start.json");
    let (ok, shown) = on_terminal(&format!("start {c_json} k --json"), &config, Some(&stdout));
    assert!(ok, "{shown}\n{}", valet.log());
    assert!(
        !shown.contains('\x1b') && !shown.contains("pulling "),
        "a bar with --json: {shown:?}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stdout).unwrap()).expect("only JSON");
    assert_eq!(answer["state"], "ready", "{answer}");

    // Each of them pulled (the pipe's and --json's too, which drew nothing).
    let log = valet.log();
    for reference in [&piped, &terminal, &json] {
        assert!(
            log.contains(&format!("image=\"{reference}\"")) && log.contains("image pulled"),
            "{reference} was not pulled:\n{log}"
        );
    }
}
