//! Embeds the filter module the controller serves at `GET /v1/filter.wasm`.
//!
//! `FLEDGE_FILTER_WASM` names the built `.wasm` (the Makefile builds the filter first and exports it).
//! Without it, or when the file is missing or not a wasm module, an empty module is embedded and the
//! endpoint answers 404: a controller built with plain `cargo build` still builds and runs.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=FLEDGE_FILTER_WASM");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?).join("filter.wasm");
    let mut module = Vec::new();
    if let Some(path) = std::env::var_os("FLEDGE_FILTER_WASM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        // Rebuild when the filter is rebuilt: the controller serves the module it was built with.
        println!("cargo:rerun-if-changed={}", path.display());
        match std::fs::read(&path) {
            Ok(bytes) if bytes.starts_with(b"\0asm") => module = bytes,
            Ok(_) => println!("cargo:warning=FLEDGE_FILTER_WASM={} is not a wasm module; not embedded", path.display()),
            Err(e) => println!("cargo:warning=FLEDGE_FILTER_WASM={}: {e}; not embedded", path.display()),
        }
    }
    std::fs::write(out, module)?;
    Ok(())
}
