//! `valet start CLASS KEY` while the instance's image is being pulled: the start request waits
//! (a pull is part of a cold start), and meanwhile a bar of the pull's layers is drawn on
//! stderr from the milestones the Docker driver writes into the instance's log. Only on a
//! terminal: elsewhere the log (`valet logs`) has the same lines.

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
                let _ = write!(err, "\r\x1b[2K{}", pull.bar());
                drawn = true;
            }
            None if drawn => {
                let _ = write!(err, "\r\x1b[2K");
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
    let _ = write!(err, "\r\x1b[2K");
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
}
