//! Tables for people: aligned columns, a header, and colour only when stdout is a terminal
//! (and `NO_COLOR` is unset), so pipes and scripts get plain text.

use std::io::IsTerminal;

pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

/// Text plus an optional colour (an ANSI SGR code such as "32").
pub struct Cell {
    text: String,
    color: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_string(),
            color: None,
        }
    }
}

impl Cell {
    pub fn colored(text: impl Into<String>, color: Option<&'static str>) -> Self {
        Self {
            text: text.into(),
            color,
        }
    }
}

/// Whether to colour what goes to stdout.
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// The colour of an instance state: green ready, yellow on its way, red crashed, dim stopped.
pub fn state_color(state: &str) -> Option<&'static str> {
    match state {
        "ready" => Some("32"),
        "starting" | "stopping" | "backoff" => Some("33"),
        "crashed" => Some("31"),
        "stopped" => Some("2"),
        "forwarded" => Some("36"),
        _ => None,
    }
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn render(&self, color: bool) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::colored(*h, Some("1")))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                let pad = widths[i] - cell.text.chars().count();
                match cell.color.filter(|_| color) {
                    Some(code) => line.push_str(&format!("\x1b[{code}m{}\x1b[0m", cell.text)),
                    None => line.push_str(&cell.text),
                }
                if i + 1 < columns {
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_plain_output_has_no_escapes() {
        let mut t = Table::new(vec!["CLASS", "STATE"]);
        t.row(vec![
            "Api".into(),
            Cell::colored("ready", state_color("ready")),
        ]);
        t.row(vec!["LongerName".into(), "stopped".into()]);
        let text = t.render(false);
        assert_eq!(
            text,
            "CLASS       STATE\nApi         ready\nLongerName  stopped\n"
        );
        assert!(t.render(true).contains("\x1b[32mready\x1b[0m"));
    }
}
