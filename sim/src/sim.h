// sim.h: what the parts of the simulated device share: the kernel registry (filled by the
// generated modules), a launch as the scheduler runs it, the run-time options, and the device's
// limits (an H100 SXM: sm_90, 132 SMs, 227 KiB of opt-in shared memory per block).

#pragma once

#include "../include/rsim.h"

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace rsim {

// ---------------------------------------------------------------- device limits

constexpr int kSmCount = 132;
constexpr int kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535, 65535};
constexpr std::size_t kSharedDefault = 48 * 1024;     // without the opt-in attribute
constexpr std::size_t kSharedOptin = 232448;          // 227 KiB
constexpr std::size_t kSharedPerSm = 233472;          // 228 KiB
constexpr int kRegistersPerBlock = 65536;
constexpr int kMaxRegistersPerThread = 255;

// ---------------------------------------------------------------- kernels

struct KernelInfo {
    std::string module;   // "softmax.cu"
    std::string name;     // "softmax_warp_f32"
    Thunk thunk;
    std::vector<unsigned> param_bytes;  // sizeof each parameter in the host build
};

// Every kernel compiled into this library, by name (complete once static initialisation is done).
const KernelInfo* find_kernel(const std::string& name);
const std::vector<KernelInfo>& all_kernels();

// ---------------------------------------------------------------- options (environment)

enum class Order { Forward, Reverse, Random, Greedy };

struct Options {
    Order order = Order::Forward;
    uint64_t seed = 1;
    bool cp_async_eager = false;   // copies land at issue (else at the wait that covers them)
    int workers = 0;               // OS threads running blocks (0: hardware threads)
    std::size_t stack_bytes = 0;   // per fiber
    bool fill_nan = true;          // fresh device memory is 0xFF bytes
    bool allow_exit_before_barrier = false;
    std::string coverage_path;     // append launched kernel names here
    bool profile = false;          // print launches and host time per kernel at exit
    std::string order_name;
};
const Options& options();

// ---------------------------------------------------------------- launches

struct Launch {
    const KernelInfo* kernel;
    void** params;
    dim3 grid;
    dim3 block;
    std::size_t dynamic_smem;
    uint64_t id;                    // launch counter (seeds the random order)
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::string error;
};

// Runs every block of `l` (blocking). Returns false and fills l.error if a block failed.
bool run_launch(Launch& l);

// Reports a kernel bug found while running a block and leaves the block (never returns).
[[noreturn]] void block_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The shared-memory window of the block running on this OS thread: the 32-bit shared address
// of a generic pointer into it, and back. Both fail (block_error) outside the block's memory.
uint32_t shared_address(const void* p);
void* shared_pointer(uint32_t addr, std::size_t bytes, std::size_t align, const char* what);
std::size_t dynamic_smem_bytes();

// cp.async: queue (or perform, when eager) one copy; commit; wait until at most n groups pend.
void cp_async(uint32_t dst, const void* src, int cp_bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int n);

// Tensor-core collectives, completed when all 32 lanes of the warp arrive.
void ldmatrix(int num, bool trans, uint32_t addr, uint32_t* out);
enum class MmaType { F16, BF16 };
void mma_m16n8k16(MmaType t, float* d, const uint32_t* a, const uint32_t* b, const float* c);

}  // namespace rsim
