// module.h: a loaded kernel module. The image is what NVRTC produced for the GPU (a cubin, or
// PTX text); the simulator reads from it which kernels it holds and their launch limits, and
// binds each to the host build of the same kernel (the registry in ptx.cpp). A kernel present
// on one side only is an error, so the simulator and the binary's kernels cannot drift apart.

#pragma once

#include "sim.h"

#include <memory>
#include <string>
#include <vector>

namespace rsim {

struct Function {
    std::string name;
    const KernelInfo* kernel = nullptr;
    int registers = 0;                        // per thread, from the cubin (0: unknown, PTX)
    int max_threads = kMaxThreadsPerBlock;    // __launch_bounds__, from the cubin
    std::size_t static_smem = 0;              // bytes of static __shared__, from the cubin
    std::size_t max_dynamic_smem = kSharedDefault;  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
};

struct Module {
    std::vector<std::unique_ptr<Function>> functions;
    Function* find(const std::string& name) const;
};

// Reads `image` (a cubin or NUL-terminated PTX) into `m`; false with `error` set if it cannot
// be read or names a kernel the simulator was not built with.
bool load_image(const void* image, Module& m, std::string& error);

}  // namespace rsim
