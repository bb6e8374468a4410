//! `valet volumes ls` and `valet volumes rm`: the Docker driver's per-instance volumes of the
//! config beside the command. They talk to the engine directly, not to a running valet:
//! volumes outlive valet, and cleaning up after one is when they matter most.

use crate::cli::{self, AdminArgs, VolumesCommand};
use crate::table::{use_color, Cell, Table};
use serde_json::{json, Value};
use std::process::ExitCode;
use valet_runtime::docker::{VolumeInfo, VolumeTarget, Volumes};

pub fn run(command: VolumesCommand) -> ExitCode {
    cli::run_to_exit(async move {
        match command {
            VolumesCommand::Ls(args) => list(&args).await,
            VolumesCommand::Rm {
                name,
                class,
                key,
                admin,
            } => {
                // clap makes sure there is a name or a class with its key.
                let target = match (name, class, key) {
                    (Some(name), _, _) => VolumeTarget::Name(name),
                    (None, Some(class), Some(key)) => VolumeTarget::Instance { class, key },
                    _ => return Err("give a volume name, or --class and --key".to_string()),
                };
                remove(&target, &admin).await
            }
        }
    })
}

/// The volumes of the valet that runs (or ran) with this config.
async fn open(args: &AdminArgs) -> Result<Volumes, String> {
    let config = valet_config::load(&args.config)
        .map_err(|errors| valet_config::render_report(&errors).trim_end().to_string())?;
    if config.server.driver == "swarm" {
        // Each key's volume is on the node that first ran it, not on one engine to list.
        return Err(
            "`valet volumes` manages the Docker driver's volumes; with driver = \"swarm\" \
             a key's volume is on its node: `valet destroy CLASS KEY` removes it, and \
             `docker -H NODE volume ls --filter label=valet.managed=true` lists a node's"
                .to_string(),
        );
    }
    Volumes::connect(&config.data_dir())
        .await
        .map_err(|e| e.to_string())
}

async fn list(args: &AdminArgs) -> Result<(), String> {
    let volumes = open(args).await?.list().await.map_err(|e| e.to_string())?;
    if args.json {
        let all: Vec<Value> = volumes.iter().map(as_json).collect();
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(());
    }
    let mut table = Table::new(vec!["NAME", "CLASS", "KEY", "SIZE", "IN USE"]);
    for volume in &volumes {
        let in_use = match volume.running_user() {
            Some(_) => Cell::colored("yes", Some("32")),
            None if !volume.used_by.is_empty() => "stopped container".into(),
            None => Cell::colored("no", Some("2")),
        };
        table.row(vec![
            volume.name.as_str().into(),
            volume.class.as_str().into(),
            volume.key.as_deref().unwrap_or("?").into(),
            volume.size.map_or("-".to_string(), human_size).into(),
            in_use,
        ]);
    }
    print!("{}", table.render(use_color()));
    Ok(())
}

/// `in_use`: a running container mounts it (what `rm` refuses); `used_by` lists every one.
fn as_json(volume: &VolumeInfo) -> Value {
    json!({
        "name": volume.name,
        "class": volume.class,
        "key": volume.key,
        "size": volume.size,
        "in_use": volume.running_user().is_some(),
        "used_by": volume.used_by,
    })
}

async fn remove(target: &VolumeTarget, args: &AdminArgs) -> Result<(), String> {
    let volumes = open(args).await?;
    let name = volumes.remove(target).await.map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", json!({ "removed": name }));
    } else {
        println!("removed volume {name}");
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
