//! What a deploy reports while it runs: its stages and its installers' output, line by line,
//! for `valet deploy` to show. A deploy nobody watches reports into nothing.

use tokio::sync::mpsc::UnboundedSender;

/// One step of a running deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stage begins: `unpacking`, `installing`, `starting`.
    Stage(&'static str),
    /// One line of an installer's output.
    Line(String),
}

/// Where a deploy reports; cheap to clone.
#[derive(Clone, Default)]
pub struct Progress {
    to: Option<UnboundedSender<Event>>,
}

impl Progress {
    /// Reports into `to`.
    pub fn to(to: UnboundedSender<Event>) -> Self {
        Self { to: Some(to) }
    }

    /// Reports nowhere.
    pub fn none() -> Self {
        Self::default()
    }

    /// A stage begins.
    pub fn stage(&self, name: &'static str) {
        self.send(Event::Stage(name));
    }

    /// An installer printed a line.
    pub fn line(&self, line: impl Into<String>) {
        self.send(Event::Line(line.into()));
    }

    fn send(&self, event: Event) {
        if let Some(to) = &self.to {
            // The watcher may have left; the deploy goes on regardless.
            let _ = to.send(event);
        }
    }
}
