//! `valet token create`, `valet deploy`, `valet projects ls|rm|versions`, `valet rollback`:
//! clients of the deploy API on the running valet's admin listener. Tables for people,
//! `--json` for scripts; `token create` prints the token as the last line of stdout.
//! `valet deploy` shows an upload bar, then the build's stages and log as valet streams them.

use crate::admin_client::{segment, AdminClient};
use crate::cli::{
    self, AdminArgs, Command, ProjectsCommand, SecretCommand, SecretScope, TokenCommand,
};
use crate::table::{use_color, Cell, Table};
use crate::upload_progress::UploadProgress;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

pub fn run(command: Command) -> ExitCode {
    cli::run_to_exit(async move {
        match command {
            Command::Token(TokenCommand::Create {
                admin,
                user,
                plan,
                args,
            }) => token_create(admin, user, plan, &args).await,
            Command::Token(TokenCommand::List(args)) => token_list(&args).await,
            Command::Token(TokenCommand::Revoke { id, args }) => {
                let client = AdminClient::new(&args)?;
                let answer = client
                    .delete(&format!("/v1/tokens/{}", segment(&id)))
                    .await?;
                let token = &answer["revoked"];
                print(&args, &answer, || {
                    format!(
                        "revoked token {} of user {}",
                        token["id"].as_str().unwrap_or(""),
                        token["user"].as_str().unwrap_or("")
                    )
                });
                Ok(())
            }
            Command::Deploy {
                path,
                name,
                runtime,
                requirements,
                admin,
            } => deploy(&path, name, runtime, requirements, &admin).await,
            Command::Projects(ProjectsCommand::Ls(admin)) => projects(&admin).await,
            Command::Projects(ProjectsCommand::Rm { project, admin }) => {
                let client = AdminClient::new(&admin)?;
                let answer = client
                    .delete(&format!("/v1/projects/{}", segment(&project)))
                    .await?;
                print(&admin, &answer, || format!("deleted {project}"));
                Ok(())
            }
            Command::Projects(ProjectsCommand::Versions { project, admin }) => {
                versions(&project, &admin).await
            }
            Command::Rollback {
                project,
                version,
                admin,
            } => {
                let client = AdminClient::new(&admin)?;
                let answer = client
                    .post_json(
                        &format!("/v1/projects/{}/rollback", segment(&project)),
                        &json!({ "version": version }),
                    )
                    .await?;
                print(&admin, &answer, || {
                    format!("{project} now serves version {version}")
                });
                Ok(())
            }
            Command::Secret(command) => secret(command).await,
            _ => unreachable!("handled elsewhere"),
        }
    })
}

/// JSON with `--json`, else the one-line summary.
fn print(args: &AdminArgs, answer: &Value, line: impl FnOnce() -> String) {
    if args.json {
        println!("{answer}");
    } else {
        println!("{}", line());
    }
}

async fn token_create(
    admin: bool,
    user: Option<String>,
    plan: Option<String>,
    args: &AdminArgs,
) -> Result<(), String> {
    let client = AdminClient::new(args)?;
    let mut body = json!({ "admin": admin });
    if let Some(user) = user {
        body["user"] = user.into();
    }
    if let Some(plan) = plan {
        body["plan"] = plan.into();
    }
    let answer = client.post_json("/v1/tokens", &body).await?;
    let token = answer["token"].as_str().unwrap_or_default();
    if args.json {
        println!("{}", json!({ "token": token }));
    } else {
        eprintln!(
            "token for user {} (plan {}{}); it is shown only once:",
            answer["user"].as_str().unwrap_or(""),
            answer["plan"].as_str().unwrap_or(""),
            if admin { ", admin" } else { "" }
        );
        println!("{token}");
    }
    Ok(())
}

async fn token_list(args: &AdminArgs) -> Result<(), String> {
    let list = AdminClient::new(args)?.get("/v1/tokens").await?;
    if args.json {
        println!("{list}");
        return Ok(());
    }
    let tokens = list.as_array().cloned().unwrap_or_default();
    if tokens.is_empty() {
        println!("no stored tokens (`valet token create` makes one)");
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut table = Table::new(vec!["ID", "USER", "PLAN", "ADMIN", "CREATED"]);
    for t in &tokens {
        let age = now - t["created_at"].as_i64().unwrap_or(now);
        table.row(vec![
            Cell::from(t["id"].as_str().unwrap_or("")),
            Cell::from(t["user"].as_str().unwrap_or("")),
            Cell::from(t["plan"].as_str().unwrap_or("")),
            Cell::from(if t["admin"] == true { "yes" } else { "no" }),
            Cell::from(format!("{} ago", age_text(age.max(0)))),
        ]);
    }
    print!("{}", table.render(use_color()));
    Ok(())
}

/// `42s`, `5m`, `3h`, `2d`: how long ago, roughly.
fn age_text(secs: i64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

async fn deploy(
    path: &Path,
    name: Option<String>,
    runtime: Option<String>,
    requirements: Option<String>,
    args: &AdminArgs,
) -> Result<(), String> {
    let client = AdminClient::new(args)?;
    let (file_name, bytes) = if path.is_dir() {
        eprintln!("packing {}", path.display());
        let bytes = pack(path).map_err(|e| format!("cannot pack {}: {e}", path.display()))?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "app".into());
        (format!("{base}.tar.gz"), bytes)
    } else {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (file_name, bytes)
    };
    eprintln!(
        "uploading {file_name} ({} bytes); valet installs the requirements and waits until the app is ready",
        bytes.len()
    );
    let progress = UploadProgress::new(bytes.len() as u64);
    let length = bytes.len() as u64;
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream_with_length(progress.body(bytes), length)
            .file_name(file_name),
    );
    for (field, value) in [
        ("name", name),
        ("runtime", runtime),
        ("requirements", requirements),
    ] {
        if let Some(value) = value {
            form = form.text(field, value);
        }
    }
    // The send ends once valet has read the whole upload and starts its event stream.
    let response = progress
        .during(client.post_form_stream("/v1/projects?progress=1", form))
        .await?;
    let answer = follow_deploy(response).await?;
    if args.json {
        println!("{answer}");
    } else {
        eprintln!(
            "{} version {} is live ({})",
            answer["name"].as_str().unwrap_or(""),
            answer["version"],
            answer["runtime"].as_str().unwrap_or("")
        );
        println!("{}", answer["endpoint"].as_str().unwrap_or(""));
    }
    Ok(())
}

/// A folder as a .tar.gz, without `node_modules`, `.git` or virtualenvs (valet installs them).
fn pack(dir: &Path) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    add_dir(&mut tar, dir, Path::new(""))?;
    tar.into_inner()?.finish()
}

fn add_dir<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &Path,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if [".git", "node_modules", ".venv", "venv", "__pycache__"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        let inside = prefix.join(&name);
        if entry.file_type()?.is_dir() {
            add_dir(tar, &entry.path(), &inside)?;
        } else {
            tar.append_path_with_name(entry.path(), &inside)?;
        }
    }
    Ok(())
}

async fn projects(args: &AdminArgs) -> Result<(), String> {
    let list = AdminClient::new(args)?.get("/v1/projects").await?;
    if args.json {
        println!("{list}");
        return Ok(());
    }
    let mut table = Table::new(vec![
        "ID", "NAME", "OWNER", "RUNTIME", "VERSION", "STATE", "ENDPOINT",
    ]);
    for p in list.as_array().into_iter().flatten() {
        table.row(vec![
            Cell::from(p["id"].as_str().unwrap_or("")),
            Cell::from(p["name"].as_str().unwrap_or("")),
            Cell::from(p["owner"].as_str().unwrap_or("")),
            Cell::from(p["runtime"].as_str().unwrap_or("")),
            Cell::from(p["version"].to_string()),
            Cell::from(p["state"].as_str().unwrap_or("")),
            Cell::from(p["endpoint"].as_str().unwrap_or("")),
        ]);
    }
    print!("{}", table.render(use_color()));
    Ok(())
}

async fn versions(project: &str, args: &AdminArgs) -> Result<(), String> {
    let list = AdminClient::new(args)?
        .get(&format!("/v1/projects/{}/versions", segment(project)))
        .await?;
    if args.json {
        println!("{list}");
        return Ok(());
    }
    let mut table = Table::new(vec!["VERSION", "RUNTIME", "CURRENT", "REQUIREMENTS"]);
    for v in list.as_array().into_iter().flatten() {
        table.row(vec![
            Cell::from(v["version"].to_string()),
            Cell::from(v["runtime"].as_str().unwrap_or("")),
            Cell::from(if v["current"].as_bool() == Some(true) {
                "*"
            } else {
                ""
            }),
            Cell::from(v["requirements"].as_str().unwrap_or("")),
        ]);
    }
    print!("{}", table.render(use_color()));
    Ok(())
}

/// `/v1/projects/{id}/secrets`, `/v1/classes/{class}/secrets` or `/v1/registries/secrets`,
/// and what to call it.
fn secrets_path(scope: &SecretScope) -> (String, String) {
    match (&scope.project, &scope.class) {
        (Some(project), _) => (
            format!("/v1/projects/{}/secrets", segment(project)),
            format!("project {project}"),
        ),
        (None, Some(class)) => (
            format!("/v1/classes/{}/secrets", segment(class)),
            format!("class {class}"),
        ),
        (None, None) if scope.registry => {
            ("/v1/registries/secrets".into(), "[[registries]]".into())
        }
        (None, None) => unreachable!("clap requires --project, --class or --registry"),
    }
}

async fn secret(command: SecretCommand) -> Result<(), String> {
    match command {
        SecretCommand::Put { name, scope, admin } => {
            let value = read_value(&name)?;
            let (base, whose) = secrets_path(&scope);
            let answer = AdminClient::new(&admin)?
                .put_body(&format!("{base}/{}", segment(&name)), value)
                .await?;
            print(&admin, &answer, || match answer["applies"].as_str() {
                Some(when) => format!("{name} set for {whose}; it applies {when}"),
                None => format!("{name} set for {whose}"),
            });
            if let Some(note) = answer["note"].as_str().filter(|_| !admin.json) {
                eprintln!("warning: {note}");
            }
        }
        SecretCommand::List { scope, admin } => {
            let (base, _) = secrets_path(&scope);
            let answer = AdminClient::new(&admin)?.get(&base).await?;
            if admin.json {
                println!("{answer}");
            } else {
                for name in answer["secrets"].as_array().into_iter().flatten() {
                    println!("{}", name.as_str().unwrap_or(""));
                }
            }
        }
        SecretCommand::Rm { name, scope, admin } => {
            let (base, whose) = secrets_path(&scope);
            let answer = AdminClient::new(&admin)?
                .delete(&format!("{base}/{}", segment(&name)))
                .await?;
            print(&admin, &answer, || format!("{name} removed from {whose}"));
        }
    }
    Ok(())
}

/// A secret's value: stdin to its end (`printf %s VALUE | valet secret put ...`), or, typed
/// on a terminal, one line that is not echoed.
fn read_value(name: &str) -> Result<Vec<u8>, String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, IsTerminal, Read};
    let stdin = std::io::stdin();
    let failed = |e: std::io::Error| format!("cannot read the value from stdin: {e}");
    if !stdin.is_terminal() {
        let mut value = Vec::new();
        stdin.lock().read_to_end(&mut value).map_err(failed)?;
        return Ok(value);
    }
    eprint!("value of {name} (not shown; Enter ends it): ");
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, saved);
    }
    eprintln!();
    read.map_err(failed)?;
    Ok(line.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
}

/// Reads a deploy's event stream: stages and installer lines to stderr as they come (a base
/// image's pull as one bar on a terminal), then the outcome (the deployed project, or the
/// error with the failed version's log).
async fn follow_deploy(response: reqwest::Response) -> Result<Value, String> {
    use futures_util::StreamExt;
    use std::io::{IsTerminal, Write};
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut pulls = std::io::stderr()
        .is_terminal()
        .then(crate::pull_progress::PullLines::default);
    // A bar left on the line is cleared before anything else is written.
    let clear_bar = |pulls: &Option<crate::pull_progress::PullLines>| {
        if pulls.as_ref().is_some_and(|p| p.drawing()) {
            eprint!("{}", crate::pull_progress::CLEAR);
        }
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the deploy's progress stream broke: {e}"))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = ("", Vec::new());
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            let data = data.join("\n");
            match name {
                "stage" => {
                    clear_bar(&pulls);
                    eprintln!("==> {data}");
                }
                "log" => match &mut pulls {
                    Some(pulls) => {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "{}", pulls.feed(&data).render());
                        let _ = err.flush();
                    }
                    None => eprintln!("    {data}"),
                },
                "done" => {
                    clear_bar(&pulls);
                    return serde_json::from_str(&data)
                        .map_err(|e| format!("unreadable answer from valet: {e}"));
                }
                "error" => {
                    clear_bar(&pulls);
                    let error: Value = serde_json::from_str(&data).unwrap_or_default();
                    let body = &error["body"];
                    let mut message = format!(
                        "{} ({})",
                        body["message"].as_str().unwrap_or("the deploy failed"),
                        error["status"]
                    );
                    if let Some(log) = body["log"].as_array().filter(|l| !l.is_empty()) {
                        message.push_str("\n--- its log ---");
                        for line in log {
                            message.push('\n');
                            message.push_str(line.as_str().unwrap_or(""));
                        }
                    }
                    return Err(message);
                }
                _ => {}
            }
        }
    }
    clear_bar(&pulls);
    Err("valet ended the deploy's progress stream without an outcome".into())
}
