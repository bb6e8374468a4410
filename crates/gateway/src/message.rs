//! A request and an answer as the handler takes and gives them, whichever server read the
//! request (valet's HTTP/1.1 or hyper) and whichever client brought the answer.

use crate::body::{Body, RequestBody};
use crate::fields::Fields;
use crate::forward::X_REQUEST_ID;
use crate::http1::framing::{one_length, says_length};
use http::header::{self, HeaderValue};
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};

/// A client's request as the handler takes it.
pub struct ClientRequest {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub fields: Fields,
    /// hyper's (the upgrade handle lives here); empty for requests parsed by valet.
    pub extensions: Extensions,
    pub body: RequestBody,
}

impl From<Request<RequestBody>> for ClientRequest {
    fn from(req: Request<RequestBody>) -> Self {
        let (mut parts, body) = req.into_parts();
        if parts.version == Version::HTTP_2 {
            join_cookies(&mut parts.headers);
        }
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            fields: Fields::Map(parts.headers),
            extensions: parts.extensions,
            body,
        }
    }
}

/// RFC 9113 8.2.3: an h2 client may split its cookies over several `cookie` fields, which are
/// joined with `; ` before the request goes on over HTTP/1.1, where a server reads one `Cookie`
/// field (several apps read only the first, so the others' cookies would be lost).
fn join_cookies(headers: &mut header::HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

impl ClientRequest {
    /// The request in `http`'s type, its fields in a header map.
    pub fn into_http(self) -> Request<RequestBody> {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.fields.into_map();
        *req.extensions_mut() = self.extensions;
        req
    }
}

/// An answer as the handler gives it. An instance's answer keeps its fields as spans of its
/// head (hop-by-hop fields are dropped when it is written); valet's own answers and those
/// that came through hyper keep a map.
pub struct Answer<B = Body> {
    pub status: StatusCode,
    pub fields: Fields,
    /// The request's id, sent back in place of any id field among `fields`.
    pub request_id: Option<HeaderValue>,
    pub body: B,
}

impl From<Response<Body>> for Answer {
    fn from(response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            fields: Fields::Map(parts.headers),
            request_id: None,
            body,
        }
    }
}

impl Answer {
    /// The answer in `http`'s type, for hyper's server.
    pub fn into_http(self) -> Response<Body> {
        let spans = matches!(self.fields, Fields::Spans { .. });
        let mut headers = self.fields.into_map();
        if spans {
            // An instance's answer: the same rules as valet's own server writes it by
            // (crate::http1::response): hop-by-hop fields dropped, and its length kept only
            // when it is one valid number, in digits (hyper would pass `2, 2` on as it is).
            crate::http1::hop::remove_hop_by_hop(&mut headers);
            let values = headers.get_all(header::CONTENT_LENGTH).iter();
            let declared = one_length(values.map(HeaderValue::as_bytes));
            headers.remove(header::CONTENT_LENGTH);
            if let Some(n) = declared.filter(|_| says_length(self.status)) {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        if let Some(id) = self.request_id {
            headers.insert(crate::forward::X_REQUEST_ID.clone(), id);
        }
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
}

/// The client's request id if it sent a sane one, else a new one (`true`: new, to be sent to
/// the instance in place of the client's). Returned to be echoed back.
pub fn request_id(headers: &Fields) -> (HeaderValue, bool) {
    if let Some(id) = headers.value(&X_REQUEST_ID) {
        if !id.is_empty() && id.len() <= 128 {
            return (id, false);
        }
    }
    (new_request_id(), true)
}

/// 128 random bits as 32 hex characters.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut out = [0u8; 32];
    for byte in out.iter_mut() {
        *byte = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&out).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_h2_requests_cookies_reach_the_instance_as_one_field() {
        let request = |version| {
            let mut req = Request::new(RequestBody::Buffered(None));
            *req.version_mut() = version;
            for crumb in ["a=1", "b=2", "access_token=t"] {
                req.headers_mut()
                    .append(header::COOKIE, HeaderValue::from_static(crumb));
            }
            ClientRequest::from(req)
        };
        let h2 = request(Version::HTTP_2);
        let cookies: Vec<&[u8]> = h2.fields.get_all(&header::COOKIE).collect();
        assert_eq!(cookies, [&b"a=1; b=2; access_token=t"[..]]);
        // HTTP/1.1 sends one Cookie field; several are passed on as they came.
        let h1 = request(Version::HTTP_11);
        assert_eq!(h1.fields.get_all(&header::COOKIE).count(), 3);
    }
}
