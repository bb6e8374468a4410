//! What `valet import` can learn from a Cloudflare project's Dockerfile without building it:
//! the ports it exposes, a `--port` its command passes, and the command itself (for running it
//! with the process driver where Docker is not available: the command, and the folder it runs in).
//! Only the last stage counts: that is the image that runs.

/// Facts read from a Dockerfile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DockerfileFacts {
    /// `EXPOSE` ports of the last stage, in order, without duplicates.
    pub exposed: Vec<u16>,
    /// The port given as `--port N` / `--port=N` in its `CMD` or `ENTRYPOINT`.
    pub command_port: Option<u16>,
    /// `ENTRYPOINT` then `CMD` of the last stage, as argv (a shell form goes through `sh -c`).
    pub command: Vec<String>,
    /// The last stage's `WORKDIR` (the last one given), where the command runs.
    pub workdir: Option<String>,
    /// The last stage's `COPY`/`ADD` from the build context into the working directory, in order:
    /// each one's sources as written. A copy from another stage (`--from`) is left out: its
    /// files are built, not in the project's folder.
    pub copies_to_workdir: Vec<Vec<String>>,
}

impl DockerfileFacts {
    /// The port the app listens on, best guess: the command's `--port`, else the first exposed.
    pub fn port(&self) -> Option<u16> {
        self.command_port.or_else(|| self.exposed.first().copied())
    }
}

/// Reads a Dockerfile's text. Unknown instructions are ignored; nothing here fails.
pub fn read(text: &str) -> DockerfileFacts {
    let mut facts = DockerfileFacts::default();
    let (mut entrypoint, mut cmd) = (Vec::new(), Vec::new());
    for line in logical_lines(text) {
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            // A new stage: what came before is not in the image that runs.
            "FROM" => {
                facts = DockerfileFacts::default();
                entrypoint.clear();
                cmd.clear();
            }
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let number = port.split('/').next().unwrap_or("");
                    if let Ok(port) = number.parse::<u16>() {
                        if !facts.exposed.contains(&port) {
                            facts.exposed.push(port);
                        }
                    }
                }
            }
            "CMD" => cmd = argv(rest),
            "ENTRYPOINT" => entrypoint = argv(rest),
            "WORKDIR" => facts.workdir = Some(rest.trim_matches('"').to_string()),
            "COPY" | "ADD" => {
                if let Some(sources) = copy_into(rest, facts.workdir.as_deref()) {
                    facts.copies_to_workdir.push(sources);
                }
            }
            _ => {}
        }
    }
    facts.command = entrypoint.into_iter().chain(cmd).collect();
    facts.command_port = port_flag(&facts.command);
    facts
}

/// Lines with `\` continuations joined and comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

/// An exec form (`["a", "b"]`) as it is; a shell form as `sh -c "<text>"`, as Docker runs it.
fn argv(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(rest) {
            return list;
        }
    }
    if rest.is_empty() {
        return Vec::new();
    }
    vec!["sh".into(), "-c".into(), rest.to_string()]
}

/// The sources of a `COPY`/`ADD` whose destination is the working directory (`.`, `./` or the
/// `WORKDIR` itself); `None` for any other destination, a JSON form that does not parse, or a
/// copy from another stage or an image.
fn copy_into(rest: &str, workdir: Option<&str>) -> Option<Vec<String>> {
    let mut words: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(rest).ok()?
    } else {
        rest.split_whitespace().map(str::to_owned).collect()
    };
    if words.iter().any(|w| w.starts_with("--from")) {
        return None;
    }
    words.retain(|w| !w.starts_with("--"));
    let dest = words.pop()?;
    let trimmed = |s: &str| s.trim_end_matches('/').to_string();
    let into_workdir = matches!(dest.as_str(), "." | "./")
        || workdir.is_some_and(|w| trimmed(w) == trimmed(&dest) && !trimmed(w).is_empty());
    (into_workdir && !words.is_empty()).then_some(words)
}

/// `--port N` or `--port=N` anywhere in the command (a shell form's text included).
fn port_flag(command: &[String]) -> Option<u16> {
    let words: Vec<&str> = command.iter().flat_map(|a| a.split_whitespace()).collect();
    words.iter().enumerate().find_map(|(i, w)| {
        let value = match w.strip_prefix("--port") {
            Some("") => words.get(i + 1).copied()?,
            Some(v) => v.strip_prefix('=')?,
            None => return None,
        };
        value.trim_matches(|c| c == '"' || c == '\'').parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stage_exposes_and_its_command_names_the_port() {
        let text = "FROM node AS build\nEXPOSE 9999\nRUN npm ci\n\n\
                    FROM python:3.12-slim\n# the app\nEXPOSE 8000/tcp 8001\n\
                    CMD [\"uvicorn\", \"main:app\", \"--host\", \"0.0.0.0\", \\\n  \"--port\", \"8000\"]\n";
        let facts = read(text);
        assert_eq!(facts.exposed, [8000, 8001]);
        assert_eq!(facts.command_port, Some(8000));
        assert_eq!(facts.port(), Some(8000));
        assert_eq!(facts.command[0], "uvicorn");
        assert_eq!(facts.command.len(), 6);
    }

    #[test]
    fn shell_forms_and_entrypoints() {
        let facts = read("FROM x\nENTRYPOINT [\"/bin/server\"]\nCMD --port=3210 --verbose\n");
        assert_eq!(facts.command_port, Some(3210));
        assert_eq!(facts.command[0], "/bin/server");
        assert!(facts.exposed.is_empty());
        assert_eq!(facts.port(), Some(3210));
        let facts = read("FROM x\nEXPOSE 3210 3211 6791\n");
        assert_eq!(facts.port(), Some(3210));
        assert!(facts.command.is_empty());
    }

    #[test]
    fn copies_into_the_working_directory() {
        let facts = read(
            "FROM node AS build\nWORKDIR /src\nCOPY web/ .\n\
             FROM python:3.12-slim\nWORKDIR /app\nCOPY app/requirements.txt .\n\
             RUN pip install -r requirements.txt\nCOPY --chown=app:app app/ /app/\n\
             COPY --from=build /src/dist ./static\nCOPY [\"conf\", \"/etc/conf\"]\n",
        );
        assert_eq!(facts.workdir.as_deref(), Some("/app"));
        assert_eq!(
            facts.copies_to_workdir,
            [
                vec!["app/requirements.txt".to_string()],
                vec!["app/".to_string()]
            ]
        );
        let facts = read("FROM x\nCOPY . .\n");
        assert_eq!(facts.copies_to_workdir, [vec![".".to_string()]]);
    }
}
