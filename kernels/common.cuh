// common.cuh: the prelude of every kernel module (passed to NVRTC as an in-memory header).
//
// Self-contained on purpose: no CUDA toolkit header is included, so NVRTC needs no include
// path and any machine with a driver and libnvrtc can build the kernels. 16-bit floats are
// stored as raw bits (`f16`, `bf16`) and converted with PTX `cvt` (f16) or bit operations
// (bf16, round-to-nearest-even); all arithmetic is done in f32.
//
// Conventions for every module:
// - kernel names are `<op>_<variant>_<dtype>` (`extern "C"`), listed once in the Rust table
//   (src/cuda/<family>.rs, `KERNELS`);
// - a comment above each kernel gives its layout, launch shape and precision;
// - sizes that can exceed 2^31 elements are `long long`; others `int`.

#pragma once

typedef unsigned long long u64;
typedef long long i64;

struct __align__(2) f16 { unsigned short bits; };
struct __align__(2) bf16 { unsigned short bits; };

#define REVELIO_INF __int_as_float(0x7f800000)
#define REVELIO_NAN __int_as_float(0x7fffffff)

// ---------------------------------------------------------------- conversions

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __uint_as_float(((unsigned)x.bits) << 16); }
__device__ __forceinline__ float to_f32(f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ f16 from_f32<f16>(float x) {
    f16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
    return r;
}
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) {
    unsigned u = __float_as_uint(x);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it a (quiet) NaN
        r.bits = (unsigned short)((u >> 16) | 0x40u);
    } else {                                 // round to nearest, ties to even
        u += 0x7fffu + ((u >> 16) & 1u);
        r.bits = (unsigned short)(u >> 16);
    }
    return r;
}

// Two 16-bit floats packed in one 32-bit register, as tensor-core instructions take them.
__device__ __forceinline__ unsigned pack2(f16 lo, f16 hi) { return (unsigned)lo.bits | ((unsigned)hi.bits << 16); }
__device__ __forceinline__ unsigned pack2(bf16 lo, bf16 hi) { return (unsigned)lo.bits | ((unsigned)hi.bits << 16); }

// ---------------------------------------------------------------- math

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// ---------------------------------------------------------------- reductions
// Warp reductions over all 32 lanes (every lane gets the result).

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block whose size is a multiple of 32 (at most 1024 threads). `scratch` holds at
// least 32 floats of shared memory. Every thread gets the result. Ends with a barrier, so the
// scratch can be reused right after.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = (lane < nwarps) ? scratch[lane] : 0.0f;
    r = warp_sum(r);
    __syncthreads();
    return r;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = (lane < nwarps) ? scratch[lane] : -REVELIO_INF;
    r = warp_max(r);
    __syncthreads();
    return r;
}

// ---------------------------------------------------------------- random numbers
// Counter-based, identical to src/rng.rs: value i of stream `seed` depends only on (seed, i).

__device__ __forceinline__ u64 rng_mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ u64 rng_bits(u64 seed, u64 i) { return rng_mix64(seed ^ rng_mix64(i + 0x9e3779b97f4a7c15ull)); }
// Uniform in [0, 1) with 24 bits, exactly as rng::uniform.
__device__ __forceinline__ float rng_uniform(u64 seed, u64 i) { return (float)(rng_bits(seed, i) >> 40) * (1.0f / 16777216.0f); }

// ---------------------------------------------------------------- shapes
// Dims and strides of one operand, passed by value (mirrors launch::Dims in Rust).

#define REVELIO_MAX_DIMS 6
struct Dims {
    int rank;
    long long size[REVELIO_MAX_DIMS];
    long long stride[REVELIO_MAX_DIMS];
};

// The offset, under `strides`, of the element with row-major linear index `i` in `shape`.
// Loops are unrolled over the fixed maximum rank so the arrays stay in registers.
__device__ __forceinline__ long long dims_offset(long long i, const Dims& shape, const Dims& strides) {
    long long off = 0;
#pragma unroll
    for (int d = REVELIO_MAX_DIMS - 1; d >= 0; --d) {
        if (d < shape.rank) {
            long long s = shape.size[d];
            long long q = i / s;
            off += (i - q * s) * strides.stride[d];
            i = q;
        }
    }
    return off;
}
