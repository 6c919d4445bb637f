// attention.cu: multi-head scaled dot-product attention, flash-style (online softmax over key
// tiles; the [Nq, Nk] score matrix never leaves registers/shared memory).
//
// Layout: q [B, Nq, H, D], k and v [B, Nk, H, D], out [B, Nq, H, D], contiguous; token rows
// are H*D elements apart and head h's vector starts at h*D. D is a multiple of 8 (<= 512), so
// every 16-byte chunk of a row lies wholly inside or outside the head; base pointers are
// 16-byte aligned (the launcher checks).
//
// out[b,i,h] = sum_j softmax_j(scale * q.k_j) v_j, keys j > i masked when `causal` (Nq == Nk).
// Online softmax per query row: running max m, running sum l, accumulator O; per key tile,
// m' = max(m, rowmax S), O and l scaled by exp(m - m'), P = exp(S - m'), l += sum P, O += P V;
// finally out = O / l. All softmax arithmetic and accumulation in f32.
//
// Kernels:
// - attention_tc_d<DP>_{f16,bf16}: tensor cores (mma.sync m16n8k16, f32 accumulate) for head
//   dims up to DP in {16, 32, 48, 64, 80, 96, 128, 160, 256, 512}; the launcher picks the
//   smallest DP >= D and D is zero-padded to DP in shared memory (40 -> 48, 72 -> 80). 4 warps;
//   each warp owns MT m16 tiles of query rows (MT = 2 for DP <= 64, so every K/V fragment
//   read from shared memory feeds two mmas; 1 above, where the accumulators would not fit).
//   Q [BM, DP] and double-buffered K [BN, DP] / V [BN, DV] tiles go to shared memory with
//   cp.async (zero-filled past Nq, Nk and D) and are read with ldmatrix (.trans for V; row
//   pitch padded by 16 bytes so ldmatrix is conflict-free). S = Q K^T lives in registers;
//   exponentials are ex2.approx of scale*log2(e)-scaled scores; row max and sum are reduced
//   over the 4 lanes of a quad (the sum only once, at the end); P is rounded to 16 bits in
//   registers and fed straight into the P.V mma (the C fragments of two m16n8 tiles are the
//   A fragment of an m16k16 one). O is f32 in registers, scaled by 1/l and rounded once.
//   Large head dims (DP = 256, 512; the VAE's single head has D = 512): the f32 accumulator of
//   a whole head (16 rows x 512 per warp = 256 registers per lane) cannot live in registers,
//   so the value dim is split into DV = 128 column chunks handled by different blocks
//   (grid.y = H * ceil(D / 128)); each block recomputes S = Q K^T for its chunk. That repeats
//   the QK work D/128 times (2.5x the ideal FLOPs at D = 512) but keeps the kernel one pass,
//   with on-chip accumulators and no cross-block reduction or O round trips through shared
//   memory; attention is a small part of the VAE's time next to its convolutions.
//   Keys come in tiles of 64, or 32 for DP >= 160, so that shared memory stays within what a
//   block may use: up to DP = 256 within the 99 KB of sm_86/sm_89, at DP = 512 (Q 65 KB +
//   K/V 82 KB) within sm_80's 163 KB (A100, H100; not consumer GPUs).
// - attention_simt_f32: exact f32 (FFMA, expf), any D <= 512, for checking and f32 models.
//   32 query rows and 32-key tiles per block in shared memory; value dim in 64-column chunks
//   per block (grid.y = H * ceil(D / 64)).
// Every kernel checks %dynamic_smem_size against the layout it assumes and writes nothing if
// the launcher gave less (the GPU tests poison outputs, so such a mismatch fails loudly).

#include "mma.cuh"

// ---------------------------------------------------------------- PTX helpers

// Two f32 rounded to nearest and packed: `lo` in bits 0..15 (the lower column), `hi` above.
template <typename T> __device__ __forceinline__ unsigned pack_f32x2(float lo, float hi);
template <> __device__ __forceinline__ unsigned pack_f32x2<f16>(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
template <> __device__ __forceinline__ unsigned pack_f32x2<bf16>(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// 1/x to within 1 ulp (no IEEE division slow path, which needs a stack frame).
__device__ __forceinline__ float rcp_approx(float x) {
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ unsigned dynamic_smem_bytes() {
    unsigned n;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(n));
    return n;
}

// ---------------------------------------------------------------- tensor-core kernel

// A [ROWS, W] tile of 16-bit elements into shared memory (row pitch LD) with cp.async, 16
// bytes per copy: thread tid copies column chunk tid % (W/8) of rows tid / (W/8) + p * RPP.
// `src` is the tile's first element, `rs` the source row stride; rows >= `rows_ok` and columns
// >= `cols_ok` are zero-filled (cols_ok is a multiple of 8).
template <int ROWS, int W, int LD, int NTHR, typename T>
__device__ __forceinline__ void load_tile(T* dst, const T* src, long long rs, int rows_ok, int cols_ok, int tid) {
    constexpr int CPR = W / 8;        // chunks per row
    constexpr int RPP = NTHR / CPR;   // rows per pass
    constexpr int PASSES = (ROWS + RPP - 1) / RPP;
    static_assert(W % 8 == 0 && CPR <= NTHR, "tile width");
    const int r0 = tid / CPR, col = (tid % CPR) * 8;
    if (r0 < RPP) {
        const bool col_ok = col < cols_ok;
#pragma unroll
        for (int p = 0; p < PASSES; ++p) {
            const int r = r0 + p * RPP;
            if (ROWS % RPP == 0 || r < ROWS) {
                const bool ok = col_ok && r < rows_ok;
                cp_async16(dst + r * LD + col, ok ? src + r * rs + col : src, ok);
            }
        }
    }
}

// Tile configuration per padded head dim; src/cuda/attention.rs (`TcConfig`) mirrors it.
template <int DP> struct TcConfig {
    static constexpr int NW = 4;                     // warps per block
    static constexpr int MT = DP <= 64 ? 2 : 1;      // m16 row tiles per warp
    static constexpr int BM = 16 * MT * NW;          // query rows per block
    static constexpr int BN = DP >= 160 ? 32 : 64;   // keys per tile
    static constexpr int DV = DP >= 256 ? 128 : DP;  // value columns per block
    static constexpr int LDK = DP + 8;               // smem row pitch (elements) of Q and K:
    static constexpr int LDV = DV + 8;               // an odd multiple of 16 bytes, so the 8
                                                     // rows of an ldmatrix hit distinct banks
    static constexpr int SMEM_ELEMS = BM * LDK + 2 * BN * LDK + 2 * BN * LDV;
};

// One block: BM query rows of one (batch, head, DV-column chunk). NW warps, warp w owning rows
// [w*MT*16, (w+1)*MT*16) of the block. grid = (ceil(Nq / BM), H * ceil(D / DV), B), block =
// NW*32 threads, dynamic smem = SMEM_ELEMS 16-bit elements: Q tile [BM, DP], then K tiles
// [BN, DP] x2 and V tiles [BN, DV] x2 (double buffer).
template <int DP, typename T>
__device__ __forceinline__ void attention_tc(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                             T* __restrict__ out, int Nq, int Nk, int H, int D, float scale_log2,
                                             int causal) {
    using C = TcConfig<DP>;
    constexpr int NW = C::NW, MT = C::MT, BM = C::BM, BN = C::BN, DV = C::DV, LDK = C::LDK, LDV = C::LDV;
    constexpr int KT = DP / 16;  // k16 steps of S = Q K^T
    constexpr int NT = BN / 8;   // n8 tiles of S
    constexpr int VT = DV / 8;   // n8 tiles of O
    constexpr int NTHR = NW * 32;
    static_assert(DP % 16 == 0 && DV % 16 == 0 && BN % 16 == 0, "tile sizes");

    extern __shared__ __align__(16) unsigned char smem_raw[];
    if (dynamic_smem_bytes() < (unsigned)(C::SMEM_ELEMS * 2)) return;  // launcher/kernel mismatch
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + BM * LDK;
    T* sV = sK + 2 * BN * LDK;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int q0 = blockIdx.x * BM;
    const int nsplit = (D + DV - 1) / DV;
    const int h = blockIdx.y / nsplit, v0 = (blockIdx.y % nsplit) * DV;
    const long long rs = (long long)H * D;
    const long long head = (long long)h * D;
    const T* kb = k + (long long)blockIdx.z * Nk * rs + head;
    const T* vb = v + (long long)blockIdx.z * Nk * rs + head + v0;
    const int wrow = q0 + warp * MT * 16;  // this warp's first query row

    // Key tile j into buffer `buf`: K [BN, DP] and V [BN, DV] (columns v0..), zero-filled.
    auto load_kv = [&](int j, int buf) {
        const int kbase = j * BN;
        load_tile<BN, DP, LDK, NTHR>(sK + buf * BN * LDK, kb + kbase * rs, rs, Nk - kbase, D, tid);
        load_tile<BN, DV, LDV, NTHR>(sV + buf * BN * LDV, vb + kbase * rs, rs, Nk - kbase, D - v0, tid);
    };

    float m[MT][2], l[MT][2], acc[MT][VT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            m[mt][hr] = -REVELIO_INF;
            l[mt][hr] = 0.0f;
        }
#pragma unroll
        for (int vt = 0; vt < VT; ++vt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][vt][e] = 0.0f;
        }
    }

    int ntiles = (Nk + BN - 1) / BN;
    if (causal) ntiles = min(ntiles, (q0 + BM + BN - 1) / BN);  // keys < q0 + BM
    load_tile<BM, DP, LDK, NTHR>(sQ, q + (long long)blockIdx.z * Nq * rs + head + q0 * rs, rs, Nq - q0, D, tid);
    load_kv(0, 0);
    cp_async_commit();

    for (int j = 0; j < ntiles; ++j) {
        const int buf = j & 1;
        if (j + 1 < ntiles) {
            load_kv(j + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T* cK = sK + buf * BN * LDK;
        const T* cV = sV + buf * BN * LDV;

        // S = Q K^T for this warp's rows and the tile's BN keys.
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int n = 0; n < NT; ++n) {
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][n][e] = 0.0f;
            }
        }
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
            unsigned a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                // matrices: rows 0-7 / 8-15 (bit 3 of lane) x columns kk*16 + 0 / 8 (bit 4):
                // a0 (rows 0-7, k 0-7), a1 (rows 8-15, k 0-7), a2 (rows 0-7, k 8-15), a3
                const int r = warp * MT * 16 + mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
                ldmatrix_x4(a[mt], sQ + r * LDK + kk * 16 + (lane >> 4) * 8);
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                // matrices: keys np*16 + 0 / 8 (bit 4 of lane) x columns kk*16 + 0 / 8 (bit 3):
                // b0, b1 of n-tile 2np, then b0, b1 of n-tile 2np+1
                unsigned bk[4];
                ldmatrix_x4(bk, cK + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * LDK + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<T>(s[mt][2 * np], a[mt], bk[0], bk[1]);
                    mma_16816<T>(s[mt][2 * np + 1], a[mt], bk[2], bk[3]);
                }
            }
        }

        // Scale to log2 units and mask keys past Nk and (causal) after the query.
        const int kbase = j * BN;
        const bool need_mask = kbase + BN > Nk || (causal && kbase + BN - 1 > wrow);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int n = 0; n < NT; ++n) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    float x = s[mt][n][e] * scale_log2;
                    if (need_mask) {
                        const int key = kbase + n * 8 + 2 * t + (e & 1);
                        const int row = wrow + mt * 16 + g + (e >> 1) * 8;
                        if (key >= Nk || (causal && key > row)) x = -REVELIO_INF;
                    }
                    s[mt][n][e] = x;
                }
            }
        }

        // Online softmax: rows g (hr = 0: elements 0, 1) and g + 8 (hr = 1: elements 2, 3) of
        // each m16 tile; a row's BN scores are spread over the 4 lanes of a quad.
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
                float mx = m[mt][hr];
#pragma unroll
                for (int n = 0; n < NT; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * hr], s[mt][n][2 * hr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mu = mx == -REVELIO_INF ? 0.0f : mx;  // a row with no visible key yet
                const float corr = ex2_approx(m[mt][hr] - mu);
                m[mt][hr] = mx;
                float sum = 0.0f;
#pragma unroll
                for (int n = 0; n < NT; ++n) {
#pragma unroll
                    for (int e = 2 * hr; e < 2 * hr + 2; ++e) {
                        s[mt][n][e] = ex2_approx(s[mt][n][e] - mu);
                        sum += s[mt][n][e];
                    }
                }
                l[mt][hr] = l[mt][hr] * corr + sum;  // this lane's partial sum (quad-reduced at the end)
#pragma unroll
                for (int vt = 0; vt < VT; ++vt) {
                    acc[mt][vt][2 * hr] *= corr;
                    acc[mt][vt][2 * hr + 1] *= corr;
                }
            }
        }

        // O += P V: the C fragments of n-tiles 2kc, 2kc+1 of S are the A fragment of keys
        // kc*16 .. kc*16+15.
#pragma unroll
        for (int kc = 0; kc < BN / 16; ++kc) {
            unsigned pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                pa[mt][0] = pack_f32x2<T>(s[mt][2 * kc][0], s[mt][2 * kc][1]);
                pa[mt][1] = pack_f32x2<T>(s[mt][2 * kc][2], s[mt][2 * kc][3]);
                pa[mt][2] = pack_f32x2<T>(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
                pa[mt][3] = pack_f32x2<T>(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
            }
#pragma unroll
            for (int vp = 0; vp < DV / 16; ++vp) {
                // transposed matrices: keys kc*16 + 0 / 8 (bit 3 of lane) x columns vp*16 + 0 / 8
                // (bit 4): b0, b1 of n-tile 2vp, then b0, b1 of n-tile 2vp+1
                unsigned bv[4];
                ldmatrix_x4_trans(bv, cV + (kc * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDV + vp * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<T>(acc[mt][2 * vp], pa[mt], bv[0], bv[1]);
                    mma_16816<T>(acc[mt][2 * vp + 1], pa[mt], bv[2], bv[3]);
                }
            }
        }
        __syncthreads();  // the next iteration refills the buffer read here
    }

    // out = O / l, rounded once; lane (g, t) writes columns v0 + vt*8 + 2t, +1 of rows g, g+8.
    T* ob = out + (long long)blockIdx.z * Nq * rs + head;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            float sum = l[mt][hr];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = rcp_approx(sum);
            const int r = wrow + mt * 16 + g + hr * 8;
            if (r < Nq) {
#pragma unroll
                for (int vt = 0; vt < VT; ++vt) {
                    const int col = v0 + vt * 8 + 2 * t;
                    if (col < D)
                        *reinterpret_cast<unsigned*>(ob + (long long)r * rs + col) =
                            pack_f32x2<T>(acc[mt][vt][2 * hr] * inv, acc[mt][vt][2 * hr + 1] * inv);
                }
            }
        }
    }
}

// scale_log2 = scale * log2(e). See attention_tc for the launch shape.
#define ATTN_TC(DP, T, TN)                                                                            \
    extern "C" __global__ void __launch_bounds__(TcConfig<DP>::NW * 32)                               \
        attention_tc_d##DP##_##TN(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, \
                                  T* __restrict__ out, int Nq, int Nk, int H, int D, float scale_log2, int causal) { \
        attention_tc<DP, T>(q, k, v, out, Nq, Nk, H, D, scale_log2, causal);                          \
    }
#define ATTN_TC_BOTH(DP) ATTN_TC(DP, f16, f16) ATTN_TC(DP, bf16, bf16)

ATTN_TC_BOTH(16)
ATTN_TC_BOTH(32)
ATTN_TC_BOTH(48)
ATTN_TC_BOTH(64)
ATTN_TC_BOTH(80)
ATTN_TC_BOTH(96)
ATTN_TC_BOTH(128)
ATTN_TC_BOTH(160)
ATTN_TC_BOTH(256)
ATTN_TC_BOTH(512)

// ---------------------------------------------------------------- f32 SIMT kernel

#define SIMT_BM 32   // query rows per block
#define SIMT_BN 32   // keys per tile
#define SIMT_DV 64   // value columns per block
#define SIMT_LDV (SIMT_DV + 4)
#define SIMT_LDP (SIMT_BN + 4)

// One block: 32 query rows of one (batch, head, 64-column value chunk); 128 threads. Thread
// (ty = tid/8, tx = tid%8) owns rows 2ty, 2ty+1: scores of keys tx + 8j (j < 4) and output
// columns 4tx..4tx+3 and 32+4tx..32+4tx+3 of the chunk; a row's state is shared by the 8
// lanes of its group. grid = (ceil(Nq / 32), H * ceil(D / 64), B); dynamic smem (floats):
// Q [32, ldq] + K [32, ldq] + V [32, 68] + P [32, 36] with ldq = round_up(D, 32) + 4 (pitches
// of 4 mod 32 words keep the float4 reads conflict-free).
extern "C" __global__ void __launch_bounds__(128, 4)
    attention_simt_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                       float* __restrict__ out, int Nq, int Nk, int H, int D, float scale, int causal) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int ldq = ((D + 31) / 32) * 32 + 4;
    if (dynamic_smem_bytes() < (unsigned)((2 * SIMT_BM * ldq + SIMT_BN * SIMT_LDV + SIMT_BM * SIMT_LDP) * 4)) return;
    float* sQ = reinterpret_cast<float*>(smem_raw);
    float* sK = sQ + SIMT_BM * ldq;
    float* sV = sK + SIMT_BN * ldq;
    float* sP = sV + SIMT_BN * SIMT_LDV;

    const int tid = threadIdx.x, ty = tid >> 3, tx = tid & 7;
    const int q0 = blockIdx.x * SIMT_BM;
    const int nsplit = (D + SIMT_DV - 1) / SIMT_DV;
    const int h = blockIdx.y / nsplit, v0 = (blockIdx.y % nsplit) * SIMT_DV;
    const long long rs = (long long)H * D;
    const long long head = (long long)h * D;
    const float* qb = q + (long long)blockIdx.z * Nq * rs + head;
    const float* kb = k + (long long)blockIdx.z * Nk * rs + head;
    const float* vb = v + (long long)blockIdx.z * Nk * rs + head;
    float* ob = out + (long long)blockIdx.z * Nq * rs + head;
    const int r0 = 2 * ty;
    const int d4 = D / 4;
    const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

    for (int c = tid; c < SIMT_BM * d4; c += 128) {
        const int r = c / d4, col = (c % d4) * 4;
        *reinterpret_cast<float4*>(sQ + r * ldq + col) =
            q0 + r < Nq ? *reinterpret_cast<const float4*>(qb + (long long)(q0 + r) * rs + col) : zero4;
    }

    float m[2] = {-REVELIO_INF, -REVELIO_INF}, l[2] = {0.0f, 0.0f}, acc[2][8];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[i][e] = 0.0f;
    }

    int kend = Nk;
    if (causal) kend = min(Nk, q0 + SIMT_BM);
    for (int kbase = 0; kbase < kend; kbase += SIMT_BN) {
        __syncthreads();  // the previous tile is no longer read
        for (int c = tid; c < SIMT_BN * d4; c += 128) {
            const int r = c / d4, col = (c % d4) * 4;
            *reinterpret_cast<float4*>(sK + r * ldq + col) =
                kbase + r < Nk ? *reinterpret_cast<const float4*>(kb + (long long)(kbase + r) * rs + col) : zero4;
        }
        for (int c = tid; c < SIMT_BN * (SIMT_DV / 4); c += 128) {
            const int r = c / (SIMT_DV / 4), col = (c % (SIMT_DV / 4)) * 4;
            const bool ok = kbase + r < Nk && v0 + col < D;
            *reinterpret_cast<float4*>(sV + r * SIMT_LDV + col) =
                ok ? *reinterpret_cast<const float4*>(vb + (long long)(kbase + r) * rs + v0 + col) : zero4;
        }
        __syncthreads();

        float s[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
        }
        for (int d = 0; d < D; d += 4) {
            const float4 qa = *reinterpret_cast<const float4*>(sQ + r0 * ldq + d);
            const float4 qc = *reinterpret_cast<const float4*>(sQ + (r0 + 1) * ldq + d);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const float4 kv = *reinterpret_cast<const float4*>(sK + (tx + 8 * j) * ldq + d);
                s[0][j] = fmaf(qa.x, kv.x, fmaf(qa.y, kv.y, fmaf(qa.z, kv.z, fmaf(qa.w, kv.w, s[0][j]))));
                s[1][j] = fmaf(qc.x, kv.x, fmaf(qc.y, kv.y, fmaf(qc.z, kv.z, fmaf(qc.w, kv.w, s[1][j]))));
            }
        }

#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int row = q0 + r0 + i;
            float mx = m[i];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int key = kbase + tx + 8 * j;
                s[i][j] = (key >= Nk || (causal && key > row)) ? -REVELIO_INF : s[i][j] * scale;
                mx = fmaxf(mx, s[i][j]);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
            const float mu = mx == -REVELIO_INF ? 0.0f : mx;  // a row with no visible key yet
            const float corr = expf(m[i] - mu);
            m[i] = mx;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const float p = expf(s[i][j] - mu);
                sum += p;
                sP[(r0 + i) * SIMT_LDP + tx + 8 * j] = p;
            }
            l[i] = l[i] * corr + sum;  // this lane's partial sum (reduced over the group at the end)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[i][e] *= corr;
        }
        __syncwarp();  // a row's P is written and read by the 8 lanes of one warp

#pragma unroll 4
        for (int c = 0; c < SIMT_BN; ++c) {
            const float p0 = sP[r0 * SIMT_LDP + c], p1 = sP[(r0 + 1) * SIMT_LDP + c];
            const float4 va = *reinterpret_cast<const float4*>(sV + c * SIMT_LDV + 4 * tx);
            const float4 vc = *reinterpret_cast<const float4*>(sV + c * SIMT_LDV + 32 + 4 * tx);
            acc[0][0] = fmaf(p0, va.x, acc[0][0]);
            acc[0][1] = fmaf(p0, va.y, acc[0][1]);
            acc[0][2] = fmaf(p0, va.z, acc[0][2]);
            acc[0][3] = fmaf(p0, va.w, acc[0][3]);
            acc[0][4] = fmaf(p0, vc.x, acc[0][4]);
            acc[0][5] = fmaf(p0, vc.y, acc[0][5]);
            acc[0][6] = fmaf(p0, vc.z, acc[0][6]);
            acc[0][7] = fmaf(p0, vc.w, acc[0][7]);
            acc[1][0] = fmaf(p1, va.x, acc[1][0]);
            acc[1][1] = fmaf(p1, va.y, acc[1][1]);
            acc[1][2] = fmaf(p1, va.z, acc[1][2]);
            acc[1][3] = fmaf(p1, va.w, acc[1][3]);
            acc[1][4] = fmaf(p1, vc.x, acc[1][4]);
            acc[1][5] = fmaf(p1, vc.y, acc[1][5]);
            acc[1][6] = fmaf(p1, vc.z, acc[1][6]);
            acc[1][7] = fmaf(p1, vc.w, acc[1][7]);
        }
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
        float sum = l[i];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        sum += __shfl_xor_sync(0xffffffffu, sum, 4);
        const float inv = rcp_approx(sum);
        const int row = q0 + r0 + i;
        if (row < Nq) {
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int col = v0 + half * 32 + 4 * tx;
                if (col < D)
                    *reinterpret_cast<float4*>(ob + (long long)row * rs + col) =
                        make_float4(acc[i][4 * half] * inv, acc[i][4 * half + 1] * inv, acc[i][4 * half + 2] * inv,
                                    acc[i][4 * half + 3] * inv);
            }
        }
    }
}
