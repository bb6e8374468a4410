//! The gateway's worker threads share the open connections evenly, whatever the kernel's
//! SO_REUSEPORT hash does with them (crates/gateway/src/balance.rs). Seen from outside: each
//! worker's runtime has its own epoll instance, and /proc lists the sockets each one watches.

use crate::support::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
[server]
workers = 2
"#;

/// Connections kept open at once, in each of two rounds: a hash leaves two workers within two
/// of each other about one time in five with this many (both rounds: one in twenty-five); the
/// balance always does.
const CONNECTIONS: usize = 150;

#[tokio::test]
async fn two_workers_serve_within_two_connections_of_each_other() {
    let valet = Valet::with_config(CONFIG).start().await;
    let (pid, port) = (valet.pid(), valet.addr().port());
    for round in 0..2 {
        let (mut held, ports) = connect(&valet).await;
        let counts = per_epoll(pid, port, &ports);
        assert_eq!(
            counts.len(),
            2,
            "round {round}: seen in {counts:?} epoll instances"
        );
        assert_eq!(counts.iter().sum::<usize>(), CONNECTIONS, "{counts:?}");
        assert!(
            counts[0].abs_diff(counts[1]) <= 2,
            "round {round}: uneven: {counts:?}"
        );
        // Every connection still answers, wherever it is served.
        for stream in &mut held {
            stream
                .write_all(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 404"));
        }
        // Closed, and gone from valet's side too before the next round counts afresh.
        drop(held);
        let ports = &ports;
        eventually(
            std::time::Duration::from_secs(10),
            "valet to close the connections",
            || async move { socket_inodes(pid, port, ports).is_empty().then_some(()) },
        )
        .await;
    }
}

/// CONNECTIONS connections to valet, each with one request answered (so each is being served,
/// not just accepted), and their client ports.
async fn connect(valet: &Valet) -> (Vec<tokio::net::TcpStream>, HashSet<u16>) {
    let mut held = Vec::new();
    let mut ports = HashSet::new();
    for _ in 0..CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(valet.addr()).await.unwrap();
        stream
            .write_all(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(
            seen.starts_with(b"HTTP/1.1 404"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        ports.insert(stream.local_addr().unwrap().port());
        held.push(stream);
    }
    (held, ports)
}

/// How many of the connections from `client_ports` to `port` each epoll instance of `pid`
/// watches, for the instances that watch any (an epoll fd duplicated is counted once).
fn per_epoll(pid: u32, port: u16, client_ports: &HashSet<u16>) -> Vec<usize> {
    let ours = socket_inodes(pid, port, client_ports);
    assert_eq!(
        ours.len(),
        client_ports.len(),
        "sockets found in /proc/{pid}/net/tcp"
    );
    let proc_dir = format!("/proc/{pid}");
    let mut instances: BTreeMap<BTreeSet<u64>, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(format!("{proc_dir}/fd")).unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Ok(info) = std::fs::read_to_string(format!("{proc_dir}/fdinfo/{fd}")) else {
            continue;
        };
        let watched: BTreeSet<u64> = info
            .lines()
            .filter_map(|line| line.strip_prefix("tfd:"))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .filter_map(|tfd| {
                let link = std::fs::read_link(format!("{proc_dir}/fd/{tfd}")).ok()?;
                let link = link.to_string_lossy().into_owned();
                let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
                inode.parse::<u64>().ok().filter(|i| ours.contains(i))
            })
            .collect();
        if !watched.is_empty() {
            let n = watched.len();
            instances.insert(watched, n);
        }
    }
    instances.into_values().collect()
}

/// The socket inodes of `pid`'s open accepted connections on `port` from `client_ports`.
fn socket_inodes(pid: u32, port: u16, client_ports: &HashSet<u16>) -> HashSet<u64> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
            let ours = port_of(local)? == port && client_ports.contains(&port_of(remote)?);
            // Inode 0: a socket valet has closed (TIME_WAIT and the like).
            let inode = inode.parse::<u64>().ok().filter(|&i| i != 0)?;
            ours.then_some(inode)
        })
        .collect()
}
