// norm.cu: normalisation layers. GroupNorm (optionally fused with SiLU, as every SD U-Net and VAE
// resnet uses it), LayerNorm over the last dim, BatchNorm (batch statistics with the running-stat
// update, apply with batch or running statistics, backward).
//
// Layout: contiguous row-major. GroupNorm and BatchNorm see x as [N, C, S] (S = the product of
// the spatial dims); a GroupNorm group is the contiguous run of C/G * S elements of one (n, g).
// LayerNorm sees x as [rows, C]. Weight and bias are [C] in x's dtype, each optional (a null
// pointer means 1 and 0). BatchNorm's statistics (mean, rstd, running stats) are f32.
//
// Precision: values are widened to f32, statistics accumulate in f32, outputs are rounded once
// on store. Biased variance with eps inside the square root (torch.nn.GroupNorm, LayerNorm,
// BatchNorm2d). Every reduction has a fixed order (no atomics): the same inputs give the same bits.
//
// Vector path: where a kernel's `vec` flag is set, the launcher has checked that every pointer
// it passes is 16-byte aligned and that each run of one channel (S, or C for LayerNorm) is a
// multiple of the vector width, so every 16-byte vector lies inside one channel.

#include "common.cuh"

// ---------------------------------------------------------------- 16-byte vectors
// Pack<T>: N values of T in one uint4, unpacked to / packed from f32.

template <typename T> struct Pack;

template <> struct Pack<float> {
    static constexpr int N = 4;
    static __device__ __forceinline__ void unpack(uint4 u, float (&f)[4]) {
        f[0] = __uint_as_float(u.x);
        f[1] = __uint_as_float(u.y);
        f[2] = __uint_as_float(u.z);
        f[3] = __uint_as_float(u.w);
    }
    static __device__ __forceinline__ uint4 pack(const float (&f)[4]) {
        uint4 u;
        u.x = __float_as_uint(f[0]);
        u.y = __float_as_uint(f[1]);
        u.z = __float_as_uint(f[2]);
        u.w = __float_as_uint(f[3]);
        return u;
    }
};

template <typename H> struct Pack16 {
    static constexpr int N = 8;
    static __device__ __forceinline__ float lo(unsigned w) {
        H h;
        h.bits = (unsigned short)(w & 0xffffu);
        return to_f32(h);
    }
    static __device__ __forceinline__ float hi(unsigned w) {
        H h;
        h.bits = (unsigned short)(w >> 16);
        return to_f32(h);
    }
    static __device__ __forceinline__ void unpack(uint4 u, float (&f)[8]) {
        f[0] = lo(u.x); f[1] = hi(u.x);
        f[2] = lo(u.y); f[3] = hi(u.y);
        f[4] = lo(u.z); f[5] = hi(u.z);
        f[6] = lo(u.w); f[7] = hi(u.w);
    }
    static __device__ __forceinline__ uint4 pack(const float (&f)[8]) {
        uint4 u;
        u.x = pack2(from_f32<H>(f[0]), from_f32<H>(f[1]));
        u.y = pack2(from_f32<H>(f[2]), from_f32<H>(f[3]));
        u.z = pack2(from_f32<H>(f[4]), from_f32<H>(f[5]));
        u.w = pack2(from_f32<H>(f[6]), from_f32<H>(f[7]));
        return u;
    }
};
template <> struct Pack<f16> : Pack16<f16> {};
template <> struct Pack<bf16> : Pack16<bf16> {};

// Loads per thread issued together before any is used, so each thread keeps this many 16-byte
// requests in flight.
#define NORM_BATCH 4

// The dynamic shared memory of the GroupNorm single-read kernel (the group, in x's dtype).
extern __shared__ uint4 norm_smem[];

// p[i] as f32, or `dflt` when p is null (no weight / no bias).
template <typename T> __device__ __forceinline__ float opt_load(const T* p, int i, float dflt) {
    return p ? to_f32(p[i]) : dflt;
}

// v * scale + shift, then SiLU when asked. The SiLU uses the fast exp and an IEEE reciprocal:
// r * 1/(1 + e^-r) is exact to a few ulp and goes to -0 (not NaN) for very negative r.
__device__ __forceinline__ float gn_out(float v, float scale, float shift, int silu) {
    const float r = v * scale + shift;
    return silu ? r * __frcp_rn(1.0f + __expf(-r)) : r;
}

// ---------------------------------------------------------------- GroupNorm, one read
// One block per (n, g) group, grid = N*G, blockDim a multiple of 32 (<= 1024), dynamic smem =
// the group (cpg*S values of T, rounded up to 16 bytes). Reads x once into smem (summing as it
// goes), takes the squared deviations from smem, then writes y from smem.
template <typename T>
__device__ __forceinline__ void group_norm_smem(const T* __restrict__ x, const T* __restrict__ w,
                                                const T* __restrict__ b, T* __restrict__ y, int S,
                                                int cpg, int groups, float eps, int silu, int vec) {
    __shared__ float scratch[32];
    constexpr int VN = Pack<T>::N;
    const int L = cpg * S;
    const long long base = (long long)blockIdx.x * L;
    const int c0 = (blockIdx.x % groups) * cpg;
    const T* xg = x + base;
    T* yg = y + base;
    T* buf = reinterpret_cast<T*>(norm_smem);
    const int tid = threadIdx.x, nt = blockDim.x;
    const int nv = L / VN;

    float sum = 0.0f;
    if (vec) {
        const uint4* xv = reinterpret_cast<const uint4*>(xg);
        for (int i0 = tid; i0 < nv; i0 += NORM_BATCH * nt) {
            uint4 u[NORM_BATCH];
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                const int i = i0 + k * nt;
                if (i < nv) u[k] = xv[i];
            }
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                const int i = i0 + k * nt;
                if (i < nv) {
                    norm_smem[i] = u[k];
                    float f[VN];
                    Pack<T>::unpack(u[k], f);
#pragma unroll
                    for (int j = 0; j < VN; ++j) sum += f[j];
                }
            }
        }
    } else {
        for (int i = tid; i < L; i += nt) {
            const T v = xg[i];
            buf[i] = v;
            sum += to_f32(v);
        }
    }
    // block_sum's barriers also publish the smem writes above.
    const float mean = block_sum(sum, scratch) / (float)L;

    float m2 = 0.0f;
    if (vec) {
        for (int i = tid; i < nv; i += nt) {
            float f[VN];
            Pack<T>::unpack(norm_smem[i], f);
#pragma unroll
            for (int j = 0; j < VN; ++j) {
                const float d = f[j] - mean;
                m2 += d * d;
            }
        }
    } else {
        for (int i = tid; i < L; i += nt) {
            const float d = to_f32(buf[i]) - mean;
            m2 += d * d;
        }
    }
    const float rstd = rsqrtf(block_sum(m2, scratch) / (float)L + eps);

    if (vec) {
        uint4* yv = reinterpret_cast<uint4*>(yg);
        for (int i = tid; i < nv; i += nt) {
            const int c = c0 + (i * VN) / S;
            const float scale = rstd * opt_load(w, c, 1.0f);
            const float shift = opt_load(b, c, 0.0f) - mean * scale;
            float f[VN];
            Pack<T>::unpack(norm_smem[i], f);
#pragma unroll
            for (int j = 0; j < VN; ++j) f[j] = gn_out(f[j], scale, shift, silu);
            yv[i] = Pack<T>::pack(f);
        }
    } else {
        for (int i = tid; i < L; i += nt) {
            const int c = c0 + i / S;
            const float scale = rstd * opt_load(w, c, 1.0f);
            const float shift = opt_load(b, c, 0.0f) - mean * scale;
            yg[i] = from_f32<T>(gn_out(to_f32(buf[i]), scale, shift, silu));
        }
    }
}

// ---------------------------------------------------------------- GroupNorm, two phases
// For groups too large for smem. Each group of L elements is cut into `chunks` chunks of `chunk`
// elements (the last may be shorter); block i handles chunk i % chunks of group
// group0 + i / chunks, grid = groups_in_slice * chunks, 256 threads. The launcher runs the two
// phases over slices of groups small enough that the second read of x hits L2.
//
// Phase 1: partial sums of x - K over one chunk, K = the group's first element (shifting by a
// sample of the group keeps sum(d^2)/L - mean(d)^2 from cancelling).
// part[2*(g*chunks + ch)] = sum(x - K), part[2*(g*chunks + ch) + 1] = sum((x - K)^2).
template <typename T>
__device__ __forceinline__ void group_norm_stats(const T* __restrict__ x, float* __restrict__ part, int L,
                                                 int chunk, int chunks, long long group0, int vec) {
    __shared__ float scratch[32];
    constexpr int VN = Pack<T>::N;
    const long long gi = group0 + blockIdx.x / chunks;
    const int ch = blockIdx.x % chunks;
    const T* xg = x + gi * L;
    const float K = to_f32(xg[0]);
    const int start = ch * chunk;
    const int len = min(chunk, L - start);
    const T* xc = xg + start;
    const int tid = threadIdx.x, nt = blockDim.x;

    float s1 = 0.0f, s2 = 0.0f;
    if (vec) {
        const uint4* xv = reinterpret_cast<const uint4*>(xc);
        const int nv = len / VN;
        for (int i0 = tid; i0 < nv; i0 += NORM_BATCH * nt) {
            uint4 u[NORM_BATCH];
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                const int i = i0 + k * nt;
                if (i < nv) u[k] = xv[i];
            }
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                if (i0 + k * nt < nv) {
                    float f[VN];
                    Pack<T>::unpack(u[k], f);
#pragma unroll
                    for (int j = 0; j < VN; ++j) {
                        const float d = f[j] - K;
                        s1 += d;
                        s2 += d * d;
                    }
                }
            }
        }
    } else {
        for (int i = tid; i < len; i += nt) {
            const float d = to_f32(xc[i]) - K;
            s1 += d;
            s2 += d * d;
        }
    }
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (tid == 0) {
        part[2 * (gi * chunks + ch)] = s1;
        part[2 * (gi * chunks + ch) + 1] = s2;
    }
}

// Phase 2: the first warp sums the group's partials in a fixed order (every block of the group
// gets the same bits), then the block normalises its chunk (+ SiLU). Same grid as phase 1.
template <typename T>
__device__ __forceinline__ void group_norm_apply(const T* __restrict__ x, const float* __restrict__ part,
                                                 const T* __restrict__ w, const T* __restrict__ b,
                                                 T* __restrict__ y, int L, int S, int cpg, int groups,
                                                 int chunk, int chunks, long long group0, float eps,
                                                 int silu, int vec) {
    __shared__ float stats[2];
    constexpr int VN = Pack<T>::N;
    const long long gi = group0 + blockIdx.x / chunks;
    const int ch = blockIdx.x % chunks;
    const T* xg = x + gi * L;
    const int start = ch * chunk;
    const int len = min(chunk, L - start);
    const int c0 = (int)(gi % groups) * cpg;
    const int tid = threadIdx.x, nt = blockDim.x;

    if (tid < 32) {
        float s1 = 0.0f, s2 = 0.0f;
        for (int k = tid; k < chunks; k += 32) {
            s1 += part[2 * (gi * chunks + k)];
            s2 += part[2 * (gi * chunks + k) + 1];
        }
        s1 = warp_sum(s1);
        s2 = warp_sum(s2);
        if (tid == 0) {
            const float m = s1 / (float)L;  // mean - K
            const float var = fmaxf(s2 / (float)L - m * m, 0.0f);
            stats[0] = to_f32(xg[0]) + m;
            stats[1] = rsqrtf(var + eps);
        }
    }
    __syncthreads();
    const float mean = stats[0], rstd = stats[1];

    if (vec) {
        const uint4* xv = reinterpret_cast<const uint4*>(xg + start);
        uint4* yv = reinterpret_cast<uint4*>(y + gi * L + start);
        const int nv = len / VN;
        for (int i0 = tid; i0 < nv; i0 += NORM_BATCH * nt) {
            uint4 u[NORM_BATCH];
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                const int i = i0 + k * nt;
                if (i < nv) u[k] = xv[i];
            }
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                const int i = i0 + k * nt;
                if (i < nv) {
                    const int c = c0 + (start + i * VN) / S;
                    const float scale = rstd * opt_load(w, c, 1.0f);
                    const float shift = opt_load(b, c, 0.0f) - mean * scale;
                    float f[VN];
                    Pack<T>::unpack(u[k], f);
#pragma unroll
                    for (int j = 0; j < VN; ++j) f[j] = gn_out(f[j], scale, shift, silu);
                    yv[i] = Pack<T>::pack(f);
                }
            }
        }
    } else {
        const T* xc = xg + start;
        T* yc = y + gi * L + start;
        for (int i = tid; i < len; i += nt) {
            const int c = c0 + (start + i) / S;
            const float scale = rstd * opt_load(w, c, 1.0f);
            const float shift = opt_load(b, c, 0.0f) - mean * scale;
            yc[i] = from_f32<T>(gn_out(to_f32(xc[i]), scale, shift, silu));
        }
    }
}

// ---------------------------------------------------------------- LayerNorm
// One warp per row, 8 warps (256 threads) per block, grid = ceil(rows / 8), no smem. Three
// passes over the row (sum, squared deviations, output); the row stays in L1 after the first.
template <typename T>
__device__ __forceinline__ void layer_norm_fwd(const T* __restrict__ x, const T* __restrict__ w,
                                               const T* __restrict__ b, T* __restrict__ y, long long rows,
                                               int C, float eps, int vec) {
    constexpr int VN = Pack<T>::N;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // a whole warp leaves; nothing below syncs the block
    const int lane = threadIdx.x & 31;
    const T* xr = x + row * C;
    T* yr = y + row * C;
    const int nv = C / VN;
    const uint4* xv = reinterpret_cast<const uint4*>(xr);

    float s = 0.0f;
    if (vec) {
#pragma unroll 4
        for (int i = lane; i < nv; i += 32) {
            float f[VN];
            Pack<T>::unpack(xv[i], f);
#pragma unroll
            for (int j = 0; j < VN; ++j) s += f[j];
        }
    } else {
        for (int i = lane; i < C; i += 32) s += to_f32(xr[i]);
    }
    const float mean = warp_sum(s) / (float)C;

    float m2 = 0.0f;
    if (vec) {
        for (int i = lane; i < nv; i += 32) {
            float f[VN];
            Pack<T>::unpack(xv[i], f);
#pragma unroll
            for (int j = 0; j < VN; ++j) {
                const float d = f[j] - mean;
                m2 += d * d;
            }
        }
    } else {
        for (int i = lane; i < C; i += 32) {
            const float d = to_f32(xr[i]) - mean;
            m2 += d * d;
        }
    }
    const float rstd = rsqrtf(warp_sum(m2) / (float)C + eps);

    if (vec) {
        uint4* yv = reinterpret_cast<uint4*>(yr);
        const uint4* wv = reinterpret_cast<const uint4*>(w);
        const uint4* bv = reinterpret_cast<const uint4*>(b);
        for (int i = lane; i < nv; i += 32) {
            float f[VN], fw[VN], fb[VN];
            Pack<T>::unpack(xv[i], f);
            if (w) {
                Pack<T>::unpack(wv[i], fw);
            } else {
#pragma unroll
                for (int j = 0; j < VN; ++j) fw[j] = 1.0f;
            }
            if (b) {
                Pack<T>::unpack(bv[i], fb);
            } else {
#pragma unroll
                for (int j = 0; j < VN; ++j) fb[j] = 0.0f;
            }
#pragma unroll
            for (int j = 0; j < VN; ++j) f[j] = (f[j] - mean) * rstd * fw[j] + fb[j];
            yv[i] = Pack<T>::pack(f);
        }
    } else {
        for (int i = lane; i < C; i += 32) {
            const float v = (to_f32(xr[i]) - mean) * rstd;
            yr[i] = from_f32<T>(v * opt_load(w, i, 1.0f) + opt_load(b, i, 0.0f));
        }
    }
}

// ---------------------------------------------------------------- BatchNorm
// Per-channel sums over (N, S) of channel c, in a fixed order. Element j of the channel (j in
// [0, N*S)) is x[(j / S) * C*S + c*S + j % S]; in vector units when `vec`.

// Statistics: one block per channel, grid = C, 256 threads. The mean comes from the plain sum
// (accurate even when it is small next to K); the biased variance from sums shifted by K = the
// channel's first element (no cancellation when the mean is large next to the spread). Writes
// mean[c] and rstd[c] and, when run_mean is not null, updates the running stats with the
// unbiased variance: run = (1 - momentum) * run + momentum * batch.
template <typename T>
__device__ __forceinline__ void batch_norm_stats(const T* __restrict__ x, float* __restrict__ mean_out,
                                                 float* __restrict__ rstd_out, float* __restrict__ run_mean,
                                                 float* __restrict__ run_var, int N, int C, int S, float eps,
                                                 float momentum, int vec) {
    __shared__ float scratch[32];
    constexpr int VN = Pack<T>::N;
    const int c = blockIdx.x;
    const int tid = threadIdx.x, nt = blockDim.x;
    const T* xc = x + (long long)c * S;
    const long long cs = (long long)C * S;
    const float K = to_f32(xc[0]);

    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
    if (vec) {
        const int sv = S / VN;
        const int nv = N * sv;
        for (int i0 = tid; i0 < nv; i0 += NORM_BATCH * nt) {
            uint4 u[NORM_BATCH];
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                const int i = i0 + k * nt;
                if (i < nv) {
                    const int n = i / sv;
                    u[k] = *reinterpret_cast<const uint4*>(xc + n * cs + (long long)(i - n * sv) * VN);
                }
            }
#pragma unroll
            for (int k = 0; k < NORM_BATCH; ++k) {
                if (i0 + k * nt < nv) {
                    float f[VN];
                    Pack<T>::unpack(u[k], f);
#pragma unroll
                    for (int j = 0; j < VN; ++j) {
                        const float d = f[j] - K;
                        s0 += f[j];
                        s1 += d;
                        s2 += d * d;
                    }
                }
            }
        }
    } else {
        const int m = N * S;
        for (int i = tid; i < m; i += nt) {
            const int n = i / S;
            const float v = to_f32(xc[n * cs + (i - n * S)]);
            const float d = v - K;
            s0 += v;
            s1 += d;
            s2 += d * d;
        }
    }
    s0 = block_sum(s0, scratch);
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (tid == 0) {
        const float M = (float)N * (float)S;
        const float dm = s1 / M;
        const float var = fmaxf(s2 / M - dm * dm, 0.0f);
        const float mean = s0 / M;
        mean_out[c] = mean;
        rstd_out[c] = rsqrtf(var + eps);
        if (run_mean) {
            run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean;
            run_var[c] = (1.0f - momentum) * run_var[c] + momentum * (var * M / (M - 1.0f));
        }
    }
}

// Apply: y = (x - mean[c]) * scale[c] * w[c] + b[c], with scale = rstd (train) or, when
// `from_var`, 1/sqrt(var + eps) (eval, var = the running variance). One thread per 16-byte
// vector (`vec`) or per element, 256 threads per block.
template <typename T>
__device__ __forceinline__ void batch_norm_apply(const T* __restrict__ x, const float* __restrict__ mean,
                                                 const float* __restrict__ scale_src, const T* __restrict__ w,
                                                 const T* __restrict__ b, T* __restrict__ y, long long total,
                                                 int C, int S, float eps, int from_var, int vec) {
    constexpr int VN = Pack<T>::N;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long first = vec ? t * VN : t;
    if (first >= total) return;
    const int c = (int)((first / S) % C);
    const float sv = scale_src[c];
    const float scale = (from_var ? rsqrtf(sv + eps) : sv) * opt_load(w, c, 1.0f);
    const float shift = opt_load(b, c, 0.0f) - mean[c] * scale;
    if (vec) {
        float f[VN];
        Pack<T>::unpack(reinterpret_cast<const uint4*>(x)[t], f);
#pragma unroll
        for (int j = 0; j < VN; ++j) f[j] = f[j] * scale + shift;
        reinterpret_cast<uint4*>(y)[t] = Pack<T>::pack(f);
    } else {
        y[t] = from_f32<T>(to_f32(x[t]) * scale + shift);
    }
}

// Backward reductions: one block per channel, grid = C, 256 threads. With xhat = (x - mean) *
// rstd: coef[2c] = mean(dy), coef[2c+1] = mean(dy * xhat) over the channel's N*S elements;
// dbias[c] = sum(dy), dweight[c] = sum(dy * xhat) when those pointers are not null.
template <typename T>
__device__ __forceinline__ void batch_norm_bwd_reduce(const T* __restrict__ dy, const T* __restrict__ x,
                                                      const float* __restrict__ mean, const float* __restrict__ rstd,
                                                      float* __restrict__ coef, T* __restrict__ dw,
                                                      T* __restrict__ db, int N, int C, int S, int vec) {
    __shared__ float scratch[32];
    constexpr int VN = Pack<T>::N;
    const int c = blockIdx.x;
    const int tid = threadIdx.x, nt = blockDim.x;
    const long long cs = (long long)C * S;
    const T* xc = x + (long long)c * S;
    const T* gc = dy + (long long)c * S;
    const float mu = mean[c], rs = rstd[c];

    float sg = 0.0f, sgx = 0.0f;
    if (vec) {
        const int sv = S / VN;
        const int nv = N * sv;
        for (int i = tid; i < nv; i += nt) {
            const int n = i / sv;
            const long long off = n * cs + (long long)(i - n * sv) * VN;
            float fx[VN], fg[VN];
            Pack<T>::unpack(*reinterpret_cast<const uint4*>(xc + off), fx);
            Pack<T>::unpack(*reinterpret_cast<const uint4*>(gc + off), fg);
#pragma unroll
            for (int j = 0; j < VN; ++j) {
                sg += fg[j];
                sgx += fg[j] * (fx[j] - mu) * rs;
            }
        }
    } else {
        const int m = N * S;
        for (int i = tid; i < m; i += nt) {
            const int n = i / S;
            const long long off = n * cs + (i - n * S);
            const float g = to_f32(gc[off]);
            sg += g;
            sgx += g * (to_f32(xc[off]) - mu) * rs;
        }
    }
    sg = block_sum(sg, scratch);
    sgx = block_sum(sgx, scratch);
    if (tid == 0) {
        const float M = (float)N * (float)S;
        coef[2 * c] = sg / M;
        coef[2 * c + 1] = sgx / M;
        if (dw) dw[c] = from_f32<T>(sgx);
        if (db) db[c] = from_f32<T>(sg);
    }
}

// Backward dx = w[c] * rstd[c] * (dy - coef[2c] - xhat * coef[2c+1]). One thread per 16-byte
// vector (`vec`) or per element, 256 threads per block.
template <typename T>
__device__ __forceinline__ void batch_norm_bwd_dx(const T* __restrict__ dy, const T* __restrict__ x,
                                                  const float* __restrict__ mean, const float* __restrict__ rstd,
                                                  const float* __restrict__ coef, const T* __restrict__ w,
                                                  T* __restrict__ dx, long long total, int C, int S, int vec) {
    constexpr int VN = Pack<T>::N;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long first = vec ? t * VN : t;
    if (first >= total) return;
    const int c = (int)((first / S) % C);
    const float mu = mean[c], rs = rstd[c];
    const float k = rs * opt_load(w, c, 1.0f);
    const float a = coef[2 * c], bx = coef[2 * c + 1];
    if (vec) {
        float fx[VN], fg[VN];
        Pack<T>::unpack(reinterpret_cast<const uint4*>(x)[t], fx);
        Pack<T>::unpack(reinterpret_cast<const uint4*>(dy)[t], fg);
#pragma unroll
        for (int j = 0; j < VN; ++j) fg[j] = k * (fg[j] - a - (fx[j] - mu) * rs * bx);
        reinterpret_cast<uint4*>(dx)[t] = Pack<T>::pack(fg);
    } else {
        const float xh = (to_f32(x[t]) - mu) * rs;
        dx[t] = from_f32<T>(k * (to_f32(dy[t]) - a - xh * bx));
    }
}

// ---------------------------------------------------------------- entry points

#define NORM_KERNELS(T, TN)                                                                              \
    extern "C" __global__ void __launch_bounds__(1024)                                                  \
        group_norm_smem_##TN(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, \
                             T* __restrict__ y, int S, int cpg, int groups, float eps, int silu, int vec) { \
        group_norm_smem<T>(x, w, b, y, S, cpg, groups, eps, silu, vec);                                  \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        group_norm_stats_##TN(const T* __restrict__ x, float* __restrict__ part, int L, int chunk,       \
                              int chunks, long long group0, int vec) {                                   \
        group_norm_stats<T>(x, part, L, chunk, chunks, group0, vec);                                     \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        group_norm_apply_##TN(const T* __restrict__ x, const float* __restrict__ part,                   \
                              const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y, int L, \
                              int S, int cpg, int groups, int chunk, int chunks, long long group0,       \
                              float eps, int silu, int vec) {                                            \
        group_norm_apply<T>(x, part, w, b, y, L, S, cpg, groups, chunk, chunks, group0, eps, silu, vec); \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        layer_norm_fwd_##TN(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,  \
                            T* __restrict__ y, long long rows, int C, float eps, int vec) {              \
        layer_norm_fwd<T>(x, w, b, y, rows, C, eps, vec);                                                \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        batch_norm_stats_##TN(const T* __restrict__ x, float* __restrict__ mean, float* __restrict__ rstd, \
                              float* __restrict__ run_mean, float* __restrict__ run_var, int N, int C,   \
                              int S, float eps, float momentum, int vec) {                               \
        batch_norm_stats<T>(x, mean, rstd, run_mean, run_var, N, C, S, eps, momentum, vec);             \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        batch_norm_apply_##TN(const T* __restrict__ x, const float* __restrict__ mean,                   \
                              const float* __restrict__ scale_src, const T* __restrict__ w,              \
                              const T* __restrict__ b, T* __restrict__ y, long long total, int C, int S, \
                              float eps, int from_var, int vec) {                                        \
        batch_norm_apply<T>(x, mean, scale_src, w, b, y, total, C, S, eps, from_var, vec);               \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        batch_norm_bwd_reduce_##TN(const T* __restrict__ dy, const T* __restrict__ x,                    \
                                   const float* __restrict__ mean, const float* __restrict__ rstd,       \
                                   float* __restrict__ coef, T* __restrict__ dw, T* __restrict__ db,     \
                                   int N, int C, int S, int vec) {                                       \
        batch_norm_bwd_reduce<T>(dy, x, mean, rstd, coef, dw, db, N, C, S, vec);                         \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                   \
        batch_norm_bwd_dx_##TN(const T* __restrict__ dy, const T* __restrict__ x,                        \
                               const float* __restrict__ mean, const float* __restrict__ rstd,           \
                               const float* __restrict__ coef, const T* __restrict__ w,                  \
                               T* __restrict__ dx, long long total, int C, int S, int vec) {             \
        batch_norm_bwd_dx<T>(dy, x, mean, rstd, coef, w, dx, total, C, S, vec);                          \
    }

NORM_KERNELS(float, f32)
NORM_KERNELS(f16, f16)
NORM_KERNELS(bf16, bf16)
