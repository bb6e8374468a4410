//! Python apps: `app.py` run by a Python with the requirements installed in a virtualenv from
//! PyPI (shared through the cache), with `PORT` set.

use crate::cache::{self, Cache};
use crate::progress::Progress;
use crate::DeployError;
use std::path::Path;

/// A prepared Python app: the argv that starts it in its build folder.
pub struct Prepared {
    /// argv; `{port}` is replaced by the driver.
    pub command: Vec<String>,
    /// Whether the requirement set came from the cache.
    pub reused: bool,
}

/// Reads requirements: a requirements.txt body (one per line) or a list on one line ("fastapi
/// uvicorn"). pip options (`-r`, `--index-url`, `-e`) are refused: they could read files or
/// reach other indexes.
pub fn parse_requirements(text: &str) -> Result<Vec<String>, DeployError> {
    let lines: Vec<&str> = if text.contains('\n') {
        text.lines().collect()
    } else {
        text.split([' ', ',', '\t']).collect()
    };
    let mut out = Vec::new();
    for line in lines {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-')
            || line.contains("://")
            || line.starts_with('.')
            || line.starts_with('/')
        {
            return Err(DeployError::BadUpload(format!(
                "requirement {line:?} is not allowed: list packages from PyPI only (no pip options, paths or URLs)"
            )));
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// Prepares the app in `dir` (which holds `app.py`).
pub async fn prepare(
    dir: &Path,
    requirements: &[String],
    cache: &Cache,
    progress: &Progress,
) -> Result<Prepared, DeployError> {
    let python = which("python3")?;
    let (interpreter, reused) = if requirements.is_empty() {
        (python, false)
    } else {
        let version = version_of(&python).await;
        let key = cache::key("python", &version, requirements);
        let reqs = requirements.join("\n") + "\n";
        progress.stage("installing");
        let (venv, reused) = cache
            .ensure("python", &key, |dir| async move {
                let req_file = dir.join("requirements.txt");
                tokio::fs::write(&req_file, reqs)
                    .await
                    .map_err(|e| DeployError::io("cannot write requirements.txt", e))?;
                cache::run_installer(
                    "pip",
                    tokio::process::Command::new(&python)
                        .args(["-m", "venv"])
                        .arg(dir.join("venv")),
                    progress,
                )
                .await?;
                cache::run_installer(
                    "pip",
                    tokio::process::Command::new(dir.join("venv/bin/python"))
                        .args([
                            "-m",
                            "pip",
                            "install",
                            "--disable-pip-version-check",
                            "--no-input",
                            // Wheels only: building an sdist runs the package's own code,
                            // as valet's user, at deploy time.
                            "--only-binary",
                            ":all:",
                            "-r",
                        ])
                        .arg(&req_file),
                    progress,
                )
                .await
            })
            .await?;
        (venv.join("venv/bin/python").display().to_string(), reused)
    };
    let source = tokio::fs::read_to_string(dir.join("app.py"))
        .await
        .map_err(|_| DeployError::BadUpload("app.py must be UTF-8 text".into()))?;
    Ok(Prepared {
        command: command_for(&interpreter, "127.0.0.1", &source, requirements),
        reused,
    })
}

/// Where the requirements sit in a Docker image, on `PYTHONPATH`.
pub const IMAGE_SITE: &str = "/opt/valet/python";

/// A Python app prepared for an image.
pub struct PreparedImage {
    /// argv inside the container.
    pub command: Vec<String>,
    /// Whether the requirement set came from the cache.
    pub reused: bool,
    /// The installed requirements (a folder on the host), to copy to [`IMAGE_SITE`].
    pub site: Option<std::path::PathBuf>,
}

/// Prepares the app in `dir` for an image whose Python is `target` ("3.11"; `None`: the
/// host's). A virtualenv cannot move into an image (it points at the host's interpreter), so
/// the requirements are installed as plain packages into a folder (`pip install --target`),
/// for the image's own Python, and put on its `PYTHONPATH`.
pub async fn prepare_for_image(
    dir: &Path,
    requirements: &[String],
    target: Option<&str>,
    cache: &Cache,
    progress: &Progress,
) -> Result<PreparedImage, DeployError> {
    let source = tokio::fs::read_to_string(dir.join("app.py"))
        .await
        .map_err(|_| DeployError::BadUpload("app.py must be UTF-8 text".into()))?;
    let command = command_for("python3", "0.0.0.0", &source, requirements);
    if requirements.is_empty() {
        return Ok(PreparedImage {
            command,
            reused: false,
            site: None,
        });
    }
    let python = which("python3")?;
    let version = match target {
        Some(target) => format!("image {target}"),
        None => version_of(&python).await,
    };
    let key = cache::key("python-image", &version, requirements);
    let reqs = requirements.join("\n") + "\n";
    let target = target.map(str::to_string);
    progress.stage("installing");
    let (folder, reused) = cache
        .ensure("python-image", &key, |dir| async move {
            let req_file = dir.join("requirements.txt");
            tokio::fs::write(&req_file, reqs)
                .await
                .map_err(|e| DeployError::io("cannot write requirements.txt", e))?;
            // pip itself comes from a throwaway virtualenv: the host's Python may have none
            // of its own (Debian's without python3-pip), but venv brings one (ensurepip).
            let installer = dir.join(".installer");
            cache::run_installer(
                "pip",
                tokio::process::Command::new(&python)
                    .args(["-m", "venv"])
                    .arg(&installer),
                progress,
            )
            .await?;
            let mut pip = tokio::process::Command::new(installer.join("bin/python"));
            pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
                // Wheels only, as for a virtualenv; pip also needs it to pick wheels for
                // another Python than its own.
                .args(["--no-input", "--only-binary", ":all:", "--target"])
                .arg(dir.join("site"));
            if let Some(version) = &target {
                let abi = format!("cp{}", version.replace('.', ""));
                pip.args(["--python-version", version, "--implementation", "cp"])
                    .args(["--abi", &abi]);
            }
            pip.arg("-r").arg(&req_file);
            let installed = cache::run_installer("pip", &mut pip, progress).await;
            let _ = tokio::fs::remove_dir_all(&installer).await;
            installed
        })
        .await?;
    Ok(PreparedImage {
        command,
        reused,
        site: Some(folder.join("site")),
    })
}

/// The `major.minor` of the Python a base image holds, from the `PYTHON_VERSION` the official
/// images set (`3.11.7` -> `3.11`).
pub fn image_python(env: &[String]) -> Option<String> {
    let value = env.iter().find_map(|e| e.strip_prefix("PYTHON_VERSION="))?;
    let mut parts = value.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| format!("{major}.{minor}"))
}

/// `python app.py` when the file starts its own server; an ASGI app without one (a FastAPI
/// `app` and no `__main__` block) is served by uvicorn on `PORT`, on `host`.
fn command_for(python: &str, host: &str, source: &str, requirements: &[String]) -> Vec<String> {
    let has_main = source.contains("__main__");
    let has_uvicorn = requirements
        .iter()
        .any(|r| r.to_ascii_lowercase().starts_with("uvicorn"));
    if !has_main && has_uvicorn && source.contains("app =") {
        return [
            python, "-m", "uvicorn", "app:app", "--host", host, "--port", "{port}",
        ]
        .map(String::from)
        .to_vec();
    }
    vec![python.to_string(), "app.py".to_string()]
}

/// Why a Python app that ran as `python app.py` ended at once with exit code 0, when its
/// source says why: it defines an ASGI `app` but starts no server (no `__main__` block, no
/// `uvicorn.run`), so the script returns and nothing listens. valet runs such an app under
/// uvicorn only when uvicorn is among its requirements ([`command_for`]).
pub fn clean_exit_hint(command: &[String], source: &str) -> Option<&'static str> {
    let as_script = command.last().is_some_and(|a| a == "app.py");
    let serves = source.contains("__main__") || source.contains("uvicorn.run");
    (as_script && !serves && source.contains("app =")).then_some(
        "an ASGI app needs uvicorn in requirements (valet then runs `uvicorn app:app`), \
         or a server started under `if __name__ == \"__main__\":`",
    )
}

/// The interpreter's version, part of the cache key (a venv is tied to its Python).
pub(crate) async fn version_of(program: &str) -> String {
    match tokio::process::Command::new(program)
        .arg("--version")
        .output()
        .await
    {
        Ok(out) => {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
                + String::from_utf8_lossy(&out.stderr).trim()
        }
        Err(_) => String::new(),
    }
}

/// The absolute path of a program on valet's `PATH`. When valet is root, apps run as their
/// project's user, so a program that user cannot reach (a pyenv shim under `/root`) is passed
/// over for the next one on `PATH`.
pub(crate) fn which(program: &str) -> Result<String, DeployError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let root = nix::unistd::geteuid().is_root();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .filter(|p| p.is_file())
        .find(|p| !root || reachable_by_others(p))
        .map(|p| p.display().to_string())
        .ok_or_else(|| {
            DeployError::io(
                format!("{program} is not installed on valet's host (for other users)"),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
}

/// Whether every folder on the way to `path` (links resolved) lets others through and the
/// file lets others run it.
fn reachable_by_others(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode());
    mode(&real) & 0o001 != 0 && real.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_one_line_or_file() {
        assert_eq!(
            parse_requirements("fastapi uvicorn").unwrap(),
            ["fastapi", "uvicorn"]
        );
        assert_eq!(
            parse_requirements("fastapi==0.110\n# c\n\nuvicorn\n").unwrap(),
            ["fastapi==0.110", "uvicorn"]
        );
        assert!(parse_requirements("-r /etc/passwd").is_err());
        assert!(parse_requirements("x\n--index-url http://evil\n").is_err());
    }

    #[test]
    fn an_asgi_app_without_a_server_gets_a_hint() {
        let fastapi = "from fastapi import FastAPI\napp = FastAPI()\n";
        let script = ["py".to_string(), "app.py".to_string()];
        assert!(clean_exit_hint(&script, fastapi).is_some_and(|h| h.contains("uvicorn")));
        let under_uvicorn = command_for("py", "::", fastapi, &["uvicorn".into()]);
        assert_eq!(clean_exit_hint(&under_uvicorn, fastapi), None);
        let served = "app = 1\nif __name__ == '__main__': run()";
        assert_eq!(clean_exit_hint(&script, served), None);
    }

    #[test]
    fn fastapi_without_main_runs_under_uvicorn() {
        let reqs = vec!["fastapi".into(), "uvicorn".into()];
        let cmd = command_for(
            "py",
            "127.0.0.1",
            "from fastapi import FastAPI\napp = FastAPI()\n",
            &reqs,
        );
        assert_eq!(cmd[1..4], ["-m", "uvicorn", "app:app"]);
        let cmd = command_for(
            "py",
            "::",
            "app = 1\nif __name__ == '__main__': run()",
            &reqs,
        );
        assert_eq!(cmd, ["py", "app.py"]);
    }

    #[test]
    fn the_python_of_an_official_image() {
        let env = [
            "PATH=/usr/local/bin".to_string(),
            "PYTHON_VERSION=3.11.7".into(),
        ];
        assert_eq!(image_python(&env).as_deref(), Some("3.11"));
        assert_eq!(image_python(&["PYTHON_VERSION=x".into()]), None);
        assert_eq!(image_python(&[]), None);
    }
}
