//! examples/convex: its valet.toml passes `valet check`, and its class and routes, unchanged but
//! for the image, serve through the Docker driver from a stand-in for the Convex backend image
//! (which cannot be pulled here).
//!
//! Without an engine the Docker test fails under `CI=true` and is skipped with a reason otherwise.

use crate::support::docker::*;
use crate::support::*;
use std::path::PathBuf;
use std::time::Duration;
use toml_edit::{value, Array, DocumentMut};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/convex/valet.toml")
}

/// busybox on `scratch`: three httpd servers, one folder per Convex port.
const STAND_IN: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n\
COPY entrypoint.sh /entrypoint.sh\n";
/// The two side ports' httpd go to the background; the api one stays in front as PID 1's child
/// (`exec`), so the container lives as long as it does.
const ENTRYPOINT: &str = "#!/bin/sh\n\
httpd -p 3211 -h /www/http\n\
httpd -p 6791 -h /www/dashboard\n\
exec httpd -f -p 3210 -h /www/api\n";

#[test]
fn the_example_config_passes_check() {
    let path = example();
    let out = Valet::run(&["check", path.to_str().unwrap()], Duration::from_secs(20));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("ok (1 class, 3 routes, driver docker)"),
        "{said}"
    );
}

/// The example's config with its class renamed (this run's containers, volume and image are
/// found and removed by that name), its image swapped for the stand-in, the stand-in's
/// entrypoint as command, and no fixed admin port (the support picks a free one).
fn stand_in_config(class: &str, dockerfile: &std::path::Path) -> String {
    let text = std::fs::read_to_string(example()).unwrap();
    let mut doc: DocumentMut = text.parse().unwrap();
    doc["server"].as_table_mut().unwrap().remove("admin_listen");
    let containers = doc["containers"].as_array_of_tables_mut().unwrap();
    assert_eq!(containers.len(), 1);
    let convex = containers.get_mut(0).unwrap();
    convex["class_name"] = value(class);
    convex["image"] = value(dockerfile.display().to_string());
    let mut command = Array::new();
    command.push("/entrypoint.sh");
    convex["command"] = value(command);
    // Quicker to clean up than the example's 10s, and small enough for a shared test machine.
    convex["stop_timeout"] = value("2s");
    convex["instance_type"] = value("lite");
    for route in doc["routes"].as_array_of_tables_mut().unwrap().iter_mut() {
        route["container"] = value(class);
    }
    doc.to_string()
}

#[tokio::test]
async fn the_example_routes_reach_three_ports_of_one_container_with_its_volume() {
    if !engine_ready() {
        return;
    }
    let image = busybox_context(STAND_IN);
    put(image.path(), "entrypoint.sh", ENTRYPOINT, true);
    // The example's readiness probe asks the api port for /version, as Convex answers it.
    put(image.path(), "www/api/version", "stand-in api\n", false);
    put(
        image.path(),
        "www/http/hello",
        "stand-in http actions\n",
        false,
    );
    put(
        image.path(),
        "www/dashboard/index.html",
        "stand-in dashboard\n",
        false,
    );

    let class = format!("Convex{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let index = std::fs::read_to_string(example().with_file_name("public/index.html")).unwrap();
    let valet = Valet::with_config(&stand_in_config(&class, &image.path().join("Dockerfile")))
        .assets(&[("public/index.html", &index)])
        .start()
        .await;

    assert_eq!(text(&valet, "/api/version").await, "stand-in api\n");
    assert_eq!(text(&valet, "/http/hello").await, "stand-in http actions\n");
    assert_eq!(text(&valet, "/dashboard/").await, "stand-in dashboard\n");
    assert!(text(&valet, "/").await.contains("Convex behind valet"));

    // One container for all three routes, its ports published on loopback only, and the data
    // folder on a named volume.
    let running = containers(&class);
    assert_eq!(running.len(), 1, "{}", valet.log());
    let ports = docker(&["port", &running[0]]);
    for port in ["3210", "3211", "6791"] {
        assert!(
            ports
                .lines()
                .any(|l| l.starts_with(&format!("{port}/tcp -> 127.0.0.1:"))),
            "{port}: {ports}"
        );
    }
    let mounts = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}",
        &running[0],
    ]);
    assert_eq!(mounts.trim(), "volume /convex/data");
}
