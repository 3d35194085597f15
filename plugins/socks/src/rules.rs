//! Which destinations the proxy connects to: `--allow NET` and `--deny NET` over built-in
//! rules that deny loopback, link-local, private and other non-public ranges, so the proxy is
//! never an open door into the network it runs in unless the operator says so.
//!
//! Within each set, the operator's and the built-in one, the most specific rule that contains
//! an address decides (the longest prefix), and at equal length a deny beats an allow. Between
//! them, the operator's denial is final, and the operator's allowance is final unless a
//! built-in denial is more specific: it takes naming a range to open it. So
//! `--allow 127.0.0.0/8` opens loopback but `--allow 0.0.0.0/0` does not, `--deny 0.0.0.0/0
//! --allow 192.0.2.0/24` allows only that network (not even the anycast addresses the built-in
//! rules allow inside denied blocks), and `--allow 10.0.0.0/8 --deny 10.1.0.0/16` keeps a hole
//! closed.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Denied unless an operator's rule allows them: the blocks of the IANA IPv4 and IPv6
/// Special-Purpose Address Registries that are not globally reachable (2025 editions), and
/// the address space that is not unicast or no longer assigned. Addresses that embed an IPv4
/// address are also judged by it ([`embedded_ipv4`]).
const DENIED_BY_DEFAULT: &[&str] = &[
    "0.0.0.0/8",       // "this network": 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",      // private (RFC 1918)
    "100.64.0.0/10",   // carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, where cloud metadata services live
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments (DS-Lite, NAT64 discovery, …)
    "192.0.2.0/24",    // documentation (TEST-NET-1, RFC 5737)
    "192.88.99.0/24",  // 6to4 relay anycast, deprecated (RFC 7526): whoever still answers
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking (RFC 2544)
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/3",     // multicast, reserved (240/4) and limited broadcast
    "::/96",           // unspecified, loopback and the deprecated IPv4-compatible addresses
    "64:ff9b:1::/48",  // local-use IPv4/IPv6 translation (RFC 8215)
    "100::/64",        // discard-only (RFC 6666)
    "100:0:0:1::/64",  // dummy prefix, for configurations only (RFC 9780)
    "2001::/23",       // IETF protocol assignments: Teredo, benchmarking, ORCHID, …
    "2001:db8::/32",   // documentation (RFC 3849)
    "3fff::/20",       // documentation (RFC 9637)
    "5f00::/16",       // segment routing SIDs (RFC 9602)
    "fc00::/7",        // unique local
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local, deprecated (RFC 3879) but still routed by some
    "ff00::/8",        // multicast
];

/// What the registries list as globally reachable inside the blocks denied above.
const ALLOWED_INSIDE_DENIED: &[&str] = &[
    "192.0.0.9/32",    // Port Control Protocol anycast (RFC 7723)
    "192.0.0.10/32",   // TURN anycast (RFC 8155)
    "2001:1::1/128",   // Port Control Protocol anycast
    "2001:1::2/128",   // TURN anycast
    "2001:1::3/128",   // DNS-SD service registration anycast (RFC 9665)
    "2001:3::/32",     // AMT (RFC 7450)
    "2001:4:112::/48", // AS112 (RFC 7535)
    "2001:20::/28",    // ORCHIDv2 (RFC 7343)
    "2001:30::/28",    // drone remote ID (RFC 9374)
];

/// The IPv4 address an IPv6 address leads to through a translator or a tunnel, which could
/// be any: NAT64's well-known prefix `64:ff9b::/96` (RFC 6052), SIIT's IPv4-translated
/// addresses `::ffff:0:0:0/96` (RFC 2765) and 6to4's `2002::/16` (RFC 3056). IPv4-mapped
/// addresses are not here: the kernel connects to their IPv4 address itself, and
/// [`Rules::allows`] judges them as that.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let ipv4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match ip.segments() {
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] | [0, 0, 0, 0, 0xffff, 0, high, low] => {
            Some(ipv4(high, low))
        }
        [0x2002, high, low, ..] => Some(ipv4(high, low)),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Rule {
    net: IpNet,
    allow: bool,
    operator: bool,
}

#[derive(Debug, Clone)]
pub struct Rules {
    /// The operator's first, then the most specific, then denials: the first match decides.
    rules: Vec<Rule>,
}

/// Parses `10.0.0.0/8`, or a single address (`192.0.2.1`, `::1`) as a network of one.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is not a network (e.g. 10.0.0.0/8, 192.0.2.1 or fd00::/8)"))
}

impl Rules {
    pub fn new(allow: &[IpNet], deny: &[IpNet]) -> Self {
        let built_in = |nets: &[&str], allow| {
            nets.iter()
                .map(move |net| (net.parse().expect("a valid built-in network"), allow, false))
                .collect::<Vec<_>>()
        };
        let builtin = built_in(DENIED_BY_DEFAULT, false)
            .into_iter()
            .chain(built_in(ALLOWED_INSIDE_DENIED, true))
            .chain(built_in(&["0.0.0.0/0", "::/0"], true));
        let operator = allow
            .iter()
            .map(|net| (*net, true, true))
            .chain(deny.iter().map(|net| (*net, false, true)));
        let mut rules: Vec<Rule> = operator
            .chain(builtin)
            .map(|(net, allow, operator)| Rule {
                net,
                allow,
                operator,
            })
            .collect();
        rules.sort_by_key(|rule| {
            (
                !rule.operator,
                std::cmp::Reverse(rule.net.prefix_len()),
                rule.allow,
            )
        });
        Self { rules }
    }

    /// Whether the proxy may connect to `ip`. An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`)
    /// is judged as the IPv4 address it reaches; one that embeds an IPv4 address for a
    /// translator or a tunnel ([`embedded_ipv4`]) must pass both as itself and as that address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let embedded = match ip {
            IpAddr::V6(ipv6) => embedded_ipv4(ipv6),
            IpAddr::V4(_) => None,
        };
        self.decide(ip) && embedded.is_none_or(|ipv4| self.decide(ipv4.into()))
    }

    fn decide(&self, ip: IpAddr) -> bool {
        let mut matching = self.rules.iter().filter(|rule| rule.net.contains(&ip));
        let operator = matching.clone().find(|rule| rule.operator);
        let built_in = matching.find(|rule| !rule.operator);
        match (operator, built_in) {
            (Some(operator), Some(built_in)) if operator.allow => {
                built_in.allow || built_in.net.prefix_len() <= operator.net.prefix_len()
            }
            (Some(operator), _) => operator.allow,
            (None, built_in) => built_in.is_some_and(|rule| rule.allow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> Rules {
        let nets = |list: &[&str]| {
            list.iter()
                .map(|n| parse_net(n).unwrap())
                .collect::<Vec<_>>()
        };
        Rules::new(&nets(allow), &nets(deny))
    }

    fn allows(rules: &Rules, ip: &str) -> bool {
        rules.allows(ip.parse().unwrap())
    }

    #[test]
    fn non_public_ranges_are_denied_by_default() {
        let rules = rules(&[], &[]);
        // Each built-in range, at its edges where a neighbour is public.
        for denied in [
            "0.0.0.0",
            "0.255.255.255",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.0.255",
            "192.0.2.1",
            "192.88.99.0",
            "192.88.99.1",
            "192.88.99.255",
            "192.168.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "64:ff9b:1::a00:1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "100:0:0:1::",
            "100:0:0:1:ffff:ffff:ffff:ffff",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:1ff::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            // IPv4-mapped, and the forms that embed a denied IPv4 address for a translator
            // (NAT64, SIIT) or a tunnel (6to4).
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:c0a8:1",
            "2002:7f00:1::1",
            "2002:a00:1::",
        ] {
            assert!(!allows(&rules, denied), "{denied}");
        }
        for allowed in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.0.9",
            "192.0.0.10",
            "192.0.1.1",
            "192.0.3.1",
            "192.88.98.255",
            "192.88.100.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:1::1",
            "2001:1::2",
            "2001:1::3",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:30::1",
            "2001:200::1",
            "2001:db9::1",
            "100:0:0:2::1",
            "101::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
            "2002:808:808::1",
        ] {
            assert!(allows(&rules, allowed), "{allowed}");
        }
    }

    #[test]
    fn embedded_addresses_pass_the_rules_both_ways() {
        let private = rules(&["10.0.0.0/8"], &[]);
        assert!(allows(&private, "64:ff9b::a00:1") && allows(&private, "2002:a00:1::1"));
        let no_6to4 = rules(&[], &["2002::/16"]);
        assert!(!allows(&no_6to4, "2002:808:808::1"));
        assert!(allows(&no_6to4, "64:ff9b::808:808"));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let loopback = rules(&["127.0.0.0/8"], &[]);
        assert!(allows(&loopback, "127.0.0.1") && allows(&loopback, "::ffff:127.0.0.2"));
        assert!(!allows(&loopback, "10.0.0.1") && !allows(&loopback, "::1"));

        let only = rules(&["192.0.2.0/24"], &["0.0.0.0/0"]);
        assert!(allows(&only, "192.0.2.7") && !allows(&only, "8.8.8.8"));
        assert!(allows(&only, "2606:4700::1"), "IPv6 was not denied");

        let hole = rules(&["10.0.0.0/8"], &["10.1.0.0/16"]);
        assert!(allows(&hole, "10.2.0.1") && !allows(&hole, "10.1.0.1"));

        let both = rules(&["192.0.2.1"], &["192.0.2.1/32"]);
        assert!(!allows(&both, "192.0.2.1"), "a deny beats an equal allow");
    }

    #[test]
    fn the_operators_rules_decide_over_the_built_in_ones() {
        let only = rules(&["192.0.2.0/24"], &["0.0.0.0/0", "::/0"]);
        let built_in_allowed = [
            "192.0.0.9",
            "192.0.0.10",
            "2001:1::1",
            "2001:1::3",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:30::1",
        ];
        for ip in built_in_allowed
            .into_iter()
            .chain(["8.8.8.8", "2606:4700::1"])
        {
            assert!(!allows(&only, ip), "{ip}");
        }
        assert!(allows(&only, "192.0.2.7"));

        let ietf = rules(&[], &["192.0.0.0/24"]);
        assert!(!allows(&ietf, "192.0.0.9") && !allows(&ietf, "192.0.0.10"));
        assert!(allows(&ietf, "192.0.1.1"));

        // Allowing everything opens the public addresses only: a built-in denial gives way to
        // an allowance that names its range, or a narrower one.
        let open = rules(&["0.0.0.0/0"], &["10.0.0.0/8"]);
        assert!(!allows(&open, "127.0.0.1") && !allows(&open, "10.0.0.1"));
        assert!(allows(&open, "192.0.0.9"));
        let loopback = rules(&["127.0.0.0/8", "10.1.0.0/16"], &[]);
        assert!(allows(&loopback, "127.0.0.1") && allows(&loopback, "10.1.2.3"));
        assert!(!allows(&loopback, "10.2.0.1") && !allows(&loopback, "::1"));
    }

    #[test]
    fn networks_parse_as_cidr_or_single_addresses() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("localhost")
            .unwrap_err()
            .contains("not a network"));
    }
}
