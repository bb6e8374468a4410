//! A tiny CIDR block for `trusted_proxies`: one address (`10.0.0.1`) or a block (`10.0.0.0/8`).
//! Written here because the gateway needs only parsing and `contains`, not a whole crate.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// A block of `addr` with `prefix_len` leading bits; `None` when the length is too long
    /// for the address family.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= max_prefix(addr)).then_some(Self { addr, prefix_len })
    }

    /// The address the block was written with.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Leading bits that must match.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`, what a
    /// dual-stack listener reports) counts as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u32::from(net).into(),
                u32::from(ip).into(),
                32,
                self.prefix_len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix_len)
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// Whether the top `prefix_len` of `width` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, width: u8, prefix_len: u8) -> bool {
    let ignored = u32::from(width - prefix_len);
    // A shift by the full width would overflow: /0 matches everything.
    a.checked_shr(ignored).unwrap_or(0) == b.checked_shr(ignored).unwrap_or(0)
}

/// Why a `trusted_proxies` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block (like \"10.0.0.1\" or \"10.0.0.0/8\")")]
pub struct IpNetParseError(pub String);

impl FromStr for IpNet {
    type Err = IpNetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = || IpNetParseError(s.to_string());
        let (addr, len) = match s.trim().split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| refuse())?;
        let prefix_len = match len {
            // Digits only: u8's parser would also take "+8".
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                len.parse().map_err(|_| refuse())?
            }
            Some(_) => return Err(refuse()),
            None => max_prefix(addr),
        };
        Self::new(addr, prefix_len).ok_or_else(refuse)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bare_address_is_a_block_of_one() {
        let net: IpNet = "10.0.0.1".parse().unwrap();
        assert_eq!(net.prefix_len(), 32);
        assert!(net.contains(ip("10.0.0.1")));
        assert!(!net.contains(ip("10.0.0.2")));
    }

    #[test]
    fn blocks_match_their_prefix_in_both_families() {
        let v4: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(v4.contains(ip("10.200.3.4")));
        assert!(!v4.contains(ip("11.0.0.1")));
        assert!(
            v4.contains(ip("::ffff:10.1.2.3")),
            "mapped IPv4 peers count as IPv4"
        );
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let pair: IpNet = "192.168.1.7/31".parse().unwrap();
        assert!(pair.contains(ip("192.168.1.6")));
        assert!(!pair.contains(ip("192.168.1.8")));
    }

    #[test]
    fn refuses_what_is_not_a_block() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "proxy",
            "",
        ] {
            assert_eq!(
                bad.parse::<IpNet>(),
                Err(IpNetParseError(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            "10.0.0.0/8".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }
}
