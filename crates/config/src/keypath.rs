//! Where a value lives in valet.toml (`containers[0].sleep_after`), and where that is in the text.
//!
//! Validation speaks in key paths rather than line numbers so it can run on a [`Config`] built in
//! code; the loader maps each path back to the spot in the file through toml_edit's spans.
//!
//! [`Config`]: crate::Config

use std::fmt;
use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An element of an array or array of tables.
    Index(usize),
}

/// A path from the document's root to a value, printed as `containers[0].ports.http`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// The document's root (prints as the empty string).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// A top-level key.
    pub fn top(key: &str) -> Self {
        Self(vec![Segment::Key(key.to_string())])
    }

    /// This path, one key deeper.
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }

    /// This path, one array element deeper.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    /// Whether this path is `ancestor` or lies below it.
    pub fn starts_with(&self, ancestor: &KeyPath) -> bool {
        self.0.starts_with(&ancestor.0)
    }

    /// The path one step up (the root stays the root).
    pub fn parent(&self) -> Self {
        let mut up = self.clone();
        up.0.pop();
        up
    }

    /// The byte range that best shows this path in the document: the key itself for a table
    /// entry, the element for an array item. A path that is not in the file (a default that
    /// failed a check) falls back to its nearest ancestor that is.
    pub fn locate<S>(&self, doc: &ImDocument<S>) -> Option<Range<usize>> {
        let mut node = Node::Item(doc.as_item());
        let mut best: Option<Range<usize>> = None;
        for segment in &self.0 {
            let Some((key_span, next)) = node.child(segment) else {
                break;
            };
            best = key_span.or_else(|| next.span()).or(best);
            node = next;
        }
        best
    }

    /// The deepest path at or below this one whose key or value covers byte `offset`: names
    /// the key a serde error (which only carries a span) is about.
    pub fn deepest_at<S>(&self, doc: &ImDocument<S>, offset: usize) -> KeyPath {
        let mut node = Node::Item(doc.as_item());
        for segment in &self.0 {
            match node.child(segment) {
                Some((_, next)) => node = next,
                None => return self.clone(),
            }
        }
        let mut best = self.clone();
        descend(node, self, offset, &mut best);
        best
    }
}

fn descend(node: Node<'_>, path: &KeyPath, offset: usize, best: &mut KeyPath) {
    let covers = |span: Option<Range<usize>>| span.is_some_and(|s| s.contains(&offset));
    for (segment, key_span, child) in node.children() {
        let mut below = path.clone();
        below.0.push(segment);
        if covers(key_span) || covers(child.span()) {
            *best = below.clone();
        }
        // Tables read from `[section]` headers carry no span of their body: look inside anyway.
        descend(child, &below, offset, best);
    }
}

/// A place in a toml_edit tree: arrays of tables hold `Table`s and inline arrays hold `Value`s,
/// so a walk down a key path passes through all three kinds.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    fn table(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }

    fn array(self) -> Vec<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(tables)) => tables.iter().map(Node::Table).collect(),
            Node::Item(Item::Value(Value::Array(values))) | Node::Value(Value::Array(values)) => {
                values.iter().map(Node::Value).collect()
            }
            _ => Vec::new(),
        }
    }

    /// One step down, with the key's own span when the step is a table key.
    fn child(self, segment: &Segment) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match segment {
            Segment::Key(key) => {
                let (key, item) = self.table()?.get_key_value(key)?;
                Some((key.span(), Node::Item(item)))
            }
            Segment::Index(i) => self.array().get(*i).map(|node| (None, *node)),
        }
    }

    fn children(self) -> Vec<(Segment, Option<Range<usize>>, Node<'a>)> {
        if let Some(table) = self.table() {
            let keys = table.iter().filter_map(|(k, _)| table.get_key_value(k));
            return keys
                .map(|(k, item)| {
                    (
                        Segment::Key(k.get().to_string()),
                        k.span(),
                        Node::Item(item),
                    )
                })
                .collect();
        }
        let elements = self.array().into_iter().enumerate();
        elements
            .map(|(i, node)| (Segment::Index(i), None, node))
            .collect()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Key(key) if n == 0 => write!(f, "{}", display_key(key))?,
                Segment::Key(key) => write!(f, ".{}", display_key(key))?,
            }
        }
        Ok(())
    }
}

/// Bare keys print as they are; anything else is quoted the way TOML would need it.
fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\ntimeouts = { idle = 5 }\n\n[[routes]]\npattern = \"/a\"\n\n\
                        [[routes]]\npattern = \"/b\"\nhosts = [\"x\", \"y\"]\n";

    fn doc() -> ImDocument<&'static str> {
        ImDocument::parse(TEXT).unwrap()
    }

    fn line_of(path: &KeyPath) -> Option<usize> {
        let span = path.locate(&doc())?;
        Some(TEXT[..span.start].matches('\n').count() + 1)
    }

    #[test]
    fn prints_like_the_file_reads() {
        let path = KeyPath::top("containers").index(0).key("env").key("A.B");
        assert_eq!(path.to_string(), "containers[0].env.\"A.B\"");
        assert_eq!(path.parent().to_string(), "containers[0].env");
        assert_eq!(KeyPath::root().to_string(), "");
        assert!(path.starts_with(&KeyPath::top("containers").index(0)));
        assert!(!path.starts_with(&KeyPath::top("containers").index(1)));
    }

    #[test]
    fn locates_keys_elements_and_the_nearest_ancestor() {
        let routes = KeyPath::top("routes");
        assert_eq!(line_of(&routes.index(1).key("pattern")), Some(8));
        assert_eq!(line_of(&routes.index(1).key("hosts").index(1)), Some(9));
        assert_eq!(
            line_of(&KeyPath::top("server").key("timeouts").key("idle")),
            Some(2)
        );
        // Not in the file: the nearest ancestor that is.
        assert_eq!(line_of(&routes.index(0).key("container")), Some(4));
        assert_eq!(line_of(&KeyPath::top("assets")), None);
    }

    #[test]
    fn finds_the_deepest_key_at_an_offset() {
        let doc = doc();
        let at = |needle: &str, below: KeyPath| below.deepest_at(&doc, TEXT.find(needle).unwrap());
        let server = KeyPath::top("server");
        assert_eq!(
            at("5 }", server.clone()).to_string(),
            "server.timeouts.idle"
        );
        assert_eq!(
            at("\"y\"", KeyPath::top("routes").index(1)).to_string(),
            "routes[1].hosts[1]"
        );
        assert_eq!(at("[server]", server).to_string(), "server");
    }
}
