//! Header rewriting on the way to an instance and back.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use valet_gateway::fields::Fields;
use valet_gateway::forward::{
    prepare_request, ClientInfo, Hop, GUARDED, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PREFIX, X_FORWARDED_PROTO, X_REQUEST_ID,
};
use valet_gateway::http1::hop::{remove_hop_by_hop, HOP_BY_HOP};
use valet_gateway::message::request_id;
use valet_gateway::upgrade::is_upgrade;

/// Headers valet sets itself after removing what `Connection` names.
const SET_BY_VALET: [&str; 7] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-real-ip",
    "forwarded",
];

/// Fields that name the client's address or the hops before valet, other than those valet
/// sets itself: they pass from a trusted proxy only (so does every `x-forwarded-*` name, checked
/// by prefix below).
const CLIENT_ADDRESS: [&str; 16] = [
    "front-end-https",
    "x-url-scheme",
    "x-scheme",
    "x-arr-ssl",
    "x-host",
    "x-original-host",
    "x-script-name",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "client-ip",
    "x-forwarded",
    "x-forwarded-server",
];

/// Fields that name another request target than the one valet routed: they never pass.
const TARGET_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Input: a flags byte (bit 0 trusted peer, 1 https, 2 IPv6 peer, 3 a client host, 4 a
/// forwarded prefix), then `name: value` header lines. Rewrites them as a request to an
/// instance and as a response back, and checks what may pass.
pub fn headers(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let original = crate::header_map(crate::lines(rest));
    let peer = if flags & 4 != 0 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    };
    let mut client = ClientInfo {
        peer,
        peer_header: HeaderValue::try_from(peer.to_string()).expect("an address is a value"),
        trusted: flags & 1 != 0,
        https: flags & 2 != 0,
        host: (flags & 8 != 0).then(|| HeaderValue::from_static("app.example.com")),
        new_request_id: None,
    };
    let prefix = (flags & 16 != 0).then(|| HeaderValue::from_static("/api"));

    let mut request = original.clone();
    let (id, new) = request_id(&Fields::Map(request.clone()));
    assert!(!id.is_empty() && id.len() <= 128, "request id {id:?}");
    if is_upgrade(&Fields::Map(request.clone()), &["websocket".into()]) {
        // On a route that allows WebSocket only, an upgrade offers nothing else (no `h2c`).
        for value in original.get_all(header::UPGRADE) {
            for protocol in value.as_bytes().split(|&b| b == b',') {
                let name = protocol.split(|&b| b == b'/').next().unwrap_or_default();
                assert!(
                    name.trim_ascii().eq_ignore_ascii_case(b"websocket"),
                    "upgrade to {value:?} passed for a WebSocket-only route"
                );
            }
        }
    }
    client.new_request_id = new.then(|| id.clone());
    prepare_request(&mut request, &client, prefix.clone(), Hop::Instance);
    if new {
        // A new id replaces whatever the client sent.
        assert_eq!(
            request.get_all(&X_REQUEST_ID).iter().collect::<Vec<_>>(),
            [&id]
        );
    }
    no_hop_by_hop(&original, &request, &SET_BY_VALET);
    for name in request.keys() {
        let dashed = name.as_str().replace('_', "-");
        assert!(
            !name.as_str().contains('_') || !GUARDED.contains(&dashed.as_str()),
            "lookalike {name} passed"
        );
    }
    for name in TARGET_OVERRIDES {
        assert!(!request.contains_key(name), "{name} passed");
    }
    if !client.trusted {
        for name in CLIENT_ADDRESS {
            assert!(
                !request.contains_key(name),
                "{name} passed from an untrusted peer"
            );
        }
        for name in request.keys() {
            let family = name.as_str().replace('_', "-");
            assert!(
                !family.starts_with("x-forwarded-") || SET_BY_VALET.contains(&name.as_str()),
                "{name} passed from an untrusted peer"
            );
        }
    }
    let forwarded_for = request
        .get(&X_FORWARDED_FOR)
        .expect("X-Forwarded-For is set");
    let proto = request
        .get(&X_FORWARDED_PROTO)
        .expect("X-Forwarded-Proto is set");
    if !client.trusted {
        // An untrusted client's own X-Forwarded-* never pass.
        assert_eq!(forwarded_for, &client.peer_header);
        let want = if client.https { "https" } else { "http" };
        assert_eq!(proto, want);
        assert_eq!(request.get(&X_FORWARDED_HOST), client.host.as_ref());
        assert_eq!(request.get(&X_FORWARDED_PREFIX), prefix.as_ref());
        assert!(request.get_all(&X_FORWARDED_FOR).iter().count() == 1);
    } else {
        assert!(forwarded_for
            .as_bytes()
            .ends_with(client.peer_header.as_bytes()));
    }
    if let Some(prefix) = &prefix {
        assert_eq!(request.get(&X_FORWARDED_PREFIX), Some(prefix));
    }
    if client.host.is_some() {
        assert!(request.contains_key(header::HOST));
    }

    // The same headers as an instance's response on the way back.
    let mut response = original.clone();
    remove_hop_by_hop(&mut response);
    no_hop_by_hop(&original, &response, &[]);
}

/// Neither a hop-by-hop header nor one that `Connection` named is left in `after`, unless
/// valet sets it again itself (`set_again`).
fn no_hop_by_hop(before: &HeaderMap, after: &HeaderMap, set_again: &[&str]) {
    for name in HOP_BY_HOP {
        assert!(!after.contains_key(name), "hop-by-hop {name} passed");
    }
    let named = before
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok());
    for name in named {
        if !set_again.contains(&name.as_str()) {
            assert!(
                !after.contains_key(&name),
                "{name}, named by Connection, passed"
            );
        }
    }
}
