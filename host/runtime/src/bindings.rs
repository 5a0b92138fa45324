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

/// Host bindings of the `exchange-adapter` world; its shared interfaces
/// are the `adapter` world's.
pub mod exchange_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "switchyard:adapter/exchange-adapter",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "switchyard:adapter/adapter-types": super::switchyard::adapter::adapter_types,
            "switchyard:adapter/config": super::switchyard::adapter::config,
            "switchyard:adapter/logging": super::switchyard::adapter::logging,
        },
    });

    pub use self::switchyard::adapter::exchange_types as xtypes;
}

/// Host bindings of the optional `exchange-reading` export, from the
/// `exchange-reading-adapter` world (only its `GuestIndices` are used: a
/// component without the export is an `exchange-adapter` as before).
pub mod reading_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "switchyard:adapter/exchange-reading-adapter",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "switchyard:adapter/adapter-types": super::switchyard::adapter::adapter_types,
            "switchyard:adapter/config": super::switchyard::adapter::config,
            "switchyard:adapter/logging": super::switchyard::adapter::logging,
            "switchyard:adapter/exchange-types": super::exchange_world::xtypes,
        },
    });

    pub use self::exports::switchyard::adapter::exchange_reading as reading;
}
