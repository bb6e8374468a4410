//! The process driver against real processes: `sh`, `sleep` and `python3`.

mod support;

use std::time::{Duration, Instant};
use support::{alive, code, pids, poll, sigterm, wait_dead, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use valet_runtime::{Driver, DriverError, ExitStatus, ProcessDriver};

#[tokio::test]
async fn env_and_placeholders_reach_the_process() {
    let sandbox = Sandbox::new();
    let script = "echo \"$PORT {port} $VALET_PORT_HTTP $VALET_PORT_ADMIN {port.admin} \
                  $VALET_DATA_DIR $VALET_INSTANCE_KEY $VALET_CLASS $GREETING\"";
    let mut running = sandbox.start(&["sh", "-c", script]).await;
    let http = running.endpoints().get("http").unwrap();
    let admin = running.endpoints().get("admin").unwrap();
    assert!(http.ip().is_loopback() && admin.ip().is_loopback());
    assert_ne!(http.port(), admin.port());

    assert_eq!(running.exited().await, code(0));
    let (h, a) = (http.port(), admin.port());
    let data_dir = sandbox.root().join("instances/backend/data");
    let expected = format!(
        "{h} {h} {h} {a} {a} {} key-1 Backend hello there",
        data_dir.display()
    );
    assert_eq!(running.logs().tail(10), std::slice::from_ref(&expected));
    assert_eq!(sandbox.log_file(), format!("{expected}\n"));
    assert!(data_dir.is_dir());
    assert_eq!(sandbox.group_records(), 0, "record removed once reaped");
}

#[tokio::test]
async fn an_http_server_is_reachable_on_its_endpoint() {
    let sandbox = Sandbox::new();
    let mut running = sandbox
        .start(&[
            "python3",
            "-m",
            "http.server",
            "{port}",
            "--bind",
            "127.0.0.1",
        ])
        .await;
    let addr = running.endpoints().get("http").unwrap();
    let response = poll(Duration::from_secs(10), || async move {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    })
    .await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");

    let status = running.stop(Duration::from_secs(5)).await;
    assert_eq!(status.signal, Some(sigterm()));
}

#[tokio::test]
async fn stdout_and_stderr_reach_the_ring_and_the_file() {
    let sandbox = Sandbox::new();
    let mut running = sandbox
        .start(&[
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; printf no-newline",
        ])
        .await;
    assert_eq!(running.exited().await, code(0));
    let mut lines = running.logs().tail(10);
    lines.sort();
    assert_eq!(lines, ["no-newline", "to-stderr", "to-stdout"]);
    let file = sandbox.log_file();
    for line in ["to-stdout\n", "to-stderr\n", "no-newline\n"] {
        assert!(file.contains(line), "{line:?} missing from {file:?}");
    }
}

#[tokio::test]
async fn exited_reports_the_exit_code() {
    let sandbox = Sandbox::new();
    let mut running = sandbox.start(&["sh", "-c", "exit 3"]).await;
    assert_eq!(running.exited().await, code(3));
    // Asking again, or stopping afterwards, reports the same end.
    assert_eq!(running.exited().await, code(3));
    assert_eq!(running.stop(Duration::from_secs(1)).await, code(3));
}

#[tokio::test]
async fn exited_kills_descendants_left_behind() {
    let sandbox = Sandbox::new();
    let mut running = sandbox
        .start(&["sh", "-c", "(trap '' TERM; exec sleep 1000) & echo $!"])
        .await;
    let grandchild = pids(&*running, 1).await[0];
    assert_eq!(running.exited().await, code(0));
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn an_exit_is_reported_although_an_escaped_descendant_keeps_the_output_open_and_exited_is_polled_in_a_loop(
) {
    let sandbox = Sandbox::new();
    // The descendant leaves the group for a session of its own (setsid), so the group kill
    // misses it, and it keeps stdout and stderr open.
    let mut running = sandbox
        .start(&["sh", "-c", "setsid sleep 30 & echo $!; sleep 0.2; exit 4"])
        .await;
    let escaped = pids(&*running, 1).await[0];
    // As the instance layer does: `exited` raced against other events, dropped and called
    // again each time one comes first (here every 20 ms).
    let began = Instant::now();
    let status = loop {
        tokio::select! {
            status = running.exited() => break status,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the exit was not reported while exited was polled in a loop"
        );
    };
    assert_eq!(status, code(4));
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "reported after {:?}",
        began.elapsed()
    );
    // The escaped process is not the driver's to find here; end it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(escaped),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn stop_kills_a_process_that_ignores_sigterm_after_the_timeout() {
    let sandbox = Sandbox::new();
    let mut running = sandbox
        .start(&["sh", "-c", "trap '' TERM; echo $$; sleep 100"])
        .await;
    let leader = pids(&*running, 1).await[0];
    let timeout = Duration::from_millis(300);
    let began = Instant::now();
    let status = running.stop(timeout).await;
    let took = began.elapsed();
    assert_eq!(
        status,
        ExitStatus {
            code: None,
            signal: Some(9)
        }
    );
    assert!(took >= timeout, "killed after {took:?}, before the timeout");
    assert!(
        took < timeout + Duration::from_secs(2),
        "stop took {took:?}"
    );
    wait_dead(leader).await;
    assert_eq!(sandbox.group_records(), 0);
}

#[tokio::test]
async fn stop_takes_the_whole_group_down() {
    let sandbox = Sandbox::new();
    // One grandchild dies of SIGTERM, the other ignores it and needs the final SIGKILL.
    let script = "sleep 1000 & a=$!; (trap '' TERM; exec sleep 1000) & echo $$ $a $!; sleep 1000";
    let mut running = sandbox.start(&["sh", "-c", script]).await;
    let group = pids(&*running, 3).await;
    let status = running.stop(Duration::from_secs(5)).await;
    assert_eq!(status.signal, Some(sigterm()));
    for pid in group {
        wait_dead(pid).await;
    }
}

#[tokio::test]
async fn dropping_a_running_instance_kills_its_group() {
    let sandbox = Sandbox::new();
    let script = "sleep 1000 & echo $$ $!; sleep 1000";
    let running = sandbox.start(&["sh", "-c", script]).await;
    let group = pids(&*running, 2).await;
    assert_eq!(sandbox.group_records(), 1);
    drop(running);
    for pid in group {
        wait_dead(pid).await;
    }
    assert_eq!(sandbox.group_records(), 0);
}

#[tokio::test]
async fn recover_kills_groups_left_by_an_earlier_driver() {
    let sandbox = Sandbox::new();
    let script = "sleep 1000 & echo $$ $!; sleep 1000";
    let running = sandbox.start(&["sh", "-c", script]).await;
    let group = pids(&*running, 2).await;
    // An earlier valet that was killed: its handle never ran Drop.
    std::mem::forget(running);
    assert_eq!(sandbox.group_records(), 1);

    let next = ProcessDriver::new(sandbox.root().join("run"));
    next.recover().await.unwrap();
    for pid in group {
        wait_dead(pid).await;
    }
    assert_eq!(sandbox.group_records(), 0);
    // Nothing left to do the second time.
    next.recover().await.unwrap();
}

#[tokio::test]
async fn instances_carry_sigkill_as_their_parent_death_signal() {
    let sandbox = Sandbox::new();
    // PR_GET_PDEATHSIG is 2; the kernel keeps the setting across exec.
    let probe = "import ctypes; s = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(s)); \
                 print(s.value)";
    let mut running = sandbox.start(&["python3", "-c", probe]).await;
    assert_eq!(running.exited().await, code(0));
    assert_eq!(running.logs().tail(1), ["9"]);
}

#[tokio::test]
async fn instances_get_transparent_huge_pages_back_when_valet_turned_them_off() {
    // valet turns THP off for itself at start; the flag is inherited across fork and exec.
    nix::sys::prctl::set_thp_disable(true).unwrap();
    let sandbox = Sandbox::new();
    let mut running = sandbox
        .start(&["sh", "-c", "grep THP_enabled /proc/self/status"])
        .await;
    assert_eq!(running.exited().await, code(0));
    let line = running.logs().tail(1).join("");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["THP_enabled:", "1"]
    );
}

/// The parent-death signal follows the forking thread, so an instance must outlive the
/// thread (and runtime) that asked for it.
#[tokio::test]
async fn instances_survive_the_thread_that_started_them() {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec(&["sh", "-c", "echo $$; exec sleep 1000"]);
    let driver = sandbox.driver.clone();
    let (running, leader) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let running = driver.start(&spec).await.unwrap();
            let leader = pids(&*running, 1).await[0];
            (running, leader)
        })
    })
    .join()
    .unwrap();
    // join() can return before the exiting thread's pdeathsig is sent; give it time to land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        alive(leader),
        "instance died with the thread that started it"
    );
    drop(running);
    wait_dead(leader).await;
}

#[tokio::test]
async fn an_instance_runs_as_the_configured_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let sandbox = Sandbox::new();
    // tempdir() makes a 0700 folder, which `nobody` could not enter as its working directory.
    std::fs::set_permissions(
        sandbox.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut spec = sandbox.spec(&[
        "sh",
        "-c",
        "echo $(id -u) $HOME; touch \"$VALET_DATA_DIR/x\"",
    ]);
    spec.user = Some("nobody".into());
    let mut running = sandbox.driver.start(&spec).await.unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        running.exited().await,
        code(0),
        "{:?}",
        running.logs().tail(5)
    );
    let expected = format!("{} {}", nobody.uid, nobody.dir.display());
    assert_eq!(running.logs().tail(1), [expected]);
    assert!(
        spec.data_dir.join("x").exists(),
        "data dir writable by the user"
    );
}

#[tokio::test]
async fn bad_specs_are_spec_errors_that_say_why() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], Option<&str>, &str); 5] = [
        (&["no-such-program-valet"], None, "no-such-program-valet"),
        (&["./missing.sh"], None, "./missing.sh"),
        (&[], None, "empty command"),
        (&["echo", "{port.metrics}"], None, "port.metrics"),
        (&["true"], Some("no-such-user-valet"), "no-such-user-valet"),
    ];
    for (command, user, needle) in cases {
        let mut spec = sandbox.spec(command);
        spec.user = user.map(str::to_string);
        let err = sandbox.start_err(spec).await;
        assert!(matches!(err, DriverError::Spec(_)), "{command:?}: {err:?}");
        assert!(!err.retryable());
        assert!(err.to_string().contains(needle), "{command:?}: {err}");
    }
    assert_eq!(sandbox.group_records(), 0);
}
