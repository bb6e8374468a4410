//! `data_dir` on a full disk (a 1 MB tmpfs, filled up): running instances keep serving, a new
//! instance cannot start and is answered 503 with Retry-After (valet's log names the disk),
//! nothing hangs, and once space is back everything works, the store included after a restart.

use crate::support::faults::SmallDisk;
use crate::support::*;
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_dir_keeps_running_instances_serving_and_refuses_new_ones_clearly() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let mut valet = Valet::with_config(&format!(
        r#"
[server]
data_dir = "{}"

[[containers]]
class_name = "Echo"
readiness = {{ path = "/health" }}

[[routes]]
pattern = "/k/*"
container = "Echo"
instance = "path:1"
strip_prefix = "/k/*"
"#,
        disk.path().display()
    ))
    .start()
    .await;
    let running = valet.echo("/k/a/echo").await["pid"].clone();

    let filled = disk.fill();
    eprintln!("filled the data_dir with {filled} bytes");
    for _ in 0..10 {
        let echo = valet.echo("/k/a/echo").await;
        assert_eq!(echo["pid"], running, "the running instance keeps serving");
    }
    let refused = valet.get("/k/b/echo").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body = json_of(refused).await;
    assert_eq!(body["instance"], "Echo/b", "{body}");
    assert!(
        valet.log().contains("No space left on device"),
        "the operator is told why:\n{}",
        valet.log()
    );

    disk.free();
    eventually(
        Duration::from_secs(30),
        "the new key to start once space is back",
        || async {
            let r = valet.client.get(valet.url("/k/b/echo")).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;

    // The store and the rest of data_dir survived: a restarted valet opens them and serves.
    let status = valet.terminate();
    assert!(status.success(), "{}", valet.log());
    valet.restart().await;
    valet.echo("/k/a/echo").await;
    valet.echo("/k/b/echo").await;
    drop(valet);
    drop(disk);
}
