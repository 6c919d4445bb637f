// fragments.cu: the simulator's mma.sync and ldmatrix against the PTX ISA's fragment layouts.
//
// The tables below are the PTX ISA's (section "Warp-level matrix fragments": "Matrix fragments
// for mma.m16n8k16 with floating point type", figures for A, B and C/D; and "ldmatrix", the
// fragment of an 8x8 b16 matrix without and with .trans), written out element by element:
// which lane holds which (row, col). They are not derived from kernels/mma.cuh nor from the
// simulator's code, so a misreading shared by the kernels and the simulator shows up here.
// The probe kernels use raw inline PTX (nothing from kernels/); main() feeds them matrices of
// distinct values laid out by the tables and checks every output element where the tables
// say it must be. Built and run by `python3 sim/build.py --test`.

// One warp. Lane l passes A fragment a[4l..4l+3], B fragment b[2l..2l+1] and C fragment
// c[4l..4l+3]; d[4l..4l+3] receives the D fragment.
#define MMA_PROBE(NAME, TY)                                                                                    \
    extern "C" __global__ void NAME(const unsigned* a, const unsigned* b, const float* c, float* d) {          \
        const int l = threadIdx.x;                                                                             \
        float r0 = c[4 * l], r1 = c[4 * l + 1], r2 = c[4 * l + 2], r3 = c[4 * l + 3];                          \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};" \
                     : "+f"(r0), "+f"(r1), "+f"(r2), "+f"(r3)                                                  \
                     : "r"(a[4 * l]), "r"(a[4 * l + 1]), "r"(a[4 * l + 2]), "r"(a[4 * l + 3]), "r"(b[2 * l]),  \
                       "r"(b[2 * l + 1]));                                                                     \
        d[4 * l] = r0;                                                                                         \
        d[4 * l + 1] = r1;                                                                                     \
        d[4 * l + 2] = r2;                                                                                     \
        d[4 * l + 3] = r3;                                                                                     \
    }
MMA_PROBE(mma_probe_f16, "f16")
MMA_PROBE(mma_probe_bf16, "bf16")

// One warp. m holds four 8x8 b16 matrices, row-major, one after the other; they are copied to
// shared memory as they are, lane l gives the address of row l % 8 of matrix l / 8, and the
// four registers of lane l go to out[4l..4l+3].
extern "C" __global__ void ldmatrix_probe(const unsigned short* m, unsigned* out, int trans) {
    __shared__ __align__(16) unsigned short tile[256];
    for (int i = threadIdx.x; i < 256; i += 32) tile[i] = m[i];
    __syncthreads();
    const unsigned short* row = tile + (threadIdx.x >> 3) * 64 + (threadIdx.x & 7) * 8;
    unsigned addr, r0, r1, r2, r3;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(addr) : "l"(row));
    if (trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                     : "r"(addr));
    } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                     : "r"(addr));
    }
    out[4 * threadIdx.x] = r0;
    out[4 * threadIdx.x + 1] = r1;
    out[4 * threadIdx.x + 2] = r2;
    out[4 * threadIdx.x + 3] = r3;
}

// ---------------------------------------------------------------- host side

#include "half.h"

#include <cstdlib>
#include <vector>

extern "C" {
int cuInit(unsigned);
int cuModuleLoadData(void** m, const void* image);
int cuModuleGetFunction(void** f, void* m, const char* name);
int cuMemAlloc_v2(unsigned long long* p, std::size_t n);
int cuMemcpyHtoD_v2(unsigned long long d, const void* s, std::size_t n);
int cuMemcpyDtoH_v2(void* d, unsigned long long s, std::size_t n);
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned smem,
                   void* stream, void** params, void** extra);
}

namespace {

struct RC {
    int row, col;
};

// mma.m16n8k16, A (16x16, row-major operand): lane -> (row, col) of elements a0..a7.
const RC kA[32][8] = {
    {{0, 0}, {0, 1}, {8, 0}, {8, 1}, {0, 8}, {0, 9}, {8, 8}, {8, 9}},  // lane 0
    {{0, 2}, {0, 3}, {8, 2}, {8, 3}, {0, 10}, {0, 11}, {8, 10}, {8, 11}},  // lane 1
    {{0, 4}, {0, 5}, {8, 4}, {8, 5}, {0, 12}, {0, 13}, {8, 12}, {8, 13}},  // lane 2
    {{0, 6}, {0, 7}, {8, 6}, {8, 7}, {0, 14}, {0, 15}, {8, 14}, {8, 15}},  // lane 3
    {{1, 0}, {1, 1}, {9, 0}, {9, 1}, {1, 8}, {1, 9}, {9, 8}, {9, 9}},  // lane 4
    {{1, 2}, {1, 3}, {9, 2}, {9, 3}, {1, 10}, {1, 11}, {9, 10}, {9, 11}},  // lane 5
    {{1, 4}, {1, 5}, {9, 4}, {9, 5}, {1, 12}, {1, 13}, {9, 12}, {9, 13}},  // lane 6
    {{1, 6}, {1, 7}, {9, 6}, {9, 7}, {1, 14}, {1, 15}, {9, 14}, {9, 15}},  // lane 7
    {{2, 0}, {2, 1}, {10, 0}, {10, 1}, {2, 8}, {2, 9}, {10, 8}, {10, 9}},  // lane 8
    {{2, 2}, {2, 3}, {10, 2}, {10, 3}, {2, 10}, {2, 11}, {10, 10}, {10, 11}},  // lane 9
    {{2, 4}, {2, 5}, {10, 4}, {10, 5}, {2, 12}, {2, 13}, {10, 12}, {10, 13}},  // lane 10
    {{2, 6}, {2, 7}, {10, 6}, {10, 7}, {2, 14}, {2, 15}, {10, 14}, {10, 15}},  // lane 11
    {{3, 0}, {3, 1}, {11, 0}, {11, 1}, {3, 8}, {3, 9}, {11, 8}, {11, 9}},  // lane 12
    {{3, 2}, {3, 3}, {11, 2}, {11, 3}, {3, 10}, {3, 11}, {11, 10}, {11, 11}},  // lane 13
    {{3, 4}, {3, 5}, {11, 4}, {11, 5}, {3, 12}, {3, 13}, {11, 12}, {11, 13}},  // lane 14
    {{3, 6}, {3, 7}, {11, 6}, {11, 7}, {3, 14}, {3, 15}, {11, 14}, {11, 15}},  // lane 15
    {{4, 0}, {4, 1}, {12, 0}, {12, 1}, {4, 8}, {4, 9}, {12, 8}, {12, 9}},  // lane 16
    {{4, 2}, {4, 3}, {12, 2}, {12, 3}, {4, 10}, {4, 11}, {12, 10}, {12, 11}},  // lane 17
    {{4, 4}, {4, 5}, {12, 4}, {12, 5}, {4, 12}, {4, 13}, {12, 12}, {12, 13}},  // lane 18
    {{4, 6}, {4, 7}, {12, 6}, {12, 7}, {4, 14}, {4, 15}, {12, 14}, {12, 15}},  // lane 19
    {{5, 0}, {5, 1}, {13, 0}, {13, 1}, {5, 8}, {5, 9}, {13, 8}, {13, 9}},  // lane 20
    {{5, 2}, {5, 3}, {13, 2}, {13, 3}, {5, 10}, {5, 11}, {13, 10}, {13, 11}},  // lane 21
    {{5, 4}, {5, 5}, {13, 4}, {13, 5}, {5, 12}, {5, 13}, {13, 12}, {13, 13}},  // lane 22
    {{5, 6}, {5, 7}, {13, 6}, {13, 7}, {5, 14}, {5, 15}, {13, 14}, {13, 15}},  // lane 23
    {{6, 0}, {6, 1}, {14, 0}, {14, 1}, {6, 8}, {6, 9}, {14, 8}, {14, 9}},  // lane 24
    {{6, 2}, {6, 3}, {14, 2}, {14, 3}, {6, 10}, {6, 11}, {14, 10}, {14, 11}},  // lane 25
    {{6, 4}, {6, 5}, {14, 4}, {14, 5}, {6, 12}, {6, 13}, {14, 12}, {14, 13}},  // lane 26
    {{6, 6}, {6, 7}, {14, 6}, {14, 7}, {6, 14}, {6, 15}, {14, 14}, {14, 15}},  // lane 27
    {{7, 0}, {7, 1}, {15, 0}, {15, 1}, {7, 8}, {7, 9}, {15, 8}, {15, 9}},  // lane 28
    {{7, 2}, {7, 3}, {15, 2}, {15, 3}, {7, 10}, {7, 11}, {15, 10}, {15, 11}},  // lane 29
    {{7, 4}, {7, 5}, {15, 4}, {15, 5}, {7, 12}, {7, 13}, {15, 12}, {15, 13}},  // lane 30
    {{7, 6}, {7, 7}, {15, 6}, {15, 7}, {7, 14}, {7, 15}, {15, 14}, {15, 15}},  // lane 31
};

// mma.m16n8k16, B (16x8, column operand): lane -> (row k, col n) of elements b0..b3.
const RC kB[32][4] = {
    {{0, 0}, {1, 0}, {8, 0}, {9, 0}},  // lane 0
    {{2, 0}, {3, 0}, {10, 0}, {11, 0}},  // lane 1
    {{4, 0}, {5, 0}, {12, 0}, {13, 0}},  // lane 2
    {{6, 0}, {7, 0}, {14, 0}, {15, 0}},  // lane 3
    {{0, 1}, {1, 1}, {8, 1}, {9, 1}},  // lane 4
    {{2, 1}, {3, 1}, {10, 1}, {11, 1}},  // lane 5
    {{4, 1}, {5, 1}, {12, 1}, {13, 1}},  // lane 6
    {{6, 1}, {7, 1}, {14, 1}, {15, 1}},  // lane 7
    {{0, 2}, {1, 2}, {8, 2}, {9, 2}},  // lane 8
    {{2, 2}, {3, 2}, {10, 2}, {11, 2}},  // lane 9
    {{4, 2}, {5, 2}, {12, 2}, {13, 2}},  // lane 10
    {{6, 2}, {7, 2}, {14, 2}, {15, 2}},  // lane 11
    {{0, 3}, {1, 3}, {8, 3}, {9, 3}},  // lane 12
    {{2, 3}, {3, 3}, {10, 3}, {11, 3}},  // lane 13
    {{4, 3}, {5, 3}, {12, 3}, {13, 3}},  // lane 14
    {{6, 3}, {7, 3}, {14, 3}, {15, 3}},  // lane 15
    {{0, 4}, {1, 4}, {8, 4}, {9, 4}},  // lane 16
    {{2, 4}, {3, 4}, {10, 4}, {11, 4}},  // lane 17
    {{4, 4}, {5, 4}, {12, 4}, {13, 4}},  // lane 18
    {{6, 4}, {7, 4}, {14, 4}, {15, 4}},  // lane 19
    {{0, 5}, {1, 5}, {8, 5}, {9, 5}},  // lane 20
    {{2, 5}, {3, 5}, {10, 5}, {11, 5}},  // lane 21
    {{4, 5}, {5, 5}, {12, 5}, {13, 5}},  // lane 22
    {{6, 5}, {7, 5}, {14, 5}, {15, 5}},  // lane 23
    {{0, 6}, {1, 6}, {8, 6}, {9, 6}},  // lane 24
    {{2, 6}, {3, 6}, {10, 6}, {11, 6}},  // lane 25
    {{4, 6}, {5, 6}, {12, 6}, {13, 6}},  // lane 26
    {{6, 6}, {7, 6}, {14, 6}, {15, 6}},  // lane 27
    {{0, 7}, {1, 7}, {8, 7}, {9, 7}},  // lane 28
    {{2, 7}, {3, 7}, {10, 7}, {11, 7}},  // lane 29
    {{4, 7}, {5, 7}, {12, 7}, {13, 7}},  // lane 30
    {{6, 7}, {7, 7}, {14, 7}, {15, 7}},  // lane 31
};

// mma.m16n8k16, C and D (16x8, f32): lane -> (row, col) of elements c0..c3 / d0..d3.
const RC kC[32][4] = {
    {{0, 0}, {0, 1}, {8, 0}, {8, 1}},  // lane 0
    {{0, 2}, {0, 3}, {8, 2}, {8, 3}},  // lane 1
    {{0, 4}, {0, 5}, {8, 4}, {8, 5}},  // lane 2
    {{0, 6}, {0, 7}, {8, 6}, {8, 7}},  // lane 3
    {{1, 0}, {1, 1}, {9, 0}, {9, 1}},  // lane 4
    {{1, 2}, {1, 3}, {9, 2}, {9, 3}},  // lane 5
    {{1, 4}, {1, 5}, {9, 4}, {9, 5}},  // lane 6
    {{1, 6}, {1, 7}, {9, 6}, {9, 7}},  // lane 7
    {{2, 0}, {2, 1}, {10, 0}, {10, 1}},  // lane 8
    {{2, 2}, {2, 3}, {10, 2}, {10, 3}},  // lane 9
    {{2, 4}, {2, 5}, {10, 4}, {10, 5}},  // lane 10
    {{2, 6}, {2, 7}, {10, 6}, {10, 7}},  // lane 11
    {{3, 0}, {3, 1}, {11, 0}, {11, 1}},  // lane 12
    {{3, 2}, {3, 3}, {11, 2}, {11, 3}},  // lane 13
    {{3, 4}, {3, 5}, {11, 4}, {11, 5}},  // lane 14
    {{3, 6}, {3, 7}, {11, 6}, {11, 7}},  // lane 15
    {{4, 0}, {4, 1}, {12, 0}, {12, 1}},  // lane 16
    {{4, 2}, {4, 3}, {12, 2}, {12, 3}},  // lane 17
    {{4, 4}, {4, 5}, {12, 4}, {12, 5}},  // lane 18
    {{4, 6}, {4, 7}, {12, 6}, {12, 7}},  // lane 19
    {{5, 0}, {5, 1}, {13, 0}, {13, 1}},  // lane 20
    {{5, 2}, {5, 3}, {13, 2}, {13, 3}},  // lane 21
    {{5, 4}, {5, 5}, {13, 4}, {13, 5}},  // lane 22
    {{5, 6}, {5, 7}, {13, 6}, {13, 7}},  // lane 23
    {{6, 0}, {6, 1}, {14, 0}, {14, 1}},  // lane 24
    {{6, 2}, {6, 3}, {14, 2}, {14, 3}},  // lane 25
    {{6, 4}, {6, 5}, {14, 4}, {14, 5}},  // lane 26
    {{6, 6}, {6, 7}, {14, 6}, {14, 7}},  // lane 27
    {{7, 0}, {7, 1}, {15, 0}, {15, 1}},  // lane 28
    {{7, 2}, {7, 3}, {15, 2}, {15, 3}},  // lane 29
    {{7, 4}, {7, 5}, {15, 4}, {15, 5}},  // lane 30
    {{7, 6}, {7, 7}, {15, 6}, {15, 7}},  // lane 31
};

// ldmatrix .m8n8 .b16 without .trans: lane -> (row, col) of the two elements of each register.
const RC kLd[32][2] = {
    {{0, 0}, {0, 1}},  // lane 0
    {{0, 2}, {0, 3}},  // lane 1
    {{0, 4}, {0, 5}},  // lane 2
    {{0, 6}, {0, 7}},  // lane 3
    {{1, 0}, {1, 1}},  // lane 4
    {{1, 2}, {1, 3}},  // lane 5
    {{1, 4}, {1, 5}},  // lane 6
    {{1, 6}, {1, 7}},  // lane 7
    {{2, 0}, {2, 1}},  // lane 8
    {{2, 2}, {2, 3}},  // lane 9
    {{2, 4}, {2, 5}},  // lane 10
    {{2, 6}, {2, 7}},  // lane 11
    {{3, 0}, {3, 1}},  // lane 12
    {{3, 2}, {3, 3}},  // lane 13
    {{3, 4}, {3, 5}},  // lane 14
    {{3, 6}, {3, 7}},  // lane 15
    {{4, 0}, {4, 1}},  // lane 16
    {{4, 2}, {4, 3}},  // lane 17
    {{4, 4}, {4, 5}},  // lane 18
    {{4, 6}, {4, 7}},  // lane 19
    {{5, 0}, {5, 1}},  // lane 20
    {{5, 2}, {5, 3}},  // lane 21
    {{5, 4}, {5, 5}},  // lane 22
    {{5, 6}, {5, 7}},  // lane 23
    {{6, 0}, {6, 1}},  // lane 24
    {{6, 2}, {6, 3}},  // lane 25
    {{6, 4}, {6, 5}},  // lane 26
    {{6, 6}, {6, 7}},  // lane 27
    {{7, 0}, {7, 1}},  // lane 28
    {{7, 2}, {7, 3}},  // lane 29
    {{7, 4}, {7, 5}},  // lane 30
    {{7, 6}, {7, 7}},  // lane 31
};

// ldmatrix .m8n8 .b16 with .trans: lane -> (row, col) in memory of the two elements.
const RC kLdTrans[32][2] = {
    {{0, 0}, {1, 0}},  // lane 0
    {{2, 0}, {3, 0}},  // lane 1
    {{4, 0}, {5, 0}},  // lane 2
    {{6, 0}, {7, 0}},  // lane 3
    {{0, 1}, {1, 1}},  // lane 4
    {{2, 1}, {3, 1}},  // lane 5
    {{4, 1}, {5, 1}},  // lane 6
    {{6, 1}, {7, 1}},  // lane 7
    {{0, 2}, {1, 2}},  // lane 8
    {{2, 2}, {3, 2}},  // lane 9
    {{4, 2}, {5, 2}},  // lane 10
    {{6, 2}, {7, 2}},  // lane 11
    {{0, 3}, {1, 3}},  // lane 12
    {{2, 3}, {3, 3}},  // lane 13
    {{4, 3}, {5, 3}},  // lane 14
    {{6, 3}, {7, 3}},  // lane 15
    {{0, 4}, {1, 4}},  // lane 16
    {{2, 4}, {3, 4}},  // lane 17
    {{4, 4}, {5, 4}},  // lane 18
    {{6, 4}, {7, 4}},  // lane 19
    {{0, 5}, {1, 5}},  // lane 20
    {{2, 5}, {3, 5}},  // lane 21
    {{4, 5}, {5, 5}},  // lane 22
    {{6, 5}, {7, 5}},  // lane 23
    {{0, 6}, {1, 6}},  // lane 24
    {{2, 6}, {3, 6}},  // lane 25
    {{4, 6}, {5, 6}},  // lane 26
    {{6, 6}, {7, 6}},  // lane 27
    {{0, 7}, {1, 7}},  // lane 28
    {{2, 7}, {3, 7}},  // lane 29
    {{4, 7}, {5, 7}},  // lane 30
    {{6, 7}, {7, 7}},  // lane 31
};

int failures = 0;

void check(bool ok, const char* what, int lane, int elem, double got, double want) {
    if (ok) return;
    if (++failures <= 20) std::fprintf(stderr, "FAIL %s: lane %d element %d holds %g, the table says %g\n", what, lane, elem, got, want);
}

void* module_handle = nullptr;

void* function(const char* name) {
    void* f = nullptr;
    if (cuModuleGetFunction(&f, module_handle, name) != 0) {
        std::fprintf(stderr, "no function %s\n", name);
        std::exit(1);
    }
    return f;
}

unsigned long long upload(const void* p, std::size_t n) {
    unsigned long long d = 0;
    cuMemAlloc_v2(&d, n);
    cuMemcpyHtoD_v2(d, p, n);
    return d;
}

void launch_warp(void* f, std::vector<void*> params) {
    if (cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, nullptr, params.data(), nullptr) != 0) {
        std::fprintf(stderr, "launch failed\n");
        std::exit(1);
    }
}

// D = A B + C through the probe, with A, B, C placed in fragments by the tables.
std::vector<float> mma(bool bf16, const float (&A)[16][16], const float (&B)[16][8], const float (&C)[16][8]) {
    auto enc = [bf16](float v) -> unsigned { return bf16 ? rsim::float_to_bf16(v) : rsim::float_to_half(v); };
    std::vector<unsigned> a(128), b(64);
    std::vector<float> c(128), d(128);
    for (int l = 0; l < 32; ++l) {
        for (int r = 0; r < 4; ++r)
            a[4 * l + r] = enc(A[kA[l][2 * r].row][kA[l][2 * r].col]) | (enc(A[kA[l][2 * r + 1].row][kA[l][2 * r + 1].col]) << 16);
        for (int r = 0; r < 2; ++r)
            b[2 * l + r] = enc(B[kB[l][2 * r].row][kB[l][2 * r].col]) | (enc(B[kB[l][2 * r + 1].row][kB[l][2 * r + 1].col]) << 16);
        for (int i = 0; i < 4; ++i) c[4 * l + i] = C[kC[l][i].row][kC[l][i].col];
    }
    unsigned long long da = upload(a.data(), 512), db = upload(b.data(), 256), dc = upload(c.data(), 512), dd = upload(d.data(), 512);
    launch_warp(function(bf16 ? "mma_probe_bf16" : "mma_probe_f16"), {&da, &db, &dc, &dd});
    cuMemcpyDtoH_v2(d.data(), dd, 512);
    return d;
}

void check_d(const char* what, const std::vector<float>& d, const float (&want)[16][8]) {
    for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i) {
            const double w = want[kC[l][i].row][kC[l][i].col];
            check(d[4 * l + i] == w, what, l, i, d[4 * l + i], w);
        }
}

void test_mma(bool bf16) {
    const char* ty = bf16 ? "bf16" : "f16";
    float A[16][16], B[16][8], C[16][8], want[16][8];
    char what[96];
    // A: distinct integers (exact in both types); B selects columns 0-7, then 8-15, of A.
    for (int h = 0; h < 2; ++h) {
        for (int r = 0; r < 16; ++r)
            for (int k = 0; k < 16; ++k) A[r][k] = (float)(r * 16 + k + 1);
        for (int k = 0; k < 16; ++k)
            for (int n = 0; n < 8; ++n) B[k][n] = k == n + 8 * h ? 1.0f : 0.0f;
        for (int r = 0; r < 16; ++r)
            for (int n = 0; n < 8; ++n) C[r][n] = 0.0f, want[r][n] = A[r][n + 8 * h];
        std::snprintf(what, sizeof what, "mma %s A fragment (columns %d-%d)", ty, 8 * h, 8 * h + 7);
        check_d(what, mma(bf16, A, B, C), want);
    }
    // B: distinct integers; A is the identity, so D = B.
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 16; ++k) A[r][k] = r == k ? 1.0f : 0.0f;
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 8; ++n) B[k][n] = (float)(k * 8 + n + 1), C[k][n] = 0.0f, want[k][n] = B[k][n];
    std::snprintf(what, sizeof what, "mma %s B fragment", ty);
    check_d(what, mma(bf16, A, B, C), want);
    // C: distinct values pass through to D when A = 0.
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 16; ++k) A[r][k] = 0.0f;
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 8; ++n) C[r][n] = (float)(r * 8 + n) + 0.5f, want[r][n] = C[r][n];
    std::snprintf(what, sizeof what, "mma %s C/D fragment", ty);
    check_d(what, mma(bf16, A, B, C), want);
    // A whole product of small integers (exact in f32): D = A B + C.
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 16; ++k) A[r][k] = (float)((r * 7 + k * 3) % 11 - 5);
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 8; ++n) B[k][n] = (float)((k * 5 + n * 2) % 9 - 4);
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 8; ++n) {
            C[r][n] = (float)(r - n);
            double s = C[r][n];
            for (int k = 0; k < 16; ++k) s += (double)A[r][k] * B[k][n];
            want[r][n] = (float)s;
        }
    std::snprintf(what, sizeof what, "mma %s product", ty);
    check_d(what, mma(bf16, A, B, C), want);
}

void test_ldmatrix(bool trans) {
    std::vector<unsigned short> m(256);
    for (int i = 0; i < 256; ++i) m[i] = (unsigned short)(i + 1);  // matrix i/64, row (i/8)%8, col i%8
    std::vector<unsigned> out(128);
    unsigned long long dm = upload(m.data(), 512), dout = upload(out.data(), 512);
    int t = trans;
    launch_warp(function("ldmatrix_probe"), {&dm, &dout, &t});
    cuMemcpyDtoH_v2(out.data(), dout, 512);
    const RC(&table)[32][2] = trans ? kLdTrans : kLd;
    for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i)
            for (int e = 0; e < 2; ++e) {
                const unsigned want = m[i * 64 + table[l][e].row * 8 + table[l][e].col];
                const unsigned got = (out[4 * l + i] >> (16 * e)) & 0xffffu;
                check(got == want, trans ? "ldmatrix .x4.trans" : "ldmatrix .x4", l, 2 * i + e, got, want);
            }
}

}  // namespace

int main() {
    cuInit(0);
    const char* ptx = ".entry mma_probe_f16\n.entry mma_probe_bf16\n.entry ldmatrix_probe\n";
    if (cuModuleLoadData(&module_handle, ptx) != 0) return 1;
    test_mma(false);
    test_mma(true);
    test_ldmatrix(false);
    test_ldmatrix(true);
    if (failures) {
        std::fprintf(stderr, "sim/tests/fragments.cu: %d elements disagree with the PTX ISA tables\n", failures);
        return 1;
    }
    std::printf("sim/tests/fragments.cu: mma.m16n8k16 f16/bf16 (A, B, C/D, product) and ldmatrix x4 (plain, .trans) match the PTX ISA tables\n");
    return 0;
}
