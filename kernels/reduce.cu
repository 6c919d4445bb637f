// reduce.cu: reductions over one dim (sum, mean, max, argmax), the sum of all elements, and
// top-k along the last dim.
//
// Layout: contiguous row-major; a one-dim reduction sees x as [outer, n, inner] and reduces n.
// Precision: elements are converted to f32 on load and accumulated in f32; results are
// rounded once on store (argmax and top-k indices are i64). Every reduction is deterministic:
// a fixed order of f32 additions per launch shape, no float atomics (top-k uses integer
// shared-memory atomics only for counting and slot claiming, and its result is order-free).
// max and argmax treat NaN as larger than every number (max propagates NaN, argmax returns the
// first NaN); argmax and top-k break ties by the lower index.

#include "common.cuh"

#define RED_SUM 0
#define RED_MEAN 1
#define RED_MAX 2

// max that propagates NaN: once either side is NaN, the result is NaN.
__device__ __forceinline__ float max_nan(float a, float b) { return (b > a || b != b) ? b : a; }

__device__ __forceinline__ float red_identity(int op) { return op == RED_MAX ? -REVELIO_INF : 0.0f; }
__device__ __forceinline__ float red_combine(int op, float a, float b) { return op == RED_MAX ? max_nan(a, b) : a + b; }
__device__ __forceinline__ float red_finish(int op, float acc, long long n) { return op == RED_MEAN ? acc / (float)n : acc; }

// Reduction over a block whose size is a multiple of 32; every thread gets the result; ends
// with a barrier so `scratch` (32 floats) can be reused. The xor butterfly gives every lane
// bit-identical results (the combines are commutative).
__device__ __forceinline__ float block_reduce(float v, int op, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = red_combine(op, v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? scratch[lane] : red_identity(op);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) r = red_combine(op, r, __shfl_xor_sync(0xffffffffu, r, o));
    __syncthreads();
    return r;
}

// ---------------------------------------------------------------- sum / mean / max

// inner == 1: x [rows, n] -> y [rows]. One block per row (grid = rows), block size a multiple
// of 32 chosen by the launcher from n (32..256); threads stride over the row, then a block
// reduction.
#define REDUCE_ROWS(T, TN)                                                                    \
    extern "C" __global__ void reduce_rows_##TN(const T* __restrict__ x, T* __restrict__ y,   \
                                                long long n, int op) {                        \
        __shared__ float scratch[32];                                                         \
        const T* row = x + (long long)blockIdx.x * n;                                         \
        float acc = red_identity(op);                                                         \
        for (long long i = threadIdx.x; i < n; i += blockDim.x) acc = red_combine(op, acc, to_f32(row[i])); \
        acc = block_reduce(acc, op, scratch);                                                 \
        if (threadIdx.x == 0) y[blockIdx.x] = from_f32<T>(red_finish(op, acc, n));           \
    }

// inner > 1: x [outer, n, inner] -> y [outer, inner]. One thread per output element (256 per
// block), looping over n; a warp's loads are consecutive along inner (coalesced).
#define REDUCE_COLS(T, TN)                                                                    \
    extern "C" __global__ void reduce_cols_##TN(const T* __restrict__ x, T* __restrict__ y,   \
                                                long long outer, long long n, long long inner, int op) { \
        long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (t >= outer * inner) return;                                                       \
        long long o = t / inner, j = t - o * inner;                                           \
        const T* p = x + o * n * inner + j;                                                   \
        float acc = red_identity(op);                                                         \
        for (long long i = 0; i < n; ++i) acc = red_combine(op, acc, to_f32(p[i * inner]));   \
        y[t] = from_f32<T>(red_finish(op, acc, n));                                           \
    }

REDUCE_ROWS(float, f32)
REDUCE_ROWS(f16, f16)
REDUCE_ROWS(bf16, bf16)
REDUCE_COLS(float, f32)
REDUCE_COLS(f16, f16)
REDUCE_COLS(bf16, bf16)

// ---------------------------------------------------------------- argmax

// Whether (vb at ib) beats (va at ia): NaN beats numbers, then the larger value, then the
// lower index (equal values, -0.0 vs 0.0, or two NaNs).
__device__ __forceinline__ bool arg_better(float vb, long long ib, float va, long long ia) {
    const bool nb = vb != vb, na = va != va;
    if (nb != na) return nb;
    if (nb || vb == va) return ib < ia;
    return vb > va;
}

// Arg-max over a block (size a multiple of 32); every thread gets the winner; ends with a barrier.
__device__ __forceinline__ void block_argmax(float& v, long long& idx, float* sv, long long* si) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        long long oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (arg_better(ov, oi, v, idx)) { v = ov; idx = oi; }
    }
    if (lane == 0) { sv[warp] = v; si[warp] = idx; }
    __syncthreads();
    v = lane < nwarps ? sv[lane] : -REVELIO_INF;
    idx = lane < nwarps ? si[lane] : 0x7fffffffffffffffll;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        long long oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (arg_better(ov, oi, v, idx)) { v = ov; idx = oi; }
    }
    __syncthreads();
}

// inner == 1: x [rows, n] -> idx [rows] (i64). One block per row, as reduce_rows.
#define ARGMAX_ROWS(T, TN)                                                                    \
    extern "C" __global__ void argmax_rows_##TN(const T* __restrict__ x, long long* __restrict__ y, \
                                                long long n) {                                \
        __shared__ float sv[32];                                                              \
        __shared__ long long si[32];                                                          \
        const T* row = x + (long long)blockIdx.x * n;                                         \
        float best = -REVELIO_INF;                                                            \
        long long bi = 0x7fffffffffffffffll;                                                  \
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {                             \
            float v = to_f32(row[i]);                                                         \
            if (arg_better(v, i, best, bi)) { best = v; bi = i; }                             \
        }                                                                                     \
        block_argmax(best, bi, sv, si);                                                       \
        if (threadIdx.x == 0) y[blockIdx.x] = bi;                                             \
    }

// inner > 1: x [outer, n, inner] -> idx [outer, inner] (i64). One thread per output, as reduce_cols.
#define ARGMAX_COLS(T, TN)                                                                    \
    extern "C" __global__ void argmax_cols_##TN(const T* __restrict__ x, long long* __restrict__ y, \
                                                long long outer, long long n, long long inner) { \
        long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (t >= outer * inner) return;                                                       \
        long long o = t / inner, j = t - o * inner;                                           \
        const T* p = x + o * n * inner + j;                                                   \
        float best = -REVELIO_INF;                                                            \
        long long bi = 0x7fffffffffffffffll;                                                  \
        for (long long i = 0; i < n; ++i) {                                                   \
            float v = to_f32(p[i * inner]);                                                   \
            if (arg_better(v, i, best, bi)) { best = v; bi = i; }                             \
        }                                                                                     \
        y[t] = bi;                                                                            \
    }

ARGMAX_ROWS(float, f32)
ARGMAX_ROWS(f16, f16)
ARGMAX_ROWS(bf16, bf16)
ARGMAX_COLS(float, f32)
ARGMAX_COLS(f16, f16)
ARGMAX_COLS(bf16, bf16)

// ---------------------------------------------------------------- sum of all elements

// Pass 1: grid of G <= 1024 blocks of 256 threads (G fixed by n alone, so the result is
// deterministic); block b sums elements b*256 + t, + G*256, ... into partial[b] (f32).
#define SUM_ALL_PARTIAL(T, TN)                                                                \
    extern "C" __global__ void sum_all_partial_##TN(const T* __restrict__ x, float* __restrict__ partial, \
                                                    long long n) {                            \
        __shared__ float scratch[32];                                                         \
        float acc = 0.0f;                                                                     \
        const long long step = (long long)gridDim.x * blockDim.x;                             \
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) \
            acc += to_f32(x[i]);                                                              \
        acc = block_sum(acc, scratch);                                                        \
        if (threadIdx.x == 0) partial[blockIdx.x] = acc;                                      \
    }

// Pass 2: one block of 1024 threads; y[0] = sum of partial[0..g), rounded to T.
#define SUM_ALL_FINAL(T, TN)                                                                  \
    extern "C" __global__ void sum_all_final_##TN(const float* __restrict__ partial, T* __restrict__ y, int g) { \
        __shared__ float scratch[32];                                                         \
        float acc = (int)threadIdx.x < g ? partial[threadIdx.x] : 0.0f;                       \
        acc = block_sum(acc, scratch);                                                        \
        if (threadIdx.x == 0) y[0] = from_f32<T>(acc);                                        \
    }

SUM_ALL_PARTIAL(float, f32)
SUM_ALL_PARTIAL(f16, f16)
SUM_ALL_PARTIAL(bf16, bf16)
SUM_ALL_FINAL(float, f32)
SUM_ALL_FINAL(f16, f16)
SUM_ALL_FINAL(bf16, bf16)

// ---------------------------------------------------------------- top-k
// One block per row of x [rows, n] (n < 2^31), k <= 1024:
// 1. Radix select of the k-th largest key over order-preserving u32 keys (`topk_key`), most
//    significant byte first: per pass a 256-bin histogram (shared-memory integer atomics,
//    aggregated per warp with __match_any_sync) of the keys that match the digits chosen so
//    far, then one warp finds the bin holding the k-th element. Stops early once every
//    element of the chosen bin is needed. Each pass reads the row once from global memory.
// 2. Gather: keys above the threshold claim slots with an atomic counter; keys equal to it
//    take the remaining slots lowest index first (a block-wide ordered count in chunks of
//    blockDim elements), unless all of them are needed.
// 3. Bitonic sort of the k packed (key, ~index) u64 in shared memory, descending, then the
//    values are re-read from x (bit-exact) and written with their i64 indices.
// Launch: grid = rows, block = 256, dynamic smem = p * 8 bytes with p = next pow2 >= k.
// Performance: up to 5 reads of the row (4 passes + gather); the fused SAE encoder will keep
// the candidates on chip instead.

extern __shared__ u64 topk_cand[];

// NaN above +inf, -0.0 equal to 0.0; the same function as cpu::reduce::topk_key.
__device__ __forceinline__ unsigned topk_key(float v) {
    if (v != v) return 0xffffffffu;
    unsigned u = v == 0.0f ? 0u : __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Larger key first, then lower index. 0 (never a real key) pads the sort.
__device__ __forceinline__ u64 topk_pack(unsigned key, long long i) {
    return ((u64)key << 32) | (u64)(0x7fffffffu - (unsigned)i);
}

// Adds the keys of `row` with (key & mask) == prefix to hist by their byte at `shift`.
// Every thread of the block runs the same number of iterations (warp-uniform loop).
template <typename T>
__device__ __forceinline__ void topk_histogram(const T* __restrict__ row, long long n, unsigned prefix,
                                               unsigned mask, int shift, unsigned* hist) {
    const int lane = threadIdx.x & 31;
    const long long b = blockDim.x;
    for (long long b0 = 0; b0 < n; b0 += 4 * b) {
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            long long i = b0 + j * b + threadIdx.x;
            v[j] = i < n ? to_f32(row[i]) : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            long long i = b0 + j * b + threadIdx.x;
            unsigned key = topk_key(v[j]);
            bool in = i < n && (key & mask) == prefix;
            unsigned bin = in ? (key >> shift) & 0xffu : 0x100u;
            unsigned peers = __match_any_sync(0xffffffffu, bin);
            if (in && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (unsigned)__popc(peers));
        }
    }
}

// Run by one warp: the bin d holding the kk-th largest counted key. Writes d, the rank of the
// wanted key within bin d, and bin d's count to pick[0..3].
__device__ __forceinline__ void topk_pick_digit(const unsigned* hist, unsigned kk, unsigned* pick) {
    const int lane = threadIdx.x & 31;
    const int lo = 8 * (31 - lane);  // lane 0 holds the top 8 bins
    unsigned local = 0;
#pragma unroll
    for (int b = 0; b < 8; ++b) local += hist[lo + b];
    unsigned incl = local;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        unsigned t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    const unsigned above = incl - local;
    if (above < kk && kk <= incl) {
        unsigned acc = above;
        for (int b = lo + 7; b >= lo; --b) {
            unsigned h = hist[b];
            if (acc + h >= kk) {
                pick[0] = (unsigned)b;
                pick[1] = kk - acc;
                pick[2] = h;
                break;
            }
            acc += h;
        }
    }
}

template <typename T>
__device__ __forceinline__ void topk_row(const T* __restrict__ x, T* __restrict__ vals, long long* __restrict__ idx,
                                         long long n, int k, int p) {
    __shared__ unsigned hist[256];
    __shared__ unsigned pick[3];
    __shared__ unsigned warp_ties[32];
    __shared__ unsigned n_greater;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
    const T* row = x + (long long)blockIdx.x * n;

    for (int j = tid; j < p; j += blockDim.x) topk_cand[j] = 0ull;
    if (tid == 0) n_greater = 0;

    // 1. radix select: after pass `pass`, `prefix` holds the top 8*(pass+1) bits of the k-th
    // largest key, `kk` its rank among the keys sharing those bits, `n_eq` how many share them.
    unsigned prefix = 0, mask = 0, kk = (unsigned)k, n_eq = 0;
    for (int pass = 0; pass < 4; ++pass) {
        const int shift = 24 - 8 * pass;
        for (int j = tid; j < 256; j += blockDim.x) hist[j] = 0;
        __syncthreads();
        topk_histogram(row, n, prefix, mask, shift, hist);
        __syncthreads();
        if (warp == 0) topk_pick_digit(hist, kk, pick);
        __syncthreads();
        prefix |= pick[0] << shift;
        mask |= 0xffu << shift;
        kk = pick[1];
        n_eq = pick[2];
        if (n_eq == kk) break;  // every key sharing the prefix is in the top k
    }

    // 2. gather: (key & mask) > prefix fill slots [0, k - kk), == prefix slots [k - kk, k).
    const unsigned tie_base = (unsigned)k - kk;
    if (n_eq == kk) {
        for (long long i = tid; i < n; i += blockDim.x) {
            unsigned key = topk_key(to_f32(row[i]));
            if ((key & mask) >= prefix) topk_cand[atomicAdd(&n_greater, 1u)] = topk_pack(key, i);
        }
    } else {
        // Here mask is all ones: ties are exact key equality, taken lowest index first.
        unsigned running = 0;
        for (long long b0 = 0; b0 < n; b0 += blockDim.x) {
            const long long i = b0 + tid;
            const bool valid = i < n;
            const unsigned key = valid ? topk_key(to_f32(row[i])) : 0u;
            if (valid && key > prefix) topk_cand[atomicAdd(&n_greater, 1u)] = topk_pack(key, i);
            const bool tie = valid && key == prefix;
            const unsigned ballot = __ballot_sync(0xffffffffu, tie);
            if (lane == 0) warp_ties[warp] = __popc(ballot);
            __syncthreads();
            unsigned before = running, total = 0;
            for (int w = 0; w < nwarps; ++w) {
                unsigned c = warp_ties[w];
                if (w < warp) before += c;
                total += c;
            }
            before += __popc(ballot & ((1u << lane) - 1u));
            if (tie && before < kk) topk_cand[tie_base + before] = topk_pack(key, i);
            running += total;
            __syncthreads();
        }
    }
    __syncthreads();

    // 3. bitonic sort of p packed candidates, descending.
    for (int size = 2; size <= p; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int t = tid; t < (p >> 1); t += blockDim.x) {
                const int i = 2 * t - (t & (stride - 1)), j = i + stride;
                const u64 a = topk_cand[i], b = topk_cand[j];
                const bool desc = (i & size) == 0;
                if (desc ? a < b : a > b) {
                    topk_cand[i] = b;
                    topk_cand[j] = a;
                }
            }
            __syncthreads();
        }
    }
    for (int j = tid; j < k; j += blockDim.x) {
        const long long i = (long long)(0x7fffffffu - (unsigned)(topk_cand[j] & 0xffffffffull));
        const long long o = (long long)blockIdx.x * k + j;
        vals[o] = row[i];
        idx[o] = i;
    }
}

// x [rows, n] -> vals [rows, k] (T), idx [rows, k] (i64). See the top-k section comment.
#define TOPK(T, TN)                                                                           \
    extern "C" __global__ void topk_rows_##TN(const T* __restrict__ x, T* __restrict__ vals,  \
                                              long long* __restrict__ idx, long long n, int k, int p) { \
        topk_row<T>(x, vals, idx, n, k, p);                                                   \
    }
TOPK(float, f32)
TOPK(f16, f16)
TOPK(bf16, bf16)
