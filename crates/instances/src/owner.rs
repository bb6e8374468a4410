//! Who may run a key: in cluster mode (several valet replicas on one store) every (class, key)
//! has one owner replica at a time. The instance layer asks a [`Coordinator`] before it starts
//! an instance; a key another replica owns gets a record whose ready address is that replica's
//! peer listener ([`PeerRoute`]), so the warm path of a forwarded key is the warm path of a
//! local one: a map read and an `ArcSwap` load, no store round trip.

use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
// tokio's clock, as the rest of the instance layer: the state-machine tests pause it.
use tokio::time::Instant;
use valet_core::InstanceId;

/// The moment a held lease is fenced, moved on by each renewal; read without a lock. Stored as
/// signed nanoseconds from one process-wide reference instant, so any instant, earlier or
/// later than the reference, keeps its order (tests on paused time run runtimes whose clocks
/// start at different moments).
#[derive(Debug)]
pub struct FenceAt(AtomicI64);

fn reference() -> Instant {
    static REFERENCE: OnceLock<Instant> = OnceLock::new();
    *REFERENCE.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> i64 {
    let reference = reference();
    if at >= reference {
        (at - reference).as_nanos().min(i64::MAX as u128) as i64
    } else {
        -((reference - at).as_nanos().min(i64::MAX as u128) as i64)
    }
}

impl FenceAt {
    pub fn new(at: Instant) -> Self {
        Self(AtomicI64::new(nanos(at)))
    }

    /// Moves the deadline (a renewal), or brings it to now (a lost lease).
    pub fn set(&self, at: Instant) {
        self.0.store(nanos(at), Ordering::Release);
    }

    /// Whether the lease must no longer be served here.
    pub fn due(&self) -> bool {
        nanos(Instant::now()) >= self.0.load(Ordering::Acquire)
    }
}

/// The answer to "may this replica run this key?".
#[derive(Debug, Clone)]
pub enum Claim {
    /// This replica owns the key under fencing number `epoch` until it releases it or stops
    /// renewing.
    Mine { epoch: u64 },
    /// Another replica owns it: requests go to its peer listener.
    Theirs(Arc<PeerRoute>),
}

/// How requests for a key owned by another replica reach it.
#[derive(Debug)]
pub struct PeerRoute {
    /// The owner's node name.
    pub node: Arc<str>,
    /// The owner's fencing number for the key when it was looked up.
    pub epoch: u64,
    /// The owner's peer listener (`[cluster] advertise`).
    pub endpoint: SocketAddr,
    /// The value of the peer token field every forwarded request carries (made from the
    /// cluster secret; the peer listener refuses requests without it).
    pub token: Arc<str>,
    /// The class and key as the owner's peer listener reads them ([`encode_target`]).
    pub target: String,
    /// Cancelled once the key's lease is known to have left this owner (a change notified by
    /// the store, or found by the sweep). A bodiless idempotent request still waiting on this
    /// route for its answer then goes to the new owner: an owner cut off by a partition
    /// neither answers nor closes its connections, and the request would otherwise wait for
    /// `timeouts.first_byte` although the key is served elsewhere.
    pub moved: tokio_util::sync::CancellationToken,
}

/// Why a claim could not be decided (the store is unreachable): requests get 503 with
/// `Retry-After`, nothing starts.
#[derive(Debug, Clone)]
pub struct ClaimError(pub String);

pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = Result<Claim, ClaimError>> + Send + 'a>>;

/// The cluster's side of the instance layer (see `valet-cluster`). Single-replica valet has
/// none, and every key is its own.
pub trait Coordinator: Send + Sync + 'static {
    /// This replica's node name (`[cluster] node`), for listings and the instance's env.
    fn node(&self) -> &str;
    /// Takes the key's lease when nobody holds it (or this replica does), or says who does.
    /// May wait, bounded, for a lease whose owner stopped answering to expire.
    fn claim<'a>(&'a self, id: &'a InstanceId) -> ClaimFuture<'a>;
    /// Gives up the lease taken under `epoch` (the instance stopped); a no-op when it was
    /// lost or taken again since.
    fn release(&self, id: &InstanceId, epoch: u64);
    /// A forwarded request could not reach `node`'s peer listener: its leases are waited out
    /// rather than trusted when they are next looked up.
    fn unreachable(&self, node: &str);
    /// The epoch under which this replica holds the key now, if it does.
    fn epoch_of(&self, id: &InstanceId) -> Option<u64>;
    /// When the key's lease, held here, must stop being served: read by every request for a
    /// local instance, so that a fence whose timer runs late (a starved machine) still comes
    /// on time. `None`: no such deadline (a coordinator that fences only by command).
    fn fence_at(&self, _id: &InstanceId) -> Option<Arc<FenceAt>> {
        None
    }
    /// How long a fenced instance may take to stop before it is killed: what is left of its
    /// lease when the fence comes, less a margin.
    fn fence_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    /// What the store says of the cluster now (for `/v1/cluster`): a store round trip.
    fn view(&self) -> Pin<Box<dyn Future<Output = Result<ClusterView, ClaimError>> + Send + '_>>;
    /// Lease counters since start, for `/metrics`.
    fn counters(&self) -> ClusterCounters;
}

/// The cluster as the store has it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// This replica's node name.
    pub node: String,
    pub nodes: Vec<NodeView>,
    /// Leases held now (expired and released ones left out).
    pub leases: Vec<LeaseView>,
    pub counters: ClusterCounters,
}

/// One replica that joined the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    /// Its peer listener.
    pub endpoint: String,
    /// Whether it renewed its registration within `lease_ttl`.
    pub alive: bool,
}

/// One held lease.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub class: String,
    pub key: String,
    pub owner: String,
    pub epoch: u64,
    pub endpoint: String,
    /// Time left before it expires unless renewed.
    pub expires_in_ms: i64,
}

/// Counts of lease events on this replica since it started.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClusterCounters {
    /// Leases this replica took (first claims, takeovers and claims again after a release).
    pub taken: u64,
    /// Leases this replica lost: not renewed in time (fenced) or found taken.
    pub lost: u64,
    /// Renewal rounds that failed or came later than half a `lease_ttl` after the last good one.
    pub renewals_late: u64,
    /// Renewal rounds that succeeded.
    pub renewals: u64,
    /// Leases held now.
    pub held: u64,
}

/// The part of a forwarded request's instance field that names the key: `<class> <key>`, the
/// key percent-encoded (a key may hold any character but controls, spaces included; a field
/// value may not, and the parts are split at spaces). The whole field is
/// `<epoch> <port index> <class> <key>`.
pub fn encode_target(id: &InstanceId) -> String {
    let mut out = format!("{} ", id.class());
    for b in id.key().bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A forwarded request's instance field, read back: (epoch, port index, class, key). `None`
/// for anything else.
pub fn decode_target(value: &[u8]) -> Option<(u64, usize, String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let epoch = parts.next()?.parse().ok()?;
    let port = parts.next()?.parse().ok()?;
    let class = parts.next()?.to_string();
    let encoded = parts.next()?.as_bytes();
    if parts.next().is_some() {
        return None;
    }
    let mut key = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let hex = std::str::from_utf8(encoded.get(i + 1..i + 3)?).ok()?;
            key.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            key.push(encoded[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(key).ok()?;
    // A replica's key too (`scale`): each replica is a key of its own in the leases.
    if class.is_empty() || valet_core::validate_instance_key(&key).is_err() {
        return None;
    }
    Some((epoch, port, class, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_survives_the_field_whatever_the_key_holds() {
        for key in ["user-1", "a b", "ключ", "50%/x?y#z", "x\u{a0}y"] {
            let id = InstanceId::new("Room", key);
            let value = format!("7 1 {}", encode_target(&id));
            assert!(
                value.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{value}"
            );
            assert_eq!(
                decode_target(value.as_bytes()),
                Some((7, 1, "Room".into(), key.into()))
            );
        }
    }

    #[test]
    fn a_malformed_target_is_refused() {
        for bad in [
            "",
            "7",
            "x 0 Room k",
            "7 0 Room",
            "7 0 Room %G1",
            "7 0 Room %0A",
            "7 0  k",
            "7 0 Room k extra",
            "7 x Room k",
        ] {
            assert_eq!(decode_target(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
