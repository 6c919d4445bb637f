// loss.cu: cross-entropy over classes (torch.nn.CrossEntropyLoss, mean reduction), forward and
// backward.
//
// Layout: logits [B, C] contiguous in their float dtype; labels [B] i64 or i32 (checked in range
// on the host before any launch); probs [B, C] f32. Precision: f32 throughout (accurate expf and
// logf). The batch mean is a fixed-order sum in one block (no atomics): the same inputs give the
// same bits.

#include "common.cuh"

// Forward, per row: probs = softmax(logits), row_loss = max + log(sum exp(x - max)) - x[label].
// One warp per row, 8 warps (256 threads) per block, grid = ceil(B / 8), no smem.
template <typename T, typename L>
__device__ __forceinline__ void cross_entropy_fwd(const T* __restrict__ logits, const L* __restrict__ labels,
                                                  float* __restrict__ probs, float* __restrict__ row_loss,
                                                  int B, int C) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= B) return;  // a whole warp leaves; nothing below syncs the block
    const int lane = threadIdx.x & 31;
    const T* xr = logits + (long long)row * C;
    float* pr = probs + (long long)row * C;
    float m = -REVELIO_INF;
    for (int i = lane; i < C; i += 32) m = fmaxf(m, to_f32(xr[i]));
    m = warp_max(m);
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) s += expf(to_f32(xr[i]) - m);
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int i = lane; i < C; i += 32) pr[i] = expf(to_f32(xr[i]) - m) * inv;
    if (lane == 0) row_loss[row] = m + logf(s) - to_f32(xr[(int)labels[row]]);
}

// loss[0] = sum(row_loss) / B: one block of 1024 threads, grid = 1; each thread sums a fixed
// strided subset in order, then a fixed tree.
extern "C" __global__ void __launch_bounds__(1024)
    cross_entropy_mean_f32(const float* __restrict__ row_loss, float* __restrict__ loss, int B) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < B; i += blockDim.x) s += row_loss[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) loss[0] = s / (float)B;
}

// Backward: dlogits[r, j] = scale * (probs[r, j] - (j == labels[r])), scale = dloss / B.
// One thread per element, 256 threads per block.
template <typename T, typename L>
__device__ __forceinline__ void cross_entropy_bwd(const T* __restrict__ probs, const L* __restrict__ labels,
                                                  T* __restrict__ dlogits, long long total, int C, float scale) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long r = i / C;
    const int j = (int)(i - r * C);
    const float onehot = (j == (int)labels[r]) ? 1.0f : 0.0f;
    dlogits[i] = from_f32<T>(scale * (to_f32(probs[i]) - onehot));
}

#define LOSS_KERNELS(T, TN, L, LN)                                                                    \
    extern "C" __global__ void __launch_bounds__(256) cross_entropy_fwd_##LN##_##TN(                  \
        const T* __restrict__ logits, const L* __restrict__ labels, float* __restrict__ probs,        \
        float* __restrict__ row_loss, int B, int C) {                                                 \
        cross_entropy_fwd<T, L>(logits, labels, probs, row_loss, B, C);                               \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(256) cross_entropy_bwd_##LN##_##TN(                  \
        const T* __restrict__ probs, const L* __restrict__ labels, T* __restrict__ dlogits,           \
        long long total, int C, float scale) {                                                        \
        cross_entropy_bwd<T, L>(probs, labels, dlogits, total, C, scale);                             \
    }

LOSS_KERNELS(float, f32, long long, i64)
LOSS_KERNELS(f16, f16, long long, i64)
LOSS_KERNELS(bf16, bf16, long long, i64)
LOSS_KERNELS(float, f32, int, i32)
LOSS_KERNELS(f16, f16, int, i32)
LOSS_KERNELS(bf16, bf16, int, i32)
