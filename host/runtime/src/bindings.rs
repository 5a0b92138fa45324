//! Host bindings generated from `wit/` (private: the crate re-exports a
//! curated surface).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "switchyard:adapter/adapter",
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

pub use self::switchyard::adapter::adapter_types as types;
pub use self::switchyard::adapter::{config, logging};
