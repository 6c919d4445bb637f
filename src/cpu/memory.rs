//! Where the CPU backend's buffers come from: every op writes its output into a fresh `Vec`
//! from the C allocator. glibc gives a block above its mmap threshold (128 KiB at start, raised
//! as such blocks are freed, up to 32 MiB) a fresh mapping and unmaps it when freed, and hands
//! the top of its heap back to the system once more than the trim threshold is free there. Each
//! large output is then faulted in page by page on first touch, the kernel clearing every 4 KiB
//! page, and the next op does it again. Measured on the VAE encoder at 256 px (docs/kernels.md,
//! CPU section): 1.16 M minor page faults per forward (4.5 GB of pages cleared), 37 k with
//! `retain_freed_memory`.

/// Asks the C allocator to keep what is freed for the next allocations: every block comes from
/// the heap (M_MMAP_MAX = 0: no mapping per block) and the heap's top is never trimmed
/// (M_TRIM_THRESHOLD at its maximum). The peak resident size stays what the largest moment of
/// the work needs (freed blocks are reused, not added to); the resident size no longer drops
/// between ops. The `revelio` binary calls it once before any work. Returns whether the
/// allocator took both settings (false off glibc).
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes two of the allocator's tuning parameters; it is safe to
        // call at any time, and the binary calls it before starting any thread.
        unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// The allocator takes both settings. What they change is measured on the binary, whose
    /// ops allocate from the main thread's heap (`revelio bench --profile` counts the faults);
    /// a test thread allocates from a per-thread arena, which glibc unmaps when wholly free.
    #[test]
    fn glibc_takes_both_settings() {
        assert_eq!(super::retain_freed_memory(), cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
