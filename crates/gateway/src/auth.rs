//! JWT checks for routes with `auth = "jwt"`, done before any instance is woken. Browsers cannot
//! set headers on a WebSocket, so the token is also taken from an `access_token` cookie or query
//! parameter.

use crate::fields::Fields;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use std::path::Path;
use valet_config::AuthConfig;

/// The claims valet reads; everything else in the token is left to the backend.
#[derive(Debug, serde::Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub plan: Option<String>,
    /// Read only to hold it to one string (see [`single_issuer`]); jsonwebtoken checks its value.
    #[serde(default, deserialize_with = "single_issuer")]
    pub iss: Option<String>,
}

/// `iss` is one StringOrURI (RFC 7519 4.1.1), never a list. jsonwebtoken accepts a list when
/// any of its items is the configured issuer, so `["idp", "anyone"]` would pass for `idp`
/// although no issuer issues tokens in other issuers' names. Every token is decoded into
/// [`Claims`], so this holds at the gateway and at the deploy API alike, whether or not an
/// issuer is configured (a list is no valid `iss` either way).
fn single_issuer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(iss) => Ok(Some(iss)),
        serde_json::Value::Null => Ok(None),
        _ => Err(serde::de::Error::custom(
            "the iss claim must be one string, not a list or other value",
        )),
    }
}

/// Verifies tokens against the configured secret or public keys.
pub struct JwtVerifier {
    keys: Vec<(DecodingKey, &'static [Algorithm])>,
    issuer: Option<String>,
    audience: Option<String>,
}

const HMAC: &[Algorithm] = &[Algorithm::HS256];
const RSA: &[Algorithm] = &[Algorithm::RS256];
const EC: &[Algorithm] = &[Algorithm::ES256];

impl JwtVerifier {
    /// Reads the secret and PEM keys; `resolve` turns config paths into real ones.
    pub fn from_config(
        auth: &AuthConfig,
        resolve: impl Fn(&Path) -> std::path::PathBuf,
    ) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &auth.jwt_secret {
            keys.push((DecodingKey::from_secret(secret.as_bytes()), HMAC));
        }
        for path in &auth.jwt_public_keys {
            let path = resolve(path);
            let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map(|k| (k, RSA))
                .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (k, EC)))
                .map_err(|_| format!("{}: not an RSA or EC public key in PEM", path.display()))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("[auth] needs jwt_secret or jwt_public_keys".into());
        }
        Ok(Self {
            keys,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
        })
    }

    /// The one set of rules every token is held to, at the gateway's `auth = "jwt"` routes and
    /// at the deploy API alike. jsonwebtoken checks `iss` and `aud` only when a token carries
    /// them, so a configured one is also made a required claim: a token without it is refused,
    /// not let through unchecked.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Checks signature, `exp`, `nbf`, and `iss`/`aud` when configured (then required).
    /// `alg: none` and any algorithm other than the key's own are refused.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = decode_header(token).map_err(|_| "malformed token".to_string())?;
        let mut last = String::from("no key accepts this token's algorithm");
        for (key, algs) in &self.keys {
            if !algs.contains(&header.alg) {
                continue;
            }
            let validation = self.validation(header.alg);
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// Why a request's token cannot be taken (see [`token_from`]).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// The `Authorization` field is there but holds no bearer token (401).
    NotBearer,
    /// More than one token, or one that cannot be read the one way every backend would (400).
    Ambiguous(&'static str),
}

/// The token a request carries: in `Authorization: Bearer` (the scheme in any case, RFC 9110
/// 11.1), an `access_token` cookie or an `access_token` query parameter. The token valet checks
/// must be the only one the instance can act on, whichever place its framework reads first: so
/// every place is read, as leniently as any backend reads it (cookie names trimmed and in any
/// case, across every `Cookie` field; parameter names decoded, in any case, `.` `+` ` ` `[` read
/// as `_`, `;` as a separator), and two different tokens, a second `Authorization` field, or an
/// `Authorization` field that is not a plain bearer token, are refused.
pub fn token_from(headers: &Fields, uri: &http::Uri) -> Result<Option<String>, TokenError> {
    let mut token: Option<String> = None;
    let mut take = |found: &[u8]| {
        match (&token, std::str::from_utf8(found)) {
        (_, Err(_)) => Err(TokenError::Ambiguous("a token is not UTF-8")),
        (Some(taken), Ok(found)) if taken != found => Err(TokenError::Ambiguous(
            "the request carries more than one token (Authorization, access_token cookie or parameter)",
        )),
        (Some(_), Ok(_)) => Ok(()),
        (None, Ok(found)) => {
            token = Some(found.to_string());
            Ok(())
        }
    }
    };
    let mut authorization = headers.get_all(&http::header::AUTHORIZATION);
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err(TokenError::Ambiguous(
                "a request carries one Authorization field",
            ));
        }
        take(bearer(value).ok_or(TokenError::NotBearer)?)?;
    }
    for value in headers.get_all(&http::header::COOKIE) {
        for pair in value.split(|&b| b == b';') {
            let (name, found) = split_pair(pair);
            if name.trim_ascii().eq_ignore_ascii_case(b"access_token") {
                take(found.trim_ascii())?;
            }
        }
    }
    let decode = |s: &[u8]| -> Vec<u8> {
        let spaced: Vec<u8> = s
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced).collect()
    };
    let query = uri.query().unwrap_or_default().as_bytes();
    for pair in query.split(|&b| b == b'&' || b == b';') {
        let (name, found) = split_pair(pair);
        let name: Vec<u8> = decode(name)
            .iter()
            .map(|&b| match b {
                b'.' | b' ' | b'[' => b'_',
                b => b.to_ascii_lowercase(),
            })
            .collect();
        if name == b"access_token" {
            take(&decode(found))?;
        }
    }
    Ok(token)
}

/// `name=value` (a pair without `=` is all name).
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(at) => (&pair[..at], &pair[at + 1..]),
        None => (pair, &[]),
    }
}

/// The token of a bearer credential (RFC 6750 2.1): `Bearer` in any case, spaces, then token68
/// characters only. Anything else (`Bearer,x`, a non-ASCII space) is no bearer token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..6)?;
    let rest = &value[6..];
    let token = rest.trim_ascii_start();
    let token68 = |&b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    (scheme.eq_ignore_ascii_case(b"bearer")
        && token.len() < rest.len()
        && rest[..rest.len() - token.len()]
            .iter()
            .all(|&b| b == b' ' || b == b'\t')
        && !token.is_empty()
        && token.iter().all(token68))
    .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        let auth = AuthConfig {
            jwt_secret: Some("test-secret".into()),
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            ..AuthConfig::default()
        };
        JwtVerifier::from_config(&auth, Path::to_path_buf).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(b"test-secret");
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    const LATER: u64 = 4_000_000_000;

    #[test]
    fn configured_issuer_and_audience_are_required_not_only_checked_when_present() {
        let v = verifier(Some("idp"), Some("valet"));
        let full = serde_json::json!({"sub": "u", "exp": LATER, "iss": "idp", "aud": "valet"});
        assert!(v.verify(&token(full)).is_ok());
        let no_iss = token(serde_json::json!({"sub": "u", "exp": LATER, "aud": "valet"}));
        let err = v.verify(&no_iss).unwrap_err();
        assert!(err.contains("iss"), "{err}");
        let no_aud = token(serde_json::json!({"sub": "u", "exp": LATER, "iss": "idp"}));
        let err = v.verify(&no_aud).unwrap_err();
        assert!(err.contains("aud"), "{err}");
        let wrong =
            token(serde_json::json!({"sub": "u", "exp": LATER, "iss": "x", "aud": "valet"}));
        assert!(v.verify(&wrong).is_err());
    }

    #[test]
    fn an_issuer_sent_as_a_list_is_refused_even_when_it_holds_the_configured_one() {
        let v = verifier(Some("idp"), Some("valet"));
        for iss in [
            serde_json::json!(["idp"]),
            serde_json::json!(["idp", "other"]),
            serde_json::json!({"iss": "idp"}),
            serde_json::json!(7),
        ] {
            let claims = serde_json::json!({"sub": "u", "exp": LATER, "iss": iss, "aud": "valet"});
            let err = v.verify(&token(claims)).unwrap_err();
            assert!(err.contains("iss"), "{iss}: {err}");
        }
        // Without a configured issuer a list is no valid `iss` either.
        let bare = verifier(None, None);
        let listed = token(serde_json::json!({"sub": "u", "exp": LATER, "iss": ["idp"]}));
        assert!(bare.verify(&listed).is_err());
        let one = token(serde_json::json!({"sub": "u", "exp": LATER, "iss": "idp"}));
        assert_eq!(bare.verify(&one).unwrap().iss.as_deref(), Some("idp"));
        // `aud` may be a list (RFC 7519 4.1.3): one holding the configured audience passes.
        let auds =
            serde_json::json!({"sub": "u", "exp": LATER, "iss": "idp", "aud": ["x", "valet"]});
        assert!(v.verify(&token(auds)).is_ok());
    }

    #[test]
    fn unconfigured_claims_are_not_demanded() {
        let v = verifier(None, None);
        let bare = token(serde_json::json!({"sub": "u", "exp": LATER}));
        assert!(v.verify(&bare).is_ok());
        let no_exp = token(serde_json::json!({"sub": "u"}));
        assert!(v.verify(&no_exp).is_err());
    }

    #[test]
    fn the_token_is_read_from_every_place_and_must_be_one() {
        let from = |head: &str, target: &str| {
            let fields = crate::fields::tests::spans(head);
            token_from(&fields, &target.parse().unwrap())
        };
        let one = |token: &str| Ok(Some(token.to_string()));
        let ambiguous =
            |r: Result<Option<String>, TokenError>| matches!(r, Err(TokenError::Ambiguous(_)));
        assert_eq!(from("Authorization: Bearer a.b.c\r\n", "/"), one("a.b.c"));
        assert_eq!(
            from("Authorization: bEaReR \t a.b.c\r\n", "/"),
            one("a.b.c")
        );
        assert_eq!(from("Cookie: x=1; access_token=c\r\n", "/"), one("c"));
        assert_eq!(from("", "/?a=1&access_token=q%2Eq"), one("q.q"));
        assert_eq!(from("", "/?a=1"), Ok(None));
        // The same token in several places is one token.
        assert_eq!(
            from(
                "Authorization: Bearer t\r\nCookie: access_token=t\r\n",
                "/?access_token=t"
            ),
            one("t")
        );
        // An Authorization field that is not a plain bearer token.
        for value in [
            "Basic dTpw",
            "Token t",
            "Bearer,t",
            "Bearer:t",
            "Bearert",
            "Bearer ",
        ] {
            let head = format!("Authorization: {value}\r\nCookie: access_token=good\r\n");
            assert_eq!(from(&head, "/"), Err(TokenError::NotBearer), "{value}");
        }
        // Two different tokens, wherever they are and however a backend spells their name.
        for (head, target) in [
            (
                "Authorization: Bearer a\r\nauthorization: Bearer a\r\n",
                "/",
            ),
            (
                "Authorization: Bearer good\r\nCookie: access_token=forged\r\n",
                "/",
            ),
            ("Authorization: Bearer good\r\n", "/?access_token=forged"),
            ("Cookie: access_token=good\r\n", "/?access_token=forged"),
            (
                "Cookie: access_token=good\r\nCookie: access_token=forged\r\n",
                "/",
            ),
            ("Cookie: access_token=good; access_token =forged\r\n", "/"),
            ("Cookie: access_token=good; ACCESS_TOKEN=forged\r\n", "/"),
            ("", "/?access_token=good&access%5Ftoken=forged"),
            ("", "/?access_token=good&x=1;access_token=forged"),
            ("", "/?access_token=good&access.token=forged"),
            ("", "/?access_token=good&access+token=forged"),
            ("", "/?access_token=good&ACCESS_TOKEN=forged"),
        ] {
            assert!(ambiguous(from(head, target)), "{head:?} {target}");
        }
    }
}
