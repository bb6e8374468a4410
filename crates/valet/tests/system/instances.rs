//! One instance per key: a burst to a cold key starts one process, different keys get different
//! processes, bad or missing keys are refused before anything starts, `max_instances` holds.

use crate::support::*;
use futures_util::future::join_all;
use reqwest::StatusCode;

/// One class of test backends, reached by key from the path, from a header, or by one name.
const KEYED: &str = r#"
[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/k/*"
container = "Echo"
instance = "path:1"
strip_prefix = "/k/*"

[[routes]]
pattern = "/h/*"
container = "Echo"
instance = "header:X-Tenant"
strip_prefix = "/h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_cold_key_starts_exactly_one_instance() {
    // The slow start makes all 500 requests arrive while the instance is still starting.
    let valet = Valet::with_config(
        r#"
        [[containers]]
        class_name = "Slow"
        env = { START_DELAY_MS = "300" }
        readiness = { path = "/health" }

        [[routes]]
        pattern = "/api/*"
        container = "Slow"
        instance = "name:cold"
        strip_prefix = "/api"
        "#,
    )
    .start()
    .await;

    let requests = (0..500).map(|i| {
        let request = valet
            .client
            .get(valet.url(&format!("/api/echo?i={i}")))
            .send();
        tokio::spawn(request)
    });
    let responses = join_all(requests).await;

    let mut pids = std::collections::BTreeSet::new();
    for response in responses {
        let response = response
            .expect("task")
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", valet.log()));
        assert_eq!(response.status(), StatusCode::OK, "{}", valet.log());
        pids.insert(json_of(response).await["pid"].as_u64().expect("pid"));
    }
    let starts = valet.starts();
    assert_eq!(starts.len(), 1, "one start for one key, got {starts:?}");
    assert_eq!(pids.len(), 1, "every request served by the one instance");
    assert_eq!(pids.into_iter().next(), Some(u64::from(starts[0].pid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_requests_makes_a_burst_wait_its_turn() {
    let valet = Valet::with_config(
        r#"
        [[containers]]
        class_name = "Narrow"
        max_concurrent_requests = 2
        readiness = { path = "/health" }

        [[routes]]
        pattern = "/api/*"
        container = "Narrow"
        instance = "name:one"
        strip_prefix = "/api"
        "#,
    )
    .start()
    .await;

    let requests = (0..12).map(|i| {
        let request = valet
            .client
            .get(valet.url(&format!("/api/slow?ms=300&i={i}")))
            .send();
        tokio::spawn(request)
    });
    for response in join_all(requests).await {
        let response = response
            .expect("task")
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", valet.log()));
        assert_eq!(response.status(), StatusCode::OK, "{}", valet.log());
    }
    let peak = json_of(
        valet
            .client
            .get(valet.url("/api/peak"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        peak["peak"], 2,
        "at most two requests at the instance at once: {peak}"
    );
    // Two turns, each worker's pool opening at most one connection per turn it holds, plus
    // the readiness probe's connections.
    let connections = peak["connections"].as_u64().unwrap();
    assert!(
        connections <= 6,
        "connections opened to the instance: {connections}"
    );
    assert_eq!(valet.starts().len(), 1);
}

#[tokio::test]
async fn different_keys_get_different_instances() {
    let valet = Valet::with_config(KEYED).start().await;

    let alpha = valet.echo("/k/alpha/x").await;
    let beta = valet.echo("/k/beta/x").await;
    let alpha_again = valet.echo("/k/alpha/y").await;
    assert_eq!(alpha["key"], "alpha");
    assert_eq!(beta["key"], "beta");
    assert_ne!(alpha["pid"], beta["pid"], "two keys, two processes");
    assert_eq!(alpha["pid"], alpha_again["pid"], "one key, one process");

    let tenant = valet
        .client
        .get(valet.url("/h/x"))
        .header("X-Tenant", "t1")
        .send()
        .await
        .unwrap();
    let tenant = echo_of(tenant, &valet.log()).await;
    assert_eq!(tenant["key"], "t1");
    assert_eq!(tenant["class"], "Echo");

    let keys: Vec<String> = valet.starts().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, ["alpha", "beta", "t1"]);
}

#[tokio::test]
async fn a_request_without_its_key_header_gets_400_and_starts_nothing() {
    let valet = Valet::with_config(KEYED).start().await;

    let response = valet.get("/h/x").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body = json_of(response).await;
    assert_eq!(body["error"], "missing_instance_key");
    assert!(
        body["message"].as_str().unwrap().contains("X-Tenant")
            || body["message"].as_str().unwrap().contains("x-tenant")
    );
    assert!(valet.starts().is_empty());
}

#[tokio::test]
async fn a_10_kb_key_is_refused_and_starts_nothing() {
    let valet = Valet::with_config(KEYED).start().await;
    let huge = "k".repeat(10 * 1024);

    let by_path = valet.get(&format!("/k/{huge}/x")).await;
    assert!(
        by_path.status().is_client_error(),
        "path key: {}",
        by_path.status()
    );
    let by_header = valet
        .client
        .get(valet.url("/h/x"))
        .header("X-Tenant", &huge)
        .send()
        .await
        .unwrap();
    assert!(
        by_header.status().is_client_error(),
        "header key: {}",
        by_header.status()
    );
    let body = json_of(by_header).await;
    assert_eq!(body["error"], "bad_instance_key");

    assert!(
        valet.starts().is_empty(),
        "no start for a refused key: {:?}",
        valet.starts()
    );
    // A sane key still works afterwards.
    assert_eq!(valet.echo("/k/fine/x").await["key"], "fine");
}

#[tokio::test]
async fn max_instances_refuses_a_second_key_while_the_first_is_busy() {
    let valet = Valet::with_config(
        r#"
        [[containers]]
        class_name = "One"
        max_instances = 1
        readiness = { path = "/health" }

        [[routes]]
        pattern = "/k/*"
        container = "One"
        instance = "path:1"
        strip_prefix = "/k/*"
        "#,
    )
    .start()
    .await;

    let first = valet.echo("/k/first/x").await;
    assert_eq!(first["key"], "first");
    // A request in flight keeps the first busy: it cannot be put to sleep for another key.
    let busy = tokio::spawn(client().get(valet.url("/k/first/slow?ms=3000")).send());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let second = valet.get("/k/second/x").await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key("retry-after"));
    let body = json_of(second).await;
    assert_eq!(body["error"], "max_instances_reached");
    assert_eq!(body["instance"], "One/second");

    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
    // The first keeps being served by the same process.
    assert_eq!(valet.echo("/k/first/y").await["pid"], first["pid"]);
    assert_eq!(valet.starts().len(), 1);
}
