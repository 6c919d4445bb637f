// elementwise.cu: pointwise ops. Activations (forward `<act>_fwd`, backward `<act>_bwd`), GEGLU,
// broadcasting add/sub/mul/div, affine, and dtype casts.
//
// Layout: contiguous row-major. Precision: values are loaded, converted to f32, computed in
// f32 and rounded once on store. Launch shape for all: one thread per output element,
// 256 threads per block, grid = ceil(n / 256) (memory-bound; no shared memory).

#include "common.cuh"

// ---------------------------------------------------------------- activations

__device__ __forceinline__ float act_relu(float x) { return fmaxf(x, 0.0f); }
__device__ __forceinline__ float act_silu(float x) { return x * sigmoidf_(x); }
__device__ __forceinline__ float act_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float act_gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float act_quick_gelu(float x) { return x * sigmoidf_(1.702f * x); }

__device__ __forceinline__ float grad_relu(float x) { return x > 0.0f ? 1.0f : 0.0f; }
__device__ __forceinline__ float grad_silu(float x) {
    float s = sigmoidf_(x);
    return s * (1.0f + x * (1.0f - s));
}
__device__ __forceinline__ float grad_gelu(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
    return cdf + x * pdf;
}
__device__ __forceinline__ float grad_gelu_tanh(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}
__device__ __forceinline__ float grad_quick_gelu(float x) {
    float s = sigmoidf_(1.702f * x);
    return s + 1.702f * x * s * (1.0f - s);
}

// y[i] = act(x[i]). One thread per element.
#define ACT_FWD(NAME, T, TN)                                                                  \
    extern "C" __global__ void NAME##_fwd_##TN(const T* __restrict__ x, T* __restrict__ y,   \
                                               long long n) {                                 \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i < n) y[i] = from_f32<T>(act_##NAME(to_f32(x[i])));                              \
    }
// dx[i] = dy[i] * act'(x[i]). One thread per element.
#define ACT_BWD(NAME, T, TN)                                                                  \
    extern "C" __global__ void NAME##_bwd_##TN(const T* __restrict__ dy, const T* __restrict__ x, \
                                               T* __restrict__ dx, long long n) {             \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i < n) dx[i] = from_f32<T>(to_f32(dy[i]) * grad_##NAME(to_f32(x[i])));            \
    }
#define ACT_ALL(NAME)                                                                         \
    ACT_FWD(NAME, float, f32) ACT_FWD(NAME, f16, f16) ACT_FWD(NAME, bf16, bf16)               \
    ACT_BWD(NAME, float, f32) ACT_BWD(NAME, f16, f16) ACT_BWD(NAME, bf16, bf16)

ACT_ALL(relu)
ACT_ALL(silu)
ACT_ALL(gelu)
ACT_ALL(gelu_tanh)
ACT_ALL(quick_gelu)

// ---------------------------------------------------------------- GEGLU
// x: [rows, 2F] (hidden half then gate half) -> y: [rows, F], y = h * gelu(g).
// One thread per output element.
#define GEGLU(T, TN)                                                                          \
    extern "C" __global__ void geglu_fwd_##TN(const T* __restrict__ x, T* __restrict__ y,    \
                                              long long rows, long long f) {                  \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= rows * f) return;                                                            \
        long long r = i / f, j = i - r * f;                                                   \
        const T* row = x + r * 2 * f;                                                         \
        y[i] = from_f32<T>(to_f32(row[j]) * act_gelu(to_f32(row[f + j])));                    \
    }
GEGLU(float, f32)
GEGLU(f16, f16)
GEGLU(bf16, bf16)

// ---------------------------------------------------------------- binary ops with broadcasting
// out[i] = a[ia] op b[ib]. When `contig` is set, a and b have out's shape (ia = ib = i);
// otherwise the offsets come from out's dims and each operand's strides (0 on broadcast dims).
// One thread per output element.
#define BINARY(NAME, EXPR, T, TN)                                                             \
    extern "C" __global__ void NAME##_bcast_##TN(const T* __restrict__ a, const T* __restrict__ b, \
                                                 T* __restrict__ out, long long n, int contig, \
                                                 Dims shape, Dims a_strides, Dims b_strides) { \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n) return;                                                                   \
        long long ia = i, ib = i;                                                             \
        if (!contig) {                                                                        \
            ia = dims_offset(i, shape, a_strides);                                            \
            ib = dims_offset(i, shape, b_strides);                                            \
        }                                                                                     \
        float x = to_f32(a[ia]), y = to_f32(b[ib]);                                           \
        out[i] = from_f32<T>(EXPR);                                                           \
    }
#define BINARY_ALL(NAME, EXPR) BINARY(NAME, EXPR, float, f32) BINARY(NAME, EXPR, f16, f16) BINARY(NAME, EXPR, bf16, bf16)
BINARY_ALL(add, x + y)
BINARY_ALL(sub, x - y)
BINARY_ALL(mul, x * y)
BINARY_ALL(div, x / y)

// ---------------------------------------------------------------- affine
// y = x * mul + add. One thread per element.
#define AFFINE(T, TN)                                                                         \
    extern "C" __global__ void affine_fwd_##TN(const T* __restrict__ x, T* __restrict__ y,   \
                                               long long n, float mul, float add) {           \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i < n) y[i] = from_f32<T>(to_f32(x[i]) * mul + add);                              \
    }
AFFINE(float, f32)
AFFINE(f16, f16)
AFFINE(bf16, bf16)

// ---------------------------------------------------------------- casts
// y = (TO) x. Floats round to nearest even; ints convert by value. One thread per element.
#define CAST(FROM, FN, TO, TN, CONV)                                                          \
    extern "C" __global__ void cast_##FN##_##TN(const FROM* __restrict__ x, TO* __restrict__ y, \
                                                long long n) {                                \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i < n) y[i] = CONV;                                                               \
    }
CAST(float, f32, f16, f16, from_f32<f16>(x[i]))
CAST(float, f32, bf16, bf16, from_f32<bf16>(x[i]))
CAST(f16, f16, float, f32, to_f32(x[i]))
CAST(f16, f16, bf16, bf16, from_f32<bf16>(to_f32(x[i])))
CAST(bf16, bf16, float, f32, to_f32(x[i]))
CAST(bf16, bf16, f16, f16, from_f32<f16>(to_f32(x[i])))
CAST(long long, i64, int, i32, (int)x[i])
CAST(int, i32, long long, i64, (long long)x[i])
CAST(long long, i64, float, f32, (float)x[i])
CAST(int, i32, float, f32, (float)x[i])
