//! Pull bars. `valet start CLASS KEY` while the instance's image is being pulled: the start
//! request waits (a pull is part of a cold start), and meanwhile a bar of the pull's layers is
//! drawn on stderr from the milestones the Docker driver writes into the instance's log.
//! `valet deploy` while a base image is pulled: valet streams the same milestones as the
//! deploy's log lines, and [`PullLines`] draws them as one bar. Only on a terminal: elsewhere
//! the lines are printed as they come (and `valet logs` has them).

use crate::admin_client::AdminClient;
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

/// How often the instance's log is read while the start waits.
const POLL: Duration = Duration::from_millis(300);
/// Lines of the log read each time: a pull writes a few per layer.
const TAIL: usize = 200;
const BAR_WIDTH: usize = 24;

/// The pull in progress at the end of an instance's log, if one is.
#[derive(Debug, PartialEq, Eq)]
pub struct Pull {
    pub image: String,
    /// Layers the engine named.
    pub layers: usize,
    /// Of those, the ones on the engine now (pulled, or there already).
    pub done: usize,
}

impl Pull {
    /// Reads the lines after the last `pulling image` one; `None` when there is none or the
    /// pull ended (`pulled ...`, or an error line).
    pub fn of(lines: &[String]) -> Option<Self> {
        let start = lines
            .iter()
            .rposition(|l| l.starts_with("pulling image "))?;
        let image = lines[start]
            .strip_prefix("pulling image ")?
            .split(" from ")
            .next()?
            .to_string();
        let mut layers = BTreeSet::new();
        let mut done = BTreeSet::new();
        for line in &lines[start + 1..] {
            if line.starts_with("pulled ") || line.starts_with("cannot pull") {
                return None;
            }
            let Some((layer, status)) = line
                .strip_prefix("layer ")
                .and_then(|rest| rest.split_once(": "))
            else {
                continue;
            };
            layers.insert(layer);
            if status.starts_with("Pull complete") || status.starts_with("Already exists") {
                done.insert(layer);
            }
        }
        Some(Self {
            image,
            layers: layers.len(),
            done: done.len(),
        })
    }

    /// `pulling IMAGE [#########---------------] 3/8 layers`.
    pub fn bar(&self) -> String {
        let filled = (self.done * BAR_WIDTH)
            .checked_div(self.layers)
            .unwrap_or(0)
            .min(BAR_WIDTH);
        format!(
            "pulling {} [{}{}] {}/{} layers",
            self.image,
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            self.done,
            self.layers
        )
    }
}

/// `valet deploy`'s log lines on a terminal: those of a pull (from its `pulling image` line to
/// its `pulled` or `cannot pull` line) become one bar, redrawn in place, and the last of them
/// is printed in its place; every other line is printed as it is.
#[derive(Default)]
pub struct PullLines {
    /// The pull's lines so far, while one runs.
    pull: Option<Vec<String>>,
}

/// What one log line of a deploy shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Show {
    /// A line of its own.
    Line(String),
    /// The bar, over the one drawn before.
    Bar(String),
    /// The pull is over: the bar is cleared and this line printed where it was.
    Done(String),
}

impl PullLines {
    pub fn feed(&mut self, line: &str) -> Show {
        if line.starts_with("pulling image ") {
            self.pull = Some(Vec::new());
        }
        let Some(lines) = &mut self.pull else {
            return Show::Line(line.to_string());
        };
        lines.push(line.to_string());
        match Pull::of(lines) {
            Some(pull) => Show::Bar(pull.bar()),
            None => {
                self.pull = None;
                Show::Done(line.to_string())
            }
        }
    }

    /// Whether a bar is on the line now (to be cleared before anything else is written).
    pub fn drawing(&self) -> bool {
        self.pull.is_some()
    }
}

impl Show {
    /// What goes to the terminal, indented as the deploy's log lines are.
    pub fn render(&self) -> String {
        match self {
            Self::Line(line) => format!("    {line}\n"),
            Self::Bar(bar) => format!("{CLEAR}    {bar}"),
            Self::Done(line) => format!("{CLEAR}    {line}\n"),
        }
    }
}

/// Back to the start of the line, and clear it.
pub const CLEAR: &str = "\r\x1b[2K";

/// Draws the bar of the instance's pull until the caller drops this future (its start
/// request answered). Read errors are ignored: the bar is a courtesy, the start is what counts.
pub async fn draw(client: &AdminClient, instance_path: &str) {
    let path = format!("{instance_path}/logs?tail={TAIL}");
    let mut drawn = false;
    loop {
        tokio::time::sleep(POLL).await;
        let Ok(answer) = client.get(&path).await else {
            continue;
        };
        let lines: Vec<String> = answer["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        let mut err = std::io::stderr().lock();
        match Pull::of(&lines) {
            Some(pull) => {
                // \r and clear-to-end: one line redrawn in place.
                let _ = write!(err, "{CLEAR}{}", pull.bar());
                drawn = true;
            }
            None if drawn => {
                let _ = write!(err, "{CLEAR}");
                drawn = false;
            }
            None => {}
        }
        let _ = err.flush();
    }
}

/// Clears what [`draw`] may have left on the line.
pub fn clear() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{CLEAR}");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn the_last_pull_of_the_log_is_read_until_it_ends() {
        let log = lines(
            "old output\n\
             pulling image r:1/app:v2 from r:1\n\
             Pulling from app\n\
             layer 0123456789ab: Pulling fs layer\n\
             layer 111111111111: Already exists\n\
             layer 0123456789ab: Downloading (2.5 MB)\n\
             layer 222222222222: Pulling fs layer",
        );
        let pull = Pull::of(&log).unwrap();
        assert_eq!(
            pull,
            Pull {
                image: "r:1/app:v2".into(),
                layers: 3,
                done: 1
            }
        );
        assert_eq!(
            pull.bar(),
            "pulling r:1/app:v2 [########----------------] 1/3 layers"
        );
        let mut ended = log.clone();
        ended.push("pulled r:1/app:v2: 3 layers, 2.5 MB in 1.0 s".into());
        assert_eq!(Pull::of(&ended), None);
        assert_eq!(Pull::of(&lines("no pull here")), None);
        let empty = Pull {
            image: "x".into(),
            layers: 0,
            done: 0,
        };
        assert!(empty.bar().contains("[------------------------] 0/0"));
    }

    #[test]
    fn a_deploys_pull_is_one_bar_redrawn_in_place_between_its_lines() {
        let mut lines = PullLines::default();
        let shown: Vec<Show> = [
            "python base image",
            "pulling image r:1/python:3.11 from r:1",
            "Pulling from python",
            "layer 0123456789ab: Pulling fs layer",
            "layer 111111111111: Pulling fs layer",
            "layer 0123456789ab: Downloading (2.5 MB)",
            "layer 0123456789ab: Pull complete (2.5 MB)",
            "layer 111111111111: Already exists",
            "pulled r:1/python:3.11: 2 layers, 2.5 MB in 1.0 s",
            "installing requirements",
        ]
        .iter()
        .map(|line| lines.feed(line))
        .collect();
        let bar = |done: usize, of: usize| {
            let filled = (done * BAR_WIDTH).checked_div(of).unwrap_or(0);
            Show::Bar(format!(
                "pulling r:1/python:3.11 [{}{}] {done}/{of} layers",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled)
            ))
        };
        assert_eq!(
            shown,
            [
                Show::Line("python base image".into()),
                bar(0, 0),
                bar(0, 0),
                bar(0, 1),
                bar(0, 2),
                bar(0, 2),
                bar(1, 2),
                bar(2, 2),
                Show::Done("pulled r:1/python:3.11: 2 layers, 2.5 MB in 1.0 s".into()),
                Show::Line("installing requirements".into()),
            ]
        );
        assert!(!lines.drawing());
        let terminal: String = shown.iter().map(Show::render).collect();
        assert!(terminal.starts_with("    python base image\n\r\x1b[2K    pulling r:1/python"));
        assert!(terminal.ends_with(
            "\r\x1b[2K    pulled r:1/python:3.11: 2 layers, 2.5 MB in 1.0 s\n    installing requirements\n"
        ));
        // Only the bar is ever redrawn: one line per line kept, none per milestone.
        assert_eq!(terminal.matches('\n').count(), 3);
    }

    #[test]
    fn a_failed_pull_ends_its_bar_with_the_reason() {
        let mut lines = PullLines::default();
        lines.feed("pulling image r:1/node:20 from r:1");
        assert!(lines.drawing());
        let failed = "cannot pull image `r:1/node:20` from r:1: unauthorized";
        assert_eq!(lines.feed(failed), Show::Done(failed.into()));
        assert!(!lines.drawing());
        assert_eq!(
            Show::Done(failed.into()).render(),
            format!("\r\x1b[2K    {failed}\n")
        );
    }
}
