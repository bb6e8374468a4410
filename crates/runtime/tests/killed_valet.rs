//! What a valet killed with SIGKILL leaves behind, and how the next one cleans it up.
//!
//! The "valet" here is this test binary run again as a child process (`fake_valet`), so it
//! can be SIGKILLed for real without taking the test down with it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{alive, pids, wait_dead, KillOnDrop, Sandbox};
use valet_runtime::{Driver, ProcessDriver};

const STATE_ENV: &str = "VALET_TEST_FAKE_VALET_DIR";

#[tokio::test]
async fn the_next_valet_kills_what_a_killed_valet_left() {
    let sandbox = Sandbox::new();
    let mut valet = Command::new(std::env::current_exe().unwrap())
        .args(["fake_valet", "--exact", "--ignored", "--nocapture"])
        .env(STATE_ENV, sandbox.root())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(valet.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("PIDS "))
        .expect("fake valet reported its instance");
    let group: Vec<i32> = line[5..].split(' ').map(|p| p.parse().unwrap()).collect();
    let (leader, grandchild) = (group[0], group[1]);
    let _cleanup = [KillOnDrop(leader), KillOnDrop(grandchild)];

    valet.kill().unwrap();
    valet.wait().unwrap();
    // The parent-death signal takes the leader, and only the leader.
    wait_dead(leader).await;
    assert!(
        alive(grandchild),
        "grandchild {grandchild} should survive until recover"
    );
    assert_eq!(sandbox.group_records(), 1);

    let next = ProcessDriver::new(sandbox.root().join("run"));
    next.recover().await.unwrap();
    wait_dead(grandchild).await;
    assert_eq!(sandbox.group_records(), 0);
}

/// Run only by the test above, through `--ignored`, with the sandbox path in the environment.
#[tokio::test]
#[ignore = "a helper process, started by the_next_valet_kills_what_a_killed_valet_left"]
async fn fake_valet() {
    let Some(dir) = std::env::var_os(STATE_ENV) else {
        return;
    };
    let sandbox = Sandbox::at(dir.into());
    let running = sandbox
        .start(&["sh", "-c", "sleep 1000 & echo $$ $!; sleep 1000"])
        .await;
    let group = pids(&*running, 2).await;
    println!("PIDS {} {}", group[0], group[1]);
    // Hold the instance until the test kills this process.
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(running);
}
