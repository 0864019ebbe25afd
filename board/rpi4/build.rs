//! Link both images (production and harness: `rustc-link-arg-bins` reaches
//! every binary) at the board's address with Tern's layout and defmt's
//! section script.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let layout = std::path::Path::new(&manifest).join("../../arch/aarch64");
    println!("cargo:rustc-link-search={}", layout.display());
    println!("cargo:rustc-link-arg-bins=--defsym=__tern_kernel_base=0x80000");
    println!("cargo:rustc-link-arg-bins=-Tkernel.ld");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    println!("cargo:rerun-if-changed={}", layout.join("kernel.ld").display());
}
