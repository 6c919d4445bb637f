// conv.cu: 2D convolution (NCHW, groups 1, dilation 1, any stride, asymmetric zero padding) as
// implicit GEMMs: no im2col buffer, the patches are gathered straight into shared memory.
//
//   forward  conv2d_fwd:   y[n, co, oy, ox]  GEMM M = Cout, N = batch*OH*OW, K = Cin*kh*kw
//                          A = weight [Cout, K] (k = ci, ky, kx: the weight's own layout),
//                          B[k, pixel] = x[n, ci, oy*sh + ky - pt, ox*sw + kx - pl] (0 outside);
//                          bias fused in the epilogue.
//   data grad conv2d_dgrad: dx[n, ci, iy, ix] GEMM M = Cin, N = batch*H*W, K = Cout*kh*kw
//                          A = weight transposed to [Cin, Cout*kh*kw] (conv2d_weight_t),
//                          B[k, pixel] = dy[n, co, (iy + pt - ky)/sh, (ix + pl - kx)/sw] where
//                          the division is exact and in range, else 0 (the transposed conv).
//   weight grad conv2d_wgrad: dW[co, k]      GEMM M = Cout, N = K, reduction R = batch*OH*OW
//                          A[co, r] = dy, B[r, k] = the forward's im2col of x; the reduction is
//                          split across blockIdx.y into f32 partial buffers that
//                          conv2d_wgrad_sum adds in a fixed order (deterministic, no atomics).
//   bias grad conv2d_bgrad: db[co] = sum of dy over batch, OH, OW (one block per channel).
//
// Gathers: a GEMM column (pixel) is decoded once per thread into a `Gather` (image plane,
// window corner, stride phase); the rows k of each tile are written by 32 threads into a small
// shared table (`Tap`: plane offset, tap offsets, stride phase), each thread stepping its row by
// the tile depth with carries (`Walk`), no divisions. Loading B[k, pixel] is then two adds, a
// bounds test and a load; threads run along pixels, so at stride 1 a warp reads consecutive
// addresses. Every tail (M, N, K not multiples of the tiles) is masked: rows and columns past
// the end get a window far outside the image.
//
// Cost model (not yet measured): per 32-deep stage a warp issues 32 MMAs and ~200 other
// instructions, most of them the 16 patch gathers per thread, so on an H100 the forward is
// expected to be issue-bound near 50-60% of the mma.sync rate. Leads if it falls short: a
// 256-row weight tile (halves the gathers per MMA), vector loads of pixel pairs at stride 1.
// The strided data grad multiplies by zero taps: at stride 2 three quarters of its MMAs are
// wasted (split it by output phase if Diff-C's stride-2 backward matters).
//
// Precision: f16/bf16 use tensor cores (mma.sync m16n8k16, f32 accumulation), 128x128x32 block
// tiles, 8 warps each 64x32, double-buffered shared memory: weights by cp.async (16-byte rows,
// when K % 8 == 0 and the weight is 16-byte aligned; else plain loads), patches staged through
// registers while the tensor cores work on the other buffer. Shared rows are padded by 16 bytes
// so ldmatrix reads are free of bank conflicts. f32 uses SIMT FFMA, 64x64x16 tiles, 4x4 outputs
// per thread, f32 exact (same products and sums as the CPU up to order).

#include "mma.cuh"

// The sizes of one convolution; mirrors ConvShape in src/cuda/conv.rs.
struct ConvShape {
    int n, cin, h, w;   // x [n, cin, h, w]
    int cout, kh, kw;   // weight [cout, cin, kh, kw]
    int oh, ow;         // y [n, cout, oh, ow]
    int sh, sw;         // stride
    int pt, pl;         // top and left padding (bottom and right padding only shape oh, ow)
};

// ---------------------------------------------------------------- gathers

#define MODE_FWD 0
#define MODE_DGRAD 1
// A window corner or tap offset that puts an element far outside any image: how rows and
// columns past the end of a GEMM are masked by the ordinary bounds test.
#define FAR_OUT (-(1 << 20))

// A value in mixed radix (hi, mid, lo), mid < nmid, lo < nlo, advanced by a fixed step. The
// per-stage tables move by the tile depth each stage, so an update is two carries instead of
// the divisions a fresh decode would take.
struct Walk {
    int hi, mid, lo;
    int dhi, dmid, dlo;
    int nmid, nlo;
    __device__ __forceinline__ void init(int v, int step, int nmid_, int nlo_) {
        nmid = nmid_;
        nlo = nlo_;
        const int plane = nmid * nlo;
        hi = v / plane;
        int r = v - hi * plane;
        mid = r / nlo;
        lo = r - mid * nlo;
        dhi = step / plane;
        r = step - dhi * plane;
        dmid = r / nlo;
        dlo = r - dmid * nlo;
    }
    __device__ __forceinline__ void next() {
        lo += dlo;
        int c = lo >= nlo;
        lo -= c ? nlo : 0;
        mid += dmid + c;
        c = mid >= nmid;
        mid -= c ? nmid : 0;
        hi += dhi + c;
    }
};

// One B-tile row k of an implicit im2col: for a pixel decoded into Gather g the element is
// plane[g.pix + off] when (g.yb + dy, g.xb + dx) lies in the source plane (and, for the data
// grad, phase == g.phase).
struct Tap {
    int off, dy, dx, phase;
};

// Row k = (c, ky, kx) of the forward (c = ci, over x) or data-grad (c = co, over dy) GEMM;
// `valid` is false past the end of K.
// The GEMM a forward or data-grad convolution is: out [M, (img, p)] = A [M, K] x B [K, N], with
// B gathered from the source map of SH x SW pixels (x for the forward, dy for the data grad).
struct GemmDims {
    int M, K, P, N, SH, SW;
};

template <int MODE>
__device__ __forceinline__ GemmDims gemm_dims(const ConvShape& s) {
    GemmDims d;
    d.M = MODE == MODE_FWD ? s.cout : s.cin;
    d.K = (MODE == MODE_FWD ? s.cin : s.cout) * s.kh * s.kw;
    d.P = MODE == MODE_FWD ? s.oh * s.ow : s.h * s.w;
    d.N = s.n * d.P;
    d.SH = MODE == MODE_FWD ? s.h : s.oh;
    d.SW = MODE == MODE_FWD ? s.w : s.ow;
    return d;
}

template <int MODE>
__device__ __forceinline__ Tap make_tap(const ConvShape& s, int c, int ky, int kx, bool valid) {
    Tap t;
    if (MODE == MODE_FWD) {
        t.off = c * s.h * s.w + ky * s.w + kx;
        t.dy = valid ? ky : FAR_OUT;
        t.dx = kx;
        t.phase = 0;
    } else {
        // dy row oy = (iy + pt - ky) / sh is exact when ky % sh equals the pixel's phase
        // (iy + pt) % sh; then oy = (iy + pt) / sh - ky / sh (likewise for columns).
        const int kyq = ky / s.sh, kxq = kx / s.sw;
        t.off = c * s.oh * s.ow - kyq * s.ow - kxq;
        t.dy = -kyq;
        t.dx = -kxq;
        t.phase = valid ? (ky - kyq * s.sh) * s.sw + (kx - kxq * s.sw) : -2;
    }
    return t;
}

// The walker of GEMM row k = (c, ky, kx), `step` rows per update, and the tap it stands for.
__device__ __forceinline__ Walk tap_walk(const ConvShape& s, int k, int step) {
    Walk w;
    w.init(k, step, s.kh, s.kw);
    return w;
}
template <int MODE>
__device__ __forceinline__ Tap walk_tap(const ConvShape& s, const Walk& w) {
    const int channels = MODE == MODE_FWD ? s.cin : s.cout;
    return make_tap<MODE>(s, w.hi, w.mid, w.lo, w.hi < channels);
}

// One B-tile column: a pixel of the GEMM's N dimension.
template <typename S>
struct Gather {
    const S* plane;  // the source image (all its channels)
    int pix;         // plane offset of the window corner (may be negative)
    int yb, xb;      // window corner in the source plane (may be negative)
    int phase;       // stride phase (data grad; 0 for forward); -1 for a column past the end
};

// Column n of the forward (n = image, oy, ox over x) or data-grad (n = image, iy, ix over dy)
// GEMM.
template <int MODE, typename S>
__device__ __forceinline__ Gather<S> make_gather(const ConvShape& s, const S* src, int n, int N) {
    Gather<S> g;
    const int P = MODE == MODE_FWD ? s.oh * s.ow : s.h * s.w;
    const int pw = MODE == MODE_FWD ? s.ow : s.w;
    const int nn = n < N ? n : 0;
    const int img = nn / P, p = nn - img * P;
    const int py = p / pw, px = p - py * pw;
    if (MODE == MODE_FWD) {
        g.plane = src + (long long)img * s.cin * s.h * s.w;
        g.yb = py * s.sh - s.pt;
        g.xb = px * s.sw - s.pl;
        g.pix = g.yb * s.w + g.xb;
        g.phase = 0;
        if (n >= N) g.yb = FAR_OUT;
    } else {
        const int ty = py + s.pt, tx = px + s.pl;
        const int qy = ty / s.sh, qx = tx / s.sw;
        g.plane = src + (long long)img * s.cout * s.oh * s.ow;
        g.yb = qy;
        g.xb = qx;
        g.pix = qy * s.ow + qx;
        g.phase = n < N ? (ty - qy * s.sh) * s.sw + (tx - qx * s.sw) : -1;
    }
    return g;
}

// B[k, n] for the tap t and the pixel g; `sh x sw` is the source plane's size.
template <int MODE, typename S>
__device__ __forceinline__ S gather(const Gather<S>& g, const Tap& t, int sh, int sw, S zero) {
    const int y = g.yb + t.dy, x = g.xb + t.dx;
    bool ok = ((unsigned)y < (unsigned)sh) & ((unsigned)x < (unsigned)sw);
    if (MODE == MODE_DGRAD) ok &= g.phase == t.phase;
    return ok ? g.plane[g.pix + t.off] : zero;
}

// For the weight grad: one reduction index r = (image, oy, ox), whose im2col row is B[r, :].
// img = -1 (and a far window) past the end.
struct Pix {
    int img, p, yb, xb;
};

// The pixel a walker over (image, oy, ox) stands for.
__device__ __forceinline__ Pix walk_pix(const ConvShape& s, const Walk& w) {
    Pix q;
    const bool valid = w.hi < s.n;
    q.img = valid ? w.hi : -1;
    q.p = w.mid * s.ow + w.lo;
    q.yb = valid ? w.mid * s.sh - s.pt : FAR_OUT;
    q.xb = w.lo * s.sw - s.pl;
    return q;
}

// x[img, ci, yb + ky, xb + kx] for the weight-grad column tap t (a forward tap), or `zero`
// outside the image or past either end.
template <typename S>
__device__ __forceinline__ S gather_x(const S* x, const ConvShape& s, const Pix& q, const Tap& t, S zero) {
    const int y = q.yb + t.dy, x_ = q.xb + t.dx;
    const bool ok = ((unsigned)y < (unsigned)s.h) & ((unsigned)x_ < (unsigned)s.w);
    return ok ? x[(long long)q.img * s.cin * s.h * s.w + (q.yb * s.w + q.xb) + t.off] : zero;
}

// ---------------------------------------------------------------- tensor-core tiles

#define TC_LDC (TILE_BN + 8)  // epilogue staging row


// Shared memory of the tensor-core kernels (static, 38,912 bytes); the epilogue reuses it.
struct TcSmem {
    u16 a[2][TILE_BM * TILE_LDA];
    u16 b[2][TILE_BK * TILE_LDB];
    Tap tab[2][TILE_BK];
};

// Shared memory of the weight-grad kernel (static, 40,960 bytes, plus 3 KiB of tables).
struct WgSmem {
    u16 a[2][TILE_BM * TILE_LDA];
    u16 b[2][TILE_BN * TILE_LDBT];
};

// Forward / data grad on tensor cores. out[img, m, p] = sum_k A[m, k] * B[k, (img, p)] (+ bias).
// Launch: 1D grid of ceil(M/128) * ceil(N/128) blocks (M tile fastest, so blocks that share a
// patch tile run together), 256 threads (8 warps, 2 x 4 of 64x32), static smem 38,912 bytes.
template <typename T, int MODE>
__device__ __forceinline__ void conv_tc(const T* __restrict__ A_, const T* __restrict__ src_, const T* __restrict__ bias,
                                        T* __restrict__ out, ConvShape s, int a_vec) {
    __shared__ __align__(16) unsigned char smem_raw[sizeof(TcSmem)];
    TcSmem& sm = *reinterpret_cast<TcSmem*>(smem_raw);
    const u16* A = reinterpret_cast<const u16*>(A_);
    const u16* src = reinterpret_cast<const u16*>(src_);

    const GemmDims d = gemm_dims<MODE>(s);
    const int M = d.M, K = d.K, P = d.P, N = d.N, SH = d.SH, SW = d.SW;

    const int mtiles = (M + TILE_BM - 1) / TILE_BM;
    const int m0 = (blockIdx.x % mtiles) * TILE_BM;
    const int n0 = (blockIdx.x / mtiles) * TILE_BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;

    // This thread gathers columns n0 + 2*np + {0, 1} of B rows kr + 4j, j < 8.
    const int np = tid & 63, kr = tid >> 6;
    const Gather<u16> g0 = make_gather<MODE>(s, src, n0 + 2 * np, N);
    const Gather<u16> g1 = make_gather<MODE>(s, src, n0 + 2 * np + 1, N);

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

    const int nk = (K + TILE_BK - 1) / TILE_BK;
    // The tables of stages 0 and 1; then thread e < 32 writes row e of stage i + 2 in iteration i.
    if (tid < 2 * TILE_BK) sm.tab[tid >> 5][tid & 31] = walk_tap<MODE>(s, tap_walk(s, tid, 0));
    Walk tw = tap_walk(s, 2 * TILE_BK + tid, TILE_BK);
    __syncthreads();

    unsigned breg[8];
    tile_load_a(sm.a[0], A, M, K, m0, 0, a_vec, tid);
    cp_async_commit();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const Tap t = sm.tab[0][kr + 4 * j];
        breg[j] = (unsigned)gather<MODE>(g0, t, SH, SW, (u16)0) | ((unsigned)gather<MODE>(g1, t, SH, SW, (u16)0) << 16);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) *reinterpret_cast<unsigned*>(&sm.b[0][(kr + 4 * j) * TILE_LDB + 2 * np]) = breg[j];
    cp_async_wait_all();
    __syncthreads();

    for (int i = 0; i < nk; ++i) {
        const int cur = i & 1, nxt = cur ^ 1;
        const bool more = i + 1 < nk;
        if (more) {
            tile_load_a(sm.a[nxt], A, M, K, m0, (i + 1) * TILE_BK, a_vec, tid);
            cp_async_commit();
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const Tap t = sm.tab[nxt][kr + 4 * j];
                breg[j] = (unsigned)gather<MODE>(g0, t, SH, SW, (u16)0) | ((unsigned)gather<MODE>(g1, t, SH, SW, (u16)0) << 16);
            }
        }
        // The table of stage i + 2 goes where stage i's was (read last in iteration i - 1).
        if (tid < TILE_BK) {
            sm.tab[cur][tid] = walk_tap<MODE>(s, tw);
            tw.next();
        }
        tile_stage<T, true>(sm.a[cur], sm.b[cur], acc, wm, wn, lane);
        if (more) {
#pragma unroll
            for (int j = 0; j < 8; ++j) *reinterpret_cast<unsigned*>(&sm.b[nxt][(kr + 4 * j) * TILE_LDB + 2 * np]) = breg[j];
        }
        cp_async_wait_all();
        __syncthreads();
    }

    // Epilogue: add the bias, round, stage the tile in shared memory, write rows of pixels.
    u16* sc = reinterpret_cast<u16*>(smem_raw);
    const int gr = lane >> 2, gc = (lane & 3) * 2;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
        const int r0 = wm * 64 + mt * 16 + gr;
        float b0 = 0.0f, b1 = 0.0f;
        if (bias != nullptr) {
            if (m0 + r0 < M) b0 = to_f32(bias[m0 + r0]);
            if (m0 + r0 + 8 < M) b1 = to_f32(bias[m0 + r0 + 8]);
        }
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
            const int c = wn * 32 + nt * 8 + gc;
            *reinterpret_cast<unsigned*>(&sc[r0 * TC_LDC + c]) =
                pack2(from_f32<T>(acc[mt][nt][0] + b0), from_f32<T>(acc[mt][nt][1] + b0));
            *reinterpret_cast<unsigned*>(&sc[(r0 + 8) * TC_LDC + c]) =
                pack2(from_f32<T>(acc[mt][nt][2] + b1), from_f32<T>(acc[mt][nt][3] + b1));
        }
    }
    __syncthreads();
    const int col = tid & (TILE_BN - 1);
    const int n = n0 + col;
    if (n < N) {
        const int img = n / P, p = n - img * P;
        u16* o = reinterpret_cast<u16*>(out) + (long long)img * M * P + p;
        const int rows = min(TILE_BM, M - m0);
        for (int r = tid >> 7; r < rows; r += TILE_THREADS / TILE_BN) o[(long long)(m0 + r) * P] = sc[r * TC_LDC + col];
    }
}

// Weight grad on tensor cores: partial[split, co, k] = sum over this split's pixels r of
// dy[r, co] * im2col(x)[r, k]. Launch: grid (ceil(Cout/128) * ceil(K/128), splits), 256
// threads (8 warps, 2 x 4 of 64x32), static smem 44,032 bytes (tiles and tables);
// `stages` 32-pixel stages per split.
template <typename T>
__device__ __forceinline__ void conv_wgrad_tc(const T* __restrict__ dy_, const T* __restrict__ x_, float* __restrict__ part,
                                              ConvShape s, int stages, int a_vec) {
    __shared__ __align__(16) WgSmem sm;
    __shared__ Tap ctab[TILE_BN];
    __shared__ Pix ptab[2][TILE_BK];
    const u16* dy = reinterpret_cast<const u16*>(dy_);
    const u16* x = reinterpret_cast<const u16*>(x_);

    const int M = s.cout, N = s.cin * s.kh * s.kw, P = s.oh * s.ow, R = s.n * P;
    const int mtiles = (M + TILE_BM - 1) / TILE_BM;
    const int m0 = (blockIdx.x % mtiles) * TILE_BM;
    const int n0 = (blockIdx.x / mtiles) * TILE_BN;
    const int nk_all = (R + TILE_BK - 1) / TILE_BK;
    const int s0 = blockIdx.y * stages;
    const int nk = min(stages, nk_all - s0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;

    // Column taps (fixed for the block); pixel tables of stages 0 and 1, then thread e < 32
    // writes row e of stage i + 2 in iteration i.
    if (tid < TILE_BN) ctab[tid] = walk_tap<MODE_FWD>(s, tap_walk(s, n0 + tid, 0));
    if (tid >= TILE_BN && tid < TILE_BN + 2 * TILE_BK) {
        const int i = tid - TILE_BN;
        Walk w;
        w.init(s0 * TILE_BK + i, 0, s.oh, s.ow);
        ptab[i >> 5][i & 31] = walk_pix(s, w);
    }
    Walk pw;
    pw.init((s0 + 2) * TILE_BK + tid, TILE_BK, s.oh, s.ow);
    __syncthreads();

    // This thread gathers reduction rows 2*rp + {0, 1} of B columns nr + 16j, j < 8.
    const int rp = tid & 15, nr = tid >> 4;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

    unsigned breg[8];
    // A[co, r] = dy[img(r), co, p(r)] from the pixel table of the stage.
#define WG_LOAD_A(SA, TAB)                                                                      \
    if (a_vec) {                                                                                \
        _Pragma("unroll") for (int i2 = 0; i2 < 2; ++i2) {                                      \
            const int c = tid + i2 * TILE_THREADS;                                                \
            const int m = c >> 2, rc = (c & 3) * 8;                                             \
            const Pix q = (TAB)[rc];                                                            \
            const bool ok = (m0 + m < M) & (q.img >= 0);                                        \
            const u16* srcp = ok ? dy + ((long long)q.img * M + m0 + m) * P + q.p : dy;         \
            cp_async16((SA) + m * TILE_LDA + rc, srcp, ok);                                       \
        }                                                                                       \
    } else {                                                                                    \
        _Pragma("unroll 4") for (int i2 = 0; i2 < (TILE_BM * TILE_BK) / TILE_THREADS; ++i2) {         \
            const int c = tid + i2 * TILE_THREADS;                                                \
            const int m = c >> 5, rr = c & 31;                                                  \
            const Pix q = (TAB)[rr];                                                            \
            const bool ok = (m0 + m < M) & (q.img >= 0);                                        \
            (SA)[m * TILE_LDA + rr] = ok ? dy[((long long)q.img * M + m0 + m) * P + q.p] : (u16)0; \
        }                                                                                       \
    }
#define WG_GATHER_B(TAB)                                                                        \
    {                                                                                           \
        const Pix q0 = (TAB)[2 * rp], q1 = (TAB)[2 * rp + 1];                                   \
        _Pragma("unroll") for (int j = 0; j < 8; ++j) {                                         \
            const Tap t = ctab[nr + 16 * j];                                                    \
            breg[j] = (unsigned)gather_x(x, s, q0, t, (u16)0) | ((unsigned)gather_x(x, s, q1, t, (u16)0) << 16); \
        }                                                                                       \
    }
#define WG_STORE_B(SB)                                                                          \
    _Pragma("unroll") for (int j = 0; j < 8; ++j)                                               \
        *reinterpret_cast<unsigned*>(&(SB)[(nr + 16 * j) * TILE_LDBT + 2 * rp]) = breg[j];

    WG_LOAD_A(sm.a[0], ptab[0])
    cp_async_commit();
    WG_GATHER_B(ptab[0])
    WG_STORE_B(sm.b[0])
    cp_async_wait_all();
    __syncthreads();

    for (int i = 0; i < nk; ++i) {
        const int cur = i & 1, nxt = cur ^ 1;
        const bool more = i + 1 < nk;
        if (more) {
            WG_LOAD_A(sm.a[nxt], ptab[nxt])
            cp_async_commit();
            WG_GATHER_B(ptab[nxt])
        }
        if (tid < TILE_BK) {
            ptab[cur][tid] = walk_pix(s, pw);
            pw.next();
        }
        tile_stage<T, false>(sm.a[cur], sm.b[cur], acc, wm, wn, lane);
        if (more) { WG_STORE_B(sm.b[nxt]) }
        cp_async_wait_all();
        __syncthreads();
    }
#undef WG_LOAD_A
#undef WG_GATHER_B
#undef WG_STORE_B

    // Epilogue: f32 partial sums straight from the fragments (4 lanes cover 32 bytes of a row).
    float* o = part + (long long)blockIdx.y * M * N;
    const int gr = lane >> 2, gc = (lane & 3) * 2;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int m = m0 + wm * 64 + mt * 16 + gr + h * 8;
            if (m >= M) continue;
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const int n = n0 + wn * 32 + nt * 8 + gc;
                if (n < N) o[(long long)m * N + n] = acc[mt][nt][2 * h];
                if (n + 1 < N) o[(long long)m * N + n + 1] = acc[mt][nt][2 * h + 1];
            }
        }
}

// ---------------------------------------------------------------- SIMT f32 tiles

#define ST_BM 64
#define ST_BN 64
#define ST_BK 16
#define ST_THREADS 256
#define ST_LD (ST_BM + 4)  // rows of 68 floats: float4-aligned, staggered banks

// 16 products of a 4-row, 4-column micro-tile per k, from k-major tiles.
__device__ __forceinline__ void simt_stage(const float* sa, const float* sb, float (&acc)[4][4], int tm, int tn) {
#pragma unroll
    for (int k = 0; k < ST_BK; ++k) {
        const float4 a = *reinterpret_cast<const float4*>(&sa[k * ST_LD + tm * 4]);
        const float4 b = *reinterpret_cast<const float4*>(&sb[k * ST_LD + tn * 4]);
        const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

// Forward / data grad in f32, as conv_tc. Launch: 1D grid of ceil(M/64) * ceil(N/64) blocks,
// 256 threads (16 x 16, 4x4 outputs each), static smem 17,920 bytes.
template <int MODE>
__device__ __forceinline__ void conv_simt(const float* __restrict__ A, const float* __restrict__ src, const float* __restrict__ bias,
                                          float* __restrict__ out, ConvShape s) {
    __shared__ __align__(16) float sa[2][ST_BK * ST_LD];
    __shared__ __align__(16) float sb[2][ST_BK * ST_LD];
    __shared__ Tap tab[2][ST_BK];

    const GemmDims d = gemm_dims<MODE>(s);
    const int M = d.M, K = d.K, P = d.P, N = d.N, SH = d.SH, SW = d.SW;

    const int mtiles = (M + ST_BM - 1) / ST_BM;
    const int m0 = (blockIdx.x % mtiles) * ST_BM;
    const int n0 = (blockIdx.x / mtiles) * ST_BN;
    const int tid = threadIdx.x, tm = tid >> 4, tn = tid & 15;

    // Loads: A element (m0 + (tid >> 4) + 16j, k0 + (tid & 15)); B element (k0 + kr + 4j, n0 + nc).
    const int am = tid >> 4, ak = tid & 15;
    const int nc = tid & 63, kr = tid >> 6;
    const Gather<float> g = make_gather<MODE>(s, src, n0 + nc, N);

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    const int nk = (K + ST_BK - 1) / ST_BK;
    // The tables of stages 0 and 1; then thread e < 16 writes row e of stage i + 2 in iteration i.
    if (tid < 2 * ST_BK) tab[tid >> 4][tid & 15] = walk_tap<MODE>(s, tap_walk(s, tid, 0));
    Walk tw = tap_walk(s, 2 * ST_BK + tid, ST_BK);
    __syncthreads();

    float ar[4], br[4];
#define ST_LOAD(TAB, K0)                                                                        \
    _Pragma("unroll") for (int j = 0; j < 4; ++j) {                                             \
        const int m = m0 + am + 16 * j, k = (K0) + ak;                                          \
        ar[j] = (m < M && k < K) ? A[(long long)m * K + k] : 0.0f;                              \
        br[j] = gather<MODE>(g, (TAB)[kr + 4 * j], SH, SW, 0.0f);                                 \
    }
#define ST_STORE(SA, SB)                                                                        \
    _Pragma("unroll") for (int j = 0; j < 4; ++j) {                                             \
        (SA)[ak * ST_LD + am + 16 * j] = ar[j];                                                 \
        (SB)[(kr + 4 * j) * ST_LD + nc] = br[j];                                                \
    }
    ST_LOAD(tab[0], 0)
    ST_STORE(sa[0], sb[0])
    __syncthreads();
    for (int i = 0; i < nk; ++i) {
        const int cur = i & 1, nxt = cur ^ 1;
        const bool more = i + 1 < nk;
        if (more) { ST_LOAD(tab[nxt], (i + 1) * ST_BK) }
        if (tid < ST_BK) {
            tab[cur][tid] = walk_tap<MODE>(s, tw);
            tw.next();
        }
        simt_stage(sa[cur], sb[cur], acc, tm, tn);
        if (more) { ST_STORE(sa[nxt], sb[nxt]) }
        __syncthreads();
    }
#undef ST_LOAD
#undef ST_STORE

#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int n = n0 + tn * 4 + j;
        if (n >= N) continue;
        const int img = n / P, p = n - img * P;
        float* o = out + (long long)img * M * P + p;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int m = m0 + tm * 4 + i;
            if (m < M) o[(long long)m * P] = acc[i][j] + (bias != nullptr ? bias[m] : 0.0f);
        }
    }
}

// Weight grad in f32, as conv_wgrad_tc. Launch: grid (ceil(Cout/64) * ceil(K/64), splits),
// 256 threads (16 x 16, 4x4 outputs each), static smem ~19 KiB; `stages` 16-pixel stages per split.
__device__ __forceinline__ void conv_wgrad_simt(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ part,
                                                ConvShape s, int stages) {
    __shared__ __align__(16) float sa[2][ST_BK * ST_LD];
    __shared__ __align__(16) float sb[2][ST_BK * ST_LD];
    __shared__ Tap ctab[ST_BN];
    __shared__ Pix ptab[2][ST_BK];

    const int M = s.cout, N = s.cin * s.kh * s.kw, P = s.oh * s.ow, R = s.n * P;
    const int mtiles = (M + ST_BM - 1) / ST_BM;
    const int m0 = (blockIdx.x % mtiles) * ST_BM;
    const int n0 = (blockIdx.x / mtiles) * ST_BN;
    const int nk_all = (R + ST_BK - 1) / ST_BK;
    const int s0 = blockIdx.y * stages;
    const int nk = min(stages, nk_all - s0);
    const int tid = threadIdx.x, tm = tid >> 4, tn = tid & 15;
    // Loads: A element (m0 + am + 16j, r = ar_); B element (r = rr, n0 + bn + 16j).
    const int am = tid >> 4, ar_ = tid & 15;
    const int rr = tid & 15, bn = tid >> 4;

    // As conv_wgrad_tc: column taps, then pixel tables stage by stage.
    if (tid < ST_BN) ctab[tid] = walk_tap<MODE_FWD>(s, tap_walk(s, n0 + tid, 0));
    if (tid >= ST_BN && tid < ST_BN + 2 * ST_BK) {
        const int i = tid - ST_BN;
        Walk w;
        w.init(s0 * ST_BK + i, 0, s.oh, s.ow);
        ptab[i >> 4][i & 15] = walk_pix(s, w);
    }
    Walk pw;
    pw.init((s0 + 2) * ST_BK + tid, ST_BK, s.oh, s.ow);
    __syncthreads();

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    float av[4], bv[4];
#define SW_LOAD(TAB)                                                                            \
    {                                                                                           \
        const Pix qa = (TAB)[ar_], qb = (TAB)[rr];                                              \
        _Pragma("unroll") for (int j = 0; j < 4; ++j) {                                         \
            const int m = m0 + am + 16 * j;                                                     \
            av[j] = (m < M && qa.img >= 0) ? dy[((long long)qa.img * M + m) * P + qa.p] : 0.0f; \
            bv[j] = gather_x(x, s, qb, ctab[bn + 16 * j], 0.0f);                                \
        }                                                                                       \
    }
#define SW_STORE(SA, SB)                                                                        \
    _Pragma("unroll") for (int j = 0; j < 4; ++j) {                                             \
        (SA)[ar_ * ST_LD + am + 16 * j] = av[j];                                                \
        (SB)[rr * ST_LD + bn + 16 * j] = bv[j];                                                 \
    }
    SW_LOAD(ptab[0])
    SW_STORE(sa[0], sb[0])
    __syncthreads();
    for (int i = 0; i < nk; ++i) {
        const int cur = i & 1, nxt = cur ^ 1;
        const bool more = i + 1 < nk;
        if (more) { SW_LOAD(ptab[nxt]) }
        if (tid < ST_BK) {
            ptab[cur][tid] = walk_pix(s, pw);
            pw.next();
        }
        simt_stage(sa[cur], sb[cur], acc, tm, tn);
        if (more) { SW_STORE(sa[nxt], sb[nxt]) }
        __syncthreads();
    }
#undef SW_LOAD
#undef SW_STORE

    float* o = part + (long long)blockIdx.y * M * N;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + tm * 4 + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tn * 4 + j;
            if (n < N) o[(long long)m * N + n] = acc[i][j];
        }
    }
}

// ---------------------------------------------------------------- entry points

// Forward: y = conv(x, weight) + bias (bias may be null). Launch: see conv_tc / conv_simt.
#define FWD_TC(T, TN)                                                                             \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS) conv2d_fwd_tc_##TN(                  \
        const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y, \
        ConvShape s, int a_vec) {                                                                 \
        conv_tc<T, MODE_FWD>(w, x, bias, y, s, a_vec);                                            \
    }
FWD_TC(f16, f16)
FWD_TC(bf16, bf16)

// Data grad: dx = the transposed conv of dy with wt = conv2d_weight_t(weight). Launch: as forward.
#define DGRAD_TC(T, TN)                                                                           \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS) conv2d_dgrad_tc_##TN(                \
        const T* __restrict__ dy, const T* __restrict__ wt, T* __restrict__ dx, ConvShape s, int a_vec) { \
        conv_tc<T, MODE_DGRAD>(wt, dy, nullptr, dx, s, a_vec);                                    \
    }
DGRAD_TC(f16, f16)
DGRAD_TC(bf16, bf16)

// Weight grad partial sums (f32, [splits, Cout, K]). Launch: see conv_wgrad_tc.
#define WGRAD_TC(T, TN)                                                                           \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS) conv2d_wgrad_tc_##TN(                \
        const T* __restrict__ dy, const T* __restrict__ x, float* __restrict__ part, ConvShape s, \
        int stages, int a_vec) {                                                                  \
        conv_wgrad_tc<T>(dy, x, part, s, stages, a_vec);                                          \
    }
WGRAD_TC(f16, f16)
WGRAD_TC(bf16, bf16)

// f32 variants of the three GEMMs (SIMT). Launch: see conv_simt / conv_wgrad_simt.
extern "C" __global__ void __launch_bounds__(ST_THREADS, 2) conv2d_fwd_simt_f32(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y, ConvShape s) {
    conv_simt<MODE_FWD>(w, x, bias, y, s);
}
extern "C" __global__ void __launch_bounds__(ST_THREADS, 2) conv2d_dgrad_simt_f32(
    const float* __restrict__ dy, const float* __restrict__ wt, float* __restrict__ dx, ConvShape s) {
    conv_simt<MODE_DGRAD>(wt, dy, nullptr, dx, s);
}
extern "C" __global__ void __launch_bounds__(ST_THREADS, 2) conv2d_wgrad_simt_f32(
    const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ part, ConvShape s, int stages) {
    conv_wgrad_simt(dy, x, part, s, stages);
}

// ---------------------------------------------------------------- small helpers

// wt[ci, co, ky, kx] = w[co, ci, ky, kx]: the A operand of the data grad. One thread per element,
// 256 per block.
#define WEIGHT_T(T, TN)                                                                           \
    extern "C" __global__ void conv2d_weight_t_##TN(const T* __restrict__ w, T* __restrict__ wt,  \
                                                    int cout, int cin, int khw) {                 \
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                     \
        const long long total = (long long)cout * cin * khw;                                      \
        if (i >= total) return;                                                                   \
        const int tap = (int)(i % khw);                                                           \
        const long long rest = i / khw;                                                           \
        const int co = (int)(rest % cout), ci = (int)(rest / cout);                               \
        wt[i] = w[((long long)co * cin + ci) * khw + tap];                                        \
    }
WEIGHT_T(float, f32)
WEIGHT_T(f16, f16)
WEIGHT_T(bf16, bf16)

// dW[i] = sum over s < splits of part[s, i], in order of s. One thread per element, 256 per block.
#define WGRAD_SUM(T, TN)                                                                          \
    extern "C" __global__ void conv2d_wgrad_sum_##TN(const float* __restrict__ part, T* __restrict__ dw, \
                                                     long long total, int splits) {               \
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                     \
        if (i >= total) return;                                                                   \
        float acc = 0.0f;                                                                         \
        for (int s = 0; s < splits; ++s) acc += part[(long long)s * total + i];                   \
        dw[i] = from_f32<T>(acc);                                                                 \
    }
WGRAD_SUM(float, f32)
WGRAD_SUM(f16, f16)
WGRAD_SUM(bf16, bf16)

// db[c] = sum of dy[n, c, :] over n and the plane. One block of 256 threads per channel c, each
// thread summing a fixed strided subset, then a fixed-order block reduction (deterministic).
#define BGRAD(T, TN)                                                                              \
    extern "C" __global__ void conv2d_bgrad_##TN(const T* __restrict__ dy, T* __restrict__ db,   \
                                                 int n, int c, int plane) {                       \
        __shared__ float scratch[32];                                                             \
        const int ch = blockIdx.x;                                                                \
        float acc = 0.0f;                                                                         \
        for (int img = 0; img < n; ++img) {                                                       \
            const T* row = dy + ((long long)img * c + ch) * plane;                                \
            for (int p = threadIdx.x; p < plane; p += blockDim.x) acc += to_f32(row[p]);          \
        }                                                                                         \
        acc = block_sum(acc, scratch);                                                            \
        if (threadIdx.x == 0) db[ch] = from_f32<T>(acc);                                          \
    }
BGRAD(float, f32)
BGRAD(f16, f16)
BGRAD(bf16, bf16)
