//! What keeps an instance up or brings it back without a request: `min_instances` starts fixed
//! keys at boot and keeps them awake, and a liveness probe restarts an instance that hangs.

use crate::support::*;
use std::time::Duration;

#[tokio::test]
async fn min_instances_starts_fixed_keys_at_boot_and_never_sleeps_them() {
    let valet = Valet::with_config(
        r#"
[[containers]]
class_name = "Pinned"
readiness = { path = "/health" }
sleep_after = "1s"
min_instances = 1

[[routes]]
pattern = "/api/*"
container = "Pinned"
instance = "name:always"
"#,
    )
    .start()
    .await;

    // No request has been sent: the pinned key starts by itself.
    let started = eventually(
        Duration::from_secs(10),
        "the pinned instance to start at boot",
        || {
            let starts = valet.starts();
            async move { (!starts.is_empty()).then_some(starts) }
        },
    )
    .await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].key, "always");
    let pid = started[0].pid;

    // Three times its sleep_after later it is still the same process.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(pid_alive(pid), "a pinned instance must not sleep");
    let echo = valet.echo("/api/echo").await;
    assert_eq!(echo["pid"].as_u64(), Some(pid as u64));
    assert_eq!(valet.starts().len(), 1);
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_a_hung_instance() {
    // /slow?ms=5000 never answers within the probe's 200 ms: to valet the instance hangs.
    let valet = Valet::with_config(
        r#"
[[containers]]
class_name = "Hangs"
readiness = { path = "/health" }
liveness = { path = "/slow?ms=5000", interval = "300ms", timeout = "200ms", failures = 2 }

[[routes]]
pattern = "/api/*"
container = "Hangs"
instance = "name:h"
"#,
    )
    .start()
    .await;

    let first = valet.echo("/api/echo").await["pid"].as_u64().unwrap() as u32;
    eventually(
        Duration::from_secs(15),
        "the hung instance to be restarted",
        || {
            let starts = valet.starts();
            async move { (starts.len() >= 2).then_some(()) }
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the hung process to be gone",
        || async move { (!pid_alive(first)).then_some(()) },
    )
    .await;
    let echo = valet.echo("/api/echo").await;
    assert_ne!(
        echo["pid"].as_u64(),
        Some(first as u64),
        "a new process serves after the restart"
    );
}
