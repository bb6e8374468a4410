//! A rolling redeploy under a steady request rate loses nothing: while a client sends GETs to a
//! deployed project at a fixed rate, new versions are uploaded (each one slow to start) and one
//! is rolled back, and every single request must be answered 200 by some version.
//!
//! CI runs it for 60 s at 100 requests/s. `bench/redeploy.sh` runs the same test for longer and
//! faster (REDEPLOY_SECONDS, REDEPLOY_RATE; `REDEPLOY_RATE=auto` first measures valet's maximum
//! on the project and then runs at 80% of it) and its result goes into RELIABILITY.md.

use crate::deploy_support::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// What one request came back with: the version that answered, or what went wrong.
type Outcomes = BTreeMap<String, u64>;

/// One GET through the gateway; `v<N>` on success, else the status or error.
async fn probe(client: &reqwest::Client, url: &str) -> String {
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status();
            match response.json::<serde_json::Value>().await {
                Ok(body) if status == 200 => body["version"].as_str().unwrap_or("?").to_string(),
                Ok(body) => format!("{status} {body}"),
                Err(e) => format!("{status} unreadable body: {e}"),
            }
        }
        Err(e) => {
            // The whole chain: "error sending request" alone does not say what happened.
            let mut text = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// Requests per second valet sustains on `url` with 32 clients for 5 s.
async fn maximum(client: &reqwest::Client, url: &str) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(5);
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.to_string(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    if probe(&client, &url).await.starts_with('v') {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / 5.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_redeploy_at_a_steady_rate_fails_no_request() {
    let seconds: u64 = env_or("REDEPLOY_SECONDS", "60")
        .parse()
        .expect("REDEPLOY_SECONDS");
    let (valet, api) = valet_with("").await;
    let (status, v1) = api
        .upload(Form::file("app.py", plain_app("v1")).field("name", "steady"))
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    let url = v1["endpoint"].as_str().unwrap().to_string();
    // valet closes a client connection that sends no request within `timeouts.header_read`
    // (10 s), idle keep-alive included; a client must let its idle connections go sooner, or
    // it may send on one just as valet closes it (the usual keep-alive race).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(probe(&client, &url).await, "v1");

    let rate: f64 = match env_or("REDEPLOY_RATE", "100").as_str() {
        "auto" => {
            let max = maximum(&client, &url).await;
            println!("valet's maximum on the project: {max:.0} requests/s; running at 80%");
            (max * 0.8).max(1.0)
        }
        r => r.parse().expect("REDEPLOY_RATE"),
    };
    let total = (rate * seconds as f64) as u64;

    // The load: one request every 1/rate s, each in its own task, whatever the answers take.
    let outcomes = Arc::new(std::sync::Mutex::new(Outcomes::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, url, outcomes, stop) =
            (client.clone(), url.clone(), outcomes.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut inflight = Vec::with_capacity(total as usize);
            for _ in 0..total {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (client, url, outcomes) = (client.clone(), url.clone(), outcomes.clone());
                inflight.push(tokio::spawn(async move {
                    let outcome = probe(&client, &url).await;
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }));
            }
            for request in inflight {
                request.await.unwrap();
            }
        })
    };

    // Redeploys spread over the run: every version takes a second to listen, so each switch
    // happens while requests keep coming; one rollback returns to an older version.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut version = 1;
    let mut deployed = vec![];
    let mut expected = "v1".to_string();
    while Instant::now() + Duration::from_secs(8) < deadline {
        tokio::time::sleep(Duration::from_secs(3)).await;
        version += 1;
        let app =
            plain_app(&format!("v{version}")).replace("STARTUP_DELAY = 0", "STARTUP_DELAY = 1");
        let (status, body) = api
            .upload(Form::file("app.py", app).field("name", "steady"))
            .await;
        assert_eq!(status, 201, "deploy of v{version}: {body}\n{}", valet.log());
        deployed.push(format!("v{version}"));
        expected = format!("v{version}");
        if version == 3 {
            let (status, body) = api
                .call(
                    "POST",
                    &format!("/v1/projects/{id}/rollback"),
                    Some(serde_json::json!({ "version": 1 })),
                )
                .await;
            assert_eq!(status, 200, "rollback: {body}");
            deployed.push("rollback to v1".into());
            expected = "v1".into();
        }
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let outcomes = outcomes.lock().unwrap().clone();
    let answered: u64 = outcomes.values().sum();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(k, _)| !k.starts_with('v'))
        .collect();
    println!(
        "{answered} requests at {rate:.0}/s over {seconds} s, deploys: {deployed:?}, outcomes: {outcomes:?}"
    );
    assert!(
        version >= 3,
        "at least two redeploys happened: {deployed:?}"
    );
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?}\n{}",
        valet.log()
    );
    // The last version deployed (or rolled back to) serves once the run is over.
    assert_eq!(probe(&client, &url).await, expected);
    // Most of the planned requests were sent (the loop stops at the deadline).
    assert!(
        answered as f64 >= total as f64 * 0.9,
        "{answered} of {total} requests sent"
    );
}
