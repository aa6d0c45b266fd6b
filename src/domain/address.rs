//! Which IP addresses a webhook may never target: everything that is not the public internet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        // An IPv4-mapped address (::ffff:a.b.c.d) is judged as the IPv4 address it carries.
        IpAddr::V6(v6) => match v6.to_canonical() {
            IpAddr::V4(v4) => forbidden_v4(v4),
            IpAddr::V6(v6) => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "unspecified",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) => "link-local or cloud metadata",
        (100, 64..=127, _) => "carrier-grade NAT",
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "reserved",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay anycast",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let [_, _, _, _, _, _, hi, lo] = segments;
    let embedded = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let reason = match segments[0] {
        // SIIT's IPv4-translated form ::ffff:0:a.b.c.d: refused whatever it carries, and named
        // after the IPv4 address when that is refused too.
        0 if segments[1..4].iter().all(|s| *s == 0)
            && segments[4] == 0xffff
            && segments[5] == 0 =>
        {
            return forbidden_v4(embedded).or(Some("IPv4-translated (SIIT)"));
        }
        0 if segments[1..6].iter().all(|s| *s == 0) => {
            // The deprecated IPv4-compatible form ::a.b.c.d.
            return forbidden_v4(embedded).or(Some("IPv4-compatible"));
        }
        0x0064 if segments[1] == 0xff9b => "NAT64",
        0x0100 if segments[1..4].iter().all(|s| *s == 0) => "discard-only",
        0x2001 if segments[1] == 0 => "Teredo",
        0x2001 if segments[1] == 0x0db8 => "documentation",
        0x2002 => "6to4",
        s if s & 0xfe00 == 0xfc00 => "unique local (private)",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        forbidden_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn refuses_every_non_public_ipv4_range() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "192.0.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn allows_public_ipv4_next_to_the_private_ranges() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "93.184.216.34",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn refuses_non_public_ipv6_including_embedded_ipv4_forms() {
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn allows_public_ipv6() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn refuses_siit_translated_addresses_and_the_6to4_relay_anycast() {
        assert_eq!(
            forbidden_reason("::ffff:0:127.0.0.1".parse().unwrap()),
            Some("loopback"),
            "the IPv4 address inside is judged"
        );
        assert_eq!(
            forbidden_reason("::ffff:0:93.184.215.14".parse().unwrap()),
            Some("IPv4-translated (SIIT)"),
            "the whole range is refused"
        );
        assert_eq!(
            forbidden_reason("192.88.99.1".parse().unwrap()),
            Some("6to4 relay anycast")
        );
        assert!(!refused("192.88.98.1") && !refused("192.88.100.1"));
    }
}
