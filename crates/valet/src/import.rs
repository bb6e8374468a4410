//! `valet import FILE [-o OUT] [--force]`: a valet.toml from a Cloudflare wrangler config. The
//! translation lives in `valet_config::wrangler`; this is files, notes and exit codes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use valet_config::wrangler::{import_wrangler_in, WranglerFormat};

pub fn run(file: &Path, output: Option<&Path>, force: bool) -> ExitCode {
    match import(file, output, force) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            for line in message.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn import(file: &Path, output: Option<&Path>, force: bool) -> Result<(), String> {
    let format = WranglerFormat::from_path(file).ok_or_else(|| {
        format!(
            "{}: expected a wrangler.jsonc, wrangler.json or wrangler.toml",
            file.display()
        )
    })?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let source_dir = parent(file);
    let (toml, mut notes) = import_wrangler_in(&text, format, Some(&source_dir)).map_err(|e| {
        e.lines()
            .map(|line| format!("{}: {line}", file.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    notes.extend(check_problems(&toml, &source_dir));
    if toml.contains("driver = \"docker\"") && !docker_answers() {
        notes.push(
            "no Docker Engine answers here: to run without one, set `driver = \"process\"` in \
             [server], install what each Dockerfile installs on this machine, and give each \
             class the `command` suggested in its comments (the image's CMD; `{port}` or \
             $PORT for the port valet picks)"
                .into(),
        );
    }
    if output == Some(Path::new("-")) {
        print!("{toml}");
        print_notes(&notes);
        return Ok(());
    }
    let target = output.map_or_else(|| source_dir.join("valet.toml"), Path::to_path_buf);
    if !same_dir(&parent(&target), &source_dir) {
        // valet resolves relative paths against the config's folder, wrangler against its own.
        notes.push(format!(
            "paths (image, assets.directory) are kept as written, relative to {}; \
             adjust them or move {} there",
            source_dir.display(),
            target.display()
        ));
    }
    write(&target, &toml, force)?;
    print_notes(&notes);
    eprintln!(
        "wrote {}; next: valet check {}",
        target.display(),
        target.display()
    );
    Ok(())
}

/// `create_new` unless forced: refusing to overwrite must not race with another writer.
fn write(target: &Path, toml: &str, force: bool) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; not overwritten (use --force, or -o another path or -o - for stdout)",
                target.display()
            )
        } else {
            format!("cannot write {}: {e}", target.display())
        }
    })?;
    file.write_all(toml.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", target.display()))
}

/// What `valet check` would say about the output, said now rather than at the next step (a
/// missing assets folder, for one).
fn check_problems(toml: &str, source_dir: &Path) -> Vec<String> {
    let file = source_dir.join("valet.toml");
    match valet_config::parse_str(toml, &file, source_dir) {
        Ok(_) => Vec::new(),
        Err(errors) => vec![format!(
            "`valet check` will not pass until this is fixed:\n{}",
            valet_config::render_report(&errors).trim_end()
        )],
    }
}

/// Whether a Docker Engine accepts connections where the Docker driver would look
/// (`DOCKER_HOST`, else the default socket). Connecting is enough: nothing is sent.
fn docker_answers() -> bool {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let timeout = std::time::Duration::from_secs(2);
    if let Some(addr) = host.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        return addr.to_socket_addrs().is_ok_and(|mut all| {
            all.any(|a| std::net::TcpStream::connect_timeout(&a, timeout).is_ok())
        });
    }
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

fn print_notes(notes: &[String]) {
    for note in notes {
        eprintln!("note: {note}");
    }
}

/// The folder of a file, absolute when it exists, so that notes name a real place.
fn parent(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.canonicalize().unwrap_or(dir)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
