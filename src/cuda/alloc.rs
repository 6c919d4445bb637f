//! The caching allocator: device memory is taken from the driver in size classes and, when a
//! buffer is dropped, kept on a free list for the next request of the same class, so a model's
//! steady state makes no `cuMemAlloc`/`cuMemFree` calls. All work runs on the device's one
//! stream, so a freed block can be reused at once: later kernels are ordered after earlier ones.
//! If the driver runs out of memory, every cached block is released and the request retried.

use super::device::CudaDevice;
use crate::Result;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Bytes in use, at peak, and held from the driver (in use + cached).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub in_use_bytes: usize,
    pub peak_bytes: usize,
    pub reserved_bytes: usize,
    /// How many times the driver was asked for memory.
    pub driver_allocs: usize,
}

#[derive(Default)]
struct PoolState {
    free: BTreeMap<usize, Vec<u64>>,
    stats: MemoryStats,
}

#[derive(Default)]
pub struct Pool {
    state: Mutex<PoolState>,
}

/// The size class of a request: 512-byte steps up to 4 KiB, then 8 steps per power of two
/// (at most 12.5% waste).
pub fn size_class(bytes: usize) -> usize {
    let bytes = bytes.max(1);
    if bytes <= 4096 {
        return bytes.div_ceil(512) * 512;
    }
    let high_bit = 1usize << (usize::BITS - 1 - bytes.leading_zeros());
    let step = high_bit / 8;
    bytes.div_ceil(step) * step
}

impl Pool {
    /// A block of at least `bytes`: `(pointer, block size)`. `malloc` asks the driver.
    pub(crate) fn take(&self, bytes: usize, malloc: impl Fn(usize) -> Result<u64>, free: impl Fn(u64)) -> Result<(u64, usize)> {
        let size = size_class(bytes);
        let mut st = self.state.lock().expect("allocator lock");
        let reused = st.free.get_mut(&size).and_then(|v| v.pop());
        let ptr = match reused {
            Some(p) => p,
            None => {
                let p = match malloc(size) {
                    Ok(p) => p,
                    Err(_) => {
                        // Out of memory, most likely: give the cache back and try once more.
                        for (s, ptrs) in std::mem::take(&mut st.free) {
                            for p in ptrs {
                                free(p);
                                st.stats.reserved_bytes -= s;
                            }
                        }
                        malloc(size)?
                    }
                };
                st.stats.reserved_bytes += size;
                st.stats.driver_allocs += 1;
                p
            }
        };
        st.stats.in_use_bytes += size;
        st.stats.peak_bytes = st.stats.peak_bytes.max(st.stats.in_use_bytes);
        Ok((ptr, size))
    }

    pub(crate) fn give_back(&self, ptr: u64, size: usize) {
        let mut st = self.state.lock().expect("allocator lock");
        st.stats.in_use_bytes -= size;
        st.free.entry(size).or_default().push(ptr);
    }

    pub fn stats(&self) -> MemoryStats {
        self.state.lock().expect("allocator lock").stats
    }

    pub fn reset_peak(&self) {
        let mut st = self.state.lock().expect("allocator lock");
        st.stats.peak_bytes = st.stats.in_use_bytes;
    }
}

/// A block of device memory, returned to its device's pool on drop.
pub struct DeviceBuffer {
    ptr: u64,
    /// The block's size class (at least the requested size).
    size: usize,
    device: Arc<CudaDevice>,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:#x}, {} bytes, cuda:{})", self.ptr, self.size, self.device.ordinal())
    }
}

impl DeviceBuffer {
    pub(crate) fn new(ptr: u64, size: usize, device: Arc<CudaDevice>) -> Self {
        DeviceBuffer { ptr, size, device }
    }

    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// A new buffer with the same contents.
    pub fn try_clone(&self) -> Result<DeviceBuffer> {
        let out = self.device.alloc(self.size)?;
        self.device.copy_dtod(self.ptr, out.ptr, self.size)?;
        Ok(out)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.device.pool().give_back(self.ptr, self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_with_bounded_waste() {
        assert_eq!(size_class(1), 512);
        assert_eq!(size_class(512), 512);
        assert_eq!(size_class(513), 1024);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 4608);
        for n in [5000usize, 100_000, 3_000_001, 1 << 30] {
            let c = size_class(n);
            assert!(c >= n && (c - n) * 8 <= n, "{n} -> {c}");
        }
    }

    #[test]
    fn pool_reuses_blocks_and_counts_bytes() {
        let pool = Pool::default();
        let next = std::cell::Cell::new(0x1000u64);
        let malloc = |s: usize| {
            let p = next.get();
            next.set(p + s as u64);
            Ok(p)
        };
        let (a, sa) = pool.take(1000, malloc, |_| {}).unwrap();
        assert_eq!(pool.stats().in_use_bytes, 1024);
        pool.give_back(a, sa);
        let (b, _) = pool.take(900, malloc, |_| {}).unwrap();
        assert_eq!(a, b, "same size class reuses the block");
        let st = pool.stats();
        assert_eq!((st.driver_allocs, st.reserved_bytes, st.peak_bytes), (1, 1024, 1024));
    }

    #[test]
    fn pool_releases_cache_when_driver_fails() {
        let pool = Pool::default();
        let freed = std::cell::Cell::new(0);
        let (a, sa) = pool.take(2048, |_| Ok(0x10), |_| {}).unwrap();
        pool.give_back(a, sa);
        let calls = std::cell::Cell::new(0);
        let malloc = |_s: usize| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err(crate::Error::Cuda("out of memory".into()))
            } else {
                Ok(0x20)
            }
        };
        let (b, _) = pool.take(8192, malloc, |_| freed.set(freed.get() + 1)).unwrap();
        assert_eq!((b, freed.get()), (0x20, 1));
        assert_eq!(pool.stats().reserved_bytes, 8192);
    }
}
