//! Which destinations an app may reach: the allowlist of origins and the
//! rule on private addresses, checked on the URI and again after DNS.

use super::denial::Restricted;
use std::net::IpAddr;
use thiserror::Error;

/// A malformed grant entry.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// An `allow` entry is not `scheme://host[:port]`.
    #[error(
        "allow[{index}] = {entry:?} is not an origin; write `https://api.example.com` or `http://127.0.0.1:8080` (scheme, host, optional port, no path)"
    )]
    BadOrigin {
        /// Position in the list.
        index: usize,
        /// The entry as written.
        entry: String,
    },
    /// A `private_networks` entry is not a CIDR.
    #[error(
        "private_networks[{index}] = {entry:?} is not a network; write a CIDR such as `127.0.0.0/8` or `::1/128`"
    )]
    BadNetwork {
        /// Position in the list.
        index: usize,
        /// The entry as written.
        entry: String,
    },
}

/// `scheme://host:port`, the unit of the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host name or IP literal (without brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
}

impl Origin {
    /// Parse `https://host[:port]`.
    pub fn parse(s: &str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default_port),
        })
    }

    /// The origin of a request URI.
    pub fn of_uri(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(match scheme.as_str() {
            "https" => 443,
            _ => 80,
        });
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host as an IP address, if it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parse `10.0.0.0/8`, `::1/128` or a bare address.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Why an address is not public, or `None` if it is.
pub fn restricted_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
                Some("broadcast/multicast/reserved")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("carrier-grade NAT")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("IETF protocol assignments (192.0.0.0/24)")
            } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
                Some("benchmarking (198.18.0.0/15)")
            } else if matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            ) {
                Some("documentation")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if (seg[0] & 0xffc0) == 0xfec0 {
                Some("site-local (fec0::/10)")
            } else if seg[0] == 0x0064 && seg[1] == 0xff9b {
                // NAT64 (64:ff9b::/96 and the local-use /48) reaches
                // whatever IPv4 address it embeds.
                Some("NAT64")
            } else if seg[0] == 0x2002 {
                Some("6to4 (2002::/16, embeds an IPv4 address)")
            } else if seg[0] == 0x2001 && seg[1] == 0 {
                Some("Teredo (2001::/32)")
            } else if seg[..6].iter().all(|s| *s == 0) {
                Some("IPv4-compatible (::/96)")
            } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
                Some("documentation (2001:db8::/32)")
            } else {
                None
            }
        }
    }
}

/// An app's destinations: the origins it may reach and the non-public
/// networks its grant opens.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow: Vec<Origin>,
    private: Vec<Network>,
}

impl EgressPolicy {
    /// Build from grant entries, naming the bad entry on error.
    pub fn new(allow: &[String], private_networks: &[String]) -> Result<Self, PolicyError> {
        let allow = allow
            .iter()
            .enumerate()
            .map(|(index, e)| {
                Origin::parse(e).ok_or_else(|| PolicyError::BadOrigin {
                    index,
                    entry: e.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let private = private_networks
            .iter()
            .enumerate()
            .map(|(index, e)| {
                Network::parse(e).ok_or_else(|| PolicyError::BadNetwork {
                    index,
                    entry: e.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allow, private })
    }

    /// The allowed origins.
    pub fn allowed(&self) -> &[Origin] {
        &self.allow
    }

    /// Whether `origin` is on the allowlist.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.allow.contains(origin)
    }

    /// `Err(why)` if the app may not connect to `ip`, an address a name
    /// resolved to. A non-public address passes only when a
    /// `private_networks` entry covers it: an IP-literal `allow` entry opens
    /// its own origin (scheme, address and port), never a name that
    /// happens to resolve to the same address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Restricted> {
        let Some(range) = restricted_range(ip) else {
            return Ok(());
        };
        let ip = canonical(ip);
        if self.private.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        Err(Restricted { ip, range })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports() {
        let o = Origin::parse("https://API.stripe.com").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "api.stripe.com", 443)
        );
        let o = Origin::parse("http://[::1]:8080").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 8080));
        assert!(Origin::parse("ftp://x").is_none());
        assert!(Origin::parse("https://x/path").is_none());
        assert!(Origin::parse("https://user@x").is_none());
    }

    #[test]
    fn private_addresses_need_a_grant() {
        let p = EgressPolicy::new(&["https://api.example.com".into()], &[]).unwrap();
        assert!(p.check_ip("93.184.216.34".parse().unwrap()).is_ok());
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "::7f00:1",
            "fec0::1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "2001::1",
        ] {
            assert!(
                p.check_ip(ip.parse().unwrap()).is_err(),
                "{ip} should be refused"
            );
        }
        let p =
            EgressPolicy::new(&["http://127.0.0.1:9000".into()], &["10.0.0.0/8".into()]).unwrap();
        // The literal opens its exact origin only (the allowlist check):
        // not another port, and not a name that resolves to the same
        // address (the resolver's `check_ip`).
        let origin = |s: &str| Origin::parse(s).unwrap();
        assert!(p.allows_origin(&origin("http://127.0.0.1:9000")));
        assert!(!p.allows_origin(&origin("http://127.0.0.1:9001")));
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_err());
        assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check_ip("10.9.9.9".parse().unwrap()).is_ok());
        assert!(p.check_ip("192.168.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn bad_entries_are_named() {
        let e = EgressPolicy::new(&["ok".into()], &[]).unwrap_err();
        assert!(e.to_string().starts_with("allow[0] = \"ok\""));
        let e = EgressPolicy::new(&[], &["10.0.0.0/33".into()]).unwrap_err();
        assert!(e.to_string().contains("private_networks[0]"));
    }
}
