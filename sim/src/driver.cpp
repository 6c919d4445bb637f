// driver.cpp: the subset of the CUDA driver API that cudarc and src/cuda/ call, exported with
// the driver's own names and ABI, so the unmodified revelio binary runs on it. One device, an
// H100-like sm_90; device memory is host memory (a device pointer is a host address);
// copies, memsets and launches run synchronously, in call order (one stream in effect);
// streams and events exist so that code using them runs, and events time on the host clock.
// A launch is checked as the GPU checks it (grid and block sizes, the kernel's launch bound,
// registers per block, static plus dynamic shared memory against the opt-in attribute); a
// failed check or a kernel bug found while running is printed and returned as the driver's
// error code.

#include "host.h"
#include "module.h"
#include "sim.h"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

extern "C" {

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st* CUcontext;
typedef struct CUstream_st* CUstream;
typedef struct CUevent_st* CUevent;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;

}  // extern "C"

namespace rsim {

extern const char* const kernel_dir;   // build_info.cpp, written by build.py
extern const char* const kernel_hash;

namespace {

enum : CUresult {
    kSuccess = 0,
    kInvalidValue = 1,
    kOutOfMemory = 2,
    kNotInitialized = 3,
    kNoDevice = 100,
    kInvalidDevice = 101,
    kInvalidImage = 200,
    kInvalidContext = 201,
    kInvalidHandle = 400,
    kNotFound = 500,
    kLaunchOutOfResources = 701,
    kLaunchFailed = 719,
    kNotSupported = 801,
};

constexpr std::size_t kTotalMemory = 80ull << 30;

struct CtxObj {
    int device = 0;
};
struct StreamObj {};
struct EventObj {
    std::chrono::steady_clock::time_point t;
};

CtxObj primary;
thread_local CUcontext current_ctx = nullptr;
bool initialised = false;

// ---------------------------------------------------------------- device memory

struct Allocation {
    GuardedMapping map;         // the pages (plain build)
    void* malloced = nullptr;   // or the heap block (ASan build)
    std::size_t size = 0;
};

class Memory {
  public:
    CUresult alloc(CUdeviceptr* out, std::size_t size) {
        if (size == 0) return kInvalidValue;
        void* ptr;
        Allocation a{};
        a.size = size;
#if defined(__SANITIZE_ADDRESS__)
        // AddressSanitizer sees every byte past `size`.
        if (posix_memalign(&ptr, 256, size) != 0) return kOutOfMemory;
        a.malloced = ptr;
#else
        // The end of the (256-byte rounded) buffer touches a guard page.
        const std::size_t rounded = (size + 255) & ~(std::size_t)255;
        if (!map_guarded(rounded, false, a.map)) return kOutOfMemory;
        ptr = a.map.base + a.map.bytes - rounded;
#endif
        std::memset(ptr, options().fill_nan ? 0xff : 0, size);
        std::lock_guard<std::mutex> g(m_);
        if (used_ + size > kTotalMemory) {
            release(a);
            return kOutOfMemory;
        }
        used_ += size;
        live_[(CUdeviceptr)(uintptr_t)ptr] = a;
        *out = (CUdeviceptr)(uintptr_t)ptr;
        return kSuccess;
    }
    CUresult free(CUdeviceptr p) {
        std::lock_guard<std::mutex> g(m_);
        auto it = live_.find(p);
        if (it == live_.end()) {
            say("cuMemFree of 0x%llx, which is not a live allocation", p);
            return kInvalidValue;
        }
        used_ -= it->second.size;
        release(it->second);
        live_.erase(it);
        return kSuccess;
    }
    std::size_t used() {
        std::lock_guard<std::mutex> g(m_);
        return used_;
    }

  private:
    static void release(const Allocation& a) {
        if (a.malloced) {
            std::free(a.malloced);
        } else {
            unmap_guarded(a.map);
        }
    }
    std::mutex m_;
    std::map<CUdeviceptr, Allocation> live_;
    std::size_t used_ = 0;
};

Memory& memory() {
    static Memory m;
    return m;
}

void* host(CUdeviceptr p) { return (void*)(uintptr_t)p; }

// ---------------------------------------------------------------- sources

// Empty if kernel_dir still holds the sources this library was built from, else why not.
std::string stale_sources() {
    namespace fs = std::filesystem;
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(kernel_dir, ec)) {
        const std::string n = e.path().filename().string();
        if (n.size() > 3 && (n.rfind(".cu") == n.size() - 3 || n.rfind(".cuh") == n.size() - 4)) names.push_back(n);
    }
    if (ec) return std::string("cannot read ") + kernel_dir + ", the kernels it was built from";
    std::sort(names.begin(), names.end());
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](const std::string& bytes) {
        for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
        h = (h ^ 0) * 0x100000001b3ull;
    };
    for (const auto& n : names) {
        std::ifstream in(std::string(kernel_dir) + "/" + n, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        mix(n);
        mix(ss.str());
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    if (hex != std::string(kernel_hash))
        return std::string("the kernels in ") + kernel_dir + " changed since this simulator was built; run python3 sim/build.py";
    return "";
}

// ---------------------------------------------------------------- launches

uint64_t launch_counter = 0;

CUresult check_launch(const Function& f, const dim3& grid, const dim3& block, std::size_t smem) {
    const unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
    for (int i = 0; i < 3; ++i) {
        if (g[i] == 0 || g[i] > kMaxGridDim[i]) {
            say("launch of %s: grid (%u,%u,%u) is outside the device's limits", f.name.c_str(), grid.x, grid.y, grid.z);
            return kInvalidValue;
        }
        if (b[i] == 0 || b[i] > kMaxBlockDim[i]) {
            say("launch of %s: block (%u,%u,%u) is outside the device's limits", f.name.c_str(), block.x, block.y, block.z);
            return kInvalidValue;
        }
    }
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads > (uint64_t)kMaxThreadsPerBlock || threads > (uint64_t)f.max_threads) {
        say("launch of %s: %llu threads per block, over its limit of %d (__launch_bounds__ or the device)", f.name.c_str(),
            (unsigned long long)threads, std::min(f.max_threads, kMaxThreadsPerBlock));
        return kInvalidValue;
    }
    if (f.registers > 0) {
        const uint64_t per_warp = (uint64_t)((f.registers + 7) / 8 * 8) * 32;
        const uint64_t need = (threads + 31) / 32 * per_warp;
        if (need > (uint64_t)kRegistersPerBlock) {
            say("launch of %s: %llu threads x %d registers need %llu registers, over the %d a block may have", f.name.c_str(),
                (unsigned long long)threads, f.registers, (unsigned long long)need, kRegistersPerBlock);
            return kLaunchOutOfResources;
        }
    }
    if (smem > f.max_dynamic_smem) {
        say("launch of %s: %zu bytes of dynamic shared memory, over the %zu its attribute allows%s", f.name.c_str(), smem,
            f.max_dynamic_smem, f.max_dynamic_smem == kSharedDefault ? " (no cuFuncSetAttribute opt-in)" : "");
        return kInvalidValue;
    }
    if (f.static_smem + smem > kSharedOptin) {
        say("launch of %s: %zu static + %zu dynamic bytes of shared memory, over the device's %zu", f.name.c_str(), f.static_smem,
            smem, kSharedOptin);
        return kInvalidValue;
    }
    return kSuccess;
}

const char* result_name(CUresult r) {
    switch (r) {
        case kSuccess: return "CUDA_SUCCESS";
        case kInvalidValue: return "CUDA_ERROR_INVALID_VALUE";
        case kOutOfMemory: return "CUDA_ERROR_OUT_OF_MEMORY";
        case kNotInitialized: return "CUDA_ERROR_NOT_INITIALIZED";
        case kNoDevice: return "CUDA_ERROR_NO_DEVICE";
        case kInvalidDevice: return "CUDA_ERROR_INVALID_DEVICE";
        case kInvalidImage: return "CUDA_ERROR_INVALID_IMAGE";
        case kInvalidContext: return "CUDA_ERROR_INVALID_CONTEXT";
        case kInvalidHandle: return "CUDA_ERROR_INVALID_HANDLE";
        case kNotFound: return "CUDA_ERROR_NOT_FOUND";
        case kLaunchOutOfResources: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
        case kLaunchFailed: return "CUDA_ERROR_LAUNCH_FAILED";
        case kNotSupported: return "CUDA_ERROR_NOT_SUPPORTED";
        default: return nullptr;
    }
}

const char* result_text(CUresult r) {
    switch (r) {
        case kSuccess: return "no error";
        case kInvalidValue: return "invalid argument";
        case kOutOfMemory: return "out of memory";
        case kNotInitialized: return "initialization error";
        case kNoDevice: return "no CUDA-capable device is detected";
        case kInvalidDevice: return "invalid device ordinal";
        case kInvalidImage: return "device kernel image is invalid";
        case kInvalidContext: return "invalid device context";
        case kInvalidHandle: return "invalid resource handle";
        case kNotFound: return "named symbol not found";
        case kLaunchOutOfResources: return "too many resources requested for launch";
        case kLaunchFailed: return "unspecified launch failure (the simulator printed why)";
        case kNotSupported: return "operation not supported";
        default: return nullptr;
    }
}

}  // namespace
}  // namespace rsim

using namespace rsim;

#define EXPORT extern "C" __attribute__((visibility("default")))

// ---------------------------------------------------------------- identification

EXPORT const char* revelio_sim_describe() {
    static std::string s;
    if (s.empty()) {
        const Options& o = options();
        s = "order " + o.order_name + ", cp.async " + (o.order == Order::Random ? "random" : o.cp_async_eager ? "eager" : "deferred") +
            ", " + std::to_string(all_kernels().size()) + " kernels built in, fresh memory " + (o.fill_nan ? "NaN" : "zero");
    }
    return s.c_str();
}

// ---------------------------------------------------------------- init, device

EXPORT CUresult cuInit(unsigned) {
    initialised = true;
    return kSuccess;
}
EXPORT CUresult cuDriverGetVersion(int* v) {
    if (!v) return kInvalidValue;
    *v = 12080;
    return kSuccess;
}
EXPORT CUresult cuGetExportTable(const void**, const void*) { return kNotSupported; }
EXPORT CUresult cuDeviceGetCount(int* n) {
    if (!initialised) return kNotInitialized;
    *n = 1;
    return kSuccess;
}
EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (!initialised) return kNotInitialized;
    if (ordinal != 0) return kInvalidDevice;
    *d = 0;
    return kSuccess;
}
EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (d != 0) return kInvalidDevice;
    std::snprintf(name, (std::size_t)len, "revelio-sim (simulated sm_90, H100-like limits; kernels run on the CPU)");
    return kSuccess;
}
EXPORT CUresult cuDeviceTotalMem_v2(std::size_t* bytes, CUdevice d) {
    if (d != 0) return kInvalidDevice;
    *bytes = kTotalMemory;
    return kSuccess;
}
EXPORT CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice) {
    std::memcpy(uuid, "revelio-sim-0000", 16);
    return kSuccess;
}
EXPORT CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
EXPORT CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
    if (d != 0) return kInvalidDevice;
    switch (attr) {
        case 1: *v = kMaxThreadsPerBlock; break;              // MAX_THREADS_PER_BLOCK
        case 2: *v = (int)kMaxBlockDim[0]; break;
        case 3: *v = (int)kMaxBlockDim[1]; break;
        case 4: *v = (int)kMaxBlockDim[2]; break;
        case 5: *v = (int)kMaxGridDim[0]; break;
        case 6: *v = (int)kMaxGridDim[1]; break;
        case 7: *v = (int)kMaxGridDim[2]; break;
        case 8: *v = (int)kSharedDefault; break;              // MAX_SHARED_MEMORY_PER_BLOCK
        case 9: *v = 65536; break;                            // TOTAL_CONSTANT_MEMORY
        case 10: *v = 32; break;                              // WARP_SIZE
        case 12: *v = kRegistersPerBlock; break;              // MAX_REGISTERS_PER_BLOCK
        case 13: *v = 1980000; break;                         // CLOCK_RATE (kHz)
        case 16: *v = kSmCount; break;                        // MULTIPROCESSOR_COUNT
        case 31: *v = 1; break;                               // CONCURRENT_KERNELS
        case 36: *v = 2619000; break;                         // MEMORY_CLOCK_RATE
        case 37: *v = 5120; break;                            // GLOBAL_MEMORY_BUS_WIDTH
        case 38: *v = 50 << 20; break;                        // L2_CACHE_SIZE
        case 39: *v = 2048; break;                            // MAX_THREADS_PER_MULTIPROCESSOR
        case 41: *v = 1; break;                               // UNIFIED_ADDRESSING
        case 75: *v = 9; break;                               // COMPUTE_CAPABILITY_MAJOR
        case 76: *v = 0; break;                               // COMPUTE_CAPABILITY_MINOR
        case 81: *v = (int)kSharedPerSm; break;               // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        case 82: *v = 65536; break;                           // MAX_REGISTERS_PER_MULTIPROCESSOR
        case 97: *v = (int)kSharedOptin; break;               // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        case 106: *v = 32; break;                             // MAX_BLOCKS_PER_MULTIPROCESSOR
        case 111: *v = 1024; break;                           // RESERVED_SHARED_MEMORY_PER_BLOCK
        case 115: *v = 0; break;                              // MEMORY_POOLS_SUPPORTED (no async pools)
        default: *v = 0; break;
    }
    return kSuccess;
}

// ---------------------------------------------------------------- contexts

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice d) {
    if (d != 0) return kInvalidDevice;
    *ctx = (CUcontext)&primary;
    return kSuccess;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return kSuccess; }
EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice) { return kSuccess; }
EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) {
    *ctx = current_ctx;
    return kSuccess;
}
EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
    current_ctx = ctx;
    return kSuccess;
}
EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx) { return cuCtxSetCurrent(ctx); }
EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* ctx) {
    if (ctx) *ctx = current_ctx;
    current_ctx = nullptr;
    return kSuccess;
}
EXPORT CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return kSuccess;
}
EXPORT CUresult cuCtxSynchronize() { return kSuccess; }
EXPORT CUresult cuCtxSetFlags(unsigned) { return kSuccess; }
EXPORT CUresult cuCtxGetLimit(std::size_t* v, int) {
    *v = 0;
    return kSuccess;
}
EXPORT CUresult cuCtxSetLimit(int, std::size_t) { return kSuccess; }
EXPORT CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
    if (least) *least = 0;
    if (greatest) *greatest = 0;
    return kSuccess;
}
EXPORT CUresult cuCtxGetCacheConfig(int* c) {
    *c = 0;
    return kSuccess;
}
EXPORT CUresult cuCtxSetCacheConfig(int) { return kSuccess; }

// ---------------------------------------------------------------- streams and events

EXPORT CUresult cuStreamCreate(CUstream* s, unsigned) {
    *s = (CUstream) new StreamObj;
    return kSuccess;
}
EXPORT CUresult cuStreamCreateWithPriority(CUstream* s, unsigned f, int) { return cuStreamCreate(s, f); }
EXPORT CUresult cuStreamDestroy_v2(CUstream s) {
    delete (StreamObj*)s;
    return kSuccess;
}
EXPORT CUresult cuStreamSynchronize(CUstream) { return kSuccess; }
EXPORT CUresult cuStreamQuery(CUstream) { return kSuccess; }
EXPORT CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return kSuccess; }
EXPORT CUresult cuEventCreate(CUevent* e, unsigned) {
    *e = (CUevent) new EventObj{std::chrono::steady_clock::now()};
    return kSuccess;
}
EXPORT CUresult cuEventDestroy_v2(CUevent e) {
    delete (EventObj*)e;
    return kSuccess;
}
EXPORT CUresult cuEventRecord(CUevent e, CUstream) {
    ((EventObj*)e)->t = std::chrono::steady_clock::now();
    return kSuccess;
}
EXPORT CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned) { return cuEventRecord(e, s); }
EXPORT CUresult cuEventSynchronize(CUevent) { return kSuccess; }
EXPORT CUresult cuEventQuery(CUevent) { return kSuccess; }
EXPORT CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
    *ms = std::chrono::duration<float, std::milli>(((EventObj*)b)->t - ((EventObj*)a)->t).count();
    return kSuccess;
}
EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime(ms, a, b); }

// ---------------------------------------------------------------- memory

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* p, std::size_t n) { return memory().alloc(p, n); }
EXPORT CUresult cuMemAllocAsync(CUdeviceptr* p, std::size_t n, CUstream) { return memory().alloc(p, n); }
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { return memory().free(p); }
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return memory().free(p); }
EXPORT CUresult cuMemGetInfo_v2(std::size_t* free_bytes, std::size_t* total) {
    *total = kTotalMemory;
    *free_bytes = kTotalMemory - memory().used();
    return kSuccess;
}
EXPORT CUresult cuMemHostAlloc(void** p, std::size_t n, unsigned) {
    *p = std::malloc(n ? n : 1);
    return *p ? kSuccess : kOutOfMemory;
}
EXPORT CUresult cuMemFreeHost(void* p) {
    std::free(p);
    return kSuccess;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, std::size_t n) {
    std::memcpy(host(d), s, n);
    return kSuccess;
}
EXPORT CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, std::size_t n) {
    std::memcpy(d, host(s), n);
    return kSuccess;
}
EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, std::size_t n) {
    std::memmove(host(d), host(s), n);
    return kSuccess;
}
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, std::size_t n, CUstream) { return cuMemcpyHtoD_v2(d, s, n); }
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, std::size_t n, CUstream) { return cuMemcpyDtoH_v2(d, s, n); }
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, std::size_t n, CUstream) { return cuMemcpyDtoD_v2(d, s, n); }
EXPORT CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, std::size_t n) {
    std::memset(host(d), v, n);
    return kSuccess;
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, std::size_t n, CUstream) { return cuMemsetD8_v2(d, v, n); }
EXPORT CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned v, std::size_t n) {
    auto* p = (unsigned*)host(d);
    for (std::size_t i = 0; i < n; ++i) p[i] = v;
    return kSuccess;
}
EXPORT CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, std::size_t n, CUstream) { return cuMemsetD32_v2(d, v, n); }

// ---------------------------------------------------------------- modules and functions

EXPORT CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    if (!image) return kInvalidValue;
    static const std::string stale = stale_sources();
    if (!stale.empty()) {
        say("%s", stale.c_str());
        return kInvalidImage;
    }
    auto* m = new Module;
    std::string error;
    if (!load_image(image, *m, error)) {
        say("cannot load a kernel module: %s", error.c_str());
        delete m;
        return kInvalidImage;
    }
    *out = (CUmodule)m;
    return kSuccess;
}
EXPORT CUresult cuModuleLoadDataEx(CUmodule* out, const void* image, unsigned, void*, void**) { return cuModuleLoadData(out, image); }
EXPORT CUresult cuModuleUnload(CUmodule m) {
    delete (Module*)m;
    return kSuccess;
}
EXPORT CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) {
    Function* fn = ((Module*)m)->find(name);
    if (!fn) return kNotFound;
    *f = (CUfunction)fn;
    return kSuccess;
}
EXPORT CUresult cuModuleGetGlobal_v2(CUdeviceptr*, std::size_t*, CUmodule, const char*) { return kNotFound; }
EXPORT CUresult cuFuncGetAttribute(int* v, int attr, CUfunction f) {
    const Function& fn = *(const Function*)f;
    switch (attr) {
        case 0: *v = std::min(fn.max_threads, kMaxThreadsPerBlock); break;  // MAX_THREADS_PER_BLOCK
        case 1: *v = (int)fn.static_smem; break;                            // SHARED_SIZE_BYTES
        case 2: *v = 0; break;                                              // CONST_SIZE_BYTES
        case 3: *v = 0; break;                                              // LOCAL_SIZE_BYTES
        case 4: *v = fn.registers; break;                                   // NUM_REGS
        case 5: *v = 90; break;                                             // PTX_VERSION
        case 6: *v = 90; break;                                             // BINARY_VERSION
        case 8: *v = (int)fn.max_dynamic_smem; break;                       // MAX_DYNAMIC_SHARED_SIZE_BYTES
        default: *v = 0; break;
    }
    return kSuccess;
}
EXPORT CUresult cuFuncSetAttribute(CUfunction f, int attr, int value) {
    Function& fn = *(Function*)f;
    if (attr == 8) {
        if (value < 0 || (std::size_t)value + fn.static_smem > kSharedOptin) {
            say("cuFuncSetAttribute(%s, MAX_DYNAMIC_SHARED_SIZE_BYTES, %d): over the device's %zu bytes", fn.name.c_str(), value,
                kSharedOptin);
            return kInvalidValue;
        }
        fn.max_dynamic_smem = (std::size_t)value;
    }
    return kSuccess;
}
EXPORT CUresult cuFuncSetCacheConfig(CUfunction, int) { return kSuccess; }

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               unsigned smem, CUstream, void** params, void** extra) {
    if (!f) return kInvalidHandle;
    const Function& fn = *(const Function*)f;
    if (extra) {
        say("launch of %s: the `extra` parameter form is not simulated", fn.name.c_str());
        return kNotSupported;
    }
    const dim3 grid(gx, gy, gz), block(bx, by, bz);
    if (CUresult r = check_launch(fn, grid, block, smem)) return r;
    Launch l;
    l.kernel = fn.kernel;
    l.params = params;
    l.grid = grid;
    l.block = block;
    l.dynamic_smem = smem;
    l.id = __atomic_add_fetch(&launch_counter, 1, __ATOMIC_RELAXED);
    if (!run_launch(l)) {
        say("%s", l.error.c_str());
        return kLaunchFailed;
    }
    return kSuccess;
}

// ---------------------------------------------------------------- errors

EXPORT CUresult cuGetErrorName(CUresult r, const char** s) {
    *s = result_name(r);
    return *s ? kSuccess : kInvalidValue;
}
EXPORT CUresult cuGetErrorString(CUresult r, const char** s) {
    *s = result_text(r);
    return *s ? kSuccess : kInvalidValue;
}
