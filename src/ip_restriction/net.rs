use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`) or a single
/// address (`192.0.2.7`, the same as `/32`).
///
/// The same rules as the config's `Cidr` (which converts into it with the
/// `config` feature): host bits past the prefix must be zero, and an IPv4
/// network also contains the IPv4-mapped IPv6 form of its addresses
/// (`::ffff:10.1.2.3`), which is how a dual-stack socket reports IPv4 peers.
///
/// ```
/// use meshgate::ip_restriction::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
/// assert!("10.0.0.1/8".parse::<IpNet>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

/// Why an [`IpNet`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNetError(String);

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IpNetError {}

impl IpNet {
    /// The network `address/prefix`; errors when the prefix is too long for
    /// the address family or host bits are set.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Self, IpNetError> {
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(IpNetError(format!(
                "prefix length /{prefix} is longer than {max} bits"
            )));
        }
        let net = Self {
            network: address,
            prefix,
        };
        let masked = net.mask(address);
        if masked != address {
            return Err(IpNetError(format!(
                "{address}/{prefix} has host bits set (the network is {masked}/{prefix})"
            )));
        }
        Ok(net)
    }

    /// A network of one address.
    #[must_use]
    pub fn host(address: IpAddr) -> Self {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        Self {
            network: address,
            prefix,
        }
    }

    /// The network address.
    #[must_use]
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.mask(ip) == self.network
            }
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.mask(IpAddr::V4(v4)) == self.network),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        let prefix = u32::from(self.prefix);
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            IpNetError(format!(
                "invalid network {s:?} (expected e.g. \"10.0.0.0/8\" or \"2001:db8::/32\")"
            ))
        };
        let s = s.trim();
        match s.split_once('/') {
            Some((address, prefix)) => {
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let prefix = prefix.parse::<u8>().map_err(|_| invalid())?;
                Self::new(address.parse().map_err(|_| invalid())?, prefix)
            }
            None => Ok(Self::host(s.parse().map_err(|_| invalid())?)),
        }
    }
}

impl From<IpAddr> for IpNet {
    fn from(address: IpAddr) -> Self {
        Self::host(address)
    }
}

#[cfg(feature = "config")]
impl From<crate::config::Cidr> for IpNet {
    fn from(cidr: crate::config::Cidr) -> Self {
        // A `Cidr` was validated by the same rules when it was parsed.
        Self {
            network: cidr.network(),
            prefix: cidr.prefix(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains(ip("192.168.255.1")));
        assert!(!net.contains(ip("192.169.0.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        assert!(net.contains(ip("::ffff:192.168.1.1")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let host: IpNet = "203.0.113.9".parse().unwrap();
        assert_eq!(host.to_string(), "203.0.113.9/32");
        assert!(!host.contains(ip("203.0.113.8")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "10.0.0.0/",
            "x/8",
            "10.0.0.0/+8",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} parsed");
        }
    }
}
