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

/// The token a request carries: `Authorization: Bearer`, else an `access_token` cookie, else an
/// `access_token` query parameter.
pub fn token_from(headers: &Fields, uri: &http::Uri) -> Option<String> {
    if let Some(value) = headers.text(&http::header::AUTHORIZATION) {
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(token.trim().to_string());
        }
    }
    let cookie = headers
        .get_all(&http::header::COOKIE)
        .filter_map(fields::text)
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == "access_token")
        .map(|(_, v)| v.to_string());
    if cookie.is_some() {
        return cookie;
    }
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "access_token")
        .and_then(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8().ok())
        .map(|v| v.into_owned())
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
}
