//! One shutdown signal for the whole process: every long-lived task holds a [`Shutdown`] and
//! stops accepting work when it fires.

use tokio::sync::watch;

/// A cheap-to-clone handle that tells whether shutdown has begun and lets a task wait for it.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that starts the shutdown. Dropping it also counts as a shutdown.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped, which is a shutdown too.
        let _ = self.rx.wait_for(|down| *down).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}
