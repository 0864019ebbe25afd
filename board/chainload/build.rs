//! Link the loader binary at its run address with its own small layout
//! (`chainload.ld`); the library (the protocol) is untouched.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-search={manifest}");
    // Only for the kernel target: a host build of the placeholder binary
    // links as any host program.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tchainload.ld");
    }
    println!("cargo:rerun-if-changed={manifest}/chainload.ld");
}
