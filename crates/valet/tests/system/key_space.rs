//! Keys come from clients: one client must not be able to lock a class's key space. Through the
//! real binary: a full class puts its least recently used idle instance to sleep for a new key,
//! refused keys leave no record, and one client's cold starts are limited (429 + Retry-After).

use crate::admin_support::{with_token, Admin, TOKEN};
use crate::support::*;
use reqwest::StatusCode;
use std::time::Duration;

const CLASS: &str = r#"
[[containers]]
class_name = "Keyed"
max_instances = 2
sleep_after = "10m"
readiness = { path = "/health" }

[[routes]]
pattern = "/k/*"
container = "Keyed"
instance = "path:1"
strip_prefix = "/k/*"
"#;

fn pid(echo: &serde_json::Value) -> u32 {
    echo["pid"].as_u64().expect("pid") as u32
}

#[tokio::test]
async fn a_full_class_puts_its_least_recently_used_idle_instance_to_sleep_for_a_new_key() {
    let valet = Valet::with_config(&with_token(CLASS)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let a = pid(&valet.echo("/k/a/x").await);
    let b = pid(&valet.echo("/k/b/x").await);
    // `a` is used again, so `b` is now the least recently used.
    assert_eq!(pid(&valet.echo("/k/a/y").await), a);
    // Both idle (a request counts as active until its lease is dropped, a moment after the
    // client has its answer; on a loaded machine a new key could come first and find `a` the
    // only idle one).
    eventually(Duration::from_secs(10), "a and b idle", || {
        let admin = &admin;
        async move {
            let (_, list) = admin.get("/v1/instances").await;
            let busy = list.as_array()?.iter().any(|i| i["active"] != 0);
            (!busy).then_some(())
        }
    })
    .await;

    let c = pid(&valet.echo("/k/c/x").await);
    assert!(![a, b].contains(&c));
    eventually(
        Duration::from_secs(10),
        "b's process to be stopped",
        || async move { (!pid_alive(b)).then_some(()) },
    )
    .await;
    assert!(pid_alive(a), "the recently used instance keeps running");
    assert_eq!(pid(&valet.echo("/k/a/z").await), a);
    assert!(
        valet
            .log()
            .contains("least recently used idle instance put to sleep"),
        "the eviction is logged:\n{}",
        valet.log()
    );
}

#[tokio::test]
async fn refused_keys_leave_no_record() {
    let config = with_token(&CLASS.replace("max_instances = 2", "max_instances = 1"));
    let valet = Valet::with_config(&config).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    valet.echo("/k/held/x").await;
    // Busy for the whole test: nothing can be put to sleep for the keys below.
    let busy = tokio::spawn(client().get(valet.url("/k/held/slow?ms=4000")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..40 {
        let response = valet.get(&format!("/k/refused-{i}/x")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, list) = admin.get("/v1/instances").await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, ["held"], "only the key that ran is known");
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn one_client_cannot_churn_a_class_with_new_keys() {
    let config = format!(
        "[server]\ncold_starts_per_client = {{ starts = 3, per = \"1m\" }}\n{}",
        CLASS.replace("max_instances = 2", "max_instances = 10")
    );
    let valet = Valet::with_config(&config).start().await;
    for key in ["one", "two", "three"] {
        valet.echo(&format!("/k/{key}/x")).await;
    }
    let over = valet.get("/k/four/x").await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&retry),
        "Retry-After within the window: {retry}"
    );
    assert_eq!(json_of(over).await["error"], "too_many_starts");
    // Keys that run already are served: only starts are counted.
    valet.echo("/k/one/y").await;
    assert_eq!(valet.starts().len(), 3);
}
