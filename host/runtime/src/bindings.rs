//! Host-side bindings of the WIT contract in `plugin-sdk/wit/`.

wasmtime::component::bindgen!({
    path: "../../plugin-sdk/wit",
    world: "mini-program",
    imports: { default: async | trappable },
    exports: { default: async },
});
