//! Serving the router on a listener, plain or TLS, with a header timeout
//! and a graceful shutdown.

use super::guard::ClientAddr;
use super::routes::*;
use super::state::*;

use axum::Router;
use axum::body::Body;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Serve `state` on `listener` until `shutdown` resolves; then stop
/// accepting, let in-flight requests finish for up to `grace`, and return.
/// Every connection must send its request headers within
/// `state.header_read_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    let app = router(state.clone());
    let header_timeout = state.header_read_timeout;
    // Closed when shutdown begins; every connection task holds a receiver
    // and a clone of `done`, so `done_rx` ends when the last one finishes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        let done = done.clone();
        let acceptor = state.tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => connection(TokioIo::new(stream), peer, app, header_timeout, stop).await,
                Some(acceptor) => {
                    // The handshake has the header timeout too: a client
                    // that never finishes it is dropped, and one that
                    // speaks plain HTTP here fails the handshake.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            connection(TokioIo::new(tls), peer, app, header_timeout, stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(done);
        });
    }
    state.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    drop(done);
    drop(listener);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {grace:?}; exiting");
    }
    Ok(())
}

/// Serve one connection until it ends or shutdown begins (then finish
/// the request in flight and take no new one). Every request carries the
/// client's address.
pub(crate) async fn connection<I>(
    io: hyper_util::rt::TokioIo<I>,
    peer: std::net::SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ClientAddr(peer));
        tower_service::Service::call(&mut app, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
