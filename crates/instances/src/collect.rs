//! Forgetting keys that sleep long. Keys come from clients, so a stream of new keys would
//! otherwise grow the table (a record each, ~1.5 KB) and the disk (a log file and a data
//! folder each) for as long as valet runs.
//!
//! A key is forgotten once its instance has no task (it sleeps, or crashed and gave up),
//! nothing is in flight or waiting for it, and no request came for `server.forget_after`.
//! Its log file goes with it, and its data folder when empty; a data folder holding anything
//! is the user's persistent data and stays until `valet destroy` (as do Docker volumes).
//!
//! The record is removed under its `control` lock, the same lock a request takes to start the
//! instance ([`crate::Instances`]'s `wake`), and the files go first: a request that found the
//! record just before sees it forgotten and takes the key's new record instead, so a key never
//! gets two instances, and a new instance's files are never deleted under it.

use crate::instance::{now_ms, Instance};
use crate::table::Instances;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use valet_core::Shutdown;

/// Runs [`forget_sleeping`] every `after / 2` (within 100 ms and 60 s) until shutdown.
pub(crate) async fn sweep(instances: Instances, after: Duration, mut shutdown: Shutdown) {
    let every = (after / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
        let forgotten = forget_sleeping(&instances, after);
        if forgotten > 0 {
            tracing::info!(forgotten, after = ?after, "forgot keys asleep for longer than forget_after");
        }
    }
}

/// Forgets every key idle for longer than `after` whose instance does not run; returns how
/// many.
pub fn forget_sleeping(instances: &Instances, after: Duration) -> usize {
    let Some(cutoff) = now_ms().checked_sub(after.as_millis() as u64) else {
        return 0; // valet has not run that long
    };
    let mut forgotten = 0;
    for class in instances
        .classes()
        .iter()
        .chain(&instances.project_classes())
    {
        let map = class.instances.pin();
        let idle: Vec<Arc<Instance>> = map
            .values()
            .filter(|inst| inst.last_active_ms() < cutoff && !inst.has_task())
            .cloned()
            .collect();
        for inst in idle {
            let control = inst.control.lock().unwrap_or_else(|e| e.into_inner());
            let busy = control.is_some()
                || inst.active.load(Ordering::SeqCst) > 0
                || inst.waiting.load(Ordering::Acquire) > 0
                || inst.last_active_ms() >= cutoff;
            if busy {
                continue;
            }
            remove_files(&inst);
            if map
                .remove_if(inst.id.key(), |_, v| Arc::ptr_eq(v, &inst))
                .is_ok_and(|removed| removed.is_some())
            {
                forgotten += 1;
            }
        }
    }
    forgotten
}

/// Forgets a record that a refused request made and nothing else used: never started, no task,
/// nothing in flight or waiting. Under the `control` lock, as in [`forget_sleeping`], so a
/// request starting it meanwhile keeps it. A key that ran before keeps its record (and data).
pub(crate) fn forget_unstarted(inst: &Arc<Instance>) {
    let control = inst.control.lock().unwrap_or_else(|e| e.into_inner());
    let untouched = {
        let status = inst.status.borrow();
        status.state == valet_core::InstanceState::Stopped
            && status.last_start_ms.is_none()
            && status.failures == 0
    };
    if control.is_some()
        || !untouched
        || inst.active.load(Ordering::SeqCst) > 0
        || inst.waiting.load(Ordering::Acquire) > 0
    {
        return;
    }
    let _ = inst
        .class
        .instances
        .pin()
        .remove_if(inst.id.key(), |_, v| Arc::ptr_eq(v, inst));
    drop(control);
}

/// Whether `inst` is still the record the table holds for its key (not forgotten).
pub(crate) fn is_current(inst: &Arc<Instance>) -> bool {
    inst.class
        .instances
        .pin()
        .get(inst.id.key())
        .is_some_and(|current| Arc::ptr_eq(current, inst))
}

/// The key's log file, and its data folder if nothing was written there.
fn remove_files(inst: &Instance) {
    let slug = inst.id.slug();
    let log = valet_runtime::logfile::path(&inst.class.log_root, &inst.id);
    if let Err(e) = valet_runtime::logfile::remove(&log) {
        tracing::warn!(instance = %inst.id, error = %e, "cannot remove a forgotten key's log file");
    }
    // Fails (and keeps it) unless empty: a folder holding data is the user's.
    let _ = std::fs::remove_dir(inst.class.data_root.join(&slug));
}
