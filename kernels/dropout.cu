// dropout.cu: dropout forward and backward (the same op: out = keep ? in * scale : 0).
//
// Layout: contiguous. The mask is recomputed, never stored: element i is kept iff
// rng_uniform(seed, i / group) >= p (group = 1 per element, or the H*W.. of a channel for
// Dropout2d), the same function as rng::uniform on the CPU, so both backends drop the same
// elements. Precision: in * scale in f32 (scale = 1 / (1 - p) rounded once on the host), one
// rounding on store. Launch: one thread per element, 256 per block.

#include "common.cuh"

#define DROPOUT(T, TN)                                                                        \
    extern "C" __global__ void dropout_apply_##TN(const T* __restrict__ x, T* __restrict__ y, \
                                                  long long n, long long group, float p,      \
                                                  float scale, u64 seed) {                    \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n) return;                                                                   \
        const bool keep = rng_uniform(seed, (u64)(i / group)) >= p;                           \
        y[i] = from_f32<T>(keep ? to_f32(x[i]) * scale : 0.0f);                               \
    }
DROPOUT(float, f32)
DROPOUT(f16, f16)
DROPOUT(bf16, bf16)
