//! The `wasi:http` side: a guest's outgoing request, checked and sent
//! through the gate.

use super::denial::*;
use super::gate::*;
use super::memory::*;
use super::transport::*;
use http_body_util::{BodyExt, Limited};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub(super) type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
pub(super) type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for CallEgress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        self.made += 1;
        let cap = self.cap;
        let admitted = if self.made > cap {
            Err(Denial::RequestCap(cap))
        } else {
            self.app
                .admit(request.method(), request.uri(), request.headers())
        };
        if let Err(reason) = admitted {
            self.deny(reason);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }

        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(remaining, |t| t.min(remaining));
        // Held until the request is done, so a guest cannot stack bodies in
        // the host beyond what its call may use.
        let held = self.memory.hold();
        Box::new(send(
            self.app.clone(),
            self.log.clone(),
            request,
            held,
            timeout,
        ))
    }
}

/// One admitted request from a guest's `wasi:http`: its body buffered on
/// the call's memory account, then [`dispatch`]ed; the answer's body
/// streams to the guest, capped.
pub(super) async fn send(
    app: Arc<AppEgress>,
    log: Arc<Mutex<CallLog>>,
    request: http::Request<WasiBody>,
    mut held: Held,
    timeout: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let (parts, mut stream) = request.into_parts();
    let body = collect_body(&app, &log, &mut stream, &mut held).await?;
    drop(stream);
    let response = dispatch(&app, &log, parts, body, timeout).await?;
    let max = app.limits.max_response_body;
    let response = response.map(|b| {
        Limited::new(b, max)
            .map_err(move |e| response_body_error(e, max))
            .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
}
