//! Tenants of the process driver never reach each other or valet's secrets, through the real
//! binary: a program that binds the port handed to an instance is never called ready and never
//! gets a byte of a request (first start, and after a crash), and an instance's environment
//! holds nothing of valet's own but what its class names.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn slow_class(extra: &str) -> String {
    format!(
        r#"
        [[containers]]
        class_name = "Echo"
        readiness = {{ path = "/health", timeout = "20s" }}
        sleep_after = "0"
        {extra}

        [[routes]]
        pattern = "/api/*"
        container = "Echo"
        instance = "name:one"
        strip_prefix = "/api"
        "#
    )
}

/// `PORT` as valet handed it to process `pid`.
fn port_of(pid: u32) -> u16 {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("instance environ");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"PORT="))
        .and_then(|port| std::str::from_utf8(port).ok()?.parse().ok())
        .expect("instance has PORT")
}

/// A thief on `port`: answers every connection with 200 "stolen" and counts the bytes that
/// clients wrote to it, which must stay 0.
fn steal(port: u16) -> Arc<AtomicUsize> {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("thief binds the port");
    serve_thief(listener)
}

fn serve_thief(listener: TcpListener) -> Arc<AtomicUsize> {
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            if let Ok(n) = stream.read(&mut buf) {
                seen.fetch_add(n, Ordering::SeqCst);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nstolen",
            );
        }
    });
    received
}

#[tokio::test]
async fn a_program_that_binds_an_instances_port_first_is_never_called_ready() {
    // The instance waits 1.5 s before it binds: the thief binds first, as a tenant watching
    // /proc for new processes would.
    let valet = Valet::with_config(&slow_class(r#"env = { START_DELAY_MS = "1500" }"#))
        .start()
        .await;
    let request = tokio::spawn({
        let url = valet.url("/api/echo");
        async move { client().get(url).send().await }
    });
    let first = eventually(Duration::from_secs(10), "the instance to start", || {
        let starts = valet.starts();
        async move { starts.first().cloned() }
    })
    .await;
    let received = steal(port_of(first.pid));

    let answer = request.await.unwrap();
    if let Ok(answer) = answer {
        let body = answer.text().await.unwrap_or_default();
        assert!(
            !body.contains("stolen"),
            "a request reached the thief: {body}"
        );
    }
    // The instance fails to start with the conflict named, then starts on fresh ports.
    eventually(
        Duration::from_secs(30),
        "a 200 from the real instance",
        || {
            let get = valet.get("/api/echo");
            async move {
                let response = get.await;
                let ok = response.status() == 200;
                let body = response.text().await.unwrap_or_default();
                assert!(
                    !body.contains("stolen"),
                    "a request reached the thief: {body}"
                );
                (ok && body.contains("\"pid\"")).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "no byte of any request or probe reached the thief"
    );
    let log = valet.log();
    assert!(
        log.contains("port conflict") && log.contains("held by another program"),
        "the failed start names the conflict:\n{log}"
    );
    assert!(valet.starts().len() >= 2, "a second start on fresh ports");
}

#[tokio::test]
async fn a_port_taken_after_its_instance_died_gets_no_request() {
    let valet = Valet::with_config(&slow_class("")).start().await;
    let echo = valet.echo("/api/echo").await;
    let pid = echo["pid"].as_u64().unwrap() as u32;
    let port = port_of(pid);
    // Keep-alive connections to the old port sit in valet's pool; the thief binds the port
    // the moment the instance is gone.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the backend to die",
        || async move { (!pid_alive(pid)).then_some(()) },
    )
    .await;
    // The dead instance's side of valet's pooled connections may hold the port a moment
    // (FIN_WAIT2) until valet drops them, which the next requests make it do.
    let mut thief = None;
    for _ in 0..100 {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => {
                thief = Some(serve_thief(listener));
                break;
            }
            Err(_) => {
                let body = valet
                    .get("/api/echo")
                    .await
                    .text()
                    .await
                    .unwrap_or_default();
                assert!(
                    !body.contains("stolen"),
                    "a request reached the thief: {body}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let received = thief.expect("the old port comes free");
    for _ in 0..20 {
        let response = valet.get("/api/echo").await;
        let body = response.text().await.unwrap_or_default();
        assert!(
            !body.contains("stolen"),
            "a request reached the thief: {body}"
        );
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "no byte reached the thief"
    );
}

#[tokio::test]
async fn an_instance_sees_none_of_valets_environment_but_what_its_class_names() {
    // Debian's Python by its path: a version manager's shim (pyenv) would put its own
    // folders in front of the PATH valet hands over.
    let class = format!(
        r#"env_from_host = ["CANARY_NAMED"]
        command = ["/usr/bin/python3", "{BACKEND}"]"#
    );
    let valet = Valet::with_config(&slow_class(&class))
        .env("VALET_ADMIN_TOKEN", "canary-admin-token-0123456789")
        .env("CANARY_OPERATOR_SECRET", "canary-secret")
        .env("PIP_INDEX_URL", "http://canary.invalid/simple")
        .env("CANARY_NAMED", "named-value")
        .start()
        .await;
    let response = valet.get("/api/environ").await;
    assert_eq!(response.status(), 200);
    let env = json_of(response).await;
    let env = env.as_object().expect("environ is an object");
    for leaked in [
        "VALET_ADMIN_TOKEN",
        "CANARY_OPERATOR_SECRET",
        "PIP_INDEX_URL",
    ] {
        assert!(
            !env.contains_key(leaked),
            "{leaked} reached the instance: {env:?}"
        );
    }
    assert!(
        !env.values()
            .any(|v| v.as_str().is_some_and(|v| v.contains("canary"))),
        "no value of valet's environment reached the instance: {env:?}"
    );
    assert_eq!(env["CANARY_NAMED"], "named-value", "env_from_host passes");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_ne!(env["HOME"], std::env::var("HOME").unwrap_or_default());
    for own in [
        "PORT",
        "VALET_DATA_DIR",
        "VALET_INSTANCE_KEY",
        "VALET_CLASS",
        "LANG",
    ] {
        assert!(env.contains_key(own), "{own} is set: {env:?}");
    }
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "PORT",
        "STARTS_FILE",
        "CANARY_NAMED",
        "VALET_DATA_DIR",
        "VALET_INSTANCE_KEY",
        "VALET_REPLICA",
        "VALET_CLASS",
        "VALET_PORT_HTTP",
        // Python sets this itself at start-up on some builds.
        "LC_CTYPE",
    ];
    for name in env.keys() {
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected variable {name}: {env:?}"
        );
    }
}

#[tokio::test]
async fn no_other_process_can_join_an_instances_process_group() {
    // The port check trusts an instance's process group: nobody else may get into it. valet
    // runs in this test's session; an instance must not (setpgid works within a session).
    let valet = Valet::with_config(&slow_class("")).start().await;
    let pid = valet.echo("/api/echo").await["pid"].as_u64().unwrap() as i32;
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).unwrap();
    assert_eq!(sid.as_raw(), pid, "the instance leads a session of its own");
    let joined = std::process::Command::new("python3")
        .args(["-c", "import os, sys; os.setpgid(0, int(sys.argv[1]))"])
        .arg(pid.to_string())
        .output()
        .unwrap();
    assert!(
        !joined.status.success()
            && String::from_utf8_lossy(&joined.stderr).contains("PermissionError"),
        "another process joined the instance's group: {joined:?}"
    );
}
