//! The field names [`super`]'s rules name: kept apart so that the rules read as code.

/// Headers that frame a message, that valet sets itself, or that it passes from trusted proxies
/// only or never. A backend that reads `-` and `_` alike (CGI, WSGI, PHP: both become
/// `HTTP_X_FORWARDED_FOR`) would take a client's `X_Forwarded_For` for one, so such never pass.
pub static GUARDED: [&str; 41] = [
    "x-valet-peer",
    "x-valet-instance",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "content-length",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-request-id",
    "http2-settings",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "client-ip",
    "x-forwarded",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-url-scheme",
    "front-end-https",
    "x-scheme",
    "x-arr-ssl",
    "x-host",
    "x-original-host",
    "x-script-name",
];

/// Fields valet reads to route a request or sets on its way to the instance. A request whose
/// `Connection` names one of them (or the field its key comes from) is refused: the field
/// would be dropped as hop-by-hop after valet decided by it, so the instance would see another
/// request than the one valet routed, keyed and authorised. RFC 9110 7.6.1 forbids naming a
/// field meant for every recipient there anyway; no client has a reason to.
pub(super) static OWN: [&str; 8] = [
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-request-id",
];
