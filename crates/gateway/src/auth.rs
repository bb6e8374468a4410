//! JWT checks for routes with `auth = "jwt"`, done before any instance is woken. Browsers cannot
//! set headers on a WebSocket, so the token is also taken from an `access_token` cookie or query
//! parameter.

use crate::fields::{self, Fields};
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

/// The token a request carries, from one place: its `Authorization` field when that is a bearer
/// credential (the scheme in any case, RFC 9110 11.1), else its `access_token` cookie, else its
/// `access_token` query parameter. The token valet checks must be the one the instance acts on,
/// so a bearer `Authorization` is never passed over for a cookie or a parameter (a backend
/// reads the field first), and a second `Authorization` field or a second `access_token` where
/// the token is taken from is refused: a backend may read the last where valet read the first.
pub fn token_from(headers: &Fields, uri: &http::Uri) -> Result<Option<String>, &'static str> {
    let mut authorization = headers.get_all(&http::header::AUTHORIZATION);
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err("a request carries one Authorization field");
        }
        if let Some(token) = bearer(value) {
            return Ok(Some(token.to_string()));
        }
    }
    let mut cookies = headers
        .get_all(&http::header::COOKIE)
        .filter_map(fields::text)
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == "access_token");
    if let Some((_, token)) = cookies.next() {
        if cookies.next().is_some() {
            return Err("a request carries one access_token cookie");
        }
        return Ok(Some(token.to_string()));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    // Names read decoded, as a backend reads them: `access%5Ftoken` is `access_token`.
    let mut params = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| decode(name).as_deref() == Some("access_token"));
    match (params.next(), params.next()) {
        (Some(_), Some(_)) => Err("a request carries one access_token parameter"),
        (Some((_, token)), None) => Ok(decode(token)),
        (None, _) => Ok(None),
    }
}

/// The token of a bearer credential: `Bearer`, in any case, then white space.
fn bearer(value: &[u8]) -> Option<&str> {
    let text = fields::text(value)?;
    let (scheme, rest) = text.split_at_checked(6)?;
    (scheme.eq_ignore_ascii_case("bearer") && rest.starts_with([' ', '\t'])).then(|| rest.trim())
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
    fn the_token_comes_from_one_place_and_only_once() {
        let from = |head: &str, target: &str| {
            let fields = crate::fields::tests::spans(head);
            token_from(&fields, &target.parse().unwrap())
        };
        let one = |token: &str| Ok(Some(token.to_string()));
        // A bearer field in any case of its scheme, and with a tab, is the token: a cookie or
        // parameter beside it never stands in for it.
        assert_eq!(from("Authorization: Bearer a.b.c\r\n", "/"), one("a.b.c"));
        assert_eq!(
            from(
                "Authorization: BEARER forged\r\nCookie: access_token=good\r\n",
                "/"
            ),
            one("forged")
        );
        assert_eq!(
            from("Authorization: Bearer\tforged\r\n", "/?access_token=good"),
            one("forged")
        );
        // Another scheme is the backend's own business; the cookie, then the parameter, hold
        // valet's token.
        assert_eq!(
            from(
                "Authorization: Basic dTpw\r\nCookie: x=1; access_token=c\r\n",
                "/"
            ),
            one("c")
        );
        assert_eq!(from("", "/?a=1&access_token=q%2Eq"), one("q.q"));
        assert_eq!(from("", "/?a=1"), Ok(None));
        // Twice where it is taken from: refused, whichever a backend would read.
        assert!(from(
            "Authorization: Bearer a\r\nauthorization: Bearer b\r\n",
            "/"
        )
        .is_err());
        assert!(from("Cookie: access_token=a\r\nCookie: access_token=b\r\n", "/").is_err());
        assert!(from("Cookie: access_token=a; access_token=b\r\n", "/").is_err());
        assert!(from("", "/?access_token=a&access%5Ftoken=b").is_err());
    }
}
