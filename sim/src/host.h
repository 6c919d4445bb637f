// host.h: small host-side services the simulator's parts share: messages on stderr, and memory
// mappings that end (or begin) at a guard page, so an access past them faults at once.

#pragma once

#include <cstddef>

namespace rsim {

std::size_t page_size();

// "revelio-sim: <message>" on stderr (fatal, declared in rsim.h, also aborts).
void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// `bytes` rounded up to whole pages, readable and writable, with an inaccessible page right
// after them (or right before them, for stacks that grow down).
struct GuardedMapping {
    char* base = nullptr;      // first usable byte
    std::size_t bytes = 0;     // usable bytes (a multiple of the page size)
    char* guard = nullptr;     // the guard page
};
// Returns false if the memory cannot be mapped.
bool map_guarded(std::size_t bytes, bool guard_below, GuardedMapping& out);
void unmap_guarded(const GuardedMapping& m);

}  // namespace rsim
