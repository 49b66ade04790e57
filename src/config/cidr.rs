//! IP networks in CIDR notation, for trusted proxies and IP restriction.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `2001:db8::/32`, or a single
/// address (`192.0.2.7`, the same as `/32` or `/128`).
///
/// Host bits past the prefix must be zero (`10.0.0.1/8` is refused: it is
/// almost always a typo for a single host or a wider network). An IPv4
/// network also contains the IPv4-mapped IPv6 form of its addresses
/// (`::ffff:10.1.2.3`), which is how a dual-stack socket reports IPv4 peers.
///
/// ```
/// use meshgate::config::Cidr;
///
/// let net: Cidr = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.20.30.40".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network `address/prefix`; errors when the prefix is too long for
    /// the address family or host bits are set.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(CidrError(format!(
                "prefix length /{prefix} is longer than {max} bits"
            )));
        }
        let cidr = Cidr {
            network: address,
            prefix,
        };
        if cidr.mask_addr(address) != address {
            return Err(CidrError(format!(
                "{address}/{prefix} has host bits set (the network is {}/{prefix})",
                cidr.mask_addr(address)
            )));
        }
        Ok(cidr)
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.mask_addr(ip) == self.network
            }
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.mask_addr(IpAddr::V4(v4)) == self.network),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    fn mask_addr(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            CidrError(format!(
                "invalid CIDR {s:?} (expected e.g. \"10.0.0.0/8\" or \"2001:db8::/32\")"
            ))
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => {
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                (addr, Some(prefix.parse::<u8>().map_err(|_| invalid())?))
            }
            None => (s.trim(), None),
        };
        let address: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix = prefix.unwrap_or(match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        });
        Cidr::new(address, prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CidrVisitor;

        impl Visitor<'_> for CidrVisitor {
            type Value = Cidr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a network in CIDR notation, like \"10.0.0.0/8\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cidr, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(CidrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4() {
        let net: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains(ip("192.168.255.1")));
        assert!(!net.contains(ip("192.169.0.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let host: Cidr = "203.0.113.9".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("203.0.113.9")));
        assert!(!host.contains(ip("203.0.113.8")));
    }

    #[test]
    fn v6() {
        let net: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!(!net.contains(ip("10.0.0.1")));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains(ip("::1")));
        let lo: Cidr = "::1".parse().unwrap();
        assert_eq!(lo.prefix(), 128);
        assert!(lo.contains(ip("::1")));
    }

    #[test]
    fn mapped_v4() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("::ffff:10.9.8.7")));
        assert!(!net.contains(ip("::ffff:11.9.8.7")));
    }

    #[test]
    fn refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/+8",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string(),
            "10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)"
        );
    }
}
