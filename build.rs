//! Code layout of the release binary.
//!
//! The binary carries 113 MiB of machine code (134 MiB with Ballista: DataFusion, Arrow,
//! Parquet, object stores, our functions), and a query runs a few thousand functions
//! scattered through all of it.
//! Linux maps file-backed code 64 KiB around every page fault, so the scattered functions
//! made ~60–80 MiB of the binary resident in every query (a third of `rfm`'s peak RSS).
//! `link/symbol-order.txt` lists the functions our workloads execute, most shared first
//! (made by `link/order_symbols.py` from callgrind runs of the release binary); LLD places
//! them at the start of `.text` in that order, so a query touches a few contiguous MiB.
//!
//! The same release link packs the relative relocations (`-z pack-relative-relocs`, DT_RELR)
//! when the C library is glibc 2.36 or later: the ~290,000 pointers that `ld.so` adjusts at
//! start-up take ~70 KiB to describe instead of 7 MiB, all of which it read (and kept
//! resident) in every process.
//!
//! Only the release binary is ordered, only with LLD, the linker rustc uses by default on
//! x86_64 Linux since 1.90; `DFM_SYMBOL_ORDER=0` links with the linker's defaults (neither
//! the order nor packed relocations). Names that are not in the binary (another feature set
//! or dependency version gives some functions other hashes) are skipped: a stale list costs
//! memory, never correctness.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "link/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=DFM_SYMBOL_ORDER");
    // debug and test builds keep the linker's defaults
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if let Err(why) = lld_links() {
        println!("cargo:warning=the release binary is linked without {ORDER_FILE}: {why}");
        return;
    }
    if glibc_at_least((2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = Path::new(&dir).join(ORDER_FILE);
    if !order.is_file() {
        println!(
            "cargo:warning={} is missing: the release binary keeps the linker's order",
            order.display()
        );
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links this binary with its own LLD, the only linker here that reads a
/// symbol ordering file: x86_64 Linux (GNU) from rustc 1.90 on, unless a linker or linker
/// flags are configured, or `DFM_SYMBOL_ORDER=0`.
fn lld_links() -> Result<(), String> {
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("DFM_SYMBOL_ORDER") == "0" {
        return Err("DFM_SYMBOL_ORDER=0".into());
    }
    if var("TARGET") != "x86_64-unknown-linux-gnu" {
        return Err(format!(
            "target {} (the order is applied on x86_64-unknown-linux-gnu)",
            var("TARGET")
        ));
    }
    if !var("RUSTC_LINKER").is_empty() {
        return Err(format!("a linker is configured ({})", var("RUSTC_LINKER")));
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return Err("RUSTFLAGS choose the linker".into());
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    match second_word_version(&rustc, &["--version"]) {
        Some(v) if v >= (1, 90) => Ok(()),
        _ => Err(format!(
            "{rustc} --version is not 1.90 or later (older rustc links with the system linker)"
        )),
    }
}

/// Whether this machine's C library is glibc of at least this version: `ld.so` reads packed
/// relocations from 2.36 on (and LLD makes the binary require `GLIBC_ABI_DT_RELR`).
fn glibc_at_least(version: (u32, u32)) -> bool {
    // "glibc 2.36"
    second_word_version("getconf", &["GNU_LIBC_VERSION"]).is_some_and(|v| v >= version)
}

/// The (major, minor) version in the second word of a command's output.
fn second_word_version(program: &str, args: &[&str]) -> Option<(u32, u32)> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().nth(1)?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
