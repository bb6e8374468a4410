//! Many keys: requests to `count` distinct keys, `concurrency` at a time, each worker on its
//! own keep-alive connection. Used to make 10,000 keys known and to start many instances.

use crate::burst::tally;
use crate::http::{BoxError, Conn};
use crate::stats::ResultLine;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Keys {
    pub addr: SocketAddr,
    /// Request path with `{key}` where the key goes.
    pub path: String,
    pub key_prefix: String,
    pub count: usize,
    pub concurrency: usize,
}

impl Keys {
    pub async fn run(self) -> Result<(), BoxError> {
        let this = Arc::new(self);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..this.concurrency.max(1))
            .map(|_| tokio::spawn(worker(this.clone(), next.clone())))
            .collect();
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for w in workers {
            for (k, v) in w.await? {
                *statuses.entry(k).or_default() += v;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        ResultLine::new()
            .int("count", this.count)
            .int("statuses", tally(&statuses))
            .num("seconds", seconds)
            .num("per_s", this.count as f64 / seconds)
            .print();
        Ok(())
    }
}

async fn worker(keys: Arc<Keys>, next: Arc<AtomicUsize>) -> BTreeMap<String, usize> {
    let mut statuses = BTreeMap::new();
    let mut conn: Option<Conn> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= keys.count {
            return statuses;
        }
        let path = keys
            .path
            .replace("{key}", &format!("{}{i}", keys.key_prefix));
        let outcome = match request(&mut conn, keys.addr, &path).await {
            Ok(code) => code.to_string(),
            Err(_) => {
                // A broken connection is reopened for the next key, not retried: a retry would
                // hide errors the table should show.
                conn = None;
                "error".to_string()
            }
        };
        *statuses.entry(outcome).or_default() += 1;
    }
}

async fn request(conn: &mut Option<Conn>, addr: SocketAddr, path: &str) -> Result<u16, BoxError> {
    if conn.is_none() {
        *conn = Some(Conn::open(addr).await?);
    }
    let c = conn.as_mut().expect("opened above");
    Ok(c.get(path).await?.0.as_u16())
}
