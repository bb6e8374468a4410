//! Keeps the gateway workers' shares of open connections level. The kernel spreads new
//! connections over the workers' SO_REUSEPORT listeners by a hash of their addresses, which
//! leaves one worker with a third more keep-alive connections than the other as often as not
//! (measured: 37 against 27 of wrk's 64): that worker's clients then wait longer on every
//! request, for as long as their connections live. So a worker that accepts a connection while
//! it serves two or more than the least busy worker passes it to that one, once, before a byte
//! is read: the connection changes epoll instances and is then served there as if accepted
//! there. Short-lived connections seldom differ by two and stay where they land.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A connection passed to another worker, with its client's address.
pub(crate) type Arrival = (std::net::TcpStream, SocketAddr);

/// How much more a worker may serve than the least busy one before it passes a connection on.
const SLACK: usize = 2;

pub(crate) struct Balance {
    open: Box<[AtomicUsize]>,
    /// Workers that stopped (or never started): never chosen.
    gone: Box<[AtomicBool]>,
    inboxes: Box<[mpsc::UnboundedSender<Arrival>]>,
}

/// One open connection, counted for its worker until dropped.
pub(crate) struct Open {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.balance.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balance {
    /// The balance of `workers` workers, and each worker's inbox of connections passed to it.
    pub(crate) fn new(workers: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Arrival>>) {
        let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let open = (0..inboxes.len()).map(|_| AtomicUsize::new(0)).collect();
        let gone = (0..inboxes.len()).map(|_| AtomicBool::new(false)).collect();
        let balance = Self {
            open,
            gone,
            inboxes: inboxes.into(),
        };
        (Arc::new(balance), receivers)
    }

    /// The worker that should serve a connection `me` just accepted: `me`, unless another
    /// serves at least [`SLACK`] fewer.
    pub(crate) fn place(&self, me: usize) -> usize {
        let mine = self.open[me].load(Ordering::Relaxed);
        let (least, fewest) = self
            .open
            .iter()
            .zip(&self.gone)
            .enumerate()
            .filter(|(_, (_, gone))| !gone.load(Ordering::Relaxed))
            .map(|(i, (n, _))| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        if fewest + SLACK <= mine {
            least
        } else {
            me
        }
    }

    /// Counts a connection as `worker`'s until the returned guard is dropped.
    pub(crate) fn open(self: &Arc<Self>, worker: usize) -> Open {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        Open {
            balance: self.clone(),
            worker,
        }
    }

    /// Passes an accepted connection to worker `to`, counted as its at once (so that the next
    /// placement, on any thread, sees it). Gives the connection back if `to` has stopped; a
    /// connection that cannot leave or rejoin an epoll instance (out of memory) is closed.
    pub(crate) fn pass(
        &self,
        to: usize,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> Result<(), tokio::net::TcpStream> {
        // Leaves this worker's epoll; the receiving worker registers it with its own.
        let Ok(stream) = stream.into_std() else {
            return Ok(());
        };
        self.open[to].fetch_add(1, Ordering::Relaxed);
        let Err(mpsc::error::SendError((stream, _))) = self.inboxes[to].send((stream, peer)) else {
            return Ok(());
        };
        self.open[to].fetch_sub(1, Ordering::Relaxed);
        self.leave(to);
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => Err(stream),
            Err(_) => Ok(()),
        }
    }

    /// `worker` takes no more connections from the others (it stops, or its inbox is gone).
    pub(crate) fn leave(&self, worker: usize) {
        self.gone[worker].store(true, Ordering::Relaxed);
    }

    /// Counts a connection passed to `worker` (already added by [`Self::pass`]) as served
    /// there until the guard is dropped.
    pub(crate) fn arrived(self: &Arc<Self>, worker: usize) -> Open {
        Open {
            balance: self.clone(),
            worker,
        }
    }

    /// Each worker's open connections.
    #[cfg(test)]
    fn counts(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn connections_that_all_land_on_one_worker_are_spread_within_the_slack() {
        let (balance, _inboxes) = Balance::new(2);
        let mut held = Vec::new();
        // The worst a hash can do: every connection accepted by worker 0.
        for _ in 0..64 {
            let to = balance.place(0);
            held.push(balance.open(to));
        }
        let counts = balance.counts();
        assert!(counts[0].abs_diff(counts[1]) <= SLACK, "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 64);
        // Closed connections are counted off; an even spread stays where it lands.
        held.truncate(10);
        let counts = balance.counts();
        assert_eq!(counts.iter().sum::<usize>(), 10);
        let before = balance.counts();
        let to = balance.place(1);
        if before[1] < before[0] + SLACK {
            assert_eq!(to, 1, "{before:?}");
        }
    }

    #[test]
    fn a_passed_connection_is_served_by_the_other_workers_runtime() {
        let (balance, mut inboxes) = Balance::new(2);
        let mut second = inboxes.pop().unwrap();
        // Worker 1: its own thread and current-thread runtime, echoing what it reads.
        let receiver = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (stream, _) = second.recv().await.unwrap();
                let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).await.unwrap();
                stream.write_all(&buf).await.unwrap();
            });
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, peer) = listener.accept().await.unwrap();
            assert!(balance.pass(1, accepted, peer).is_ok());
            assert_eq!(balance.counts(), vec![0, 1]);
            client.write_all(b"hello").await.unwrap();
            let mut echoed = [0u8; 5];
            client.read_exact(&mut echoed).await.unwrap();
            assert_eq!(&echoed, b"hello");
        });
        receiver.join().unwrap();
        // The receiving worker is gone: a connection passed to it comes back, uncounted.
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, peer) = listener.accept().await.unwrap();
            assert!(balance.pass(1, accepted, peer).is_err());
            assert_eq!(balance.counts(), vec![0, 1]);
        });
        // And it is never chosen again, however busy the others are.
        let busy: Vec<Open> = (0..5).map(|_| balance.open(0)).collect();
        assert_eq!(balance.place(0), 0, "{:?}", balance.counts());
        drop(busy);
    }
}
