// softmax.cu: softmax along the last dim, y = exp(x - max) / sum(exp(x - max)).
//
// Layout: x and y are contiguous [rows, C]. Precision: values widened to f32, max and sum in
// f32 (accurate expf), y rounded once on store. Three passes over each row (max, sum of
// exponentials, output); the row stays in L1 after the first. No atomics: deterministic.
// A row of all -inf gives NaN, as in PyTorch.

#include "common.cuh"

// One warp per row, 8 warps (256 threads) per block, grid = ceil(rows / 8), no smem. For
// C <= 1024 (the launcher's choice).
template <typename T>
__device__ __forceinline__ void softmax_warp(const T* __restrict__ x, T* __restrict__ y, long long rows, int C) {
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // a whole warp leaves; nothing below syncs the block
    const int lane = threadIdx.x & 31;
    const T* xr = x + row * C;
    T* yr = y + row * C;
    float m = -REVELIO_INF;
    for (int i = lane; i < C; i += 32) m = fmaxf(m, to_f32(xr[i]));
    m = warp_max(m);
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) s += expf(to_f32(xr[i]) - m);
    const float inv = 1.0f / warp_sum(s);
    for (int i = lane; i < C; i += 32) yr[i] = from_f32<T>(expf(to_f32(xr[i]) - m) * inv);
}

// One block per row, 256 threads, grid = rows, 32 floats of static smem. For C > 1024.
template <typename T>
__device__ __forceinline__ void softmax_block(const T* __restrict__ x, T* __restrict__ y, int C) {
    __shared__ float scratch[32];
    const T* xr = x + (long long)blockIdx.x * C;
    T* yr = y + (long long)blockIdx.x * C;
    const int tid = threadIdx.x, nt = blockDim.x;
    float m = -REVELIO_INF;
    for (int i = tid; i < C; i += nt) m = fmaxf(m, to_f32(xr[i]));
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int i = tid; i < C; i += nt) s += expf(to_f32(xr[i]) - m);
    const float inv = 1.0f / block_sum(s, scratch);
    for (int i = tid; i < C; i += nt) yr[i] = from_f32<T>(expf(to_f32(xr[i]) - m) * inv);
}

#define SOFTMAX_KERNELS(T, TN)                                                                        \
    extern "C" __global__ void __launch_bounds__(256)                                                \
        softmax_warp_##TN(const T* __restrict__ x, T* __restrict__ y, long long rows, int C) {       \
        softmax_warp<T>(x, y, rows, C);                                                               \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(256)                                                \
        softmax_block_##TN(const T* __restrict__ x, T* __restrict__ y, int C) {                      \
        softmax_block<T>(x, y, C);                                                                    \
    }

SOFTMAX_KERNELS(float, f32)
SOFTMAX_KERNELS(f16, f16)
SOFTMAX_KERNELS(bf16, bf16)
