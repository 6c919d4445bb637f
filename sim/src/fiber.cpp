// fiber.cpp: stacks and context switches for fibers (see fiber.h).

#include "fiber.h"

#include "host.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#define RSIM_ASAN 1
#include <sanitizer/common_interface_defs.h>
#else
#define RSIM_ASAN 0
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace rsim {

FiberStack::FiberStack(std::size_t bytes) {
    if (!map_guarded(bytes, true, map_)) {
        say("cannot map a %zu-byte fiber stack", bytes);
        std::abort();
    }
}

FiberStack::~FiberStack() { unmap_guarded(map_); }

bool FiberStack::guards(const void* addr) const {
    const char* a = (const char*)addr;
    return a >= map_.guard && a < map_.guard + page_size();
}

#if defined(__x86_64__)

// rsim_switch(save, load): pushes the callee-saved registers and the MXCSR / x87 control words,
// stores the stack pointer in *save, loads `load` and pops the same frame from it.
// rsim_fiber_start: the first return address of a new fiber; calls r13(r12).
extern "C" void rsim_switch(void** save, void* load) __attribute__((visibility("hidden")));
extern "C" void rsim_fiber_start() __attribute__((visibility("hidden")));
asm(R"(
    .text
    .globl rsim_switch
    .hidden rsim_switch
    .type rsim_switch, @function
rsim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rsim_switch, .-rsim_switch

    .globl rsim_fiber_start
    .hidden rsim_fiber_start
    .type rsim_fiber_start, @function
rsim_fiber_start:
    movq %r12, %rdi
    call *%r13
    ud2
    .size rsim_fiber_start, .-rsim_fiber_start
)");

void fiber_init(Context& ctx, FiberStack& stack, FiberEntry entry, void* arg) {
    // Frame popped by rsim_switch, lowest address first: control words, r15, r14, r13, r12,
    // rbx, rbp, return address. The top of the stack is 16-byte aligned, so rsim_fiber_start
    // runs with an aligned stack and its call gives the entry the ABI's alignment.
    auto top = (uintptr_t)(stack.base() + stack.size()) & ~(uintptr_t)15;
    auto* frame = (uint64_t*)(top - 64);
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    frame[0] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    frame[1] = 0;                  // r15
    frame[2] = 0;                  // r14
    frame[3] = (uint64_t)entry;    // r13
    frame[4] = (uint64_t)arg;      // r12
    frame[5] = 0;                  // rbx
    frame[6] = 0;                  // rbp
    frame[7] = (uint64_t)&rsim_fiber_start;
    ctx.sp = frame;
    ctx.stack_bottom = stack.base();
    ctx.stack_size = stack.size();
}

static void raw_switch(Context& from, Context& to) { rsim_switch(&from.sp, to.sp); }

#else  // ucontext fallback

void fiber_init(Context& ctx, FiberStack& stack, FiberEntry entry, void* arg) {
    if (!ctx.impl) ctx.impl = new ucontext_t;
    auto* uc = (ucontext_t*)ctx.impl;
    getcontext(uc);
    uc->uc_stack.ss_sp = stack.base();
    uc->uc_stack.ss_size = stack.size();
    uc->uc_link = nullptr;
    // makecontext passes int arguments: split the pointers in two halves.
    auto e = (uintptr_t)entry, a = (uintptr_t)arg;
    makecontext(uc, (void (*)())+[](unsigned e0, unsigned e1, unsigned a0, unsigned a1) {
        auto fn = (FiberEntry)(((uintptr_t)e1 << 32) | e0);
        fn((void*)(((uintptr_t)a1 << 32) | a0));
    }, 4, (unsigned)e, (unsigned)(e >> 32), (unsigned)a, (unsigned)(a >> 32));
    ctx.stack_bottom = stack.base();
    ctx.stack_size = stack.size();
}

static void raw_switch(Context& from, Context& to) {
    if (!from.impl) from.impl = new ucontext_t;
    swapcontext((ucontext_t*)from.impl, (ucontext_t*)to.impl);
}

#endif

void fiber_switch(Context& from, Context& to) {
#if RSIM_ASAN
    __sanitizer_start_switch_fiber(&from.asan_fake, to.stack_bottom, to.stack_size);
    raw_switch(from, to);
    __sanitizer_finish_switch_fiber(from.asan_fake, nullptr, nullptr);
#else
    raw_switch(from, to);
#endif
}

void fiber_exit_to(Context& from, Context& to) {
#if RSIM_ASAN
    __sanitizer_start_switch_fiber(nullptr, to.stack_bottom, to.stack_size);
#endif
    raw_switch(from, to);
}

void fiber_started() {
#if RSIM_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

}  // namespace rsim
