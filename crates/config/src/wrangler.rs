//! `valet import`: a Cloudflare wrangler config (wrangler.jsonc, wrangler.json, wrangler.toml)
//! turned into a commented valet.toml.
//!
//! What translates: `containers` (the classes), `durable_objects.bindings` (which name reaches
//! which class), `assets` and `vars`. What cannot: the Worker's JavaScript (`main`), which is
//! where Cloudflare decides which request goes to which instance; the output holds route stubs
//! for that, and every other thing left behind is listed in the notes.

use crate::dockerfile::{self, DockerfileFacts};
use serde_json::{Map, Value};
use std::path::Path;
use toml_edit::{value, ArrayOfTables, DocumentMut, InlineTable, Item, Table};

/// The syntax of a wrangler config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WranglerFormat {
    /// wrangler.jsonc and wrangler.json: wrangler accepts comments and trailing commas in both.
    Jsonc,
    Toml,
}

impl WranglerFormat {
    /// By file extension: `.jsonc`/`.json` or `.toml`.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "jsonc" | "json" => Some(Self::Jsonc),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }
}

/// Cloudflare's default when the Worker does not say (`defaultPort` of its Container class).
const DEFAULT_PORT: i64 = 8080;

/// Top-level keys that need no translation: identity and build settings of the Worker.
const QUIET_KEYS: [&str; 6] = [
    "$schema",
    "name",
    "main",
    "compatibility_date",
    "containers",
    "durable_objects",
];

/// Keys dropped with a reason of their own: what each did on Cloudflare, and what stands in
/// for it with valet, if anything.
const DROPPED: [(&str, &str); 8] = [
    ("migrations", "`migrations` (Durable Object class migrations) dropped: valet keeps no Durable Object storage; a class's lasting data goes in its `volume`"),
    ("compatibility_flags", "`compatibility_flags` dropped: they tune the Workers runtime, which valet does not run"),
    ("observability", "`observability` dropped: valet's own logs, `valet logs` and `/metrics` take its place"),
    ("r2_buckets", "`r2_buckets` (R2 bindings) dropped: give the container an S3-compatible endpoint and its keys through `env` and `secrets`"),
    ("kv_namespaces", "`kv_namespaces` (KV bindings) dropped: only the Worker could read them; the container needs a store of its own"),
    ("d1_databases", "`d1_databases` (D1 bindings) dropped: the container needs a database of its own (SQLite in its `volume`, or PostgreSQL through `env`)"),
    ("queues", "`queues` dropped: valet has no queues"),
    ("triggers", "`triggers` (cron) dropped: valet runs no scheduled jobs"),
];

/// Translates wrangler config text into valet.toml text plus notes for the user (what was not
/// translated, what to fill in). Every problem of the input is reported at once, one per line.
pub fn import_wrangler(
    text: &str,
    format: WranglerFormat,
) -> Result<(String, Vec<String>), String> {
    import_wrangler_in(text, format, None)
}

/// [`import_wrangler`], reading each class's Dockerfile (an `image` path relative to `dir`, the
/// wrangler file's folder) for its ports and command.
pub fn import_wrangler_in(
    text: &str,
    format: WranglerFormat,
    dir: Option<&Path>,
) -> Result<(String, Vec<String>), String> {
    let root = match format {
        WranglerFormat::Jsonc => {
            // Editors on Windows like to start files with a byte-order mark; JSON has none.
            let json = strip_jsonc(text.strip_prefix('\u{feff}').unwrap_or(text))?;
            serde_json::from_str::<Value>(&json).map_err(|e| format!("invalid JSON: {e}"))?
        }
        WranglerFormat::Toml => toml::from_str::<Value>(text)
            .map_err(|e| format!("invalid TOML: {}", e.to_string().trim_end()))?,
    };
    let Value::Object(root) = root else {
        return Err("the wrangler config must be an object at the top level".into());
    };
    let mut reader = Reader::default();
    let project = reader.project(&root);
    if !reader.errors.is_empty() {
        return Err(reader.errors.join("\n"));
    }
    let mut project = project;
    if let Some(dir) = dir {
        reader.read_dockerfiles(&mut project, dir);
    }
    reader.relate(&project);
    let toml = render(&project);
    Ok((toml, reader.notes))
}

/// JSONC to JSON: comments (`//`, `/* */`) become spaces and trailing commas before `}` or `]`
/// are dropped, outside strings only. Newlines stay where they were so that serde_json's
/// line numbers still point into the user's file.
pub fn strip_jsonc(text: &str) -> Result<String, String> {
    let mut out = text.as_bytes().to_vec();
    let mut i = 0;
    let mut in_string = false;
    // The last comma outside a string whose fate depends on the next significant byte.
    let mut pending_comma: Option<usize> = None;
    while i < out.len() {
        let byte = out[i];
        if in_string {
            match byte {
                b'\\' => i += 1, // the escaped byte cannot end the string
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match (byte, out.get(i + 1).copied()) {
            (b'/', Some(b'/')) => {
                while i < out.len() && out[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
                continue;
            }
            (b'/', Some(b'*')) => {
                let start = i;
                let end = find(&out, i + 2, b"*/").ok_or_else(|| {
                    format!("unterminated /* comment at line {}", line_of(&out, start))
                })?;
                blank(&mut out[start..end + 2]);
                i = end + 2;
                continue;
            }
            (b' ' | b'\t' | b'\r' | b'\n', _) => {}
            (b'}' | b']', _) => {
                if let Some(comma) = pending_comma.take() {
                    out[comma] = b' ';
                }
            }
            (b',', _) => pending_comma = Some(i),
            (b'"', _) => {
                in_string = true;
                pending_comma = None;
            }
            _ => pending_comma = None,
        }
        i += 1;
    }
    // Only ASCII bytes were overwritten, and only with spaces, so the text is still UTF-8.
    String::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Spaces for every byte but newlines (and whole UTF-8 sequences become spaces too).
fn blank(bytes: &mut [u8]) {
    for b in bytes.iter_mut().filter(|b| **b != b'\n') {
        *b = b' ';
    }
}

fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes[..at].iter().filter(|b| **b == b'\n').count() + 1
}

/// The parts of a wrangler config that valet has an answer for.
#[derive(Default)]
struct Project {
    main: Option<String>,
    containers: Vec<Container>,
    bindings: Vec<Binding>,
    assets: Option<(String, Option<String>)>,
    vars: Vec<(String, String)>,
}

struct Container {
    class_name: String,
    image: String,
    max_instances: Option<i64>,
    instance_type: Option<String>,
    cpu: Option<f64>,
    memory: Option<String>,
    /// What its Dockerfile says, when `image` is one that could be read.
    facts: Option<DockerfileFacts>,
    /// The project folder (relative to the wrangler file's) that the Dockerfile copies into
    /// the image's working directory: where its command must run on the process driver.
    app_dir: Option<String>,
}

struct Binding {
    name: String,
    class_name: String,
}

/// Walks the parsed config, collecting every error (so one run shows them all) and notes.
#[derive(Default)]
struct Reader {
    errors: Vec<String>,
    notes: Vec<String>,
}

impl Reader {
    fn project(&mut self, root: &Map<String, Value>) -> Project {
        let mut project = Project {
            main: root.get("main").and_then(Value::as_str).map(str::to_owned),
            ..Project::default()
        };
        for (i, entry) in self
            .array(root, "containers", "containers")
            .iter()
            .enumerate()
        {
            if let Some(container) = self.container(&format!("containers[{i}]"), entry) {
                project.containers.push(container);
            }
        }
        if let Some(objects) = self.object(root.get("durable_objects"), "durable_objects") {
            for (i, entry) in self
                .array(objects, "bindings", "durable_objects.bindings")
                .iter()
                .enumerate()
            {
                if let Some(binding) =
                    self.binding(&format!("durable_objects.bindings[{i}]"), entry)
                {
                    project.bindings.push(binding);
                }
            }
        }
        if let Some(assets) = self.object(root.get("assets"), "assets") {
            project.assets = self.assets(assets);
        }
        if let Some(vars) = self.object(root.get("vars"), "vars") {
            project.vars = self.vars(vars);
        }
        for key in root.keys() {
            if QUIET_KEYS.contains(&key.as_str()) || ["assets", "vars"].contains(&key.as_str()) {
                continue;
            }
            if let Some((_, why)) = DROPPED.iter().find(|(k, _)| k == key) {
                self.notes.push((*why).to_string());
                continue;
            }
            self.notes.push(if key == "env" {
                // One valet.toml per environment: import is of the top level only.
                "`env` (per-environment overrides) is not translated; the top level is".into()
            } else {
                format!("`{key}` has no valet equivalent; not translated")
            });
        }
        project
    }

    fn container(&mut self, at: &str, entry: &Value) -> Option<Container> {
        let entry = self.object(Some(entry), at)?;
        let class_name = self.string(entry, at, "class_name");
        let image = self.string(entry, at, "image");
        let max_instances = match entry.get("max_instances") {
            None => None,
            Some(n) => match n.as_i64().filter(|n| *n >= 1) {
                Some(n) => Some(n),
                None => {
                    self.errors.push(format!(
                        "{at}.max_instances: expected a whole number of at least 1, got {n}"
                    ));
                    None
                }
            },
        };
        let (instance_type, cpu, memory) = self.instance_type(at, entry.get("instance_type"));
        for key in entry.keys() {
            if ![
                "class_name",
                "image",
                "max_instances",
                "instance_type",
                "name",
            ]
            .contains(&key.as_str())
            {
                self.notes.push(format!("{at}.{key} is not translated"));
            }
        }
        if let Some(name) = &class_name {
            self.class_name(&format!("{at}.class_name"), name);
        }
        Some(Container {
            class_name: class_name?,
            image: image?,
            max_instances,
            instance_type,
            cpu,
            memory,
            facts: None,
            app_dir: None,
        })
    }

    /// Cloudflare's names are valet's; the older `dev` and `standard` are `lite` and `standard-1`,
    /// and a custom `{ vcpu, memory_mib }` becomes valet's `cpu` and `memory` overrides.
    fn instance_type(
        &mut self,
        at: &str,
        given: Option<&Value>,
    ) -> (Option<String>, Option<f64>, Option<String>) {
        match given {
            None => (None, None, None),
            Some(Value::String(kind)) => match kind.as_str() {
                "lite" | "basic" | "standard-1" | "standard-2" | "standard-3" | "standard-4" => {
                    (Some(kind.clone()), None, None)
                }
                "dev" => (Some("lite".into()), None, None),
                "standard" => (Some("standard-1".into()), None, None),
                _ => {
                    self.errors.push(format!(
                        "{at}.instance_type: unknown instance type {kind:?} \
                         (valet knows lite, basic, standard-1..4, dev, standard)"
                    ));
                    (None, None, None)
                }
            },
            Some(Value::Object(custom)) => {
                let cpu = custom.get("vcpu").and_then(Value::as_f64);
                let memory = custom
                    .get("memory_mib")
                    .and_then(Value::as_u64)
                    .map(|mib| format!("{mib}MiB"));
                if custom.contains_key("disk_mb") {
                    self.notes.push(format!(
                        "{at}.instance_type.disk_mb is not translated (lasting data: `volume`)"
                    ));
                }
                (None, cpu, memory)
            }
            Some(other) => {
                self.errors.push(format!(
                    "{at}.instance_type: expected a name like \"basic\" \
                     or {{ vcpu, memory_mib }}, got {other}"
                ));
                (None, None, None)
            }
        }
    }

    fn binding(&mut self, at: &str, entry: &Value) -> Option<Binding> {
        let entry = self.object(Some(entry), at)?;
        let name = self.string(entry, at, "name");
        let class_name = self.string(entry, at, "class_name");
        if let Some(script) = entry.get("script_name").and_then(Value::as_str) {
            self.notes.push(format!(
                "{at} lives in another Worker ({script:?}); import that project too"
            ));
        }
        Some(Binding {
            name: name?,
            class_name: class_name?,
        })
    }

    fn assets(&mut self, assets: &Map<String, Value>) -> Option<(String, Option<String>)> {
        // No early return: a bad not_found_handling is worth reporting beside a missing directory.
        let directory = self.string(assets, "assets", "directory");
        let handling = assets.get("not_found_handling").map(|h| match h.as_str() {
            Some(h @ ("single-page-application" | "404-page" | "none")) => h.to_owned(),
            _ => {
                self.errors.push(format!(
                    "assets.not_found_handling: expected \"single-page-application\", \
                     \"404-page\" or \"none\", got {h}"
                ));
                String::new()
            }
        });
        for key in assets.keys() {
            if !["directory", "not_found_handling", "binding"].contains(&key.as_str()) {
                self.notes.push(format!("assets.{key} is not translated"));
            }
        }
        Some((directory?, handling))
    }

    /// Strings pass as they are; other values reach the backend as their JSON text, which is
    /// how a Worker would have to hand them to a container's env anyway.
    fn vars(&mut self, vars: &Map<String, Value>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, given) in vars {
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.notes.push(format!(
                    "vars.{name} is not a valid environment variable name; left out"
                ));
                continue;
            }
            let text = match given {
                Value::String(s) => s.clone(),
                other => {
                    self.notes.push(format!(
                        "vars.{name} is not a string; its env value is the JSON text {other}"
                    ));
                    other.to_string()
                }
            };
            out.push((name.clone(), text));
        }
        out
    }

    /// Notes about how bindings and classes meet: valet has containers, not bare Durable Objects.
    fn relate(&mut self, project: &Project) {
        let is_container = |class: &str| project.containers.iter().any(|c| c.class_name == class);
        for binding in &project.bindings {
            if !is_container(&binding.class_name) {
                self.notes.push(format!(
                    "Durable Object binding {} -> {} is not a container class; a plain Durable \
                     Object's code lives in the Worker and is not translated",
                    binding.name, binding.class_name
                ));
            }
        }
        for container in &project.containers {
            if !project
                .bindings
                .iter()
                .any(|b| b.class_name == container.class_name)
            {
                self.notes.push(format!(
                    "container class {} has no Durable Object binding; \
                     its route stub uses the key \"default\"",
                    container.class_name
                ));
            }
        }
        let main = project
            .main
            .as_deref()
            .map_or(String::new(), |m| format!(" ({m})"));
        self.notes.push(format!(
            "the Worker's JavaScript{main} cannot be translated: which requests reach which \
             container, and under which instance name, was decided there; fill in the \
             [[routes]] stubs in the output"
        ));
        let guessed: Vec<&str> = project
            .containers
            .iter()
            .filter(|c| c.facts.as_ref().and_then(DockerfileFacts::port).is_none())
            .map(|c| c.class_name.as_str())
            .collect();
        if !guessed.is_empty() {
            self.notes.push(format!(
                "{} listen on port {DEFAULT_PORT} (Cloudflare's common defaultPort; their \
                 Dockerfile names none): change `ports` where the Container class sets another",
                guessed.join(", ")
            ));
        }
        if !project.containers.is_empty() {
            self.notes.push(
                "each class has commented suggestions: a readiness path (surer than waiting \
                 for the port) and sleep_after (the Container class's sleepAfter, valet's \
                 default 10m)"
                    .into(),
            );
        }
    }

    /// Reads each class's Dockerfile, when its `image` is a path to one (or to a folder
    /// holding one) under `dir`; a registry image is left alone.
    fn read_dockerfiles(&mut self, project: &mut Project, dir: &Path) {
        for container in &mut project.containers {
            let path = dir.join(&container.image);
            let image_is_dir = path.is_dir();
            let path = if image_is_dir {
                path.join("Dockerfile")
            } else {
                path
            };
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let facts = dockerfile::read(&text);
            let context = path.parent().unwrap_or(dir);
            container.app_dir = app_dir(&container.image, image_is_dir, context, &facts);
            if let Some(port) = facts.port() {
                self.notes.push(format!(
                    "{}: port {port} from {} ({})",
                    container.class_name,
                    container.image,
                    if facts.command_port.is_some() {
                        "its command's --port"
                    } else {
                        "EXPOSE"
                    }
                ));
            }
            container.facts = Some(facts);
        }
    }

    fn class_name(&mut self, at: &str, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            self.errors.push(format!(
                "{at}: {name:?} cannot be a valet class name (A-Z, a-z, 0-9, _ and - only)"
            ));
        }
    }

    fn object<'v>(&mut self, given: Option<&'v Value>, at: &str) -> Option<&'v Map<String, Value>> {
        match given? {
            Value::Object(map) => Some(map),
            other => {
                self.errors
                    .push(format!("{at}: expected an object, got {other}"));
                None
            }
        }
    }

    fn array<'v>(&mut self, parent: &'v Map<String, Value>, key: &str, at: &str) -> &'v [Value] {
        match parent.get(key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.errors
                    .push(format!("{at}: expected a list, got {other}"));
                &[]
            }
        }
    }

    fn string(&mut self, parent: &Map<String, Value>, at: &str, key: &str) -> Option<String> {
        match parent.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(other) => {
                self.errors.push(format!(
                    "{at}.{key}: expected a non-empty string, got {other}"
                ));
                None
            }
            None => {
                self.errors.push(format!("{at}.{key} is missing"));
                None
            }
        }
    }
}

/// Where the image's command finds its files, as a folder relative to the wrangler file's:
/// the last folder of the build context that the Dockerfile copies into its working directory
/// (`COPY app/ .` under `WORKDIR /app`). `None` when that is the wrangler file's own folder or
/// nothing folder-like is copied there (the command then runs where valet runs it anyway).
fn app_dir(
    image: &str,
    image_is_dir: bool,
    context: &Path,
    facts: &DockerfileFacts,
) -> Option<String> {
    use std::path::Component;
    let source = facts.copies_to_workdir.iter().rev().find_map(|sources| {
        let [source] = sources.as_slice() else {
            return None;
        };
        context.join(source).is_dir().then_some(source)
    })?;
    // The context as the wrangler config names it: `image` is the Dockerfile or its folder.
    let image = Path::new(image);
    let context_rel = if image_is_dir {
        image
    } else {
        image.parent().unwrap_or(Path::new(""))
    };
    let relative: std::path::PathBuf = context_rel
        .join(source)
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect();
    let text = relative.to_string_lossy().into_owned();
    (!text.is_empty()).then_some(text)
}

/// The valet.toml text, with comments saying where each part came from and what to fill in.
fn render(project: &Project) -> String {
    let mut doc = DocumentMut::new();
    let main = project
        .main
        .as_deref()
        .map_or(String::new(), |m| format!(" ({m})"));
    doc.decor_mut().set_prefix(format!(
        "# Imported from a Cloudflare wrangler config by `valet import`.\n\
         # The Worker's JavaScript{main} was not translated: see the TODOs below.\n\n"
    ));
    if !project.containers.is_empty() {
        let mut server = Table::new();
        server
            .decor_mut()
            .set_prefix("# The classes run from Docker images, as on Cloudflare.\n");
        server["driver"] = value("docker");
        doc["server"] = Item::Table(server);
    }
    if let Some((directory, handling)) = &project.assets {
        let mut assets = Table::new();
        assets["directory"] = value(directory.as_str());
        if let Some(handling) = handling {
            assets["not_found_handling"] = value(handling.as_str());
        }
        doc["assets"] = Item::Table(assets);
    }
    let mut classes = ArrayOfTables::new();
    for container in &project.containers {
        classes.push(class_table(project, container));
    }
    if !classes.is_empty() {
        doc["containers"] = Item::ArrayOfTables(classes);
    }
    let mut text = doc.to_string();
    text.push_str(&route_stubs(project));
    text
}

fn class_table(project: &Project, container: &Container) -> Table {
    let mut table = Table::new();
    let bindings: Vec<&str> = project
        .bindings
        .iter()
        .filter(|b| b.class_name == container.class_name)
        .map(|b| b.name.as_str())
        .collect();
    if !bindings.is_empty() {
        table.decor_mut().set_prefix(format!(
            "\n# Durable Object binding {} on Cloudflare.\n",
            bindings.join(", ")
        ));
    }
    table["class_name"] = value(container.class_name.as_str());
    table["image"] = value(container.image.as_str());
    let facts = container.facts.clone().unwrap_or_default();
    let mut ports = InlineTable::new();
    let port_note = match facts.port() {
        Some(port) => {
            ports.insert("http", i64::from(port).into());
            // The other exposed ports by number: the Worker's code names them, not the image.
            for other in facts.exposed.iter().filter(|p| **p != port) {
                ports.insert(format!("p{other}"), i64::from(*other).into());
            }
            "# From the Dockerfile (EXPOSE, or its command's --port).\n".to_string()
        }
        None => {
            ports.insert("http", DEFAULT_PORT.into());
            "# TODO: the port the container listens on (its Container class's defaultPort).\n"
                .to_string()
        }
    };
    table["ports"] = value(ports);
    if let Some(mut key) = table.key_mut("ports") {
        key.leaf_decor_mut().set_prefix(format!(
            "{}{port_note}",
            suggestions(&facts, container.app_dir.as_deref())
        ));
    }
    if let Some(n) = container.max_instances {
        table["max_instances"] = value(n);
    }
    if let Some(kind) = &container.instance_type {
        table["instance_type"] = value(kind.as_str());
    }
    if let Some(cpu) = container.cpu {
        table["cpu"] = value(cpu);
    }
    if let Some(memory) = &container.memory {
        table["memory"] = value(memory.as_str());
    }
    if !project.vars.is_empty() {
        let mut env = InlineTable::new();
        for (name, text) in &project.vars {
            env.insert(name, text.as_str().into());
        }
        table["env"] = value(env);
    }
    table
}

/// Commented lines a person decides on: a readiness path, `sleep_after`, and (for running
/// without Docker) the image's command for the process driver.
fn suggestions(facts: &DockerfileFacts, app_dir: Option<&str>) -> String {
    let mut text = String::from(
        "# Suggested: a path that answers once the app is ready (without one, valet waits for\n\
         # the port to accept), and the Container class's sleepAfter (valet's default: 10m).\n\
         # readiness = { path = \"/health\", timeout = \"60s\" }\n\
         # sleep_after = \"10m\"\n",
    );
    if !facts.command.is_empty() {
        text.push_str(&process_command(facts, app_dir));
    }
    text
}

/// The image's command as the process driver would run it, commented, with why it differs:
/// valet picks the port (`{port}`), the command runs in valet.toml's folder rather than the
/// image's WORKDIR, and a server bound to 0.0.0.0 on the host would be open to every network
/// beside valet (in a container that address is the container's own).
fn process_command(facts: &DockerfileFacts, app_dir: Option<&str>) -> String {
    let mut command: Vec<String> = match facts.command_port {
        Some(port) => facts
            .command
            .iter()
            .map(|a| {
                a.replace(&format!("--port={port}"), "--port={port}")
                    .replace(&format!("--port {port}"), "--port {port}")
            })
            .scan(false, |after_flag, a| {
                let out = if *after_flag && a == port.to_string() {
                    "{port}".to_string()
                } else {
                    a.clone()
                };
                *after_flag = a == "--port";
                Some(out)
            })
            .collect(),
        None => facts.command.clone(),
    };
    let mut why = String::from(
        "# Without Docker (driver = \"process\"): the image's command, run on this machine\n\
         # with what the Dockerfile installs installed here (a virtualenv, `npm ci`).\n",
    );
    if command.iter().any(|a| a.contains("0.0.0.0")) {
        for arg in &mut command {
            *arg = arg.replace("0.0.0.0", "127.0.0.1");
        }
        why.push_str(
            "# On 127.0.0.1, not 0.0.0.0: on this machine that would open it to every network.\n",
        );
    }
    if let Some(dir) = app_dir {
        let dir = shell_word(dir);
        let line = match command.as_slice() {
            [sh, c, script] if sh == "sh" && c == "-c" => format!("cd {dir} && {script}"),
            _ => format!(
                "cd {dir} && exec {}",
                command
                    .iter()
                    .map(|a| shell_word(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        command = vec!["sh".into(), "-c".into(), line];
        why.push_str(&format!(
            "# It runs in this file's folder: `cd {dir}` goes where the Dockerfile copied the\n\
             # app (its WORKDIR in the image).\n"
        ));
    }
    let program = facts.command[0].rsplit('/').next().unwrap_or_default();
    let from = "../".repeat(app_dir.map_or(0, |d| Path::new(d).components().count()));
    why.push_str(&format!(
        "# A program from a virtualenv or node_modules goes by its path from there\n\
         # (e.g. {from}.venv/bin/{program}): an instance's PATH is /usr/local/bin:/usr/bin:/bin.\n"
    ));
    let argv = toml_edit::Value::from(toml_edit::Array::from_iter(command.iter()));
    format!("{why}# command = {}\n", argv.to_string().trim())
}

/// A word for `sh -c`: as it is when the shell would read it so, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,@%+{}".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The Worker's routing, guessed: the first class gets an active route (so the output runs
/// and `valet check` passes), the others commented stubs. `/api/*` beside assets, since that
/// is what the seeds route; everything when there are no assets.
fn route_stubs(project: &Project) -> String {
    let Some(first) = project.containers.first() else {
        return String::new();
    };
    let pattern = if project.assets.is_some() {
        "/api/*"
    } else {
        "/*"
    };
    let mut text = format!(
        "\n# TODO: the Worker decided which paths reach a container and which instance serves\n\
         # them; this route is a guess. `name:` is one instance for every request: put the name\n\
         # the Worker gave idFromName/getContainer (the binding's name stands in for it here).\n\
         # path:<n>, header:<Name>, query:<name>, cookie:<name> or random:<N> choose per request.\n\
         {}",
        route_lines(pattern, first, project)
    );
    if pattern != "/*" {
        // The seeds' Workers cut the prefix before passing a request on; valet passes the
        // full path unless told, and a backend that never saw the prefix answers 404.
        text.push_str(&format!(
            "# If the Worker removed {prefix} before passing the request on (the app serves /env,\n\
             # not {prefix}/env):\n\
             # strip_prefix = \"{prefix}\"\n",
            prefix = pattern.trim_end_matches("/*")
        ));
    }
    for other in project.containers.iter().skip(1) {
        let pattern = format!("/{}/*", other.class_name.to_ascii_lowercase());
        let lines = route_lines(&pattern, other, project);
        text.push_str(&format!(
            "\n# TODO: a route for {}, if the Worker sent requests to it:\n",
            other.class_name
        ));
        for line in lines.lines() {
            text.push_str(&format!("# {line}\n"));
        }
    }
    text
}

/// One `[[routes]]` entry, rendered by toml_edit so that any name is quoted correctly.
fn route_lines(pattern: &str, container: &Container, project: &Project) -> String {
    let mut route = Table::new();
    route["pattern"] = value(pattern);
    route["container"] = value(container.class_name.as_str());
    route["instance"] = value(format!("name:{}", instance_key(project, container)));
    let mut routes = ArrayOfTables::new();
    routes.push(route);
    let mut doc = DocumentMut::new();
    doc["routes"] = Item::ArrayOfTables(routes);
    doc.to_string()
}

/// The binding's name stands for the instance name the Worker passed to `idFromName`.
fn instance_key(project: &Project, container: &Container) -> String {
    project
        .bindings
        .iter()
        .find(|b| b.class_name == container.class_name)
        .map_or_else(|| "default".to_owned(), |b| b.name.clone())
}
