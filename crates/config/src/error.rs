//! Config errors: every problem of one file, each with its line, column and key, so a user fixes
//! them all in one pass instead of one per restart.

use std::fmt;
use std::path::PathBuf;

/// One problem in valet.toml.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.display_without_file())]
pub struct ConfigError {
    /// 1-based line; 0 when the problem concerns the whole file (it cannot be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 together with `line`.
    pub column: usize,
    /// Where the value lives, e.g. `containers[0].sleep_after`; empty for syntax errors.
    pub key: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl ConfigError {
    fn display_without_file(&self) -> String {
        let mut out = String::new();
        if self.line > 0 {
            out.push_str(&format!("{}:{}: ", self.line, self.column));
        }
        if !self.key.is_empty() {
            out.push_str(&self.key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// Every problem found in one config file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file as the user named it.
    pub file: PathBuf,
    /// At least one problem, sorted by line then column.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps problems of `file`, sorting them by position (a stable sort, so problems at the
    /// same spot keep the order the checks found them in).
    pub fn new(file: impl Into<PathBuf>, mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        Self {
            file: file.into(),
            errors,
        }
    }

    /// A file that could not be read at all.
    pub fn unreadable(file: impl Into<PathBuf>, reason: impl fmt::Display) -> Self {
        let error = ConfigError {
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the config file: {reason}"),
        };
        Self::new(file, vec![error])
    }
}

/// One `file:line:column: key: message` per line, in the format editors and CI annotate.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, error) in self.errors.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            // A whole-file problem has no position: `file: message`, not `file:message`.
            let gap = if error.line == 0 { " " } else { "" };
            write!(f, "{}:{gap}{error}", self.file.display())?;
        }
        Ok(())
    }
}

/// What `valet check` prints: every problem, then how many there were.
pub fn render_report(errors: &ConfigErrors) -> String {
    let count = errors.errors.len();
    let noun = if count == 1 { "problem" } else { "problems" };
    format!("{errors}\n{count} {noun}\n")
}

/// 1-based line and column (in characters) of a byte offset into `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, key: &str, message: &str) -> ConfigError {
        ConfigError {
            line,
            column: 3,
            key: key.into(),
            message: message.into(),
        }
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.find('=').unwrap()), (1, 3));
        assert_eq!(line_column(text, text.rfind('=').unwrap()), (2, 4));
        assert_eq!(line_column(text, 10_000), (3, 1));
    }

    #[test]
    fn display_prints_one_sorted_line_per_problem() {
        let errors = ConfigErrors::new(
            "valet.toml",
            vec![
                error(9, "routes[0].container", "unknown class"),
                error(2, "", "bad syntax"),
            ],
        );
        assert_eq!(
            errors.to_string(),
            "valet.toml:2:3: bad syntax\nvalet.toml:9:3: routes[0].container: unknown class"
        );
        assert_eq!(render_report(&errors).lines().last(), Some("2 problems"));
    }

    #[test]
    fn an_unreadable_file_has_no_position() {
        let errors = ConfigErrors::unreadable("nope.toml", "No such file or directory");
        assert_eq!(
            render_report(&errors),
            "nope.toml: cannot read the config file: No such file or directory\n1 problem\n"
        );
    }
}
