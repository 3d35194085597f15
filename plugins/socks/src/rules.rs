//! Which destinations the proxy connects to: `--allow NET` and `--deny NET` over built-in
//! rules that deny loopback, link-local, private and other non-public ranges, so the proxy is
//! never an open door into the network it runs in unless the operator says so.
//!
//! The most specific rule that contains an address decides (the longest prefix); at equal
//! length the operator's rules beat the built-in ones, and a deny beats an allow. So
//! `--allow 127.0.0.0/8` opens loopback, `--deny 0.0.0.0/0 --allow 192.0.2.0/24` allows only
//! that network, and `--allow 10.0.0.0/8 --deny 10.1.0.0/16` keeps a hole closed.

use ipnet::IpNet;
use std::net::IpAddr;

/// Denied unless an operator's rule allows them.
const DENIED_BY_DEFAULT: &[&str] = &[
    "0.0.0.0/8",      // "this network": 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",     // private (RFC 1918)
    "100.64.0.0/10",  // carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local, where cloud metadata services live
    "172.16.0.0/12",  // private
    "192.168.0.0/16", // private
    "224.0.0.0/3",    // multicast, reserved and broadcast
    "::/96",          // unspecified, loopback and the old IPv4-compatible addresses
    "fc00::/7",       // unique local
    "fe80::/10",      // link-local
    "ff00::/8",       // multicast
];

#[derive(Debug, Clone)]
struct Rule {
    net: IpNet,
    allow: bool,
    operator: bool,
}

#[derive(Debug, Clone)]
pub struct Rules {
    /// Most specific first, then the operator's, then denials: the first match decides.
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
        let builtin = DENIED_BY_DEFAULT
            .iter()
            .map(|net| (net.parse().expect("a valid built-in network"), false, false))
            .chain(["0.0.0.0/0", "::/0"].map(|net| (net.parse().expect("valid"), true, false)));
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
                std::cmp::Reverse(rule.net.prefix_len()),
                !rule.operator,
                rule.allow,
            )
        });
        Self { rules }
    }

    /// Whether the proxy may connect to `ip`. An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`)
    /// is judged as the IPv4 address it reaches.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.rules
            .iter()
            .find(|rule| rule.net.contains(&ip))
            .is_some_and(|rule| rule.allow)
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
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::127.0.0.1",
        ] {
            assert!(!allows(&rules, denied), "{denied}");
        }
        for allowed in [
            "192.0.2.1",
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(allows(&rules, allowed), "{allowed}");
        }
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let loopback = rules(&["127.0.0.0/8"], &[]);
        assert!(allows(&loopback, "127.0.0.1") && allows(&loopback, "::ffff:127.0.0.2"));
        assert!(!allows(&loopback, "10.0.0.1") && !allows(&loopback, "::1"));

        let only = rules(&["192.0.2.0/24"], &["0.0.0.0/0"]);
        assert!(allows(&only, "192.0.2.7") && !allows(&only, "8.8.8.8"));
        assert!(allows(&only, "2001:db8::1"), "IPv6 was not denied");

        let hole = rules(&["10.0.0.0/8"], &["10.1.0.0/16"]);
        assert!(allows(&hole, "10.2.0.1") && !allows(&hole, "10.1.0.1"));

        let both = rules(&["192.0.2.1"], &["192.0.2.1/32"]);
        assert!(!allows(&both, "192.0.2.1"), "a deny beats an equal allow");
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
