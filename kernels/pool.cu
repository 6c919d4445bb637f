// pool.cu: adaptive average pooling, forward and backward, with torch.nn.AdaptiveAvgPool2d's
// bins: output i pools input [floor(i*H/oh), ceil((i+1)*H/oh)) (bins may overlap).
//
// Layout: NCHW contiguous. Precision: f32 accumulation, one rounding on store. The backward
// gathers (one thread per input element summing dy / area over the few bins that contain it),
// so it needs no atomics and is deterministic. Global average pooling is a row mean
// (reduce.cu). Launch shape for both: one thread per output element, 256 per block.

#include "common.cuh"

// x [N*C, h, w] -> y [N*C, oh, ow]: y = the mean of x over the bin.
#define POOL_FWD(T, TN)                                                                       \
    extern "C" __global__ void adaptive_avg_pool2d_fwd_##TN(const T* __restrict__ x, T* __restrict__ y, \
                                                            long long n_out, int h, int w, int oh, int ow) { \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n_out) return;                                                               \
        long long t = i / ow;                                                                 \
        const int ox = (int)(i - t * ow);                                                     \
        const long long nc = t / oh;                                                          \
        const int oy = (int)(t - nc * oh);                                                    \
        const int y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh;                        \
        const int x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow;                        \
        const T* plane = x + nc * h * w;                                                      \
        float acc = 0.0f;                                                                     \
        for (int yy = y0; yy < y1; ++yy)                                                      \
            for (int xx = x0; xx < x1; ++xx) acc += to_f32(plane[yy * w + xx]);               \
        y[i] = from_f32<T>(acc / (float)((y1 - y0) * (x1 - x0)));                             \
    }

// dy [N*C, oh, ow] -> dx [N*C, h, w]: dx = sum over the bins (oy, ox) holding the position of
// dy[oy, ox] / bin area. Those bins are oy in [floor(iy*oh/h), ceil((iy+1)*oh/h)), likewise ox;
// each is still checked against its bin before it counts.
#define POOL_BWD(T, TN)                                                                       \
    extern "C" __global__ void adaptive_avg_pool2d_bwd_##TN(const T* __restrict__ dy, T* __restrict__ dx, \
                                                            long long n_in, int h, int w, int oh, int ow) { \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n_in) return;                                                                \
        long long t = i / w;                                                                  \
        const int ix = (int)(i - t * w);                                                      \
        const long long nc = t / h;                                                           \
        const int iy = (int)(t - nc * h);                                                     \
        const int oy0 = iy * oh / h, oy1 = min(((iy + 1) * oh + h - 1) / h, oh);              \
        const int ox0 = ix * ow / w, ox1 = min(((ix + 1) * ow + w - 1) / w, ow);              \
        const T* g = dy + nc * oh * ow;                                                       \
        float acc = 0.0f;                                                                     \
        for (int oy = oy0; oy < oy1; ++oy) {                                                  \
            const int y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh;                    \
            if (iy < y0 || iy >= y1) continue;                                                \
            for (int ox = ox0; ox < ox1; ++ox) {                                              \
                const int x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow;                \
                if (ix < x0 || ix >= x1) continue;                                            \
                acc += to_f32(g[oy * ow + ox]) / (float)((y1 - y0) * (x1 - x0));              \
            }                                                                                 \
        }                                                                                     \
        dx[i] = from_f32<T>(acc);                                                             \
    }

POOL_FWD(float, f32)
POOL_FWD(f16, f16)
POOL_FWD(bf16, bf16)
POOL_BWD(float, f32)
POOL_BWD(f16, f16)
POOL_BWD(bf16, bf16)
