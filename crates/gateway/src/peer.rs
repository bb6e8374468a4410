//! The peer listener (cluster mode): requests other replicas forward for keys this replica
//! owns. Each carries the cluster's peer token and names its instance; the forwarding replica
//! already routed, authorised and rewrote it, so it goes to the instance as it came. A key this
//! replica does not own (any more, or under the epoch named) is refused with 503, never
//! forwarded again.

use crate::dispatch::{acquire, exchange};
use crate::error::GatewayError;
use crate::fields::{is_named, Fields};
use crate::forward::{ClientInfo, Peer, X_VALET_INSTANCE, X_VALET_NOT_OWNER, X_VALET_PEER};
use crate::message::{Answer, ClientRequest};
use crate::proxy::{Pass, Upstream};
use crate::state::GatewayState;
use http::header;
use http_body::Body as _;
use valet_core::InstanceId;
use valet_instances::owner::decode_target;

/// Serves one forwarded request; never fails (errors become responses).
pub async fn handle(
    state: &GatewayState,
    upstream: &Upstream,
    peer: &Peer,
    req: ClientRequest,
    token: &[u8],
) -> Answer {
    let (request_id, _) = crate::message::request_id(&req.fields);
    let mut answer = match serve(state, upstream, peer, req, token).await {
        Ok(answer) => answer,
        Err(error) => error.into_response().into(),
    };
    answer.request_id = Some(request_id);
    answer
}

async fn serve(
    state: &GatewayState,
    upstream: &Upstream,
    peer: &Peer,
    req: ClientRequest,
    token: &[u8],
) -> Result<Answer, GatewayError> {
    let offered = req.fields.value(&X_VALET_PEER);
    if !offered.is_some_and(|t| same_token(t.as_bytes(), token)) {
        tracing::warn!(peer = %peer.addr, "peer listener: request without the cluster's token refused");
        return Err(GatewayError::PeerRefused);
    }
    let bad = |message: &str| GatewayError::BadRequest {
        code: "bad_peer_request",
        message: message.into(),
    };
    let named = req
        .fields
        .value(&X_VALET_INSTANCE)
        .ok_or_else(|| bad("a forwarded request must name its instance"))?;
    let (epoch, port, class_name, key) =
        decode_target(named.as_bytes()).ok_or_else(|| bad("the instance field is malformed"))?;
    let class = state
        .instances
        .class_named(&class_name)
        .ok_or(GatewayError::NotFound)?;
    if port >= class.ports.len() {
        return Err(bad("the port index is not one of the class's ports"));
    }
    // The key's name in the leases (a project's is `project:<id>` whatever its version).
    let id = InstanceId::new(class.lease_name.clone(), key.as_str());
    let not_owner = || GatewayError::NotOwner {
        instance: id.to_string(),
    };
    // Whether a WebSocket (or other upgrade) may pass was the forwarding replica's decision:
    // it sends `Upgrade` only for a route that allows it.
    let upgrade = req.fields.get_all(&header::UPGRADE).next().is_some();
    if upgrade && !req.body.is_end_stream() {
        return Err(bad("a protocol upgrade request cannot carry a body"));
    }
    let lease = acquire(state, &class, &key, port, None).await?;
    if lease.via().is_some() {
        return Err(not_owner());
    }
    // A forwarding replica that read a later epoch than the one held here saw a newer owner:
    // this replica is about to find its lease lost, and must not serve meanwhile.
    let held = state.instances.coordinator().and_then(|c| c.epoch_of(&id));
    if held.is_none_or(|held| held < epoch) {
        return Err(not_owner());
    }
    let client = ClientInfo {
        peer: peer.addr.ip(),
        peer_header: peer.header.clone(),
        trusted: true,
        https: state.https,
        host: None,
        new_request_id: None,
    };
    let pass = Pass {
        lease,
        uri: None,
        prefix: None,
        client,
        from_peer: true,
        port,
    };
    let mut answer = exchange(state, upstream, &class, req, pass, upgrade).await?;
    without_not_owner(&mut answer.fields);
    Ok(answer)
}

/// Drops the field that says "not the owner" from an instance's answer: the forwarding
/// replica takes it for this listener's own refusal, sends the request again whatever its
/// method (a refusal comes before the instance sees anything) and looks the owner up in the
/// store. An instance that sent it would have its requests repeated and the store asked at
/// will. Only [`GatewayError::NotOwner`] sets it on this listener.
fn without_not_owner(fields: &mut Fields) {
    let name = X_VALET_NOT_OWNER.as_str().as_bytes();
    match fields {
        Fields::Map(map) => {
            map.remove(&X_VALET_NOT_OWNER);
        }
        Fields::Spans { head, spans } => spans.retain(|span| {
            let (at, len) = (span.name.0 as usize, span.name.1 as usize);
            !is_named(&head[at..at + len], name)
        }),
    }
}

/// Constant-time comparison: the token is a secret, and the time a mismatch takes must not
/// say how much of it matched.
fn same_token(offered: &[u8], token: &[u8]) -> bool {
    offered.len() == token.len()
        && offered
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::{same_token, without_not_owner};
    use crate::fields::tests::spans;
    use crate::fields::Fields;
    use http::header;

    #[test]
    fn an_instances_answer_cannot_say_not_owner() {
        let raw = "Content-Type: text/plain\r\nX-Valet-Not-Owner: 1\r\nRetry-After: 1\r\nx-valet-not-owner: 1\r\n";
        for mut fields in [spans(raw), Fields::Map(spans(raw).into_map())] {
            without_not_owner(&mut fields);
            let names: Vec<String> = fields
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).to_lowercase())
                .collect();
            assert_eq!(names, ["content-type", "retry-after"]);
            assert_eq!(fields.text(&header::RETRY_AFTER), Some("1"));
        }
    }

    #[test]
    fn only_the_whole_token_matches() {
        assert!(same_token(b"abc123", b"abc123"));
        assert!(!same_token(b"abc124", b"abc123"));
        assert!(!same_token(b"abc12", b"abc123"));
        assert!(!same_token(b"", b"abc123"));
    }
}
