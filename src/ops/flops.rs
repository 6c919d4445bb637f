//! A FLOP counter for benchmarks: the matrix ops (GEMM, conv2d, attention) add what they
//! compute while counting is on, so `revelio bench` reports a model's FLOPs from the work it
//! actually ran (an early stop counts less). Off, it costs one relaxed atomic load per op.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ON: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Starts counting from zero.
pub fn start() {
    COUNT.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

/// Stops counting and returns the FLOPs counted since `start`.
pub fn stop() -> u64 {
    ON.store(false, Ordering::Relaxed);
    COUNT.load(Ordering::Relaxed)
}

/// Adds `n` FLOPs (a multiply-add counts 2) if counting is on.
pub fn add(n: u64) {
    if ON.load(Ordering::Relaxed) {
        COUNT.fetch_add(n, Ordering::Relaxed);
    }
}
