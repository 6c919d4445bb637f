// options.cpp: the simulated device's settings, read once from the environment.
//
//   REVELIO_SIM_ORDER      forward (default) | reverse | greedy | random[:SEED]: the order in
//                          which a block's threads run between sync points (exec.cpp)
//   REVELIO_SIM_CP_ASYNC   deferred | eager: when cp.async copies land (default: eager under
//                          greedy, a coin flip per copy under random, deferred otherwise)
//   REVELIO_SIM_WORKERS    OS threads running blocks (default: one per hardware thread)
//   REVELIO_SIM_STACK      bytes of stack per simulated thread (default 64 KiB; 512 KiB with ASan)
//   REVELIO_SIM_FILL       nan (default) | zero: what fresh device memory holds
//   REVELIO_SIM_EXIT_BARRIER allow: accept threads that return while others wait at a barrier
//   REVELIO_SIM_COVERAGE   a file to which each process appends the names of the kernels it ran
//   REVELIO_SIM_PROFILE    set: print launches and host seconds per kernel at exit

#include "sim.h"

#include <cstdlib>

namespace rsim {

namespace {

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

Options read_options() {
    Options o;
    o.order_name = "forward";
    if (const char* v = env("REVELIO_SIM_ORDER")) {
        const std::string s = v;
        o.order_name = s;
        if (s == "forward") {
            o.order = Order::Forward;
        } else if (s == "reverse") {
            o.order = Order::Reverse;
        } else if (s == "greedy") {
            o.order = Order::Greedy;
            o.cp_async_eager = true;
        } else if (s.rfind("random", 0) == 0) {
            o.order = Order::Random;
            if (s.size() > 7 && s[6] == ':') o.seed = std::strtoull(s.c_str() + 7, nullptr, 10);
        } else {
            fatal("REVELIO_SIM_ORDER=%s: expected forward, reverse, greedy or random[:SEED]", v);
        }
    }
    if (const char* v = env("REVELIO_SIM_CP_ASYNC")) {
        const std::string s = v;
        if (s != "deferred" && s != "eager") fatal("REVELIO_SIM_CP_ASYNC=%s: expected deferred or eager", v);
        o.cp_async_eager = s == "eager";
    }
    if (const char* v = env("REVELIO_SIM_WORKERS")) o.workers = std::atoi(v);
#if defined(__SANITIZE_ADDRESS__)
    o.stack_bytes = 512 * 1024;
#else
    o.stack_bytes = 64 * 1024;
#endif
    if (const char* v = env("REVELIO_SIM_STACK")) o.stack_bytes = std::strtoull(v, nullptr, 10);
    if (const char* v = env("REVELIO_SIM_FILL")) {
        const std::string s = v;
        if (s != "nan" && s != "zero") fatal("REVELIO_SIM_FILL=%s: expected nan or zero", v);
        o.fill_nan = s == "nan";
    }
    if (const char* v = env("REVELIO_SIM_EXIT_BARRIER")) o.allow_exit_before_barrier = std::string(v) == "allow";
    if (const char* v = env("REVELIO_SIM_COVERAGE")) o.coverage_path = v;
    o.profile = env("REVELIO_SIM_PROFILE") != nullptr;
    return o;
}

}  // namespace

const Options& options() {
    static const Options o = read_options();
    return o;
}

}  // namespace rsim
