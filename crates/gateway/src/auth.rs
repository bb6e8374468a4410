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

    /// Checks signature, `exp`, `nbf`, and `iss`/`aud` when configured. `alg: none` and any
    /// algorithm other than the key's own are refused.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = decode_header(token).map_err(|_| "malformed token".to_string())?;
        let mut last = String::from("no key accepts this token's algorithm");
        for (key, algs) in &self.keys {
            if !algs.contains(&header.alg) {
                continue;
            }
            let mut validation = Validation::new(header.alg);
            validation.validate_nbf = true;
            match &self.issuer {
                Some(iss) => validation.set_issuer(&[iss]),
                None => validation.iss = None,
            }
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
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
