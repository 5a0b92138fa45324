//! A guest that misbehaves on purpose, one action per sandbox case. The
//! host must contain every one with a typed error and keep serving.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use switchyard_guest::{Action, Adapter, AppInfo, Error, Request, export_adapter, http, log};

struct Misbehave;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// 64 KiB that `remember` fills, so a call can tell whether an earlier
/// call's data is still in its memory.
static KEPT: [AtomicU64; 8192] = [const { AtomicU64::new(0) }; 8192];

/// Recursion whose frames live in wasm locals (the native wasm stack), not
/// in the shadow stack in linear memory; division keeps LLVM from turning
/// it into a loop.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    if n % 2 == 0 {
        recurse(n - 1) * 3 + 1
    } else {
        recurse(n - 1) / 2 + n
    }
}

impl Adapter for Misbehave {
    fn describe() -> AppInfo {
        let mut info = AppInfo::new("misbehave", "0.1.0");
        for name in [
            "noop",
            "echo",
            "state",
            "remember",
            "read-file",
            "env",
            "loop",
            "memory-bomb",
            "stack-overflow",
            "big-output",
            "trap",
            "panic",
            "exit",
            "fetch",
            "post",
            "set-auth",
            "many-requests",
            "log-flood",
            "fields-flood",
            "bodies-flood",
            "huge-error",
        ] {
            info = info.action(Action::new(name).idempotent(name == "noop"));
        }
        info
    }

    fn call(req: Request) -> Result<Value, Error> {
        match req.action.as_str() {
            "noop" => Ok(Value::Null),
            "echo" => Ok(json!({
                "input": req.input,
                "idempotency_key": req.idempotency_key,
                "env": req.env,
                "session": req.session.as_ref().map(|s| json!({"tag": s.tag, "token": s.token})),
                "remaining_ms": req.remaining().as_millis() as u64,
            })),
            // A fresh instance per call always answers 1.
            "state" => Ok(json!(CALLS.fetch_add(1, Ordering::SeqCst) + 1)),
            // How many of the 64 KiB's words an earlier call left set (a
            // fresh instance: 0); then set them all and, with `url`, wait
            // for that GET without touching them again.
            "remember" => {
                let seen = KEPT
                    .iter()
                    .filter(|w| w.load(Ordering::Relaxed) != 0)
                    .count();
                for w in &KEPT {
                    w.store(0x5EC2_E7, Ordering::Relaxed);
                }
                if let Some(url) = req.get("url").and_then(Value::as_str) {
                    http::Request::get(url).send()?;
                }
                Ok(json!({"seen": seen}))
            }
            "read-file" => {
                let path = req.str("path")?;
                match std::fs::read_to_string(path) {
                    Ok(content) => Ok(json!({"content": content})),
                    Err(e) => Err(Error::internal(format!("read {path}: {e}"))),
                }
            }
            "env" => Ok(json!(
                std::env::vars().collect::<std::collections::BTreeMap<_, _>>()
            )),
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack-overflow" => Ok(json!(recurse(
                req.i64("depth").unwrap_or(100_000_000) as u64
            ))),
            "big-output" => {
                let bytes = req.i64("bytes")? as usize;
                Ok(Value::String("x".repeat(bytes)))
            }
            "trap" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!()
            }
            "panic" => panic!("the guest panicked on purpose"),
            "exit" => std::process::exit(3),
            "fetch" => {
                let method = req.get("method").and_then(Value::as_str).unwrap_or("GET");
                let r = http::Request::new(method, req.str("url")?).send()?;
                Ok(json!({"status": r.status, "body": r.text()}))
            }
            "post" => {
                let r = http::Request::post(req.str("url")?)
                    .json(req.get("body").unwrap_or(&Value::Null))
                    .send()?
                    .error_for_status()?;
                r.json()
            }
            "set-auth" => {
                let r = http::Request::get(req.str("url")?)
                    .header("Authorization", "Bearer stolen-or-forged")
                    .send()?;
                Ok(json!({"status": r.status}))
            }
            "many-requests" => {
                let n = req.i64("count")?;
                let url = req.str("url")?;
                for i in 0..n {
                    http::Request::get(url)
                        .send()
                        .map_err(|e| Error::internal(format!("request {i} failed: {e}")))?;
                }
                Ok(json!({"sent": n}))
            }
            "fields-flood" => {
                // Host-side memory the guest's own memory does not show:
                // every `fields` lives in the host's resource table.
                use switchyard_guest::bindings::wasi::http::types::Fields;
                let count = req.i64("count")?;
                let value = vec![b'x'; req.i64("size")? as usize];
                let mut held = Vec::new();
                for i in 0..count {
                    let f = Fields::from_list(&[(format!("x-flood-{i}"), value.clone())])
                        .map_err(|e| Error::internal(format!("fields {i} refused: {e:?}")))?;
                    held.push(f);
                }
                Ok(json!({"held": held.len()}))
            }
            "bodies-flood" => bodies_flood(&req),
            "huge-error" => {
                let n = req.i64("bytes")? as usize;
                Err(Error::unavailable("x".repeat(n)).with_code("y".repeat(n / 10)))
            }
            "log-flood" => {
                for i in 0..req.i64("count")? {
                    log::info(&format!("line {i}"));
                }
                Ok(Value::Null)
            }
            _ => Err(req.unknown_action()),
        }
    }
}

/// Host-side memory again: `count` POSTs of `size` bytes each to
/// `http://{authority}/`, all started before any answer is awaited, so the
/// host buffers every body at once while the guest keeps only one copy
/// (plus `ballast` MiB of its own).
fn bodies_flood(req: &Request) -> Result<Value, Error> {
    use switchyard_guest::bindings::wasi::http::outgoing_handler;
    use switchyard_guest::bindings::wasi::http::types::{
        Fields, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    let authority = req.str("authority")?;
    let body = vec![b'b'; req.i64("size")? as usize];
    let ballast = vec![1u8; (req.i64("ballast").unwrap_or(0) as usize) << 20];
    let mut pending = Vec::new();
    for i in 0..req.i64("count")? {
        let failed = |what: &str| Error::internal(format!("request {i}: {what}"));
        let request = OutgoingRequest::new(Fields::new());
        request
            .set_method(&Method::Post)
            .map_err(|()| failed("method"))?;
        request
            .set_scheme(Some(&Scheme::Http))
            .map_err(|()| failed("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| failed("authority"))?;
        request
            .set_path_with_query(Some("/"))
            .map_err(|()| failed("path"))?;
        let out = request.body().map_err(|()| failed("body"))?;
        let future = outgoing_handler::handle(request, None)
            .map_err(|e| failed(&format!("refused: {e:?}")))?;
        {
            let stream = out.write().map_err(|()| failed("stream"))?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| failed(&format!("write: {e:?}")))?;
            }
        }
        OutgoingBody::finish(out, None).map_err(|e| failed(&format!("finish: {e:?}")))?;
        pending.push(future);
    }
    let mut statuses = Vec::new();
    for (i, future) in pending.into_iter().enumerate() {
        future.subscribe().block();
        match future.get() {
            Some(Ok(Ok(response))) => statuses.push(response.status()),
            Some(Ok(Err(code))) => {
                return Err(Error::unavailable(format!("request {i} failed: {code:?}")));
            }
            _ => return Err(Error::internal(format!("request {i}: no response"))),
        }
    }
    std::hint::black_box(&ballast);
    Ok(json!({"statuses": statuses}))
}

export_adapter!(Misbehave);
