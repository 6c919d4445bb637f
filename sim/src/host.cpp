// host.cpp: messages and guarded mappings (see host.h).

#include "host.h"

#include "../include/rsim.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace rsim {

std::size_t page_size() {
    static const std::size_t p = (std::size_t)sysconf(_SC_PAGESIZE);
    return p;
}

static void vsay(const char* fmt, va_list ap) {
    std::fprintf(stderr, "revelio-sim: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
}

void say(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
}

void fatal(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    std::abort();
}

bool map_guarded(std::size_t bytes, bool guard_below, GuardedMapping& out) {
    const std::size_t page = page_size();
    const std::size_t usable = (bytes + page - 1) / page * page;
    void* m = mmap(nullptr, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    char* start = (char*)m;
    out.guard = guard_below ? start : start + usable;
    out.base = guard_below ? start + page : start;
    out.bytes = usable;
    mprotect(out.guard, page, PROT_NONE);
    return true;
}

void unmap_guarded(const GuardedMapping& m) {
    munmap(m.base < m.guard ? m.base : m.guard, m.bytes + page_size());
}

}  // namespace rsim
