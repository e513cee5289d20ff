//! Kernels compiled twice, for the baseline x86-64 and for AVX2 with FMA (x86-64-v3), and
//! run in the second form when the CPU has it.
//!
//! The release binary targets the baseline x86-64 (SSE2: two doubles per instruction), so it
//! runs on any 64-bit x86 CPU. A few hot loops of the models run faster with four doubles per
//! instruction. A [`Kernel`] is a loop written as plain Rust; [`dispatch`] checks the CPU once
//! (`is_x86_feature_detected!`) and calls it either directly or inside a function compiled with
//! `avx2,fma` enabled, into which the kernel is inlined, so the compiler vectorises the same
//! source for the wider registers.
//!
//! Both forms give the same bits: the wider registers run the same operations lane by lane,
//! and Rust never contracts a multiply and an add into one fused operation (only an explicit
//! `mul_add` is fused, and that is correctly rounded on either path). The kernels' tests run
//! both forms on this machine ([`run_baseline`]) and compare them bit for bit.
//!
//! This module holds the crate's only `unsafe`: the call of the `avx2,fma` function, made
//! right after the check that the CPU has both features (the pattern of
//! `std::arch::is_x86_feature_detected!`'s own documentation). A dependency for it (`pulp`)
//! would change the features of a crate Arrow and DataFusion build on, and with them every
//! symbol name that `link/symbol-order.txt` lists.
#![allow(unsafe_code)]

/// A loop to run in the form this CPU runs fastest. Implementations mark [`Kernel::run`]
/// `#[inline(always)]`, so that it is compiled inside each entry point (else the AVX2 entry
/// point calls the baseline code).
pub trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Run `kernel` compiled for AVX2 with FMA when this CPU has both, else for the baseline.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    if has_v3() {
        // SAFETY: `run_v3` only needs the CPU to support `avx2` and `fma`, which `has_v3`
        // has just checked at run time.
        return unsafe { run_v3(kernel) };
    }
    kernel.run()
}

/// Run `kernel` compiled for the baseline, whatever the CPU (for tests that compare forms).
#[cfg(test)]
pub fn run_baseline<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

/// Whether this CPU runs the AVX2 form (checked once: the standard library caches it).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_v3() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs the AVX2 form (never outside x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub fn has_v3() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_v3<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}
