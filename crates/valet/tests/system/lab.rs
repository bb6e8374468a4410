//! The cluster test harness itself (`support::cluster`): replicas on one private PostgreSQL,
//! in network namespaces that can be cut off, and on loopback. The replicas run without
//! `[cluster]` here, as independent valets that share a store; cluster mode's own tests use the
//! same harness with it. Without root, `ip`/`nsenter` or PostgreSQL's binaries these tests are
//! skipped, and fail under `CI=true`.

use crate::support::cluster::{Lab, PrivatePostgres, Replicas, SECRET};
use crate::support::*;
use std::time::Duration;

/// One backend per `X-Tenant`, so each replica starts one of its own.
const ECHO: &str = r#"
[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "header:X-Tenant"
strip_prefix = "/api"
"#;

/// Replica i's public listener proxies to a backend it started, and its admin listener is up.
async fn serves(replicas: &Replicas, i: usize) {
    assert!(
        replicas.answers(i).await,
        "replica {i}\n{}",
        replicas.logs()
    );
    let (status, _) = replicas.admin_get(i, "/v1/instances").await;
    assert_eq!(status, 200, "the admin token opens replica {i}'s API");
    let response = replicas
        .client()
        .get(replicas.url(i, "/api/who"))
        .header("X-Tenant", format!("t{i}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("replica {i}: {e}\n{}", replicas.logs()));
    let echo = echo_of(response, &replicas.log(i)).await;
    assert_eq!(echo["path"], "/who", "{echo}");
}

/// The addresses PostgreSQL sees clients connect from (not the harness's own unix socket).
fn store_clients(pg: &PrivatePostgres) -> Vec<String> {
    let rows = pg.psql(
        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity \
         WHERE datname = 'valet' AND client_addr IS NOT NULL ORDER BY 1",
    );
    rows.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_replicas_in_namespaces_share_a_store_and_a_cut_node_stops_answering() {
    // Declared first, dropped last: everything below runs in its namespaces.
    let Some(lab) = Lab::new(2) else { return };
    let Some(pg) = lab.postgres() else { return };
    assert!(pg.url().contains(&format!("@{}:5432/", lab.db_addr())));
    let replicas = Replicas::with_config(ECHO)
        .replicas(2)
        .store(&pg.url())
        .cluster(false)
        .in_lab(&lab)
        .start()
        .await;
    for i in 1..=2 {
        assert!(
            replicas.url(i, "/").contains(&lab.addr(i).to_string()),
            "replica {i} listens on its node's address"
        );
        serves(&replicas, i).await;
    }
    // Each replica reached the db namespace across the bridge, from its own node.
    let nodes: Vec<String> = (1..=2).map(|i| lab.addr(i).to_string()).collect();
    eventually(
        Duration::from_secs(10),
        "both nodes connected to the store",
        || async { (store_clients(&pg) == nodes).then_some(()) },
    )
    .await;

    lab.cut(2);
    assert!(!replicas.answers(2).await, "a cut node is unreachable");
    assert!(replicas.answers(1).await, "the other node still answers");

    lab.heal(2);
    eventually(Duration::from_secs(10), "node 2 answers again", || async {
        replicas.answers(2).await.then_some(())
    })
    .await;
    serves(&replicas, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_replicas_share_a_store_and_come_back_after_kill9_and_a_store_restart() {
    let Some(mut pg) = PrivatePostgres::loopback() else {
        return;
    };
    let mut replicas = Replicas::with_config(ECHO)
        .replicas(2)
        .store(&pg.url())
        .cluster(false)
        .start()
        .await;
    for i in 1..=2 {
        serves(&replicas, i).await;
    }
    let schema = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'";
    assert_ne!(
        pg.psql(schema).trim(),
        "0",
        "valet's tables are in the store"
    );

    let pid = replicas.pid(2);
    replicas.kill9(2);
    assert!(!pid_alive(pid));
    assert!(
        !replicas.answers(2).await,
        "a killed replica does not answer"
    );
    assert!(replicas.answers(1).await);
    replicas.restart(2).await;
    assert_ne!(replicas.pid(2), pid);
    serves(&replicas, 2).await;
    assert!(replicas.log(2).contains("--- restarted by the test ---"));

    // The store goes away and comes back on the same data.
    let postmaster = pg.pid().expect("postgres runs");
    pg.stop();
    assert!(!pid_alive(postmaster));
    pg.start();
    assert_ne!(pg.psql(schema).trim(), "0", "the data survived the restart");
    for i in 1..=2 {
        assert!(
            replicas.answers(i).await,
            "replica {i}\n{}",
            replicas.logs()
        );
    }
}

#[test]
fn every_replica_gets_its_own_cluster_section_on_one_secret() {
    let builder = Replicas::with_config(ECHO)
        .store("postgres://valet:valet@127.0.0.1:1/valet")
        .lease_ttl("3s");
    let configs: Vec<toml_edit::DocumentMut> = (1..=2)
        .map(|i| builder.config(i).parse().expect("TOML"))
        .collect();
    for (i, doc) in configs.iter().enumerate() {
        let cluster = &doc["cluster"];
        assert_eq!(
            cluster["node"].as_str(),
            Some(format!("gw-{}", i + 1).as_str())
        );
        assert_eq!(cluster["secret"].as_str(), Some(SECRET));
        assert!(SECRET.len() >= 32);
        assert_eq!(cluster["lease_ttl"].as_str(), Some("3s"));
        assert_eq!(cluster["advertise"].as_str(), cluster["listen"].as_str());
        assert!(doc["server"]["store"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"));
        assert!(doc["server"]["admin_token"].as_str().is_some());
        assert_eq!(doc["containers"][0]["class_name"].as_str(), Some("Echo"));
    }
    assert_ne!(
        configs[0]["cluster"]["listen"].as_str(),
        configs[1]["cluster"]["listen"].as_str(),
        "each replica has a peer listener of its own"
    );
    let plain = Replicas::with_config(ECHO).cluster(false).config(1);
    assert!(!plain.contains("[cluster]"), "{plain}");
}
