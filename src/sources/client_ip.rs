//! Who sent a webhook: the TCP peer, or — only when that peer is a proxy the operator trusts
//! (`KICI_TRUSTED_PROXIES`) — the address the proxy reports in `X-Forwarded-For`/`X-Real-IP`.
//! Pure code over addresses and header values: CIDR parsing and matching, and the pick.
//!
//! Proxy headers from anyone else are ignored: any client can send `X-Forwarded-For: <an
//! allowed IP>`, so trusting it unconditionally turned an IP allowlist into no check at all.

use std::fmt;
use std::net::IpAddr;

use super::extract::header;

/// One `address/prefix` block. An address without `/prefix` is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1` (= /32), `::1` (= /128). Host bits set below
    /// the prefix (`10.1.2.3/8`) are refused: such an entry usually means a typo in the prefix.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{text:?} is not an IP address or CIDR block (such as 10.0.0.0/8 or 2001:db8::/32)"
            )
        })?;
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
                }
            }
            Some(_) => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
        };
        let cidr = Cidr { network, prefix };
        if masked(network, prefix) != bits(network) {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix; did you mean {}/{prefix}?",
                Cidr::from_bits(network, masked(network, prefix))
            ));
        }
        Ok(cidr)
    }

    fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
        match like {
            IpAddr::V4(_) => IpAddr::from((bits as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(bits.to_be_bytes()),
        }
    }

    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a
    /// dual-stack socket reports for IPv4 peers) is matched as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let same_family = matches!(
            (self.network, ip),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        );
        same_family && masked(ip, self.prefix) == bits(self.network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An address as a number, right-aligned (IPv4 in the low 32 bits).
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `ip`'s bits with everything past the first `prefix` bits cleared.
fn masked(ip: IpAddr, prefix: u8) -> u128 {
    let width = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let host_bits = u32::from(width - prefix.min(width));
    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
    bits(ip) & mask
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they carry; everything else as is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `KICI_TRUSTED_PROXIES`: the peers whose proxy headers are believed. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// A comma-separated list of CIDR blocks or addresses; empty entries are skipped. Every
    /// invalid entry is reported, each naming itself.
    pub fn parse(list: &str) -> Result<TrustedProxies, Vec<String>> {
        let mut blocks = Vec::new();
        let mut problems = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match Cidr::parse(entry) {
                Ok(c) => blocks.push(c),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(TrustedProxies(blocks))
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// One address of a proxy header: a bare IP, or `ip:port` / `[v6]:port` as some proxies write.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// The client's address. From an untrusted peer (or with no trusted proxies): the peer itself,
/// whatever headers it sent. From a trusted proxy: the right-most `X-Forwarded-For` address
/// that is not itself a trusted proxy — each proxy appends the address it received from, so
/// entries left of the first untrusted one were written by the client and prove nothing —
/// else `X-Real-IP`, else the peer. A list of only trusted proxies gives its left-most entry;
/// an entry that is not an address stops the walk (nothing left of it can be trusted) and
/// counts as no address, so an IP allowlist refuses it.
pub fn client_ip(
    peer: IpAddr,
    headers: &[(String, String)],
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return Some(peer);
    }
    // Several X-Forwarded-For lines are one list in order (RFC 9110 §5.3).
    let forwarded: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if !forwarded.is_empty() {
        let mut last = None;
        for entry in forwarded.iter().rev() {
            match parse_forwarded(entry) {
                Some(ip) if trusted.contains(ip) => last = Some(ip),
                other => return other,
            }
        }
        return last;
    }
    match header(headers, "x-real-ip")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(real) => parse_forwarded(real),
        None => Some(peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(s: &str) -> TrustedProxies {
        TrustedProxies::parse(s).unwrap()
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cidr_matching_v4_v6_and_mapped() {
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains(ip("127.0.0.1")));
        assert!(lo.contains(ip("127.255.255.255")));
        assert!(!lo.contains(ip("128.0.0.1")));
        assert!(lo.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped peer");
        assert!(!lo.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("32.1.13.184")), "no cross-family match");
        let host = Cidr::parse("10.0.0.5").unwrap();
        assert_eq!(host.to_string(), "10.0.0.5/32");
        assert!(host.contains(ip("10.0.0.5")) && !host.contains(ip("10.0.0.6")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::2")));
        let all6 = Cidr::parse("::/0").unwrap();
        assert!(all6.contains(ip("::2")));
        // Prefix boundaries: /31 holds exactly two addresses.
        let pair = Cidr::parse("192.0.2.4/31").unwrap();
        assert!(pair.contains(ip("192.0.2.4")) && pair.contains(ip("192.0.2.5")));
        assert!(!pair.contains(ip("192.0.2.6")) && !pair.contains(ip("192.0.2.3")));
    }

    #[test]
    fn cidr_parse_refuses_and_names_the_entry() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host",
            "10.0.0.0/8/8",
            "1.2.3.4/ 8",
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.contains(bad.trim()), "{bad}: {e}");
        }
        let e = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        let e = TrustedProxies::parse("10.0.0.0/8, nope, 1.2.3.4/40").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("\"nope\"") && e[1].contains("\"1.2.3.4/40\""),
            "{e:?}"
        );
        assert_eq!(
            TrustedProxies::parse(" , ").unwrap(),
            TrustedProxies::default()
        );
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let spoof = hdrs(&[("X-Forwarded-For", "192.0.2.7"), ("X-Real-IP", "192.0.2.7")]);
        let peer = ip("198.51.100.1");
        assert_eq!(
            client_ip(peer, &spoof, &TrustedProxies::default()),
            Some(peer)
        );
        assert_eq!(client_ip(peer, &spoof, &list("10.0.0.0/8")), Some(peer));
        let mapped = ip("::ffff:198.51.100.1");
        assert_eq!(
            client_ip(mapped, &spoof, &list("")),
            Some(peer),
            "mapped peer shown as IPv4"
        );
    }

    #[test]
    fn trusted_proxy_gives_the_rightmost_untrusted_forwarded_address() {
        let proxies = list("10.0.0.0/8, ::1");
        let proxy = ip("10.0.0.2");
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[("X-Forwarded-For", "192.0.2.7")], Some("192.0.2.7")),
            // The client wrote the left entry itself; the proxy appended what it saw.
            (
                &[("X-Forwarded-For", "192.0.2.7, 203.0.113.5")],
                Some("203.0.113.5"),
            ),
            // Inner proxies are skipped.
            (
                &[("X-Forwarded-For", "192.0.2.7, 203.0.113.5, 10.1.1.1")],
                Some("203.0.113.5"),
            ),
            (
                &[
                    ("X-Forwarded-For", "192.0.2.7"),
                    ("X-Forwarded-For", "10.9.9.9"),
                ],
                Some("192.0.2.7"),
            ),
            (
                &[("X-Forwarded-For", "10.1.1.1, 10.2.2.2")],
                Some("10.1.1.1"),
            ),
            (
                &[("X-Forwarded-For", "203.0.113.5:4711")],
                Some("203.0.113.5"),
            ),
            (
                &[("X-Forwarded-For", "[2001:db8::1]:443")],
                Some("2001:db8::1"),
            ),
            (&[("X-Forwarded-For", "192.0.2.7, garbage, 10.1.1.1")], None),
            (&[("X-Real-IP", " 192.0.2.9 ")], Some("192.0.2.9")),
            (
                &[("X-Forwarded-For", "192.0.2.7"), ("X-Real-IP", "192.0.2.9")],
                Some("192.0.2.7"),
            ),
            (&[("X-Real-IP", "nope")], None),
            (&[], Some("10.0.0.2")),
        ];
        for (pairs, want) in cases {
            let got = client_ip(proxy, &hdrs(pairs), &proxies);
            assert_eq!(got, want.map(ip), "{pairs:?}");
        }
        assert_eq!(
            client_ip(
                ip("::1"),
                &hdrs(&[("X-Forwarded-For", "192.0.2.7")]),
                &proxies
            ),
            Some(ip("192.0.2.7"))
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn address() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
            any::<[u8; 16]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
            "[0-9a-f.:\\[\\]/ ]{0,24}",
        ]
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        /// `KICI_TRUSTED_PROXIES` comes from the operator, proxy headers from anyone.
        #[test]
        fn never_panics_parsing_proxies_and_forwarded_headers(
            list in proptest::collection::vec(
                (address(), proptest::option::of(0u8..140)).prop_map(|(a, m)| match m {
                    Some(m) => format!("{a}/{m}"),
                    None => a,
                }),
                0..4,
            ).prop_map(|v| v.join(",")),
            forwarded in proptest::collection::vec(address(), 0..5).prop_map(|v| v.join(", ")),
            real in address(),
            peer in any::<[u8; 16]>().prop_map(IpAddr::from),
        ) {
            let trusted = TrustedProxies::parse(&list).unwrap_or_default();
            let headers = vec![
                ("x-forwarded-for".to_owned(), forwarded),
                ("x-real-ip".to_owned(), real),
            ];
            let got = client_ip(peer, &headers, &trusted);
            // From an untrusted peer the headers never matter.
            if !trusted.contains(canonical(peer)) {
                prop_assert_eq!(got, Some(canonical(peer)));
            }
        }
    }
}
