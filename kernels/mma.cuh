// mma.cuh: the tensor-core and async-copy primitives that conv.cu, attention.cu and sae.cu use
// (passed to NVRTC as an in-memory header, like common.cuh). Inline PTX, sm_80 and newer.
//
// mma.sync m16n8k16 fragments (g = lane / 4, t = lane % 4): a0 (row g, cols 2t..2t+1),
// a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t..2t+1, col g), b1 (k 2t+8.., col g);
// c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1).

#pragma once
#include "common.cuh"

// The shared-memory address of a generic pointer into shared memory.
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared, bypassing L1; zero-fills the destination when !pred (then `src` is
// not read but must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool pred) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(pred ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// Four 8x8 b16 matrices from shared memory; lane l gives the address of row (l & 7) of matrix
// (l >> 3). Without .trans, register i of lane l holds row l/4, columns 2(l%4), 2(l%4)+1 of
// matrix i; with .trans, rows 2(l%4), 2(l%4)+1 of column l/4.
__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

// c += a (16x16, row-major) * b (16x8, column-major), 16-bit inputs of type T, f32 accumulators.
template <typename T> __device__ __forceinline__ void mma_16816(float* c, const unsigned* a, unsigned b0, unsigned b1);
template <> __device__ __forceinline__ void mma_16816<f16>(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma_16816<bf16>(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

typedef unsigned short u16;

// The block tile of the tensor-core GEMMs (conv.cu's implicit GEMM, sae.cu's encoder): 128 x 128
// outputs, 32 deep per stage, 256 threads as 8 warps in 2 x 4 of 64 x 32. Shared-memory rows are
// padded by 16 bytes against ldmatrix bank conflicts.
#define TILE_BM 128
#define TILE_BN 128
#define TILE_BK 32
#define TILE_THREADS 256
#define TILE_LDA (TILE_BK + 8)   // A tile row (k contiguous): 80 bytes
#define TILE_LDB (TILE_BN + 8)   // B tile row stored [k][n] (n contiguous): 272 bytes
#define TILE_LDBT (TILE_BK + 8)  // B tile row stored [n][k] (k contiguous): 80 bytes

// The MMAs of one 32-deep stage for warp (wm, wn): rows wm*64 .. +64, columns wn*32 .. +32.
// B_TRANS: B stored [k][n] (read with ldmatrix.trans), else [n][k].
template <typename T, bool B_TRANS>
__device__ __forceinline__ void tile_stage(const u16* sa, const u16* sb, float (&acc)[4][4][4], int wm, int wn, int lane) {
#pragma unroll
    for (int kk = 0; kk < TILE_BK; kk += 16) {
        unsigned af[4][4], bfr[4][2];
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
            const int row = wm * 64 + mt * 16 + (lane & 15);
            ldmatrix_x4(af[mt], sa + row * TILE_LDA + kk + (lane >> 4) * 8);
        }
#pragma unroll
        for (int np = 0; np < 2; ++np) {
            unsigned r[4];
            if (B_TRANS) {
                // matrices: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
                ldmatrix_x4_trans(r, sb + (kk + (lane & 15)) * TILE_LDB + wn * 32 + np * 16 + (lane >> 4) * 8);
            } else {
                // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
                const int n = wn * 32 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
                ldmatrix_x4(r, sb + n * TILE_LDBT + kk + ((lane >> 3) & 1) * 8);
            }
            bfr[2 * np][0] = r[0];
            bfr[2 * np][1] = r[1];
            bfr[2 * np + 1][0] = r[2];
            bfr[2 * np + 1][1] = r[3];
        }
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) mma_16816<T>(acc[mt][nt], af[mt], bfr[nt][0], bfr[nt][1]);
    }
}

// A tile rows m0.. of a row-major [M, K] matrix, columns k0..: cp.async in 16-byte pieces when
// `vec` (K % 8 == 0, 16-byte aligned base), else element by element. Zero outside.
__device__ __forceinline__ void tile_load_a(u16* sa, const u16* A, int M, int K, int m0, int k0, int vec, int tid) {
    if (vec) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int c = tid + i * TILE_THREADS;
            const int m = c >> 2, kc = (c & 3) * 8;
            const bool ok = (m0 + m < M) & (k0 + kc < K);
            const u16* src = ok ? A + (long long)(m0 + m) * K + k0 + kc : A;
            cp_async16(sa + m * TILE_LDA + kc, src, ok);
        }
    } else {
#pragma unroll 4
        for (int i = 0; i < (TILE_BM * TILE_BK) / TILE_THREADS; ++i) {
            const int c = tid + i * TILE_THREADS;
            const int m = c >> 5, kk = c & 31;
            const bool ok = (m0 + m < M) & (k0 + kk < K);
            sa[m * TILE_LDA + kk] = ok ? A[(long long)(m0 + m) * K + k0 + kk] : (u16)0;
        }
    }
}
