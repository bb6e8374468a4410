//! Reading valet.toml into a [`Config`]: syntax, then types and unknown keys section by section,
//! then [`Config::validate`], every problem mapped to its line and column.
//!
//! Each top-level section and each `[[containers]]` / `[[routes]]` entry is deserialized on its
//! own, so a type error in one entry does not hide the mistakes in the next.

use crate::error::{line_column, ConfigError, ConfigErrors};
use crate::keypath::{KeyPath, Segment};
use crate::model::Config;
use crate::section::{one_line, read_section};
use crate::validate::Broken;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use toml_edit::{ImDocument, Item};

/// Reads and checks the config file at `path`. Relative paths inside it resolve against the
/// file's folder (made absolute). A missing or unreadable file is a [`ConfigErrors`] too.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::unreadable(path, e))?;
    let absolute = std::path::absolute(path).map_err(|e| ConfigErrors::unreadable(path, e))?;
    let base_dir = absolute.parent().unwrap_or(Path::new("/"));
    parse_str(&text, path, base_dir)
}

/// Reads and checks config `text`; `file` names it in errors, `base_dir` resolves its
/// relative paths (and is checked against: `assets.directory` must exist there).
pub fn parse_str(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        ConfigErrors::new(
            file,
            vec![Reader::error(text, at, "", one_line(e.message()))],
        )
    })?;
    let mut reader = Reader {
        doc: &doc,
        text,
        errors: Vec::new(),
        broken: Broken::default(),
        rows: BTreeMap::new(),
        removed: Vec::new(),
    };
    let mut config = reader.config();
    config.base_dir = base_dir.to_path_buf();
    for problem in config.validate_around(&reader.broken) {
        let key = reader.file_path(problem.key);
        if !reader.follows_removal(&key) {
            reader.error_at_key(&key, problem.message);
        }
    }
    if reader.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors::new(file, reader.errors))
    }
}

struct Reader<'d> {
    doc: &'d ImDocument<&'d str>,
    text: &'d str,
    errors: Vec<ConfigError>,
    broken: Broken,
    /// For each entry kept in `config.containers` / `config.routes`, its index in the file:
    /// entries that failed to deserialize are left out, and the indices after them shift.
    rows: BTreeMap<&'static str, Vec<usize>>,
    /// Keys taken out after a type error, with the section they were in (file paths).
    removed: Vec<(KeyPath, KeyPath)>,
}

impl<'d> Reader<'d> {
    fn config(&mut self) -> Config {
        let mut config = Config::default();
        for (name, item) in self.doc.as_table().iter() {
            let at = KeyPath::top(name);
            match name {
                "server" => config.server = self.read(&at, item).unwrap_or_default(),
                "assets" => {
                    config.assets = self.read(&at, item);
                    self.broken.assets = config.assets.is_none();
                }
                "auth" => {
                    config.auth = self.read(&at, item);
                    self.broken.auth = config.auth.is_none();
                }
                "containers" => config.containers = self.read_list("containers", item),
                "routes" => config.routes = self.read_list("routes", item),
                "plans" => config.plans = self.read_map(&at, item),
                "deploy" => config.deploy = self.read(&at, item).unwrap_or_default(),
                "registries" => config.registries = self.read_list("registries", item),
                "cluster" => config.cluster = self.read(&at, item),
                "swarm" => config.swarm = self.read(&at, item),
                "kubernetes" => config.kubernetes = self.read(&at, item),
                _ => self.unknown_key(&at),
            }
        }
        config
    }

    /// One section or entry; `None` (with its errors recorded) when it does not deserialize.
    fn read<T: DeserializeOwned>(&mut self, at: &KeyPath, item: &Item) -> Option<T> {
        let read = read_section::<T, _>(self.doc, at, item);
        for path in &read.unknown {
            self.unknown_key(path);
        }
        for (offset, key, message) in read.errors {
            match offset {
                Some(offset) => self.push(offset, &key, message),
                None => self.error_at_key(&key, message),
            }
        }
        self.removed
            .extend(read.removed.into_iter().map(|key| (at.clone(), key)));
        read.value
    }

    /// `[[containers]]`, `[[routes]]` or `[[registries]]` entries, each read on its own.
    fn read_list<T: DeserializeOwned>(&mut self, name: &'static str, item: &Item) -> Vec<T> {
        let at = KeyPath::top(name);
        let elements: Vec<Item> = match item {
            Item::ArrayOfTables(tables) => tables.iter().cloned().map(Item::Table).collect(),
            Item::Value(toml_edit::Value::Array(values)) => {
                values.iter().cloned().map(Item::Value).collect()
            }
            _ => {
                let message = format!("{name} must be a list of tables: write [[{name}]] entries");
                self.error_at_key(&at, message);
                return Vec::new();
            }
        };
        let mut kept = Vec::new();
        let mut rows = Vec::new();
        for (i, element) in elements.iter().enumerate() {
            match self.read(&at.index(i), element) {
                Some(entry) => {
                    kept.push(entry);
                    rows.push(i);
                }
                None if name == "containers" => {
                    let class = element.get("class_name").and_then(Item::as_str);
                    self.broken.classes.extend(class.map(str::to_string));
                }
                None => {}
            }
        }
        self.rows.insert(name, rows);
        kept
    }

    /// `[plans.NAME]` tables, each read on its own.
    fn read_map<T: DeserializeOwned>(&mut self, at: &KeyPath, item: &Item) -> BTreeMap<String, T> {
        let Some(table) = item.as_table_like() else {
            self.error_at_key(at, format!("{at} must be a table, like [{at}.NAME]"));
            return BTreeMap::new();
        };
        let mut entries = BTreeMap::new();
        for (name, item) in table.iter() {
            if let Some(entry) = self.read(&at.key(name), item) {
                entries.insert(name.to_string(), entry);
            }
        }
        entries
    }

    fn unknown_key(&mut self, path: &KeyPath) {
        let Some(Segment::Key(name)) = path.0.last() else {
            return;
        };
        let parent = path.parent();
        let message = if parent.0.is_empty() {
            format!("unknown key {name:?} at the top level")
        } else {
            format!("unknown key {name:?} in {parent}")
        };
        self.error_at_key(path, message);
    }

    /// Whether a check's complaint about `key` is only the echo of a type error: it is about a
    /// key taken out (now its default), or about a key inside the section that holds one
    /// (`ports` is empty after its mistyped `ports.http` was taken out).
    fn follows_removal(&self, key: &KeyPath) -> bool {
        self.removed.iter().any(|(section, removed)| {
            key.starts_with(removed) || (removed.starts_with(key) && key.0.len() > section.0.len())
        })
    }

    /// A validation key path, from config indices back to file indices (see `rows`).
    fn file_path(&self, mut key: KeyPath) -> KeyPath {
        if let [Segment::Key(list), Segment::Index(i), ..] = key.0.as_mut_slice() {
            if let Some(row) = self.rows.get(list.as_str()).and_then(|rows| rows.get(*i)) {
                *i = *row;
            }
        }
        key
    }

    fn error_at_key(&mut self, key: &KeyPath, message: String) {
        let offset = key
            .locate(self.doc)
            .map_or(0, |span: Range<usize>| span.start);
        self.push(offset, key, message);
    }

    fn push(&mut self, offset: usize, key: &KeyPath, message: String) {
        self.errors
            .push(Self::error(self.text, offset, &key.to_string(), message));
    }

    fn error(text: &str, offset: usize, key: &str, message: String) -> ConfigError {
        let (line, column) = line_column(text, offset);
        ConfigError {
            line,
            column,
            key: key.to_string(),
            message,
        }
    }
}
