// cublas.cpp: the simulated device's stand-in for cuBLAS: the three symbols src/cuda/cublas.rs
// uses (cublasCreate_v2, cublasSetStream_v2, cublasGemmStridedBatchedEx), plus
// cublasDestroy_v2. The GEMM is column-major and strided-batched as cuBLAS defines it:
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],  op(A) m x k, op(B) k x n, C m x n,
// with A, B, C all f32, f16 or bf16 and compute type CUBLAS_COMPUTE_32F (f32 products and
// sums, one rounding to the storage type at the end). When beta is 0, C is not read (it may
// hold NaN), as cuBLAS guarantees. Device pointers are host addresses (see driver.cpp).

#include "half.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int kOpN = 0, kOpT = 1;
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14;
constexpr int kCompute32F = 68;
constexpr int kStatusSuccess = 0, kStatusInvalidValue = 7, kStatusNotSupported = 15;

struct Handle {
    void* stream = nullptr;
};

}  // namespace

namespace {

float load(const void* p, int type, std::size_t i) {
    switch (type) {
        case kR16F: return rsim::half_to_float(((const uint16_t*)p)[i]);
        case kR16BF: return rsim::bf16_to_float(((const uint16_t*)p)[i]);
        default: return ((const float*)p)[i];
    }
}

void store(void* p, int type, std::size_t i, float v) {
    switch (type) {
        case kR16F: ((uint16_t*)p)[i] = rsim::float_to_half(v); break;
        case kR16BF: ((uint16_t*)p)[i] = rsim::float_to_bf16(v); break;
        default: ((float*)p)[i] = v; break;
    }
}

// op(X) of a column-major matrix with leading dimension ld, as a dense column-major f32
// matrix of rows x cols.
std::vector<float> unpack(const void* x, int type, int op, int rows, int cols, int ld) {
    std::vector<float> out((std::size_t)rows * cols);
    for (int j = 0; j < cols; ++j)
        for (int i = 0; i < rows; ++i)
            out[(std::size_t)j * rows + i] = op == kOpN ? load(x, type, (std::size_t)j * ld + i) : load(x, type, (std::size_t)i * ld + j);
    return out;
}

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT int cublasCreate_v2(Handle** h) {
    *h = new Handle;
    return kStatusSuccess;
}
EXPORT int cublasDestroy_v2(Handle* h) {
    delete h;
    return kStatusSuccess;
}
EXPORT int cublasSetStream_v2(Handle* h, void* stream) {
    h->stream = stream;
    return kStatusSuccess;
}

EXPORT int cublasGemmStridedBatchedEx(Handle*, int transa, int transb, int m, int n, int k, const void* alpha, const void* A,
                                      int atype, int lda, long long stride_a, const void* B, int btype, int ldb, long long stride_b,
                                      const void* beta, void* C, int ctype, int ldc, long long stride_c, int batch, int compute,
                                      int /*algo*/) {
    if (m < 0 || n < 0 || k < 0 || batch < 0 || (transa != kOpN && transa != kOpT) || (transb != kOpN && transb != kOpT))
        return kStatusInvalidValue;
    if (compute != kCompute32F || atype != btype || atype != ctype || (atype != kR32F && atype != kR16F && atype != kR16BF)) {
        std::fprintf(stderr, "revelio-sim cuBLAS: types %d/%d/%d with compute %d are not simulated\n", atype, btype, ctype, compute);
        return kStatusNotSupported;
    }
    const int a_rows = transa == kOpN ? m : k, b_rows = transb == kOpN ? k : n;
    if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m)) return kStatusInvalidValue;
    const float al = *(const float*)alpha, be = *(const float*)beta;
    const std::size_t esize = atype == kR32F ? 4 : 2;
    auto one = [&](int b) {
        const char* a = (const char*)A + (std::size_t)(stride_a * b) * esize;
        const char* bb = (const char*)B + (std::size_t)(stride_b * b) * esize;
        char* c = (char*)C + (std::size_t)(stride_c * b) * esize;
        const std::vector<float> opa = unpack(a, atype, transa, m, k, lda);   // m x k
        const std::vector<float> opb = unpack(bb, btype, transb, k, n, ldb);  // k x n
        std::vector<float> acc((std::size_t)m);
        for (int j = 0; j < n; ++j) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int p = 0; p < k; ++p) {
                const float bv = opb[(std::size_t)j * k + p];
                const float* col = &opa[(std::size_t)p * m];
                for (int i = 0; i < m; ++i) acc[i] += col[i] * bv;
            }
            for (int i = 0; i < m; ++i) {
                const std::size_t ci = (std::size_t)j * ldc + i;
                const float v = be == 0.0f ? al * acc[i] : al * acc[i] + be * load(c, ctype, ci);
                store(c, ctype, ci, v);
            }
        }
    };
    const unsigned threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), (unsigned)batch));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int b = (int)t; b < batch; b += (int)threads) one(b);
        });
    for (int b = 0; b < batch; b += (int)threads) one(b);
    for (auto& th : pool) th.join();
    return kStatusSuccess;
}
