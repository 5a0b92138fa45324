//! The WebAssembly components this repository builds: the plugins shipped in
//! `plugins/` and the guest test programs in `tests/programs/`.
//!
//! `build.rs` compiles them for `wasm32-wasip2` (needs `rustup target add
//! wasm32-wasip2`); this crate exposes each as a path and as bytes, so tests
//! and the `switchyard` binary refer to them by constant, never by a `.wasm`
//! checked into git.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
