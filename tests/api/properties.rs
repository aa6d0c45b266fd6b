//! Property tests: the address policy in every spelling of an address, URL and event-list
//! validation, and the two signers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use hookrelay::delivery::signer::{devtune_signature, standard_signature};
use hookrelay::domain::{EndpointUrl, EventType, EventTypes, UrlPolicy, forbidden_reason};
use proptest::prelude::*;
use sha2::Sha256;

const STRICT: UrlPolicy = UrlPolicy {
    allow_http: false,
    allow_private: false,
    allow_any_port: false,
};

/// IPv4 addresses inside the refused ranges, and ones from the public space around them.
fn private_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(|n| Ipv4Addr::from((10 << 24) | (n & 0x00ff_ffff))),
        any::<u32>().prop_map(|n| Ipv4Addr::from((127 << 24) | (n & 0x00ff_ffff))),
        any::<u32>().prop_map(|n| Ipv4Addr::from(0xac10_0000 | (n & 0x000f_ffff))),
        any::<u32>().prop_map(|n| Ipv4Addr::from(0xc0a8_0000 | (n & 0x0000_ffff))),
        any::<u32>().prop_map(|n| Ipv4Addr::from(0xa9fe_0000 | (n & 0x0000_ffff))),
        any::<u32>().prop_map(|n| Ipv4Addr::from(0x6440_0000 | (n & 0x003f_ffff))),
        any::<u32>().prop_map(|n| Ipv4Addr::from(n & 0x00ff_ffff)),
    ]
}

/// The spellings a URL parser accepts for one IPv4 address.
fn spellings(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    vec![
        ip.to_string(),
        format!("{ip}."),
        n.to_string(),
        format!("0x{n:x}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!(
            "{a}.{}",
            (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)
        ),
        format!("[::ffff:{ip}]"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_spelling_of_a_private_ipv4_is_refused(ip in private_v4()) {
        prop_assert!(forbidden_reason(IpAddr::V4(ip)).is_some());
        for host in spellings(ip) {
            let url = format!("https://{host}/hook");
            prop_assert!(EndpointUrl::parse(&url, STRICT).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn an_ipv4_and_its_mapped_ipv6_form_are_judged_alike(n in any::<u32>()) {
        let v4 = Ipv4Addr::from(n);
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        prop_assert_eq!(forbidden_reason(IpAddr::V4(v4)).is_some(), forbidden_reason(mapped).is_some());
    }

    #[test]
    fn nat64_6to4_unique_local_and_link_local_ipv6_are_refused(
        low in any::<u128>(),
        prefix in prop::sample::select(vec![
            (0x0064_ff9b_0000_0000_0000_0000_0000_0000u128, 96u32),
            (0x2002_0000_0000_0000_0000_0000_0000_0000, 16),
            (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),
            (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10),
        ]),
    ) {
        let (network, length) = prefix;
        let host_bits = low & (u128::MAX >> length);
        let ip = Ipv6Addr::from(network | host_bits);
        prop_assert!(forbidden_reason(IpAddr::V6(ip)).is_some(), "{ip} was allowed");
        let url = format!("https://[{ip}]/hook");
        prop_assert!(EndpointUrl::parse(&url, STRICT).is_err());
    }

    #[test]
    fn zone_ids_never_pass(zone in "[a-z0-9]{1,8}") {
        let url = format!("https://[fe80::1%25{zone}]/hook");
        prop_assert!(EndpointUrl::parse(&url, STRICT).is_err());
    }

    #[test]
    fn public_https_names_pass_and_plain_http_does_not(label in "[a-z][a-z0-9]{0,20}", path in "[a-z0-9/]{0,40}") {
        let url = format!("https://{label}.example.com/{path}");
        prop_assert!(EndpointUrl::parse(&url, STRICT).is_ok(), "{url}");
        let http = format!("http://{label}.example.com/{path}");
        prop_assert!(EndpointUrl::parse(&http, STRICT).is_err());
    }

    #[test]
    fn urls_longer_than_2048_characters_never_pass(extra in 1usize..3000) {
        let url = format!("https://example.com/{}", "a".repeat(2048 - 20 + extra));
        prop_assert!(EndpointUrl::parse(&url, STRICT).is_err());
    }

    #[test]
    fn event_lists_of_distinct_known_types_pass_in_order(
        picks in proptest::sample::subsequence(EventType::DEVTUNE.to_vec(), 1..=6).prop_shuffle()
    ) {
        let names: Vec<&str> = picks.iter().map(|t| t.as_str()).collect();
        let parsed = EventTypes::parse(&names).unwrap();
        prop_assert_eq!(parsed.as_slice(), picks.as_slice());
    }

    #[test]
    fn event_lists_with_a_repeat_or_an_unknown_type_fail(
        picks in proptest::sample::subsequence(EventType::DEVTUNE.to_vec(), 1..=5),
        unknown in "[a-z.]{1,30}",
    ) {
        let mut names: Vec<String> = picks.iter().map(|t| t.as_str().to_owned()).collect();
        let mut repeated = names.clone();
        repeated.push(names[0].clone());
        prop_assert!(EventTypes::parse(&repeated).is_err());
        if EventType::parse(&unknown).is_none() {
            names.push(unknown);
            prop_assert!(EventTypes::parse(&names).is_err());
        }
    }

    #[test]
    fn devtune_signatures_verify_and_any_changed_byte_fails(
        secret in "[0-9a-f]{64}",
        body in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let signature = devtune_signature(secret.as_bytes(), &body);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&body);
        prop_assert!(mac.verify_slice(&hex::decode(&signature).unwrap()).is_ok());
        let mut tampered = body.clone();
        tampered[flip.index(body.len())] ^= 1 << bit;
        prop_assert_ne!(devtune_signature(secret.as_bytes(), &tampered), signature);
    }

    #[test]
    fn standard_signatures_verify_and_any_changed_byte_fails(
        key in proptest::collection::vec(any::<u8>(), 16..64),
        id in "[a-zA-Z0-9_]{1,40}",
        timestamp in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<proptest::sample::Index>(),
    ) {
        use base64::Engine;
        let signature = standard_signature(&key, &id, timestamp, &body);
        let encoded = signature.strip_prefix("v1,").unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&body);
        prop_assert!(mac.verify_slice(&raw).is_ok());
        let mut tampered = body.clone();
        tampered[flip.index(body.len())] ^= 0x80;
        prop_assert_ne!(standard_signature(&key, &id, timestamp, &tampered), signature.clone());
        prop_assert_ne!(standard_signature(&key, &id, timestamp + 1, &body), signature);
    }
}

/// JSON values biased towards the fields the API reads, with odd leaves mixed in.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "action.created",
            "visibility.changed",
            "webhook.test",
            "http://127.0.0.1:9009/hook",
            "https://example.com/hook",
            "https://10.0.0.1/",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop::sample::select(vec![
            "url", "events", "event", "data", "filters", "enabled", "name", "x",
        ])
        .prop_map(str::to_owned);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(prop_oneof![key, ".{0,8}"], inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// What ingestion and webhook creation may answer to anything at all: never a server error.
#[test]
fn arbitrary_bodies_never_cause_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(crate::common::TestApp::spawn_with(
        crate::common::Backend::Sqlite,
        |c| {
            c.allow_http = true;
            c.allow_private_targets = true;
            c.max_event_bytes = 4096;
            c.delivery.worker = false;
        },
    ));
    let paths = [app.project_path("/events"), app.project_path("/webhooks")];
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..6000),
    ];
    proptest!(ProptestConfig::with_cases(300), |(bytes in body, target in 0usize..2)| {
        let status = runtime.block_on(async {
            app.client
                .post(app.url(&paths[target]))
                .bearer_auth(&app.key)
                .header("content-type", "application/json")
                .body(bytes.clone())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        prop_assert!(
            [201, 202, 400, 413].contains(&status),
            "{} answered {status} to {:?}",
            paths[target],
            String::from_utf8_lossy(&bytes)
        );
    });
    drop(app);
}
