//! The connections idlinkd serves: accepted with Nagle's algorithm off (small gRPC frames would
//! otherwise wait for the peer's delayed ACK, ~40 ms a request, measured with `idlink bench`),
//! and, with TLS, handshaken — a few at a time, each within a deadline, so a slow or hostile
//! client holds up nobody else.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;

use super::tls::{Accepted, TlsAcceptor};

const HANDSHAKES_AT_ONCE: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<Accepted>> + Send>>;

/// The listener's connections, through `tls` when it is set.
pub fn incoming(listener: Arc<TcpListener>, tls: Option<TlsAcceptor>) -> Incoming {
    let sockets = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.and_then(|(socket, _)| socket.set_nodelay(true).map(|()| socket));
        Some((accepted, listener))
    });
    let Some(tls) = tls else { return Box::pin(sockets.map(|socket| socket.map(Accepted::Plain))) };
    let handshaken = sockets
        .map(move |socket| {
            let tls = tls.clone();
            async move {
                let socket = match socket {
                    Ok(socket) => socket,
                    Err(e) => return Some(Err(e)),
                };
                let peer = socket.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
                    Ok(Ok(accepted)) => Some(Ok(accepted)),
                    // The client's trouble, not the server's: dropped, and the server goes on.
                    Ok(Err(e)) => {
                        tracing::debug!(?peer, error = %e, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(?peer, "TLS handshake timed out");
                        None
                    }
                }
            }
        })
        .buffer_unordered(HANDSHAKES_AT_ONCE)
        .filter_map(futures_util::future::ready);
    Box::pin(handshaken)
}
