// layout.cu: data movement. Generic permute, strided row copies (cat, narrow), a tiled batched
// transpose (permutes that swap two blocks of dims, and the U-Net's NCHW <-> token layout),
// nearest upsampling (2x, and to any size as torch's interpolate(size=..)), and row gathers
// (embedding lookup, gather_rows).
//
// Layout: contiguous row-major in and out. Precision: none needed, elements are copied bit for
// bit (floats are never converted), so every kernel but upsampling exists for f32, f16, bf16,
// i64 and i32. Index operands are range-checked on the host before launch.

#include "common.cuh"

#define LAYOUT_ALL(M) M(float, f32) M(f16, f16) M(bf16, bf16) M(long long, i64) M(int, i32)

// y[i] = x[offset of y's multi-index i under x's strides in permuted order]. One thread per
// output element, 256 per block. `shape` holds y's dims, `strides` x's strides per y dim.
#define PERMUTE(T, TN)                                                                        \
    extern "C" __global__ void permute_##TN(const T* __restrict__ x, T* __restrict__ y, long long n, \
                                            Dims shape, Dims strides) {                       \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i < n) y[i] = x[dims_offset(i, shape, strides)];                                  \
    }
LAYOUT_ALL(PERMUTE)

// dst[r * dst_stride + c] = src[r * src_stride + c] for r < rows, c < cols. One thread per
// element, 256 per block (consecutive threads copy consecutive c: coalesced on both sides).
#define COPY_ROWS(T, TN)                                                                      \
    extern "C" __global__ void copy_rows_##TN(const T* __restrict__ src, T* __restrict__ dst, \
                                              long long rows, long long cols,                 \
                                              long long src_stride, long long dst_stride) {   \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= rows * cols) return;                                                         \
        long long r = i / cols, c = i - r * cols;                                             \
        dst[r * dst_stride + c] = src[r * src_stride + c];                                    \
    }
LAYOUT_ALL(COPY_ROWS)

// x [batch, rows, cols] -> y [batch, cols, rows]. A 32x32 tile per block through shared memory
// (padded to 33 columns so the column reads hit distinct banks); block 32x8 threads, each
// moving 4 elements; grid (ceil(cols/32), ceil(rows/32), batch). Reads and writes coalesce.
#define TRANSPOSE(T, TN)                                                                      \
    extern "C" __global__ void transpose_##TN(const T* __restrict__ x, T* __restrict__ y,     \
                                              int rows, int cols) {                           \
        __shared__ T tile[32][33];                                                            \
        const long long plane = (long long)rows * cols;                                       \
        const T* xb = x + blockIdx.z * plane;                                                 \
        T* yb = y + blockIdx.z * plane;                                                       \
        const int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;                                 \
        for (int j = threadIdx.y; j < 32; j += 8) {                                           \
            int r = r0 + j, c = c0 + threadIdx.x;                                             \
            if (r < rows && c < cols) tile[j][threadIdx.x] = xb[(long long)r * cols + c];    \
        }                                                                                     \
        __syncthreads();                                                                      \
        for (int j = threadIdx.y; j < 32; j += 8) {                                           \
            int c = c0 + j, r = r0 + threadIdx.x;                                             \
            if (c < cols && r < rows) yb[(long long)c * rows + r] = tile[threadIdx.x][j];    \
        }                                                                                     \
    }
LAYOUT_ALL(TRANSPOSE)

// x [N*C, H, W] -> y [N*C, 2H, 2W], y[.., oy, ox] = x[.., oy/2, ox/2]. One thread per output
// element, 256 per block.
#define UPSAMPLE(T, TN)                                                                       \
    extern "C" __global__ void upsample_nearest2x_##TN(const T* __restrict__ x, T* __restrict__ y, \
                                                       long long n_out, int h, int w) {       \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n_out) return;                                                               \
        const int ow = 2 * w, oh = 2 * h;                                                     \
        long long t = i / ow;                                                                 \
        const int ox = (int)(i - t * ow);                                                     \
        const long long nc = t / oh;                                                          \
        const int oy = (int)(t - nc * oh);                                                    \
        y[i] = x[(nc * h + (oy >> 1)) * w + (ox >> 1)];                                       \
    }
UPSAMPLE(float, f32)
UPSAMPLE(f16, f16)
UPSAMPLE(bf16, bf16)

// x [N*C, H, W] -> y [N*C, OH, OW], y[.., oy, ox] = x[.., sy, sx] with torch's nearest source
// index sy = min(floor(oy * sh), H - 1), sh = H / OH in f32 (from the host), same for x. One
// thread per output element, 256 per block.
#define UPSAMPLE_ANY(T, TN)                                                                   \
    extern "C" __global__ void upsample_nearest_##TN(const T* __restrict__ x, T* __restrict__ y, \
                                                     long long n_out, int h, int w, int oh, int ow, \
                                                     float sh, float sw) {                    \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n_out) return;                                                               \
        long long t = i / ow;                                                                 \
        const int ox = (int)(i - t * ow);                                                     \
        const long long nc = t / oh;                                                          \
        const int oy = (int)(t - nc * oh);                                                    \
        const int sy = min((int)floorf((float)oy * sh), h - 1);                               \
        const int sx = min((int)floorf((float)ox * sw), w - 1);                               \
        y[i] = x[(nc * h + sy) * w + sx];                                                     \
    }
UPSAMPLE_ANY(float, f32)
UPSAMPLE_ANY(f16, f16)
UPSAMPLE_ANY(bf16, bf16)

// y [n, row_len] = rows idx[0..n) of x [R, row_len] (idx i64, each in 0..R). One thread per
// output element, 256 per block.
#define GATHER_ROWS(T, TN)                                                                    \
    extern "C" __global__ void gather_rows_##TN(const T* __restrict__ x, const long long* __restrict__ idx, \
                                                T* __restrict__ y, long long n_out, long long row_len) { \
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (i >= n_out) return;                                                               \
        long long t = i / row_len, j = i - t * row_len;                                       \
        y[i] = x[idx[t] * row_len + j];                                                       \
    }
LAYOUT_ALL(GATHER_ROWS)
