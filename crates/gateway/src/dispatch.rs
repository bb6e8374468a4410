//! A request on its way to its instance, and again when that is safe: the one place that
//! decides whether a request that got no answer goes again (a bodiless one after a refused
//! connection, an idempotent one after a closed one, any after a replica that was not the
//! owner), on a new lease that waits for the instance's restart or the key's new owner.
//! Shared by the public listener ([`crate::handler`]) and the peer listener ([`crate::peer`]).

use crate::error::GatewayError;
use crate::forward;
use crate::message::{Answer, ClientRequest};
use crate::proxy::{self, Pass, Upstream};
use crate::state::GatewayState;
use crate::upgrade;
use futures_util::future::Either;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use valet_instances::{ClassRuntime, Instance, Lease, PeerRoute};

/// Passes the request on the lease it has, and again on a new lease when that is safe: the
/// instance (or the owner replica) went away before it answered.
///
/// A plain function: what can be done before the first await (counting, encoding the request
/// and boxing its exchange) is done here, so that the future it returns holds only what the
/// wait needs. Every future is copied whole into its caller's when called; an async fn's
/// future would also hold the request and the lease as they came in, twice over.
pub(crate) fn exchange<'a>(
    state: &'a GatewayState,
    upstream: &'a Upstream,
    class: &'a Arc<ClassRuntime>,
    req: ClientRequest,
    pass: Pass,
    upgrade: bool,
) -> impl Future<Output = Result<Answer, GatewayError>> + Send + 'a {
    if pass.lease.via().is_some() {
        class.stats.forwarded.inc();
    }
    let instance = pass.lease.instance().clone();
    if upgrade {
        let via = pass.lease.via().cloned();
        // Boxed: a rare path should not widen every request's future.
        let tunnel = Box::pin(upgrade::tunnel(upstream, req.into_http(), pass));
        return Either::Left(tunneled(state, instance, via, tunnel));
    }
    let first = First {
        from_peer: pass.from_peer,
        port: pass.port,
        addr: pass.lease.addr(),
        via: pass.lease.via().map(|r| r.node.clone()),
        sent: Instant::now(),
    };
    // Metrics: request bodies by declared length (no per-chunk counting on the hot path), and
    // the upstream time of the first try, from sending until the response head.
    class
        .stats
        .request_bytes
        .add(req.fields.content_length().unwrap_or(0));
    // Boxed, so that the futures that wait for it hold a pointer, not the exchange.
    let exchange = Box::pin(proxy::pass(upstream, req, pass));
    Either::Right(with_resends(
        state, upstream, class, instance, first, exchange,
    ))
}

/// What the first try leaves for the ones after it.
struct First {
    from_peer: bool,
    port: usize,
    addr: std::net::SocketAddr,
    via: Option<Arc<str>>,
    sent: Instant,
}

async fn tunneled(
    state: &GatewayState,
    instance: Arc<Instance>,
    via: Option<Arc<PeerRoute>>,
    tunnel: impl Future<Output = Result<hyper::Response<crate::body::Body>, GatewayError>>,
) -> Result<Answer, GatewayError> {
    let result = tunnel.await.map(Answer::from);
    // A handshake is not sent again, but the next request must not take a route that
    // failed: the owner's refusal passes to the client, its route does not stay.
    if let Some(route) = via {
        match &result {
            Ok(answer)
                if answer.status == http::StatusCode::SERVICE_UNAVAILABLE
                    && answer.fields.contains(&forward::X_VALET_NOT_OWNER) =>
            {
                state.instances.forget_owner(&instance.id);
            }
            Ok(_) => {}
            Err(error) => {
                forget_failed_route(state, &instance, Some(&*route.node), error);
            }
        }
    }
    result
}

async fn with_resends(
    state: &GatewayState,
    upstream: &Upstream,
    class: &Arc<ClassRuntime>,
    instance: Arc<Instance>,
    first: First,
    exchange: impl Future<Output = Result<Answer, proxy::Failed>>,
) -> Result<Answer, GatewayError> {
    let First {
        from_peer,
        port,
        mut addr,
        mut via,
        sent,
    } = first;
    let mut result = exchange.await;
    class.stats.upstream.observe(sent.elapsed());
    // A process that was killed or crashed a moment ago still looks ready until its task
    // notices: pooled connections to it close unanswered, a new one is refused. Once the task
    // has noticed, acquiring waits for the restart, and the request goes to the new process.
    // The same holds for an owner replica that died: its route is forgotten, and acquiring
    // waits for its lease to expire and takes the key over.
    let mut resends = 0;
    loop {
        let (error, resend) = match result {
            Ok(response) => return Ok(response),
            Err(failed) => failed,
        };
        let (owner_gone, stale_route) =
            forget_failed_route(state, &instance, via.as_deref(), &error);
        let Some(resend) = resend.filter(|_| resends < MAX_RESENDS) else {
            return Err(error);
        };
        resends += 1;
        let wait = match error {
            _ if owner_gone || stale_route => Duration::ZERO,
            GatewayError::Unanswered { sent: false, .. } => upstream.connect.min(REFUSED_WAIT),
            // A pooled connection closed unanswered, the first time: how an instance's idle
            // keep-alive timeout meets a request already on its way (RFC 9110 9.2.2). The
            // instance is most likely alive: at once, and taking the pool's next connection.
            GatewayError::Unanswered {
                sent: true,
                reused: true,
                ..
            } if resend.idempotent() && resends == 1 => Duration::ZERO,
            // Again, or on a new connection: the process may be gone; its task notices soon.
            GatewayError::Unanswered { sent: true, .. } if resend.idempotent() => CLOSED_WAIT,
            _ => return Err(error),
        };
        // The rare path, boxed so that its futures do not widen every request's.
        result = Box::pin(async {
            instance.wait_address_retired(addr, wait).await;
            // valet's own retry of a request already admitted: not the client's start.
            // By the client's key: a scaled key's request may go to another of its replicas.
            let lease = acquire(state, class, instance.id.user_key(), port, None).await?;
            if from_peer && lease.via().is_some() {
                return Err(GatewayError::NotOwner {
                    instance: instance.id.to_string(),
                });
            }
            addr = lease.addr();
            via = lease.via().map(|r| r.node.clone());
            Ok(proxy::resend(upstream, resend, lease).await)
        })
        .await?;
    }
}

/// After a failed exchange on a route to another replica (`via`, its node): an owner that
/// refuses connections (died, or lost its listener) or whose connect times out (cut off) is
/// marked unreachable, so the next acquire waits its lease out and takes the key over; a
/// replica that said it is not the owner (a change this one missed) is looked up again. Done
/// whether or not this request can go again: one with a body cannot, and the next request
/// must not take the same route. Returns (owner gone, stale route): either way the request
/// reached no instance. Both false for a local instance.
fn forget_failed_route(
    state: &GatewayState,
    instance: &Arc<valet_instances::Instance>,
    via: Option<&str>,
    error: &GatewayError,
) -> (bool, bool) {
    let Some(node) = via else {
        return (false, false);
    };
    let owner_gone = matches!(
        error,
        GatewayError::Unanswered { sent: false, .. }
            | GatewayError::Timeout {
                what: proxy::CONNECT,
                ..
            }
    );
    let stale_route = matches!(error, GatewayError::NotOwner { .. });
    if owner_gone {
        state.instances.owner_unreachable(instance, node);
    } else if stale_route {
        state.instances.forget_owner(&instance.id);
    }
    (owner_gone, stale_route)
}

/// Tries after the first for a bodiless request.
const MAX_RESENDS: usize = 3;
/// Longest wait for an instance's task to notice that its process is gone, after a refusal
/// (nothing listens: the process is almost surely gone) ...
const REFUSED_WAIT: Duration = Duration::from_secs(1);
/// ... and after a pooled connection closed unanswered (the process may well be alive).
const CLOSED_WAIT: Duration = Duration::from_millis(100);

pub(crate) async fn acquire(
    state: &GatewayState,
    class: &Arc<ClassRuntime>,
    key: &str,
    port: usize,
    client: Option<std::net::IpAddr>,
) -> Result<Lease, GatewayError> {
    state
        .instances
        .acquire_for(class, key, port, client)
        .await
        .map_err(|error| GatewayError::Instance {
            instance: format!("{}/{}", class.name, key),
            error,
        })
}
