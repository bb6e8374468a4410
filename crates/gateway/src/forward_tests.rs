use super::*;
use crate::http1::hop::{remove_hop_by_hop, HOP_BY_HOP};
use crate::upgrade::is_upgrade;
use bytes::BytesMut;
use http_body_util::Empty;

fn client(trusted: bool) -> ClientInfo {
    ClientInfo {
        peer: IpAddr::from([10, 0, 0, 9]),
        peer_header: HeaderValue::from_static("10.0.0.9"),
        trusted,
        https: true,
        host: Some(HeaderValue::from_static("app.test")),
        new_request_id: None,
    }
}

/// The request head as it goes to the instance, its field lines sorted, with the
/// client's fields parsed by valet (names as sent) and, the same again, by hyper (names
/// lower-cased): both must come out alike, but for the case of the client's own names.
fn written(fields: &[(&str, &str)], rewrite: &Rewrite<'_>) -> Vec<String> {
    let raw: String = fields
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let spans = crate::fields::tests::spans(&raw);
    let map = Fields::Map(crate::fields::tests::spans(&raw).into_map());
    let [from_spans, from_map] = [spans, map].map(|fields| {
        let mut out = BytesMut::new();
        let body = Empty::<bytes::Bytes>::new();
        crate::http1::request::encode_request(
            &http::Method::GET,
            "/",
            &fields,
            Some(rewrite),
            &body,
            &mut out,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut lines: Vec<String> = text
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    });
    let lower = |lines: &[String]| -> Vec<String> {
        let mut lower: Vec<String> = lines.iter().map(|l| l.to_ascii_lowercase()).collect();
        lower.sort();
        lower
    };
    assert_eq!(lower(&from_spans), lower(&from_map));
    from_map
}

#[test]
fn an_untrusted_clients_head_is_rewritten_as_it_is_written() {
    let mut client = client(false);
    client.new_request_id = Some(HeaderValue::from_static("new-id"));
    let rewrite = Rewrite {
        client: &client,
        prefix: Some(HeaderValue::from_static("/api")),
        fallback_host: None,
        hop: Hop::Instance,
    };
    let lines = written(
        &[
            ("Host", "app.test"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-prefix", "/evil"),
            ("x-request-id", "client-id"),
            ("x_forwarded_for", "7.7.7.7"),
            ("transfer_encoding", "chunked"),
            ("Connection", "keep-alive, X-Secret"),
            ("Keep-Alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("x-kept", "yes"),
            ("x_kept_too", "yes"),
            ("X-Real-IP", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6;proto=https"),
            ("True-Client-IP", "6.6.6.6"),
            ("X-Client-IP", "6.6.6.6"),
            ("CF-Connecting-IP", "6.6.6.6"),
            ("Fastly-Client-IP", "6.6.6.6"),
            ("X-Cluster-Client-IP", "6.6.6.6"),
            ("X-Original-Forwarded-For", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("Client-IP", "6.6.6.6"),
            ("X-Forwarded", "for=6.6.6.6"),
            ("X-Forwarded-Server", "evil.test"),
            ("X-Original-URL", "/admin"),
            ("X-Rewrite-URL", "/admin"),
            ("X-Original-URI", "/admin"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Forwarded-Path", "/admin"),
            ("x_forwarded_uri", "/admin"),
            ("client_ip", "6.6.6.6"),
            ("X_Original_URL", "/admin"),
            ("x_rewrite_url", "/admin"),
        ],
        &rewrite,
    );
    assert_eq!(
        lines,
        [
            "forwarded: for=10.0.0.9;host=\"app.test\";proto=https",
            "host: app.test",
            "x-forwarded-for: 10.0.0.9",
            "x-forwarded-host: app.test",
            "x-forwarded-prefix: /api",
            "x-forwarded-proto: https",
            "x-kept: yes",
            "x-real-ip: 10.0.0.9",
            "x-request-id: new-id",
            "x_kept_too: yes",
        ]
    );
}

#[test]
fn a_trusted_proxys_forwarded_fields_are_kept_and_extended() {
    let client = client(true);
    let rewrite = Rewrite {
        client: &client,
        prefix: None,
        fallback_host: None,
        hop: Hop::Instance,
    };
    let lines = written(
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "outer.test"),
            ("x-forwarded-prefix", "/outer"),
            ("x-request-id", "client-id"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("client-ip", "1.2.3.4"),
            ("x-forwarded", "for=1.2.3.4"),
            ("x-forwarded-server", "outer.test"),
            // A trusted proxy still cannot send the instance to another path.
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x_forwarded_server", "outer.test"),
        ],
        &rewrite,
    );
    assert_eq!(
        lines,
        [
            "client-ip: 1.2.3.4",
            "forwarded: for=1.2.3.4",
            "forwarded: for=10.0.0.9;host=\"app.test\";proto=https",
            "host: app.test",
            "true-client-ip: 1.2.3.4",
            "x-forwarded-for: 1.2.3.4, 10.0.0.9",
            "x-forwarded-host: outer.test",
            "x-forwarded-prefix: /outer",
            "x-forwarded-proto: http",
            "x-forwarded-server: outer.test",
            "x-forwarded: for=1.2.3.4",
            "x-real-ip: 1.2.3.4",
            "x-request-id: client-id",
        ]
    );
}

#[test]
fn connection_may_not_name_a_field_valet_routes_by_or_sets() {
    let named = |raw: &str, key: Option<&[u8]>| {
        let spans = crate::fields::tests::spans(raw);
        let map = Fields::Map(crate::fields::tests::spans(raw).into_map());
        let found = connection_names_own(&spans, key).map(<[u8]>::to_vec);
        assert_eq!(found, connection_names_own(&map, key).map(<[u8]>::to_vec));
        found.map(|n| String::from_utf8(n).unwrap())
    };
    let key = Some(&b"x-tenant"[..]);
    let with = |connection: &str| format!("X-Tenant: a\r\nConnection: {connection}\r\n");
    assert_eq!(named(&with("X-Tenant"), key).as_deref(), Some("X-Tenant"));
    assert_eq!(
        named(&with("close, x_tenant"), key).as_deref(),
        Some("x_tenant")
    );
    // Any `Connection` field counts, not only the first.
    let two = "Connection: keep-alive\r\nX-Tenant: a\r\nConnection: X-TENANT\r\n";
    assert_eq!(named(two, key).as_deref(), Some("X-TENANT"));
    for own in OWN {
        let upper = own.to_ascii_uppercase().replace('-', "_");
        assert_eq!(named(&with(own), None).as_deref(), Some(own));
        assert_eq!(named(&with(&upper), None), Some(upper));
    }
    assert_eq!(
        named("Connection: Cookie\r\n", Some(b"cookie")).as_deref(),
        Some("Cookie")
    );
    // What clients really send, and fields valet neither reads nor sets, are no reason.
    for fine in [
        "keep-alive",
        "close",
        "Upgrade",
        "X-Other, TE",
        "x-tenants",
        "",
    ] {
        assert_eq!(named(&with(fine), key), None, "{fine}");
    }
    assert_eq!(named("X-Tenant: a\r\n", key), None);
    assert_eq!(named("Connection: Cookie\r\n", key), None);
}

#[test]
fn a_field_that_connection_names_is_set_by_valet_as_if_never_sent() {
    let mut client = client(true);
    client.host = None;
    let rewrite = Rewrite {
        client: &client,
        prefix: None,
        fallback_host: Some("127.0.0.1:4000".parse().unwrap()),
        hop: Hop::Instance,
    };
    let lines = written(
        &[
            ("host", "named.test"),
            ("x-forwarded-proto", "http"),
            ("connection", "Host, X-Forwarded-Proto"),
        ],
        &rewrite,
    );
    assert_eq!(
        lines,
        [
            "forwarded: for=10.0.0.9;proto=https",
            "host: 127.0.0.1:4000",
            "x-forwarded-for: 10.0.0.9",
            "x-forwarded-proto: https",
            "x-real-ip: 10.0.0.9",
        ]
    );
}

#[test]
fn the_rewrite_drops_exactly_the_hop_by_hop_names() {
    // `field` sorts names with a match of its own; it must agree with HOP_BY_HOP, which
    // header maps are filtered by.
    for name in GUARDED {
        let upper = name.to_ascii_uppercase();
        let hop = HOP_BY_HOP.iter().any(|h| h.as_str() == name);
        for spelled in [name.as_bytes(), upper.as_bytes()] {
            let dropped = matches!(field(spelled), Field::Dropped | Field::Connection);
            assert_eq!(dropped, hop, "{name}");
            assert_eq!(is_hop_by_hop(spelled), hop, "{name}");
        }
    }
    assert!(!is_hop_by_hop(b"x-kept"));
}

#[test]
fn the_map_version_applies_the_same_rules() {
    let mut client = client(false);
    client.new_request_id = Some(HeaderValue::from_static("id"));
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    headers.insert("x_real_ip", HeaderValue::from_static("6.6.6.6"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("x-kept", HeaderValue::from_static("1"));
    headers.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
    headers.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
    headers.insert("x-client-ip", HeaderValue::from_static("6.6.6.6"));
    headers.insert("http2-settings", HeaderValue::from_static("AAMAAABk"));
    prepare_request(&mut headers, &client, None, Hop::Instance);
    let mut names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "forwarded",
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-kept",
            "x-real-ip",
            "x-request-id"
        ]
    );
    assert_eq!(headers["x-forwarded-for"], "10.0.0.9");
    assert_eq!(headers["x-real-ip"], "10.0.0.9");
    let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
    assert_eq!(forwarded, ["for=10.0.0.9;host=\"app.test\";proto=https"]);
}

#[test]
fn forwarded_quotes_an_ipv6_peer_and_follows_a_trusted_proxys_elements() {
    let mut client = client(true);
    client.peer = "2001:db8::7".parse().unwrap();
    client.peer_header = HeaderValue::from_static("2001:db8::7");
    client.host = Some(HeaderValue::from_static("app.test:8787"));
    client.https = false;
    let mut headers = HeaderMap::new();
    headers.append("forwarded", HeaderValue::from_static("for=192.0.2.1"));
    headers.append("forwarded", HeaderValue::from_static("for=192.0.2.2"));
    prepare_request(&mut headers, &client, None, Hop::Instance);
    let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
    assert_eq!(
        forwarded,
        [
            "for=192.0.2.1",
            "for=192.0.2.2",
            "for=\"[2001:db8::7]\";host=\"app.test:8787\";proto=http"
        ]
    );
}

#[test]
fn only_upgrades_the_route_allows_are_upgrades() {
    let websocket: &[Box<str>] = &["websocket".into()];
    let upgrade = |raw: &str, allowed| is_upgrade(&crate::fields::tests::spans(raw), allowed);
    assert!(upgrade(
        "Connection: Upgrade\r\nUpgrade: websocket\r\n",
        websocket
    ));
    assert!(upgrade(
        "Connection: keep-alive, upgrade\r\nUpgrade: WebSocket/13\r\n",
        websocket
    ));
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n";
    let both = "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n";
    for raw in [
        h2c,
        both,
        "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n",
        "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n",
        "Connection: Upgrade\r\nUpgrade: websocketx\r\n",
        "Connection: Upgrade\r\nUpgrade: ,\r\n",
        "Upgrade: websocket\r\n",
    ] {
        assert!(!upgrade(raw, websocket), "{raw}");
    }
    // A route that names more allows them, alone or together; none: not even WebSocket.
    let more: &[Box<str>] = &["websocket".into(), "h2c".into(), "tls/1.0".into()];
    for raw in [h2c, both, "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n"] {
        assert!(upgrade(raw, more), "{raw}");
    }
    assert!(!upgrade(
        "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n",
        more
    ));
    assert!(!upgrade(
        "Connection: Upgrade\r\nUpgrade: websocket\r\n",
        &[]
    ));
}

#[test]
fn a_connection_value_with_a_non_ascii_byte_still_names_its_headers() {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_bytes(b"x-secret, caf\xc3\xa9").unwrap();
    headers.insert(header::CONNECTION, value);
    headers.insert("x-secret", HeaderValue::from_static("1"));
    headers.insert("x-kept", HeaderValue::from_static("1"));
    remove_hop_by_hop(&mut headers);
    assert!(!headers.contains_key("x-secret"));
    assert!(!headers.contains_key(header::CONNECTION));
    assert!(headers.contains_key("x-kept"));
}

#[test]
fn what_the_clients_connection_was_passes_from_a_trusted_proxy_only() {
    let fields = [
        ("x-forwarded-port", "443"),
        ("x-forwarded-ssl", "on"),
        ("X-Forwarded-Scheme", "https"),
        ("front-end-https", "on"),
        ("x-url-scheme", "https"),
        ("x-scheme", "https"),
        ("x-arr-ssl", "on"),
        ("x-host", "other.test"),
        ("x-original-host", "other.test"),
        ("x-script-name", "/mount"),
        ("X_Forwarded_Port", "443"),
        ("x_scheme", "https"),
        ("x-forwardedport", "kept: not of the family"),
    ];
    for trusted in [false, true] {
        let client = client(trusted);
        let rewrite = Rewrite {
            client: &client,
            prefix: None,
            fallback_host: None,
            hop: Hop::Instance,
        };
        let lines = written(&fields, &rewrite);
        for (name, value) in &fields {
            let line = format!("{}: {value}", name.to_ascii_lowercase());
            let passes = if name.contains('_') {
                false
            } else {
                trusted || *name == "x-forwardedport"
            };
            assert_eq!(lines.contains(&line), passes, "{name} (trusted: {trusted}): {lines:?}");
        }
    }
}
