//! Who listens on an instance's port.
//!
//! The process driver picks a free loopback port and hands it to the instance to bind. Until
//! the instance binds it, any other process on the machine may bind it first, another tenant's
//! included; it would then be probed "ready" and sent the victim's requests. So every port of a
//! process instance is registered here with the instance's process group, and every connection
//! valet makes to such a port (readiness and liveness probes, the proxy's new pooled
//! connections, upgrades) is confirmed after `connect` and before a byte is sent: each socket
//! listening where `127.0.0.1:port` can land must be held open by a process of the instance's
//! own group (the socket's inode among that group's file descriptors). A port held by anyone
//! else is a conflict, never "ready", and no request is written to it.
//!
//! Cost: listening sockets come first in `/proc/net/tcp{,6}`, so a confirmation reads only
//! those lines; an inode seen once as the group's own is remembered, so the walk over
//! `/proc/<pid>/fd` happens once per listening socket, not per connection. Pooled connections
//! are confirmed once, when made.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

/// `st` of a listening socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";
/// How long the port of an instance that is gone stays refused: longer than the port is held
/// back from other instances (`ports::HOLD`), so a port is never unguarded while a stale
/// endpoint may still be dialed.
const TOMBSTONE: Duration = Duration::from_secs(600);

/// A port's owner: a live process group, or an instance that has ended.
struct Owner {
    /// `None` once the instance ended: its port must not be dialed again.
    pgid: Option<i32>,
    /// The instance's own user, when it has one: a listener of any other user is foreign
    /// whatever group it claims to be in.
    uid: Option<u32>,
    /// Listening sockets already found among the group's descriptors.
    known: Mutex<Vec<u64>>,
    since: Instant,
}

static OWNERS: LazyLock<RwLock<HashMap<u16, Arc<Owner>>>> = LazyLock::new(Default::default);

/// A connection to an instance's port reached something that is not the instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortConflict {
    #[error("port {port} is held by another program, not by the instance's process group{}", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Foreign { port: u16, holder: Option<i32> },
    #[error("nothing of the instance's process group listens on port {port}")]
    NotListening { port: u16 },
    #[error("the instance that had port {port} has ended")]
    Ended { port: u16 },
}

impl From<PortConflict> for io::Error {
    fn from(e: PortConflict) -> Self {
        io::Error::new(io::ErrorKind::PermissionDenied, e)
    }
}

/// Registers `ports` as belonging to process group `pgid`, run as `uid` when it has a user of
/// its own. A port's earlier owner is replaced.
pub(super) fn register(pgid: i32, uid: Option<u32>, ports: &[u16]) {
    let mut owners = OWNERS.write().unwrap_or_else(|e| e.into_inner());
    owners.retain(|_, o| o.pgid.is_some() || o.since.elapsed() < TOMBSTONE);
    for port in ports {
        let owner = Owner {
            pgid: Some(pgid),
            uid,
            known: Mutex::new(Vec::new()),
            since: Instant::now(),
        };
        owners.insert(*port, Arc::new(owner));
    }
}

/// The instance of `pgid` ended: its ports are refused until another instance registers them.
pub(super) fn retire(pgid: i32, ports: &[u16]) {
    let mut owners = OWNERS.write().unwrap_or_else(|e| e.into_inner());
    for port in ports {
        if owners.get(port).is_some_and(|o| o.pgid == Some(pgid)) {
            let ended = Owner {
                pgid: None,
                uid: None,
                known: Mutex::new(Vec::new()),
                since: Instant::now(),
            };
            owners.insert(*port, Arc::new(ended));
        }
    }
}

/// Confirms that a connection just made to `addr` reached the instance registered for its
/// port. Ports valet did not hand to a process instance (Docker's, test upstreams) pass.
/// Blocking, but reads only procfs, which lives in memory.
pub fn confirm(addr: SocketAddr) -> Result<(), PortConflict> {
    if !addr.ip().is_loopback() {
        return Ok(());
    }
    let port = addr.port();
    let owner = {
        let owners = OWNERS.read().unwrap_or_else(|e| e.into_inner());
        match owners.get(&port) {
            Some(owner) => owner.clone(),
            None => return Ok(()),
        }
    };
    let Some(pgid) = owner.pgid else {
        return Err(PortConflict::Ended { port });
    };
    let listeners = listening_sockets(port).map_err(|_| PortConflict::NotListening { port })?;
    if let Some(stranger) = listeners
        .iter()
        .find(|l| owner.uid.is_some_and(|uid| l.uid != uid))
    {
        return Err(PortConflict::Foreign {
            port,
            holder: holder_of(stranger.inode),
        });
    }
    let inodes: Vec<u64> = listeners.iter().map(|l| l.inode).collect();
    if inodes.is_empty() {
        // The connection was accepted, so a listener existed a moment ago and is gone: not
        // the instance's to vouch for.
        return Err(PortConflict::NotListening { port });
    }
    let mut known = owner.known.lock().unwrap_or_else(|e| e.into_inner());
    let unknown: Vec<u64> = inodes.into_iter().filter(|i| !known.contains(i)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let held = group_sockets(pgid);
    for inode in unknown {
        if !held.contains(&inode) {
            return Err(PortConflict::Foreign {
                port,
                holder: holder_of(inode),
            });
        }
        known.push(inode);
    }
    Ok(())
}

/// A socket listening where a connection to an instance's port may land.
struct Listener {
    inode: u64,
    uid: u32,
}

/// The sockets listening where a connection to `127.0.0.1:port` may land: bound to
/// 127.0.0.1 or 0.0.0.0, or in IPv6 to `::` (dual stack) or `::ffff:127.0.0.1`.
fn listening_sockets(port: u16) -> io::Result<Vec<Listener>> {
    let mut found = Vec::new();
    for (path, reaches) in [
        ("/proc/net/tcp", reaches_loopback_v4 as fn(&str) -> bool),
        ("/proc/net/tcp6", reaches_loopback_v6),
    ] {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            // No IPv6 in this kernel: nothing listens there.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.ends_with('6') => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines().skip(1) {
            let line = line?;
            let Some(socket) = parse_line(&line) else {
                continue;
            };
            if socket.state != LISTEN {
                // The kernel lists listening sockets before all others.
                break;
            }
            if socket.port == port && reaches(socket.addr) {
                found.push(Listener {
                    inode: socket.inode,
                    uid: socket.uid,
                });
            }
        }
    }
    Ok(found)
}

/// One line of `/proc/net/tcp{,6}`, the fields this module needs.
#[derive(Debug, PartialEq, Eq)]
struct SocketLine<'a> {
    addr: &'a str,
    port: u16,
    state: &'a str,
    uid: u32,
    inode: u64,
}

fn parse_line(line: &str) -> Option<SocketLine<'_>> {
    let mut fields = line.split_ascii_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    // After st: tx:rx queues, tr:when, retransmits, uid, timeout, then the inode.
    let uid = fields.nth(3)?.parse().ok()?;
    let inode = fields.nth(1)?.parse().ok()?;
    let (addr, port) = local.split_once(':')?;
    Some(SocketLine {
        addr,
        port: u16::from_str_radix(port, 16).ok()?,
        state,
        uid,
        inode,
    })
}

/// IPv4 addresses are printed as one 32-bit word in host order.
fn reaches_loopback_v4(addr: &str) -> bool {
    let Ok(word) = u32::from_str_radix(addr, 16) else {
        return false;
    };
    let ip = std::net::Ipv4Addr::from(word.to_ne_bytes());
    ip.is_unspecified() || ip == std::net::Ipv4Addr::LOCALHOST
}

/// IPv6 addresses are printed as four 32-bit words, each in host order.
fn reaches_loopback_v6(addr: &str) -> bool {
    if addr.len() != 32 {
        return false;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let Ok(word) = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16) else {
            return false;
        };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let ip = std::net::Ipv6Addr::from(bytes);
    ip.is_unspecified()
        || ip
            .to_ipv4_mapped()
            .is_some_and(|v4| v4.is_unspecified() || v4 == std::net::Ipv4Addr::LOCALHOST)
}

/// Pids of the processes in group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_group(*pid) == Some(pgid))
        .collect()
}

/// The fifth field of `/proc/<pid>/stat`; the command name before it may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// Socket inodes held open by any process of group `pgid`.
fn group_sockets(pgid: i32) -> Vec<u64> {
    group_members(pgid)
        .into_iter()
        .flat_map(sockets_of)
        .collect()
}

fn sockets_of(pid: i32) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The pid holding socket `inode`, to name it in the error; a walk over every process, so only
/// on a conflict.
fn holder_of(inode: u64) -> Option<i32> {
    let entries = fs::read_dir("/proc").ok()?;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| sockets_of(*pid).contains(&inode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    #[test]
    fn lines_of_proc_net_tcp_are_read() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        let socket = parse_line(line).unwrap();
        assert_eq!(socket.port, 8080);
        assert_eq!(socket.state, "0A");
        assert_eq!(socket.inode, 123456);
        assert_eq!(socket.uid, 0);
        assert!(reaches_loopback_v4(socket.addr));
        assert!(reaches_loopback_v4("00000000"));
        assert!(
            !reaches_loopback_v4("0200007F"),
            "127.0.0.2 is not where valet dials"
        );
        assert!(reaches_loopback_v6("00000000000000000000000000000000"));
        assert!(reaches_loopback_v6("0000000000000000FFFF00000100007F"));
        assert!(
            !reaches_loopback_v6("00000000000000000000000001000000"),
            "::1 takes no IPv4"
        );
    }

    #[test]
    fn a_port_held_outside_the_group_is_refused_and_ours_passes() {
        // This test process is its own instance: its listener is held by its own group.
        let ours = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = ours.local_addr().unwrap();
        let own_group = process_group(std::process::id() as i32).unwrap();
        register(own_group, None, &[addr.port()]);
        let _c = TcpStream::connect(addr).unwrap();
        assert_eq!(confirm(addr), Ok(()));
        assert_eq!(confirm(addr), Ok(()), "a known inode passes without a walk");

        // The same port registered to a group that holds nothing: ours is now foreign to it.
        register(own_group + 1_000_000, None, &[addr.port()]);
        match confirm(addr) {
            Err(PortConflict::Foreign { port, holder }) => {
                assert_eq!(port, addr.port());
                assert_eq!(holder, Some(std::process::id() as i32));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }

        // Our own group but another user: foreign all the same.
        let me = nix::unistd::geteuid().as_raw();
        register(own_group, Some(me.wrapping_add(1)), &[addr.port()]);
        assert!(matches!(confirm(addr), Err(PortConflict::Foreign { .. })));

        retire(own_group, &[addr.port()]);
        assert_eq!(
            confirm(addr),
            Err(PortConflict::Ended { port: addr.port() })
        );

        // A port nobody registered is not guarded.
        let other = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert_eq!(confirm(other.local_addr().unwrap()), Ok(()));
    }
}
