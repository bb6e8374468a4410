//! Deserializing one section of valet.toml while collecting every problem in it.
//!
//! serde stops at the first type error. To report the next one too, the offending key is taken
//! out of the section and the section is read again, until it reads or cannot shrink further;
//! the keys taken out fall back to their defaults, and checks on them stay quiet.

use crate::keypath::{KeyPath, Segment};
use serde::de::{DeserializeOwned, IntoDeserializer};
use std::collections::BTreeSet;
use toml_edit::{ImDocument, Item};

/// More retries than any section has keys: a guard against a loop that makes no progress.
const MAX_ATTEMPTS: usize = 64;

/// What reading one section found.
pub(crate) struct SectionRead<T> {
    /// The section, unless an error left it unreadable (a required key missing or mistyped).
    pub value: Option<T>,
    /// Type errors: byte offset when serde gave one, the key, the message.
    pub errors: Vec<(Option<usize>, KeyPath, String)>,
    /// Keys serde ignored: unknown to valet.
    pub unknown: BTreeSet<KeyPath>,
    /// Keys taken out after a type error; `value` holds their defaults.
    pub removed: Vec<KeyPath>,
}

/// Reads the section at `at` (whose item in `doc` is `item`) as a `T`.
pub(crate) fn read_section<T, S>(doc: &ImDocument<S>, at: &KeyPath, item: &Item) -> SectionRead<T>
where
    T: DeserializeOwned,
{
    let mut read = SectionRead {
        value: None,
        errors: Vec::new(),
        unknown: BTreeSet::new(),
        removed: Vec::new(),
    };
    let mut item = item.clone();
    for _ in 0..MAX_ATTEMPTS {
        let Ok(value) = item.clone().into_value() else {
            break;
        };
        let mut unknown = Vec::new();
        let result: Result<T, _> = serde_ignored::deserialize(value.into_deserializer(), |path| {
            unknown.push(relative_path(at, &path));
        });
        read.unknown.extend(unknown);
        let error = match result {
            Ok(value) => {
                read.value = Some(value);
                break;
            }
            Err(error) => error,
        };
        let message = one_line(error.message());
        // "missing field" right after that field was taken out for its own type error: that
        // error already says everything.
        let follows_removal = read.removed.iter().any(|removed| {
            matches!(removed.0.last(), Some(Segment::Key(k)) if message == format!("missing field `{k}`"))
        });
        if follows_removal {
            break;
        }
        let Some(span) = error.span() else {
            // Errors about a whole table ("missing field") carry no span: point at the table.
            read.errors.push((None, at.clone(), message));
            break;
        };
        let key = at.deepest_at(doc, span.start);
        read.errors.push((Some(span.start), key.clone(), message));
        match remove(&mut item, &key.0[at.0.len()..]) {
            Some(taken) => read
                .removed
                .push(KeyPath(at.0.iter().chain(&taken).cloned().collect())),
            None => break,
        }
    }
    read
}

/// Takes the table key at `relative` out of `item`; a path into an array takes out the whole
/// array's key, since dropping one element would change what the rest mean. Returns the path
/// actually taken out, or `None` when there is no key to take (the section itself is wrong).
fn remove(item: &mut Item, relative: &[Segment]) -> Option<Vec<Segment>> {
    let keys: Vec<&str> = relative
        .iter()
        .map_while(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    let (last, parents) = keys.split_last()?;
    let mut table = item.as_table_like_mut()?;
    for key in parents {
        table = table.get_mut(key)?.as_table_like_mut()?;
    }
    table.remove(last)?;
    Some(keys.iter().map(|k| Segment::Key(k.to_string())).collect())
}

/// serde_ignored's path (relative to the section being read) as a full key path. `Some` and
/// newtype steps are serde's, not the file's, and are skipped.
fn relative_path(section: &KeyPath, path: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path;
    match path {
        Path::Root => section.clone(),
        Path::Seq { parent, index } => relative_path(section, parent).index(*index),
        Path::Map { parent, key } => relative_path(section, parent).key(key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => relative_path(section, parent),
    }
}

/// toml_edit's messages may span lines ("invalid key\nexpected ..."); a report has one per problem.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerClass;

    fn read(text: &str) -> SectionRead<ContainerClass> {
        let doc = ImDocument::parse(text).unwrap();
        let at = KeyPath::top("containers").index(0);
        let item = Item::Table(
            doc["containers"]
                .as_array_of_tables()
                .unwrap()
                .get(0)
                .unwrap()
                .clone(),
        );
        read_section(&doc, &at, &item)
    }

    fn keys(paths: impl IntoIterator<Item = KeyPath>) -> Vec<String> {
        paths.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn reports_every_type_error_and_keeps_the_rest() {
        let read = read(
            "[[containers]]\nclass_name = \"A\"\nmax_instances = \"x\"\nports = { http = -1 }\n\
             command = [\"a\", 2]\nmax_waiting = 7\n",
        );
        let errors: Vec<String> = read
            .errors
            .iter()
            .map(|(_, key, _)| key.to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "containers[0].max_instances",
                "containers[0].ports.http",
                "containers[0].command[1]"
            ]
        );
        // Taken out, then defaulted; the array goes as a whole.
        assert_eq!(
            keys(read.removed),
            [
                "containers[0].max_instances",
                "containers[0].ports.http",
                "containers[0].command"
            ]
        );
        let class = read.value.expect("the rest still reads");
        assert_eq!((class.max_instances, class.max_waiting), (20, 7));
        assert!(class.command.is_empty() && class.ports.is_empty());
    }

    #[test]
    fn a_mistyped_required_key_is_one_error_not_two() {
        let read = read("[[containers]]\nclass_name = 7\nsleep_aftr = \"1s\"\n");
        assert!(read.value.is_none());
        assert_eq!(read.errors.len(), 1);
        assert_eq!(
            read.errors[0].2,
            "invalid type: integer `7`, expected a string"
        );
        assert_eq!(keys(read.unknown), ["containers[0].sleep_aftr"]);
    }
}
