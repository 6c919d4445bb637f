// sae.cu: one training step of a TopK sparse autoencoder (Revelio's k-SAE, Gao et al.'s TopK
// SAE with AuxK), the parts that are not plain GEMMs.
//
// Legend: B = batch rows, d = input dim, n = latents, k = active latents per row (kk = k of the
// decode at hand: k, or aux-k for AuxK). Layouts (row-major, SAELens' tensors):
//   x, xc [B, d]   W_enc [d, n] (+ a bf16 shadow)   b_enc [n]   W_dec [n, d]   b_dec [d]
//   code: vals f32 [B, kk] (sorted descending), idx i32 [B, kk]
//
// Kernels, in the order a step runs them:
//   sae_center             xc = x - b_dec in f32 and in bf16 (the encoder GEMM's A operand)
//   sae_encode_topk_bf16   fused encoder: bf16 tensor-core GEMM (mma.sync m16n8k16, f32
//                          accumulate) of xc and W_enc, + b_enc, optional ReLU, and a running
//                          top-k per row kept in shared memory across the column tiles of a
//                          split; writes only each split's k best (value, column) keys, so the
//                          dense [B, n] pre-activation never reaches device memory
//   sae_topk_merge         the k best of each row over the splits' candidates
//   sae_decode             per row: recon = sum_e vals[e] W_dec[idx[e]] (+ bias), residual
//                          r = target - recon, its squared sum, and dot[e] = r . W_dec[idx[e]]
//   sae_colstats_*         column sums and centred sums of squares of a [B, d] matrix
//   sae_csc_*              the latent-major (CSC) list of the code's entries: count, scan,
//                          fill, and a sort by entry id that makes the list deterministic
//   sae_grad_enc           dW_enc[:, j] = sum over j's entries of dpre * xc[row] (sparse outer
//                          products), db_enc[j] = sum of dpre (the scatter)
//   sae_grad_dec           dW_dec[j] = sum over j's entries of zc * r[row], minus its
//                          component along W_dec[j] (rows of inactive latents are written 0)
//   sae_grad_bdec          db_dec = -c sum_b r - c_aux sum_b r_aux - W_enc db_enc
//   sae_adam_{f32,bf16}    one Adam step over all four tensors (f32 master weights, moments in
//                          f32 or bf16), refreshing W_enc's bf16 shadow and renormalising every
//                          W_dec row to unit norm
//   sae_fired_mark, sae_since_update   samples since each latent last fired
//   sae_gather_cols        columns of W_enc / b_enc for the AuxK encoder over dead latents
//
// Precision: the encoder GEMM takes bf16 operands with f32 accumulation; everything else is
// f32. Determinism: no float atomics anywhere. Integer atomics count CSC entries and claim slots
// (the slots are then sorted by entry id), and claim candidate slots in the encoder (whose
// result, the exact top-k under a strict total order, does not depend on the order of claims).
// So a step gives bit-identical results on one device for one launch shape.
//
// Order of keys (top-k): value descending, NaN above everything, -0.0 equal to 0.0, and equal
// values by lower column first: the same order as reduce.cu's top-k and cpu::reduce::topk.

#include "mma.cuh"


// ---------------------------------------------------------------- top-k keys

// Order-preserving u32 of a float: NaN above +inf, -0.0 equal to 0.0 (as reduce.cu's topk_key).
__device__ __forceinline__ unsigned sae_key(float v) {
    if (v != v) return 0xffffffffu;
    unsigned u = v == 0.0f ? 0u : __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
// The float a key stands for (exact; -0.0 comes back as 0.0).
__device__ __forceinline__ float sae_key_value(unsigned key) {
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}
// (key, column) in one u64 ordered by key, then lower column. 0 is below every real entry.
__device__ __forceinline__ u64 sae_pack(unsigned key, int col) {
    return ((u64)key << 32) | (u64)(0xffffffffu - (unsigned)col);
}
__device__ __forceinline__ int sae_pack_col(u64 p) { return (int)(0xffffffffu - (unsigned)(p & 0xffffffffull)); }

__device__ __forceinline__ u64 warp_max_u64(u64 v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const u64 w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

// ---------------------------------------------------------------- centring

// xc = x - b_dec as f32 and bf16. x, xc, xc16 [rows, d]. One thread per element, 256 per block.
extern "C" __global__ void sae_center_f32(const float* __restrict__ x, const float* __restrict__ b_dec,
                                          float* __restrict__ xc, bf16* __restrict__ xc16, long long total, int d) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float v = x[i] - b_dec[i % d];
    xc[i] = v;
    xc16[i] = from_f32<bf16>(v);
}

// ---------------------------------------------------------------- fused encoder with top-k
//
// Block tile 128 rows x 128 columns x 32 deep, 8 warps as 2 x 4 of 64 x 32 (4 x 4 m16n8
// accumulator tiles each), double-buffered shared memory filled by cp.async (16-byte pieces
// when d, resp. n, is a multiple of 8; element loads otherwise), rows padded by 16 bytes so
// ldmatrix is free of bank conflicts. A block owns 128 rows and `tiles_per_split` consecutive
// column tiles (one split); the K loop runs over all of them back to back, so the next tile's
// first stage loads while the current tile's epilogue runs.
//
// Epilogue of a tile, per row: a candidate list of `cap` keys (64 for k <= 32, 96 for k <= 64:
// two instantiations) and a threshold. Each thread offers its 64 values (bias added, ReLU if asked) that beat
// their row's threshold, claiming list slots with a shared atomic counter. When a row's list
// overflows, its warp compacts it to the k best (ranks by counting, so the list comes out
// sorted) and raises the threshold to the k-th; offers that found no slot are re-checked
// against the new threshold and offered again. The result after the last tile is the exact
// top-k of the split (see docs/sae.md), whatever order the claims came in.
//
// Launch: grid = ceil(B/128) * splits blocks (row block fastest, so the blocks in flight share
// W_enc's column tiles in L2), 256 threads, dynamic smem 37,888 + 1,536 + 1,024 * cap bytes
// (104,960 for k <= 32, 137,728 for k <= 64). Output cand [B, splits, k] u64 keys, sorted
// descending, padded with 0. ptxas: 156 (k <= 32) and 164 registers, so one block (8 warps) per
// SM; the main loop alone needs 122 (as conv.cu's), the epilogue's unrolled offers the rest.

#define ENC_AB_BYTES (2 * TILE_BM * TILE_LDA * 2 + 2 * TILE_BK * TILE_LDB * 2)  // 37,888

// Stage (k0, n0) of B = W16 [K, N] into sb (32 x 128), zero outside.
__device__ __forceinline__ void enc_load_b(u16* sb, const u16* W, int K, int N, int k0, int n0, int vec, int tid) {
    if (vec) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int c = tid + i * TILE_THREADS;
            const int kr = c >> 4, nc = (c & 15) * 8;
            const bool ok = (k0 + kr < K) & (n0 + nc < N);
            const u16* src = ok ? W + (long long)(k0 + kr) * N + n0 + nc : W;
            cp_async16(sb + kr * TILE_LDB + nc, src, ok);
        }
    } else {
#pragma unroll 4
        for (int i = 0; i < (TILE_BK * TILE_BN) / TILE_THREADS; ++i) {
            const int c = tid + i * TILE_THREADS;
            const int kr = c >> 7, nc = c & 127;
            const bool ok = (k0 + kr < K) & (n0 + nc < N);
            sb[kr * TILE_LDB + nc] = ok ? W[(long long)(k0 + kr) * N + n0 + nc] : (u16)0;
        }
    }
}

// Run by one warp: keeps the k best of list[0..m) (m <= 96), sorted descending, in list[0..);
// sets *thr to the k-th when m >= k and *cnt to min(m, k). Ranks by counting: keys are unique.
__device__ __forceinline__ void enc_compact(u64* list, int m, int k, u64* thr, int* cnt, int lane) {
    u64 key0 = lane < m ? list[lane] : 0ull;
    u64 key1 = lane + 32 < m ? list[lane + 32] : 0ull;
    u64 key2 = lane + 64 < m ? list[lane + 64] : 0ull;
    int r0 = 0, r1 = 0, r2 = 0;
    for (int j = 0; j < m; ++j) {
        const u64 o = list[j];
        r0 += o > key0;
        r1 += o > key1;
        r2 += o > key2;
    }
    __syncwarp();
    if (lane < m && r0 < k) list[r0] = key0;
    if (lane + 32 < m && r1 < k) list[r1] = key1;
    if (lane + 64 < m && r2 < k) list[r2] = key2;
    if (m >= k) {
        if (lane < m && r0 == k - 1) *thr = key0;
        if (lane + 32 < m && r1 == k - 1) *thr = key1;
        if (lane + 64 < m && r2 == k - 1) *thr = key2;
    }
    if (lane == 0) *cnt = min(m, k);
    __syncwarp();
}

// Bit v of a 64-bit pending mask held in two registers (v is a compile-time constant after
// unrolling, so the masks stay in registers).
#define PEND_TEST(v) ((((v) < 32 ? pend0 : pend1) >> ((v) & 31)) & 1u)
#define PEND_CLEAR(v)                             \
    {                                             \
        if ((v) < 32) pend0 &= ~(1u << ((v) & 31)); \
        else pend1 &= ~(1u << ((v) & 31));          \
    }

// Makes the compiler treat the accumulators as changed here, so the keys derived from them
// are recomputed where they are used instead of being held in registers across the loop.
__device__ __forceinline__ void enc_opaque(float (&acc)[4][4][4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) asm volatile("" : "+f"(acc[i][j][q]));
}

// The epilogue of one column tile (see the section comment). Value (mt, nt, q) of this thread
// sits at tile row rb + mt*16 + (q>>1)*8 and column cb + nt*8 + (q&1); its key packs the
// global column n0 + cb + ..., computed as `colkey` minus a constant.
template <int CAP>
__device__ __forceinline__ void enc_epilogue(float (&acc)[4][4][4], const float* __restrict__ b_enc, u64* list,
                                             u64* thr, int* cnt, int n0, int rows_left, int N, int k, int relu,
                                             int rb, int cb, int warp, int lane) {
    const int cols_left = N - n0 - cb;
    const unsigned colkey = 0xffffffffu - (unsigned)(n0 + cb);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float bias = nt * 8 + h < cols_left ? b_enc[n0 + cb + nt * 8 + h] : 0.0f;
#pragma unroll
            for (int mt = 0; mt < 4; ++mt)
#pragma unroll
                for (int hi = 0; hi < 2; ++hi) {
                    float p = acc[mt][nt][hi * 2 + h] + bias;
                    if (relu) p = fmaxf(p, 0.0f);
                    acc[mt][nt][hi * 2 + h] = p;
                }
        }
#define ENC_KEY(mt, nt, q) (((u64)sae_key(acc[mt][nt][q]) << 32) | (u64)(colkey - (unsigned)((nt) * 8 + ((q) & 1))))
#define ENC_ROW(mt, q) ((mt) * 16 + ((q) >> 1) * 8)
    unsigned pend0 = 0, pend1 = 0;
    enc_opaque(acc);
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int v = (mt * 4 + nt) * 4 + q;
                if (ENC_ROW(mt, q) < rows_left && nt * 8 + (q & 1) < cols_left && ENC_KEY(mt, nt, q) > thr[rb + ENC_ROW(mt, q)]) {
                    if (v < 32) pend0 |= 1u << (v & 31);
                    else pend1 |= 1u << (v & 31);
                }
            }
    for (;;) {
        enc_opaque(acc);
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int v = (mt * 4 + nt) * 4 + q;
                    if (PEND_TEST(v)) {
                        const int row = rb + ENC_ROW(mt, q);
                        const int slot = atomicAdd(&cnt[row], 1);
                        if (slot < CAP) {
                            list[row * CAP + slot] = ENC_KEY(mt, nt, q);
                            PEND_CLEAR(v)
                        }
                    }
                }
        if (!__syncthreads_or((pend0 | pend1) != 0)) break;
        // Some row overflowed: its warp compacts it (rows w, w + 8, ...).
        for (int r = warp; r < TILE_BM; r += TILE_THREADS / 32) {
            if (cnt[r] > CAP) enc_compact(list + r * CAP, CAP, k, &thr[r], &cnt[r], lane);
        }
        __syncthreads();
        enc_opaque(acc);
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int v = (mt * 4 + nt) * 4 + q;
                    if (PEND_TEST(v) && ENC_KEY(mt, nt, q) <= thr[rb + ENC_ROW(mt, q)]) PEND_CLEAR(v)
                }
    }
#undef ENC_KEY
#undef ENC_ROW
}

template <int CAP>
__device__ __forceinline__ void encode_topk(const u16* __restrict__ A, const u16* __restrict__ W, const float* __restrict__ b_enc,
                                            u64* __restrict__ cand, int M, int K, int N, int k, int relu,
                                            int tiles_per_split, int splits, int a_vec, int b_vec) {
    extern __shared__ __align__(16) unsigned char enc_smem[];
    u16* sa = reinterpret_cast<u16*>(enc_smem);
    u16* sb = sa + 2 * TILE_BM * TILE_LDA;
    u64* list = reinterpret_cast<u64*>(enc_smem + ENC_AB_BYTES);
    u64* thr = list + TILE_BM * CAP;
    int* cnt = reinterpret_cast<int*>(thr + TILE_BM);

    const int rblocks = (M + TILE_BM - 1) / TILE_BM;
    const int m0 = (blockIdx.x % rblocks) * TILE_BM;
    const int split = blockIdx.x / rblocks;
    const int ntiles_all = (N + TILE_BN - 1) / TILE_BN;
    const int t0 = split * tiles_per_split;
    const int ntiles = min(tiles_per_split, ntiles_all - t0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;
    const int rb = wm * 64 + (lane >> 2), cb = wn * 32 + (lane & 3) * 2;

    for (int r = tid; r < TILE_BM; r += TILE_THREADS) {
        cnt[r] = 0;
        thr[r] = 0ull;
    }

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

    const int nk = (K + TILE_BK - 1) / TILE_BK;
    const int total = ntiles * nk;
    tile_load_a(sa, A, M, K, m0, 0, a_vec, tid);
    enc_load_b(sb, W, K, N, 0, t0 * TILE_BN, b_vec, tid);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    int ks = 0, tn = 0;  // k stage and tile of iteration it
    for (int it = 0; it < total; ++it) {
        const int cur = it & 1, nxt = cur ^ 1;
        const int ks1 = ks + 1 == nk ? 0 : ks + 1, tn1 = ks + 1 == nk ? tn + 1 : tn;
        if (it + 1 < total) {
            tile_load_a(sa + nxt * TILE_BM * TILE_LDA, A, M, K, m0, ks1 * TILE_BK, a_vec, tid);
            enc_load_b(sb + nxt * TILE_BK * TILE_LDB, W, K, N, ks1 * TILE_BK, (t0 + tn1) * TILE_BN, b_vec, tid);
            cp_async_commit();
        }
        tile_stage<bf16, true>(sa + cur * TILE_BM * TILE_LDA, sb + cur * TILE_BK * TILE_LDB, acc, wm, wn, lane);
        if (ks == nk - 1) {
            enc_epilogue<CAP>(acc, b_enc, list, thr, cnt, (t0 + tn) * TILE_BN, M - m0 - rb, N, k, relu, rb, cb, warp, lane);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;
        }
        ks = ks1;
        tn = tn1;
        cp_async_wait_all();
        __syncthreads();
    }

    // The split's k best per row, sorted, padded with 0.
    for (int r = warp; r < TILE_BM; r += TILE_THREADS / 32) {
        if (m0 + r >= M) continue;
        const int m = min(cnt[r], CAP);
        enc_compact(list + r * CAP, m, k, &thr[r], &cnt[r], lane);
        u64* out = cand + ((long long)(m0 + r) * splits + split) * k;
        for (int e = lane; e < k; e += 32) out[e] = e < m ? list[r * CAP + e] : 0ull;
    }
}

// Two instantiations by list capacity: k <= 32 (cap 64) and k <= 64 (cap 96).
#define ENCODE_TOPK(KMAX, CAP)                                                                    \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS)                                     \
    sae_encode_topk_k##KMAX##_bf16(const bf16* __restrict__ xc, const bf16* __restrict__ w,       \
                                   const float* __restrict__ b_enc, u64* __restrict__ cand, int M, int K, int N, \
                                   int k, int relu, int tiles_per_split, int splits, int a_vec, int b_vec) { \
        encode_topk<CAP>(reinterpret_cast<const u16*>(xc), reinterpret_cast<const u16*>(w), b_enc, cand, M, K, N, k, \
                         relu, tiles_per_split, splits, a_vec, b_vec);                             \
    }
ENCODE_TOPK(32, 64)
ENCODE_TOPK(64, 96)

// ---------------------------------------------------------------- merge of the splits

// Ranks the entries of list[0..m) that are >= lo among themselves and writes the first k to
// vals/idx in descending order. Run by one warp; keys are unique.
__device__ __forceinline__ void merge_rank_write(const u64* list, int m, u64 lo, int k, float* vals, int* idx, int lane) {
    for (int i = lane; i < m; i += 32) {
        const u64 key = list[i];
        if (key < lo || key == 0ull) continue;
        int rank = 0;
        for (int j = 0; j < m; ++j) rank += list[j] > key;
        if (rank < k) {
            vals[rank] = sae_key_value((unsigned)(key >> 32));
            idx[rank] = sae_pack_col(key);
        }
    }
}

#define MERGE_WARPS 4
#define MERGE_CAP 256

// cand [M, splits, k] -> vals f32 [M, k], idx i32 [M, k]. One warp per row, 4 rows per block
// (grid ceil(M/4)), static smem 8 KB. The k-th key of any split bounds the row's k-th from
// below, so only keys >= the largest of those survive; they are gathered in order into shared
// memory (or, past 256 survivors, ranked in place in global memory) and ranked by counting.
extern "C" __global__ void sae_topk_merge(const u64* __restrict__ cand, float* __restrict__ vals, int* __restrict__ idx,
                                          int M, int splits, int k) {
    __shared__ u64 surv[MERGE_WARPS][MERGE_CAP];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row = blockIdx.x * MERGE_WARPS + warp;
    if (row >= M) return;
    const u64* c = cand + (long long)row * splits * k;
    const int total = splits * k;
    u64 lo = 0ull;
    for (int s = lane; s < splits; s += 32) {
        const u64 v = c[s * k + k - 1];
        lo = v > lo ? v : lo;
    }
    lo = warp_max_u64(lo);
    int m = 0;
    for (int base = 0; base < total; base += 32) {
        const int i = base + lane;
        const u64 key = i < total ? c[i] : 0ull;
        const bool keep = key >= lo && key != 0ull;
        const unsigned ballot = __ballot_sync(0xffffffffu, keep);
        const int pos = m + __popc(ballot & ((1u << lane) - 1u));
        if (keep && pos < MERGE_CAP) surv[warp][pos] = key;
        m += __popc(ballot);
    }
    __syncwarp();
    float* v = vals + (long long)row * k;
    int* ix = idx + (long long)row * k;
    if (m <= MERGE_CAP) merge_rank_write(surv[warp], m, lo, k, v, ix, lane);
    else merge_rank_write(c, total, lo, k, v, ix, lane);
}

// ---------------------------------------------------------------- sparse decode

// One block per row b (grid B), 256 threads, dynamic smem 8 * kk bytes. With R = W_dec [n, d]:
//   recon[i] = (bias ? bias[i] : 0) + sum_e vals[b, e] * R[idx[b, e], i]   (e ascending)
//   resid[b, i] = target[b, i] - recon[i];  sse[b] = sum_i resid^2
//   dot[b, e] = sum_i resid[b, i] * R[idx[b, e], i]   (one warp per e, after a barrier)
// Threads run along i, so every row of W_dec is read coalesced (twice; the second time from L2).
extern "C" __global__ void sae_decode_f32(const float* __restrict__ target, const float* __restrict__ bias,
                                          const float* __restrict__ vals, const int* __restrict__ idx,
                                          const float* __restrict__ w_dec, float* __restrict__ resid,
                                          float* __restrict__ dot, float* __restrict__ sse, int d, int kk) {
    extern __shared__ __align__(16) unsigned char dec_smem[];
    float* sv = reinterpret_cast<float*>(dec_smem);
    int* si = reinterpret_cast<int*>(sv + kk);
    __shared__ float scratch[32];
    const long long b = blockIdx.x;
    for (int e = threadIdx.x; e < kk; e += blockDim.x) {
        sv[e] = vals[b * kk + e];
        si[e] = idx[b * kk + e];
    }
    __syncthreads();
    const float* t = target + b * d;
    float* r = resid + b * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = bias != nullptr ? bias[i] : 0.0f;
        for (int e = 0; e < kk; ++e) acc += sv[e] * w_dec[(long long)si[e] * d + i];
        const float ri = t[i] - acc;
        r[i] = ri;
        ss += ri * ri;
    }
    ss = block_sum(ss, scratch);
    if (threadIdx.x == 0) sse[b] = ss;
    // block_sum ended with a barrier: this block's residual row is visible to all its threads.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int e = warp; e < kk; e += nwarps) {
        const float* w = w_dec + (long long)si[e] * d;
        float acc = 0.0f;
        for (int i = lane; i < d; i += 32) acc += r[i] * w[i];
        acc = warp_sum(acc);
        if (lane == 0) dot[b * kk + e] = acc;
    }
}

// ---------------------------------------------------------------- column statistics

// t [rows, d]: partial column sums and centred sums of squares over row chunks. Grid
// (ceil(d/32), chunks), 256 threads = 32 columns x 8 row lanes; lane g of column c takes rows
// g, g + 8, ... of the chunk (Welford), then the 8 lanes are merged in order (Chan et al.).
// part [chunks, 3, d]: sum, mean, m2; the row count of each chunk follows from the sizes.
extern "C" __global__ void sae_colstats_partial(const float* __restrict__ t, float* __restrict__ part, int rows, int d,
                                                int chunk) {
    __shared__ float s_sum[8][32], s_mean[8][32], s_m2[8][32];
    __shared__ int s_n[8][32];
    const int c = threadIdx.x & 31, g = threadIdx.x >> 5;
    const int col = blockIdx.x * 32 + c;
    const int r0 = blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
    float sum = 0.0f, mean = 0.0f, m2 = 0.0f;
    int n = 0;
    if (col < d) {
        for (int r = r0 + g; r < r1; r += 8) {
            const float v = t[(long long)r * d + col];
            sum += v;
            n += 1;
            const float delta = v - mean;
            mean += delta / (float)n;
            m2 += delta * (v - mean);
        }
    }
    s_sum[g][c] = sum;
    s_mean[g][c] = mean;
    s_m2[g][c] = m2;
    s_n[g][c] = n;
    __syncthreads();
    if (g == 0 && col < d) {
        for (int h = 1; h < 8; ++h) {
            const int nb = s_n[h][c];
            if (nb == 0) continue;
            const float mb = s_mean[h][c], delta = mb - mean;
            const int nn = n + nb;
            mean += delta * ((float)nb / (float)nn);
            m2 += s_m2[h][c] + delta * delta * ((float)n * (float)nb / (float)nn);
            sum += s_sum[h][c];
            n = nn;
        }
        float* p = part + (long long)blockIdx.y * 3 * d;
        p[col] = sum;
        p[d + col] = mean;
        p[2 * d + col] = m2;
    }
}

// Merges the chunks of sae_colstats_partial in order: sum [d], m2 [d]. One thread per column.
extern "C" __global__ void sae_colstats_final(const float* __restrict__ part, float* __restrict__ sum_out,
                                              float* __restrict__ m2_out, int rows, int d, int chunk, int chunks) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= d) return;
    float sum = 0.0f, mean = 0.0f, m2 = 0.0f;
    int n = 0;
    for (int h = 0; h < chunks; ++h) {
        const int nb = min(rows, (h + 1) * chunk) - h * chunk;
        if (nb <= 0) continue;
        const float* p = part + (long long)h * 3 * d;
        const float mb = p[d + col], delta = mb - mean;
        const int nn = n + nb;
        mean += delta * ((float)nb / (float)nn);
        m2 += p[2 * d + col] + delta * delta * ((float)n * (float)nb / (float)nn);
        sum += p[col];
        n = nn;
    }
    sum_out[col] = sum;
    m2_out[col] = m2;
}

// ---------------------------------------------------------------- latent-major entry lists
// Entries p: the main code's (p = b * k + e, p < n_main) then AuxK's (p = n_main + b * ka + e).

__device__ __forceinline__ int entry_latent(const int* idx_main, int n_main, const int* idx_aux, int p) {
    return p < n_main ? idx_main[p] : idx_aux[p - n_main];
}

// counts[j] += 1 per entry (counts zeroed). One thread per entry, 256 per block.
extern "C" __global__ void sae_csc_count(const int* __restrict__ idx_main, int n_main, const int* __restrict__ idx_aux,
                                         int n_aux, int* __restrict__ counts) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_main + n_aux) return;
    atomicAdd(&counts[entry_latent(idx_main, n_main, idx_aux, p)], 1);
}

// ptr[0..n] = exclusive prefix sums of counts[0..n). One block of 1024 threads: each sums a
// contiguous chunk, the chunk sums are scanned across the block, then each writes its chunk.
extern "C" __global__ void sae_csc_scan(const int* __restrict__ counts, int* __restrict__ ptr, int n) {
    __shared__ int warp_tot[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int per = (n + blockDim.x - 1) / blockDim.x;
    const int lo = min(n, tid * per), hi = min(n, lo + per);
    int s = 0;
    for (int j = lo; j < hi; ++j) s += counts[j];
    int incl = s;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    if (lane == 31) warp_tot[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const int nw = blockDim.x >> 5;
        int w = lane < nw ? warp_tot[lane] : 0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int t = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += t;
        }
        warp_tot[lane] = w;  // inclusive over warps
    }
    __syncthreads();
    int run = (warp > 0 ? warp_tot[warp - 1] : 0) + incl - s;
    for (int j = lo; j < hi; ++j) {
        ptr[j] = run;
        run += counts[j];
    }
    if (tid == blockDim.x - 1) ptr[n] = warp_tot[(blockDim.x >> 5) - 1];
}

// unsorted[ptr[j] + claim] = p for each entry p of latent j (fill zeroed). One thread per entry.
extern "C" __global__ void sae_csc_fill(const int* __restrict__ idx_main, int n_main, const int* __restrict__ idx_aux,
                                        int n_aux, const int* __restrict__ ptr, int* __restrict__ fill,
                                        int* __restrict__ unsorted) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_main + n_aux) return;
    const int j = entry_latent(idx_main, n_main, idx_aux, p);
    unsorted[ptr[j] + atomicAdd(&fill[j], 1)] = p;
}

// The same lists sorted by entry id (the rank of each id among its latent's), with what the
// gradient kernels need per entry:
//   row  = b (main) or B + b (aux): which residual row and which xc row (row mod B)
//   dpre = -c * dot * mask: the pre-activation's gradient (mask: ReLU'(pre) = value > 0 for
//          AuxK and for a ReLU SAE, else 1)
//   zc   = -c * value: the code value times the gradient scale of its residual
// One thread per slot, 256 per block; each scans its latent's slots (O(count^2) per latent).
extern "C" __global__ void sae_csc_sort(const int* __restrict__ idx_main, const float* __restrict__ val_main,
                                        const float* __restrict__ dot_main, int n_main, int k,
                                        const int* __restrict__ idx_aux, const float* __restrict__ val_aux,
                                        const float* __restrict__ dot_aux, int n_aux, int ka, int B, float c,
                                        float c_aux, int relu, const int* __restrict__ ptr,
                                        const int* __restrict__ unsorted, int* __restrict__ ent_row,
                                        float* __restrict__ ent_dpre, float* __restrict__ ent_zc) {
    const int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_main + n_aux) return;
    const int p = unsorted[s];
    const int j = entry_latent(idx_main, n_main, idx_aux, p);
    const int lo = ptr[j], hi = ptr[j + 1];
    int rank = 0;
    for (int t = lo; t < hi; ++t) rank += unsorted[t] < p;
    const int pos = lo + rank;
    if (p < n_main) {
        const float z = val_main[p];
        const float mask = relu ? (z > 0.0f ? 1.0f : 0.0f) : 1.0f;
        ent_row[pos] = p / k;
        ent_dpre[pos] = -c * dot_main[p] * mask;
        ent_zc[pos] = -c * z;
    } else {
        const int q = p - n_main;
        const float z = val_aux[q];
        ent_row[pos] = B + q / ka;
        ent_dpre[pos] = z > 0.0f ? -c_aux * dot_aux[q] : 0.0f;
        ent_zc[pos] = -c_aux * z;
    }
}

// ---------------------------------------------------------------- gradients

#define GE_ROWS 8

// dW_enc [d, n] and db_enc [n] from the sorted lists. Grid (ceil(n/256), ceil(d/8)), 256
// threads along j (so every store of a row of dW_enc is coalesced); thread (j, y) computes
// rows 8y .. 8y+7 of column j: dW_enc[i, j] = sum over j's entries of dpre * xc[row mod B, i],
// reading 8 consecutive floats of xc per entry. Columns without entries are written 0.
extern "C" __global__ void sae_grad_enc_f32(const float* __restrict__ xc, const int* __restrict__ ptr,
                                            const int* __restrict__ ent_row, const float* __restrict__ ent_dpre,
                                            float* __restrict__ dw_enc, float* __restrict__ db_enc, int B, int d, int n) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const int i0 = blockIdx.y * GE_ROWS;
    float acc[GE_ROWS];
#pragma unroll
    for (int r = 0; r < GE_ROWS; ++r) acc[r] = 0.0f;
    float dsum = 0.0f;
    const int lo = ptr[j], hi = ptr[j + 1];
    for (int s = lo; s < hi; ++s) {
        const int row = ent_row[s];
        const float dp = ent_dpre[s];
        const float* xr = xc + (long long)(row >= B ? row - B : row) * d + i0;
#pragma unroll
        for (int r = 0; r < GE_ROWS; ++r)
            if (i0 + r < d) acc[r] += dp * xr[r];
        dsum += dp;
    }
#pragma unroll
    for (int r = 0; r < GE_ROWS; ++r)
        if (i0 + r < d) dw_enc[(long long)(i0 + r) * n + j] = acc[r];
    if (blockIdx.y == 0) db_enc[j] = dsum;
}

// dW_dec [n, d]: one block per latent j (grid n), 128 threads along i, dynamic smem 4 * d bytes.
//   g[i] = sum over j's entries of zc * R[row, i]   (R = resid for row < B, resid_aux after)
//   dW_dec[j, i] = g[i] - (g . W_dec[j]) W_dec[j, i]   (Revelio's projection; rows unit norm)
extern "C" __global__ void sae_grad_dec_f32(const float* __restrict__ resid, const float* __restrict__ resid_aux,
                                            const float* __restrict__ w_dec, const int* __restrict__ ptr,
                                            const int* __restrict__ ent_row, const float* __restrict__ ent_zc,
                                            float* __restrict__ dw_dec, int B, int d) {
    extern __shared__ __align__(16) float gd_row[];
    __shared__ float scratch[32];
    const long long j = blockIdx.x;
    const int lo = ptr[j], hi = ptr[j + 1];
    float* out = dw_dec + j * d;
    if (lo == hi) {
        for (int i = threadIdx.x; i < d; i += blockDim.x) out[i] = 0.0f;
        return;
    }
    const float* w = w_dec + j * d;
    float dotp = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float g = 0.0f;
        for (int s = lo; s < hi; ++s) {
            const int row = ent_row[s];
            const float* R = row < B ? resid + (long long)row * d : resid_aux + (long long)(row - B) * d;
            g += ent_zc[s] * R[i];
        }
        gd_row[i] = g;
        dotp += g * w[i];
    }
    const float dot = block_sum(dotp, scratch);
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[i] = gd_row[i] - dot * w[i];
}

// db_dec[i] = -c * rsum[i] - c_aux * rsum_aux[i] - sum_j W_enc[i, j] * db_enc[j]. One block per
// i (grid d), 256 threads striding over j (coalesced along W_enc's row), block sum.
extern "C" __global__ void sae_grad_bdec_f32(const float* __restrict__ w_enc, const float* __restrict__ db_enc,
                                             const float* __restrict__ rsum, const float* __restrict__ rsum_aux,
                                             float c, float c_aux, float* __restrict__ db_dec, int n) {
    __shared__ float scratch[32];
    const long long i = blockIdx.x;
    const float* w = w_enc + i * n;
    float acc = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) acc += w[j] * db_enc[j];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        float g = -c * rsum[i] - acc;
        if (rsum_aux != nullptr) g -= c_aux * rsum_aux[i];
        db_dec[i] = g;
    }
}

// ---------------------------------------------------------------- Adam over the four tensors

struct AdamArgs {
    float beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps;
};

// torch.optim.Adam's per-element update (no weight decay): returns the new parameter.
template <typename MT>
__device__ __forceinline__ float adam_elem(float p, float g, MT* m, MT* v, long long i, const AdamArgs& a) {
    const float mi = a.beta1 * to_f32(m[i]) + a.one_minus_beta1 * g;
    const float vi = a.beta2 * to_f32(v[i]) + a.one_minus_beta2 * g * g;
    m[i] = from_f32<MT>(mi);
    v[i] = from_f32<MT>(vi);
    const float denom = sqrtf(vi) / a.bc2_sqrt + a.eps;
    return p - a.step_size * (mi / denom);
}

// Blocks [0, elem_blocks): one thread per element of W_enc (d*n, also writing its bf16 shadow
// when w16 != null), then b_enc (n), then b_dec (d). Blocks [elem_blocks, elem_blocks + n):
// row j of W_dec: the Adam update of its d elements into shared memory, then the row divided by
// its L2 norm (rows of norm 0 are left as they are). 256 threads, dynamic smem 4 * d bytes.
// The update uses the moments after rounding to MT (f32, or bf16 when the moments are kept in
// bf16), as the CPU reference does.
#define SAE_ADAM(MT, TN)                                                                           \
    extern "C" __global__ void sae_adam_##TN(                                                      \
        float* __restrict__ w_enc, const float* __restrict__ g_w_enc, MT* __restrict__ m_w_enc, MT* __restrict__ v_w_enc, \
        bf16* __restrict__ w16, float* __restrict__ b_enc, const float* __restrict__ g_b_enc, MT* __restrict__ m_b_enc, \
        MT* __restrict__ v_b_enc, float* __restrict__ b_dec, const float* __restrict__ g_b_dec,   \
        MT* __restrict__ m_b_dec, MT* __restrict__ v_b_dec, float* __restrict__ w_dec,             \
        const float* __restrict__ g_w_dec, MT* __restrict__ m_w_dec, MT* __restrict__ v_w_dec, int d, int n, \
        long long elem_blocks, AdamArgs a) {                                                       \
        extern __shared__ __align__(16) float adam_row[];                                          \
        __shared__ float scratch[32];                                                              \
        if ((long long)blockIdx.x < elem_blocks) {                                                 \
            const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;                  \
            const long long dn = (long long)d * n;                                                 \
            if (e < dn) {                                                                          \
                const float p = adam_elem<MT>(w_enc[e], g_w_enc[e], m_w_enc, v_w_enc, e, a);       \
                w_enc[e] = p;                                                                      \
                if (w16 != nullptr) w16[e] = from_f32<bf16>(p);                                    \
            } else if (e < dn + n) {                                                               \
                const long long j = e - dn;                                                        \
                b_enc[j] = adam_elem<MT>(b_enc[j], g_b_enc[j], m_b_enc, v_b_enc, j, a);            \
            } else if (e < dn + n + d) {                                                           \
                const long long i = e - dn - n;                                                    \
                b_dec[i] = adam_elem<MT>(b_dec[i], g_b_dec[i], m_b_dec, v_b_dec, i, a);            \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        const long long j = (long long)blockIdx.x - elem_blocks;                                   \
        const long long base = j * d;                                                              \
        float ss = 0.0f;                                                                           \
        for (int i = threadIdx.x; i < d; i += blockDim.x) {                                        \
            const float p = adam_elem<MT>(w_dec[base + i], g_w_dec[base + i], m_w_dec, v_w_dec, base + i, a); \
            adam_row[i] = p;                                                                       \
            ss += p * p;                                                                           \
        }                                                                                          \
        const float norm = sqrtf(block_sum(ss, scratch));                                          \
        for (int i = threadIdx.x; i < d; i += blockDim.x)                                          \
            w_dec[base + i] = norm > 0.0f ? adam_row[i] / norm : adam_row[i];                      \
    }

SAE_ADAM(float, f32)
SAE_ADAM(bf16, bf16)

// ---------------------------------------------------------------- dead latents

// fired[idx[p]] = 1 for every code entry with a nonzero value (fired zeroed). One thread per entry.
extern "C" __global__ void sae_fired_mark(const float* __restrict__ vals, const int* __restrict__ idx, int ne,
                                          unsigned char* __restrict__ fired) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < ne && vals[p] != 0.0f) fired[idx[p]] = 1;
}

// since[j] = fired[j] ? 0 : since[j] + rows. One thread per latent.
extern "C" __global__ void sae_since_update(long long* __restrict__ since, const unsigned char* __restrict__ fired,
                                            int n, long long rows) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < n) since[j] = fired[j] ? 0 : since[j] + rows;
}

// ---------------------------------------------------------------- column gather

// dst [r, m] = src [r, ncols][:, cols]: one thread per output element, 256 per block.
#define SAE_GATHER_COLS(T, TN)                                                                     \
    extern "C" __global__ void sae_gather_cols_##TN(const T* __restrict__ src, const int* __restrict__ cols, \
                                                    T* __restrict__ dst, int r, int ncols, int m) { \
        const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;                      \
        if (e >= (long long)r * m) return;                                                         \
        const long long i = e / m, c = e - i * m;                                                  \
        dst[e] = src[i * ncols + cols[c]];                                                         \
    }

SAE_GATHER_COLS(float, f32)
SAE_GATHER_COLS(bf16, bf16)
