// fiber.h: cooperative threads for the simulated CUDA threads. A fiber has its own stack (with a
// guard page below it) and runs until it switches back; switching saves only the callee-saved
// registers and the floating-point control words (x86-64 assembly in fiber.cpp; ucontext on
// other architectures). Under AddressSanitizer every switch is announced to it.

#pragma once

#include "host.h"

#include <cstddef>

namespace rsim {

class FiberStack {
  public:
    explicit FiberStack(std::size_t bytes);
    ~FiberStack();
    FiberStack(const FiberStack&) = delete;
    FiberStack& operator=(const FiberStack&) = delete;
    char* base() const { return map_.base; }  // lowest usable byte (the guard page is below it)
    std::size_t size() const { return map_.bytes; }
    bool guards(const void* addr) const;  // is `addr` in this stack's guard page?

  private:
    GuardedMapping map_;
};

// A saved execution context.
struct Context {
    void* sp = nullptr;
    void* impl = nullptr;  // ucontext_t on architectures without the assembly switch
    const void* stack_bottom = nullptr;
    std::size_t stack_size = 0;
    void* asan_fake = nullptr;
};

using FiberEntry = void (*)(void* arg);

// Prepares `ctx` to start `entry(arg)` on `stack` at the next switch into it.
void fiber_init(Context& ctx, FiberStack& stack, FiberEntry entry, void* arg);
// Saves the running context into `from` and resumes `to`.
void fiber_switch(Context& from, Context& to);
// Like fiber_switch, for a fiber that will never be resumed again (its stack may be reused).
void fiber_exit_to(Context& from, Context& to);
// Must be the first call of every fiber entry function.
void fiber_started();

}  // namespace rsim
