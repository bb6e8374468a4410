//! `valet status`, `instances`, `start`, `stop`, `destroy`, `logs`: clients of the admin API of
//! the valet running with the config beside them. Tables for people, `--json` for scripts.

use crate::admin_client::{instance_path, segment, AdminClient};
use crate::cli::{self, AdminArgs, Command, InstanceArgs};
use crate::table::{state_color, use_color, Cell, Table};
use futures_util::StreamExt;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

pub fn run(command: Command) -> ExitCode {
    cli::run_to_exit(async move {
        match command {
            Command::Status(admin) => status(&admin).await,
            Command::Cluster(admin) => cluster(&admin).await,
            Command::Instances { class, admin } => instances(class.as_deref(), &admin).await,
            Command::Start(args) => act(&args, "start").await,
            Command::Stop(args) => act(&args, "stop").await,
            Command::Destroy(args) => act(&args, "destroy").await,
            Command::Logs {
                class,
                key,
                follow,
                tail,
                admin,
            } => logs(&class, key, follow, tail, &admin).await,
            Command::Up { .. }
            | Command::Check { .. }
            | Command::Import { .. }
            | Command::Volumes(_)
            | Command::Token(_)
            | Command::Deploy { .. }
            | Command::Projects(_)
            | Command::Rollback { .. }
            | Command::Secret(_) => {
                unreachable!("handled by main")
            }
        }
    })
}

/// `println!` that ends the process quietly when stdout is closed (`valet instances | head`),
/// instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        if writeln!(out, $($arg)*).and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
    }};
}

fn print_json(value: &Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

async fn status(args: &AdminArgs) -> Result<(), String> {
    let s = AdminClient::new(args)?.get("/v1/status").await?;
    if args.json {
        print_json(&s);
        return Ok(());
    }
    say!(
        "valet {} · {} driver · gateway {} · admin {} · up {}",
        text(&s["version"]),
        text(&s["driver"]),
        text(&s["listen"]),
        text(&s["admin_listen"]),
        duration(s["uptime_ms"].as_u64())
    );
    if let Some(node) = s["node"].as_str() {
        say!("cluster node {node} (`valet cluster` lists the replicas and their leases)");
    }
    let mut table = Table::new(vec![
        "CLASS",
        "RUNNING",
        "INSTANCES",
        "REQUESTS",
        "5XX",
        "COLD STARTS",
        "CRASHES",
    ]);
    for c in s["classes"].as_array().into_iter().flatten() {
        let states = c["states"].as_object().map_or_else(String::new, |m| {
            m.iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        table.row(vec![
            shown_name(&c["name"], &c["project"]).into(),
            format!("{}/{}", c["live"], c["max_instances"]).into(),
            if states.is_empty() {
                "none".into()
            } else {
                states.into()
            },
            text(&c["requests"]).into(),
            text(&c["errors"]).into(),
            text(&c["cold_starts"]).into(),
            text(&c["crashes"]).into(),
        ]);
    }
    say!("{}", table.render(use_color()).trim_end());
    Ok(())
}

async fn cluster(args: &AdminArgs) -> Result<(), String> {
    let c = AdminClient::new(args)?.get("/v1/cluster").await?;
    if args.json {
        print_json(&c);
        return Ok(());
    }
    let n = &c["counters"];
    say!(
        "node {} · leases held {} · taken {} · lost {} · renewals {} ({} late)",
        text(&c["node"]),
        text(&n["held"]),
        text(&n["taken"]),
        text(&n["lost"]),
        text(&n["renewals"]),
        text(&n["renewals_late"])
    );
    let mut nodes = Table::new(vec!["NODE", "PEER LISTENER", "ALIVE"]);
    for node in c["nodes"].as_array().into_iter().flatten() {
        let alive = if node["alive"] == true { "yes" } else { "no" };
        nodes.row(vec![
            text(&node["node"]).into(),
            text(&node["endpoint"]).into(),
            Cell::colored(
                alive,
                state_color(if alive == "yes" { "ready" } else { "crashed" }),
            ),
        ]);
    }
    say!("{}", nodes.render(use_color()).trim_end());
    let leases = c["leases"].as_array().cloned().unwrap_or_default();
    if leases.is_empty() {
        say!("no leases held: no instance runs anywhere in the cluster");
        return Ok(());
    }
    let mut table = Table::new(vec!["CLASS", "KEY", "OWNER", "EPOCH", "EXPIRES IN"]);
    for l in &leases {
        table.row(vec![
            text(&l["class"]).into(),
            text(&l["key"]).into(),
            text(&l["owner"]).into(),
            text(&l["epoch"]).into(),
            format!("{} ms", text(&l["expires_in_ms"])).into(),
        ]);
    }
    say!("{}", table.render(use_color()).trim_end());
    Ok(())
}

async fn instances(class: Option<&str>, args: &AdminArgs) -> Result<(), String> {
    let path = match class {
        Some(class) => format!("/v1/instances?class={}", segment(class)),
        None => "/v1/instances".to_string(),
    };
    let list = AdminClient::new(args)?.get(&path).await?;
    if args.json {
        print_json(&list);
        return Ok(());
    }
    let all = list.as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        say!("no instances yet: one appears with the first request to its key");
        return Ok(());
    }
    // Cluster mode: which replica runs each key (keys another replica owns show where this
    // one forwards them).
    let clustered = all.iter().any(|i| i["owner"].is_string());
    // `scale`: a key served by several replicas has a row per replica.
    let scaled = all.iter().any(|i| i["replica"].as_u64().unwrap_or(0) > 0);
    let mut columns = vec!["CLASS", "KEY"];
    if scaled {
        columns.push("REPLICA");
    }
    columns.push("STATE");
    if clustered {
        columns.push("OWNER");
    }
    columns.extend([
        "UPTIME",
        "LAST ACTIVE",
        "REQUESTS",
        "RESTARTS",
        "LAST EXIT",
        "LAST START",
    ]);
    let mut table = Table::new(columns);
    for i in &all {
        // A key another replica runs has no state here: it is forwarded to its owner.
        let state = match i["forwarded"].as_bool() {
            Some(true) => "forwarded".to_string(),
            _ => text(&i["state"]),
        };
        let active = if i["active"].as_u64().unwrap_or(0) > 0 {
            "now".to_string()
        } else {
            format!("{} ago", duration(i["idle_ms"].as_u64()))
        };
        let mut row = vec![
            shown_name(&i["label"], &i["project"]).into(),
            text(&i["key"]).into(),
        ];
        if scaled {
            row.push(text(&i["replica"]).into());
        }
        row.push(Cell::colored(state.clone(), state_color(&state)));
        if clustered {
            row.push(text(&i["owner"]).into());
        }
        row.extend([
            duration(i["uptime_ms"].as_u64()).into(),
            active.into(),
            text(&i["requests"]).into(),
            text(&i["restarts"]).into(),
            exit_text(&i["last_exit"]).into(),
            i["last_start_ms"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"))
                .into(),
        ]);
        table.row(row);
    }
    say!("{}", table.render(use_color()).trim_end());
    for i in all
        .iter()
        .filter(|i| i["state"] == "crashed" || i["state"] == "backoff")
    {
        say!(
            "\n{}/{}: {}",
            text(&i["label"]),
            text(&i["key"]),
            text(&i["message"])
        );
        for line in i["last_log"].as_array().into_iter().flatten() {
            say!("  | {}", text(line));
        }
    }
    Ok(())
}

async fn act(args: &InstanceArgs, action: &str) -> Result<(), String> {
    let client = AdminClient::new(&args.admin)?;
    let key = match &args.key {
        Some(key) => key.clone(),
        None => only_key(&client, &args.class).await?,
    };
    let instance = instance_path(&args.class, &key);
    let action_path = format!("{instance}/{action}");
    let request = client.post(&action_path);
    // A start may wait on an image pull: on a terminal its layers are drawn meanwhile.
    let bar = action == "start" && !args.admin.json && std::io::stderr().is_terminal();
    let answer = if bar {
        let answer = tokio::select! {
            answer = request => answer,
            () = crate::pull_progress::draw(&client, &instance) => unreachable!("draws until dropped"),
        };
        crate::pull_progress::clear();
        answer?
    } else {
        request.await?
    };
    if args.admin.json {
        print_json(&answer);
        return Ok(());
    }
    // Named as valet knows it: a project by `project:<name>`, whatever the user typed.
    let label = answer["label"].as_str().unwrap_or(&args.class);
    let id = format!("{label}/{key}");
    match action {
        "destroy" => say!("{id}: destroyed"),
        "start" => match answer["last_start_ms"].as_u64() {
            Some(ms) => say!("{id}: {} (last start took {ms} ms)", text(&answer["state"])),
            None => say!("{id}: {}", text(&answer["state"])),
        },
        _ => say!("{id}: {}", text(&answer["state"])),
    }
    Ok(())
}

async fn logs(
    class: &str,
    key: Option<String>,
    follow: bool,
    tail: usize,
    args: &AdminArgs,
) -> Result<(), String> {
    let client = AdminClient::new(args)?;
    let key = match key {
        Some(key) => key,
        None => only_key(&client, class).await?,
    };
    let path = format!("{}/logs?tail={tail}", instance_path(class, &key));
    if !follow {
        let answer = client.get(&path).await?;
        if args.json {
            print_json(&answer);
        } else {
            answer["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .for_each(|l| say!("{}", text(l)));
        }
        return Ok(());
    }
    let response = client.stream(&format!("{path}&follow=1")).await?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("log stream broke: {e}"))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            print_event(&event, args.json);
        }
    }
    Ok(())
}

/// A command's key when none was named: the class's only instance, else its only fixed key
/// (a `name:` rule's, or a project's), which may not have run yet.
async fn only_key(client: &AdminClient, class: &str) -> Result<String, String> {
    let list = client
        .get(&format!("/v1/instances?class={}", segment(class)))
        .await?;
    let mut keys: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["key"].as_str())
        .collect();
    // A scaled key is listed once per replica (the listing is sorted by key).
    keys.dedup();
    if let [key] = keys.as_slice() {
        return Ok(key.to_string());
    }
    let view = client
        .get(&format!("/v1/classes/{}", segment(class)))
        .await?;
    let fixed: Vec<&str> = view["fixed_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // One fixed key and no other known key: that key is the class's only one.
    if let [key] = fixed.as_slice() {
        if keys.iter().all(|k| k == key) {
            return Ok(key.to_string());
        }
    }
    match keys.as_slice() {
        [] => Err(format!("class {class} has no instance yet; name a key")),
        many => {
            let shown: Vec<&str> = many.iter().take(10).copied().collect();
            Err(format!(
                "class {class} has {} instances; name one: {}",
                many.len(),
                shown.join(", ")
            ))
        }
    }
}

/// One SSE event: output lines to stdout, notices to stderr (or everything as JSON lines).
fn print_event(event: &str, json: bool) {
    let mut kind = "message";
    let mut data = Vec::new();
    for line in event.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            kind = name.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return; // a keep-alive comment
    }
    let data = data.join("\n");
    if json {
        say!("{}", serde_json::json!({ "event": kind, "data": data }));
    } else if kind == "notice" {
        eprintln!("-- {data}");
    } else {
        say!("{data}");
    }
}

/// A class as operators know it: a project as `project:<name> (<id>)`, so two tenants'
/// projects of one name stay apart; a config class by its name.
fn shown_name(label: &Value, project: &Value) -> String {
    match project["id"].as_str() {
        Some(id) => format!("{} ({id})", text(label)),
        None => text(label),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn exit_text(exit: &Value) -> String {
    if let Some(signal) = exit["signal"].as_i64() {
        format!("signal {signal}")
    } else if let Some(code) = exit["code"].as_i64() {
        format!("code {code}")
    } else {
        "-".into()
    }
}

fn duration(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}
