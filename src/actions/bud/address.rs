//! Which addresses `http_request` may reach.
//!
//! A DAG author controls the URL, and the request leaves from inside the
//! cluster: without a guard, a step could read the cloud metadata service
//! (`169.254.169.254`), the sidecar on `localhost:3500`, or any private
//! service. The original checked the URL's literal host only, so a DNS name
//! that resolves to `127.0.0.1`, or a redirect to one, went through. Here
//! every address a name resolves to is checked, on every hop, and the
//! connection goes to the address that was checked (no second lookup an
//! attacker's DNS could answer differently).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare
/// address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl AddressRange {
    /// Whether `ip` lies in the range. An IPv4-mapped IPv6 address
    /// (`::ffff:127.0.0.1`) is compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or a CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0..={max}"))?,
        };
        Ok(Self {
            network: canonical(network),
            prefix,
        })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parse a comma list of ranges (`HTTP_REQUEST_ALLOWED_CIDRS`); empty items
/// are skipped.
pub(crate) fn parse_ranges(list: &str) -> Result<Vec<AddressRange>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect()
}

/// An IPv4-mapped or -compatible IPv6 address as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why `ip` may not be reached unless an operator allowed it, or `None`
/// for a public address.
pub(crate) fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        // 169.254.0.0/16, home of the cloud metadata services.
        Some("link-local (metadata)")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, and the carrier-grade NAT range some clusters use for pods.
        Some("private")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local (metadata)")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local addresses, IPv6's private ranges.
        Some("private")
    } else if first & 0xff00 == 0xff00 {
        Some("broadcast, multicast or reserved")
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible addresses (::a.b.c.d) reach IPv4 hosts too.
        forbidden_v4(v4)
    } else {
        None
    }
}

/// The verdict on one resolved address: `Err` names the class and the
/// address when it is forbidden and no allowed range contains it.
pub(crate) fn check_address(ip: IpAddr, allowed: &[AddressRange]) -> Result<(), String> {
    match forbidden_class(ip) {
        Some(_) if allowed.iter().any(|range| range.contains(ip)) => Ok(()),
        Some(class) => Err(format!("{ip} is a {class} address")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_forbidden_class_is_named() {
        let cases = [
            ("127.0.0.1", Some("loopback")),
            ("127.9.9.9", Some("loopback")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("169.254.169.254", Some("link-local (metadata)")),
            ("fe80::1", Some("link-local (metadata)")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("private")),
            ("fd00::1", Some("private")),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("255.255.255.255", Some("broadcast, multicast or reserved")),
            ("224.0.0.1", Some("broadcast, multicast or reserved")),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("2606:4700::1111", None),
        ];
        for (addr, class) in cases {
            assert_eq!(forbidden_class(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn allowed_ranges_open_forbidden_addresses_and_nothing_else() {
        let allowed = parse_ranges(" 127.0.0.0/8, ,10.0.0.5").unwrap();
        assert_eq!(allowed.len(), 2);
        assert!(check_address(ip("127.0.0.1"), &allowed).is_ok());
        assert!(check_address(ip("::ffff:127.0.0.2"), &allowed).is_ok());
        assert!(check_address(ip("10.0.0.5"), &allowed).is_ok());
        assert_eq!(
            check_address(ip("10.0.0.6"), &allowed),
            Err("10.0.0.6 is a private address".into())
        );
        assert!(check_address(ip("::1"), &allowed).is_err());
        assert!(check_address(ip("8.8.8.8"), &[]).is_ok());
    }

    #[test]
    fn ranges_parse_strictly() {
        assert_eq!(
            "10.0.0.0/8".parse::<AddressRange>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "::1".parse::<AddressRange>().unwrap().to_string(),
            "::1/128"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<AddressRange>()
                .unwrap()
                .contains(ip("1.2.3.4"))
        );
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<AddressRange>().is_err(), "{bad}");
        }
    }
}
