//! Limits per client: request rates per key ([`rate`], across the fleet with [`cluster`]), open connections per client address
//! ([`conns`]), and the keys both use and the pools' fair queues serve by.
//!
//! A client is its address, an IPv6 client its /64 (the block one subscriber or host is
//! given, RFC 6177), so one host cannot take a fresh key per request by rotating the low bits;
//! an IPv4-mapped IPv6 address counts as the IPv4 one. Keys are 64-bit hashes under a key
//! drawn at start (SipHash-1-3, `std`'s `RandomState`), so memory per key is fixed whatever a
//! header's length, and a client cannot choose values that collide.

pub mod cluster;
pub mod conns;
pub mod rate;

pub use conns::{ClientConns, ClientSlot, ConnPermit};
pub use rate::{Decision, RateLimiter};

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::OnceLock;

/// The address a client is counted by: IPv4 (mapped ones too) as it is, IPv6 by its /64.
pub fn client_addr(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(net))
            }
        },
    }
}

/// The process's hashing key, drawn once.
fn hasher() -> &'static std::hash::RandomState {
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    KEY.get_or_init(std::hash::RandomState::new)
}

/// The key of a client address ([`client_addr`]): what `client_ip` limits and the fair queue
/// count by.
pub fn ip_key(ip: IpAddr) -> u64 {
    hasher().hash_one((0u8, client_addr(ip)))
}

/// The key of a request field's value (`header:NAME`); never equal to an address's by
/// construction of the hashed input (a different first byte).
pub fn value_key(value: &[u8]) -> u64 {
    hasher().hash_one((1u8, value))
}

/// A request's key for a pool's fair queue, when it is not the client's address: the route's
/// rate-limit key (`header:NAME` or `route`), put in the request's extensions by the rate-limit
/// step when the route's pool queues fairly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairKey(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_addresses_and_ipv6_slash_64s() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(client_addr(v4), v4);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(client_addr(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_addr(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key(mapped), ip_key(v4));
        assert_ne!(value_key(b"10.1.2.3"), ip_key(v4));
    }
}
