// rsim.h: what a kernel source needs to compile as host C++ under the simulated device.
//
// Every generated translation unit (target/sim/gen/<module>.cpp, written by sim/build.py from
// kernels/<module>.cu) includes this header first. It supplies the CUDA keywords, built-in
// variables (threadIdx, blockIdx, blockDim, gridDim), vector types, math and bit intrinsics,
// warp collectives, block barriers and atomics. build.py rewrites only what a header cannot
// reach: inline PTX (`asm(...)` becomes a call into the PTX interpreter, ptx.cpp),
// `__shared__` declarations (per-block storage, exec.cpp) and `extern __shared__` arrays (the
// launch's dynamic buffer). The kernels' own code is compiled unchanged.
//
// Each CUDA thread runs as a fiber on the OS thread that runs its block; fibers switch only at
// warp collectives and barriers (exec.cpp), so everything between two sync points runs
// without interruption, as one warp-synchronous step.

#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <source_location>
#include <type_traits>

// ---------------------------------------------------------------- keywords

#define __device__
#define __host__
#define __global__
#ifndef RSIM_GLOBAL
#define RSIM_GLOBAL  // what build.py writes for __global__ in kernels/ (lets it list the kernels)
#endif
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __constant__ static_assert(false, "__constant__ is not simulated")

// ---------------------------------------------------------------- vector types

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };

static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// ---------------------------------------------------------------- the runtime's view

namespace rsim {

// The launch geometry a block sees.
struct Geometry {
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};

// One CUDA thread (a fiber). Only the fields kernels reach through the built-ins live here;
// the scheduler's state is in exec.cpp.
struct Thread {
    uint3 tid;
    const Geometry* geo;
};

// The fiber running on this OS thread (set by the scheduler before each switch).
extern thread_local constinit Thread* current;

// Warp collectives: the calling lane blocks until every lane of `mask` has arrived.
enum class Shfl : int { Idx, Up, Down, Xor };
uint64_t shuffle(Shfl kind, unsigned mask, uint64_t bits, int arg, int width);
unsigned ballot(unsigned mask, int pred);
unsigned match_any(unsigned mask, uint64_t value);
void syncwarp(unsigned mask);
unsigned active_mask();

// Block barrier: `kind` 0 plain, 1 or, 2 and, 3 count, at source `file`:`line`.
int barrier(int kind, int pred, const char* file, int line);

// Shared memory: a static `__shared__` variable of declaration `site` (same address for every
// thread of the block), and the launch's dynamic buffer.
void* shared_static(int site, std::size_t bytes, std::size_t align);
void* shared_dynamic();

// Inline PTX: one operand of an asm statement, in the order GCC numbers them.
struct AsmOperand {
    enum Kind : uint8_t { Out, InOut, In } kind;
    uint8_t bytes;
    bool is_float;
    void* ptr;      // Out, InOut
    uint64_t bits;  // In
};
template <typename T> inline AsmOperand asm_out(T* p) {
    return {AsmOperand::Out, (uint8_t)sizeof(T), std::is_floating_point<T>::value, (void*)p, 0};
}
template <typename T> inline AsmOperand asm_inout(T* p) {
    return {AsmOperand::InOut, (uint8_t)sizeof(T), std::is_floating_point<T>::value, (void*)p, 0};
}
template <typename T> inline AsmOperand asm_in(T v) {
    AsmOperand o{AsmOperand::In, (uint8_t)sizeof(T), std::is_floating_point<T>::value, nullptr, 0};
    if constexpr (std::is_pointer<T>::value) {
        o.bits = (uint64_t)(uintptr_t)v;
    } else {
        std::memcpy(&o.bits, &v, sizeof(T));
    }
    return o;
}

// One asm statement of a kernel source: its PTX template is parsed once (at library load, by
// the PtxCheck build.py emits for it, so an unsupported instruction fails before any launch).
class PtxSite {
  public:
    PtxSite(const char* tmpl, const char* where);
    void run(std::initializer_list<AsmOperand> ops) const;

  private:
    int op_;
    int flags_;
    int nref_;
    int refs_[16];
    const char* where_;
};

// Kernel registration (emitted by build.py at the end of each generated module).
using Thunk = void (*)(void** params);
struct KernelReg {
    KernelReg(const char* module, const char* name, Thunk thunk, int nparams, const unsigned* param_bytes);
};

template <typename F> struct Signature;
template <typename... A> struct Signature<void (*)(A...)> {
    static constexpr int count = sizeof...(A);
    static constexpr unsigned bytes[sizeof...(A) + 1] = {(unsigned)sizeof(A)..., 0u};
    template <void (*K)(A...), std::size_t... I> static void call(void** p, std::index_sequence<I...>) {
        K(*static_cast<typename std::remove_reference<A>::type*>(p[I])...);
    }
    template <void (*K)(A...)> static void thunk(void** p) { call<K>(p, std::index_sequence_for<A...>{}); }
};

[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace rsim

#define threadIdx (::rsim::current->tid)
#define blockIdx (::rsim::current->geo->block_idx)
#define blockDim (::rsim::current->geo->block_dim)
#define gridDim (::rsim::current->geo->grid_dim)
#define warpSize 32

// ---------------------------------------------------------------- bit casts and math

static inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
static inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
static inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
static inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, 4); return i; }
static inline long long __double_as_longlong(double x) { long long i; std::memcpy(&i, &x, 8); return i; }
static inline double __longlong_as_double(long long x) { double d; std::memcpy(&d, &x, 8); return d; }

static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

// Fast-math intrinsics are computed exactly here (the GPU's are within a few ulp). glibc
// declares __expf and __logf without exporting them, hence macros.
#define __expf(x) expf(x)
#define __logf(x) logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

template <typename T> static inline T __ldg(const T* p) { return *p; }

// ---------------------------------------------------------------- warp collectives

template <typename T> static inline uint64_t rsim_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp collectives move at most 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T> static inline T rsim_from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return rsim_from_bits<T>(::rsim::shuffle(::rsim::Shfl::Idx, mask, rsim_bits(v), src, width));
}
template <typename T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return rsim_from_bits<T>(::rsim::shuffle(::rsim::Shfl::Up, mask, rsim_bits(v), (int)delta, width));
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return rsim_from_bits<T>(::rsim::shuffle(::rsim::Shfl::Down, mask, rsim_bits(v), (int)delta, width));
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return rsim_from_bits<T>(::rsim::shuffle(::rsim::Shfl::Xor, mask, rsim_bits(v), lane_mask, width));
}
static inline unsigned __ballot_sync(unsigned mask, int pred) { return ::rsim::ballot(mask, pred); }
static inline int __any_sync(unsigned mask, int pred) { return ::rsim::ballot(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) { return ::rsim::ballot(mask, pred) == mask; }
template <typename T> static inline unsigned __match_any_sync(unsigned mask, T v) {
    return ::rsim::match_any(mask, rsim_bits(v));
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) { ::rsim::syncwarp(mask); }
static inline unsigned __activemask() { return ::rsim::active_mask(); }

// ---------------------------------------------------------------- block barriers
// Each barrier knows its source line: threads of a block waiting at different lines are a
// divergent __syncthreads (a code address would not do: the compiler duplicates calls).

using rsim_site = std::source_location;
static inline void __syncthreads(rsim_site s = rsim_site::current()) { ::rsim::barrier(0, 0, s.file_name(), (int)s.line()); }
static inline int __syncthreads_or(int p, rsim_site s = rsim_site::current()) { return ::rsim::barrier(1, p, s.file_name(), (int)s.line()); }
static inline int __syncthreads_and(int p, rsim_site s = rsim_site::current()) { return ::rsim::barrier(2, p, s.file_name(), (int)s.line()); }
static inline int __syncthreads_count(int p, rsim_site s = rsim_site::current()) { return ::rsim::barrier(3, p, s.file_name(), (int)s.line()); }

static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------- atomics
// Blocks run in parallel on several OS threads, so global atomics are real atomics.

template <typename T> static inline T atomicAdd(T* p, T v) {
    if constexpr (std::is_floating_point<T>::value) {
        T old, want;
        __atomic_load(p, &old, __ATOMIC_RELAXED);
        do {
            want = old + v;
        } while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
        return old;
    } else {
        return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
    }
}
template <typename T> static inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicExch(T* p, T v) {
    T old;
    __atomic_exchange(p, &v, &old, __ATOMIC_SEQ_CST);
    return old;
}
template <typename T> static inline T atomicCAS(T* p, T expected, T desired) {
    __atomic_compare_exchange(p, &expected, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
template <typename T> static inline T atomicMax(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}
template <typename T> static inline T atomicMin(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}
