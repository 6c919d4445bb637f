// exec.cpp: how a launch runs. Blocks are spread over a pool of OS threads (workers); a worker
// runs one block at a time, each CUDA thread of it a fiber. A fiber runs until it reaches a
// warp collective, a block barrier or its end, then the block's scheduler picks the next ready
// fiber in the launch's order (forward, reverse, seeded random, or greedy: always the lowest
// ready thread, so one warp runs as far as it can before the others). A warp collective
// completes when the last lane of its mask arrives; a barrier when every thread still running
// has arrived. Misuse that is undefined on a GPU (divergent barriers, collectives whose lanes
// disagree or have exited, a deadlock, a shared-memory access outside the block's memory) ends
// the block with an error that names the kernel, block, threads and call site.
//
// Shared memory is one mapping per worker: static `__shared__` variables from its start, the
// dynamic buffer at its end, right before a guard page; both are filled with 0xFF (NaN) before
// every block. cp.async copies are kept per thread and land when a wait covers their group
// (or at issue, in the eager mode), the two extremes a GPU allows.

#include "fiber.h"
#include "half.h"
#include "host.h"
#include "sim.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <condition_variable>
#include <cstdarg>
#include <memory>
#include <thread>

namespace rsim {

thread_local constinit Thread* current = nullptr;

namespace {

enum class State : uint8_t { Ready, AtBarrier, AtWarp, Done };
enum class Coll : uint8_t { Shuffle, Ballot, Match, SyncWarp, Ldmatrix, Mma };

const char* coll_name(Coll c, Shfl s) {
    switch (c) {
        case Coll::Shuffle:
            return s == Shfl::Idx ? "__shfl_sync" : s == Shfl::Up ? "__shfl_up_sync" : s == Shfl::Down ? "__shfl_down_sync" : "__shfl_xor_sync";
        case Coll::Ballot: return "__ballot_sync";
        case Coll::Match: return "__match_any_sync";
        case Coll::SyncWarp: return "__syncwarp";
        case Coll::Ldmatrix: return "ldmatrix";
        case Coll::Mma: return "mma.sync";
    }
    return "?";
}

struct Copy {
    unsigned char* dst;
    const unsigned char* src;
    int cp_bytes;
    int src_bytes;
    int group;
};

struct Fiber : Thread {
    Context ctx;
    FiberStack* stack = nullptr;  // from the worker's pool while the thread has started and not ended
    unsigned linear = 0, lane = 0, warp = 0;
    State state = State::Ready;
    // barrier
    const char* bar_file = nullptr;
    int bar_line = 0, bar_kind = 0, bar_pred = 0, bar_result = 0;
    // warp collective
    Coll op = Coll::SyncWarp;
    Shfl shfl = Shfl::Idx;
    unsigned mask = 0;
    uint64_t in = 0, out = 0;
    int arg = 0, width = 32;
    uint32_t addr = 0;
    int num = 0;
    bool trans = false;
    MmaType mtype = MmaType::F16;
    uint32_t a[4] = {}, b[2] = {}, regs[4] = {};
    float c[4] = {}, d[4] = {};
    // cp.async
    std::vector<Copy> copies;
    int open_group = 0;
};

struct Warp {
    unsigned exists = 0, exited = 0, waiting = 0;
};

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

}  // namespace

struct Block {
    Launch* launch = nullptr;
    Geometry geo{};
    unsigned n = 0, nwarps = 0;
    Fiber* f = nullptr;
    Warp warps[32];
    unsigned char* region = nullptr;
    std::vector<std::pair<int, std::size_t>> statics;
    std::size_t static_used = 0;
    unsigned char* dyn = nullptr;
    std::size_t dyn_bytes = 0, dyn_reserved = 0;
    uint64_t rng = 0;
    std::vector<unsigned> perm;  // this round's order (random), else unused
    unsigned cursor = 0;         // position in the round of the running thread
    unsigned lowest = 0;         // greedy: no thread below this index is ready
    bool failed = false;
    std::string error;
};

namespace {

// Shared memory window: kSharedOptin bytes rounded to pages, then a guard page.
std::size_t region_bytes() { return (kSharedOptin + page_size() - 1) / page_size() * page_size(); }

// A worker's stacks are handed to threads when they start and taken back when they end, last
// in first out: a kernel without sync points runs every thread of a block on the same, hot stack.
struct Worker {
    std::vector<std::unique_ptr<FiberStack>> stacks;
    std::vector<FiberStack*> spare;
    std::vector<Fiber> fibers = std::vector<Fiber>(kMaxThreadsPerBlock);
    unsigned char* smem = nullptr;
    Context sched;
    Fiber* finished = nullptr;  // a thread that ended; its stack is freed by whoever runs next
    Block* block = nullptr;
    std::unique_ptr<char[]> altstack;

    Worker() {
        GuardedMapping m;
        if (!map_guarded(region_bytes(), false, m)) fatal("cannot map shared memory for a worker");
        smem = (unsigned char*)m.base;
        pthread_attr_t attr;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            void* bottom = nullptr;
            std::size_t size = 0;
            pthread_attr_getstack(&attr, &bottom, &size);
            sched.stack_bottom = bottom;
            sched.stack_size = size;
            pthread_attr_destroy(&attr);
        }
        stack_t old{};
        if (sigaltstack(nullptr, &old) == 0 && (old.ss_flags & SS_DISABLE)) {
            const std::size_t alt = 64 * 1024;
            altstack.reset(new char[alt]);
            stack_t ss{};
            ss.ss_sp = altstack.get();
            ss.ss_size = alt;
            sigaltstack(&ss, nullptr);
        }
    }
    FiberStack* take_stack() {
        if (spare.empty()) {
            stacks.emplace_back(new FiberStack(options().stack_bytes));
            return stacks.back().get();
        }
        FiberStack* s = spare.back();
        spare.pop_back();
        return s;
    }
    void give_stack(Fiber& f) {
        if (f.stack) spare.push_back(f.stack);
        f.stack = nullptr;
    }
    // Called first thing after every switch: the thread that ended is off its stack now.
    void release_finished() {
        if (finished) give_stack(*finished);
        finished = nullptr;
    }
};

thread_local Worker* worker = nullptr;

Worker& this_worker() {
    if (!worker) worker = new Worker();  // lives as long as its thread (the pool never shrinks)
    return *worker;
}

Fiber* running() { return static_cast<Fiber*>(current); }

std::string range_list(const std::vector<unsigned>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size();) {
        std::size_t j = i;
        while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
        if (!s.empty()) s += ",";
        s += std::to_string(ids[i]);
        if (j > i) s += "-" + std::to_string(ids[j]);
        i = j + 1;
    }
    return s;
}

bool same_barrier(const Fiber& a, const Fiber& b) {
    return a.bar_line == b.bar_line && a.bar_kind == b.bar_kind && std::strcmp(a.bar_file, b.bar_file) == 0;
}

std::string barrier_site(const Fiber& f) {
    static const char* const kinds[] = {"__syncthreads", "__syncthreads_or", "__syncthreads_and", "__syncthreads_count"};
    return std::string(kinds[f.bar_kind]) + " at " + f.bar_file + ":" + std::to_string(f.bar_line);
}

std::string block_name(const Block& b) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "kernel %s block (%u,%u,%u) of grid (%u,%u,%u) x (%u,%u,%u) threads",
                  b.launch->kernel->name.c_str(), b.geo.block_idx.x, b.geo.block_idx.y, b.geo.block_idx.z, b.geo.grid_dim.x,
                  b.geo.grid_dim.y, b.geo.grid_dim.z, b.geo.block_dim.x, b.geo.block_dim.y, b.geo.block_dim.z);
    return buf;
}

// Ends the block from the scheduler's side.
void fail(Block& b, const std::string& msg) {
    if (!b.failed) {
        b.failed = true;
        b.error = block_name(b) + ": " + msg;
    }
}

// ---------------------------------------------------------------- the order of a round
// A round runs every ready thread once, in the launch's order; a thread that blocks hands over
// to the next one directly (one context switch), and only the end of a round returns to the
// block's scheduler, which starts the next round or releases a barrier.

void fiber_main(void* arg);

// The thread at position p of the round.
unsigned at(const Block& b, unsigned p) {
    switch (options().order) {
        case Order::Reverse: return b.n - 1 - p;
        case Order::Random: return b.perm[p];
        default: return p;
    }
}

// The next ready thread of this round after the running one (greedy: the lowest ready one).
Fiber* next_ready(Block& b) {
    const bool greedy = options().order == Order::Greedy;
    for (unsigned p = greedy ? b.lowest : b.cursor + 1; p < b.n; ++p) {
        Fiber& f = b.f[at(b, p)];
        if (f.state == State::Ready) {
            b.cursor = p;
            if (greedy) b.lowest = p;
            return &f;
        }
    }
    if (greedy) b.lowest = b.n;
    return nullptr;
}

// Makes `next` the running thread, starting it if it has not run yet.
Context& enter(Worker& w, Fiber& next) {
    if (!next.stack) {
        next.stack = w.take_stack();
        fiber_init(next.ctx, *next.stack, fiber_main, &next);
    }
    current = &next;
    return next.ctx;
}

// The running thread `f` blocks: the next ready thread of the round runs, else the scheduler.
void yield_from(Fiber* f) {
    Worker& w = *worker;
    Fiber* next = next_ready(*w.block);
    fiber_switch(f->ctx, next ? enter(w, *next) : w.sched);
    worker->release_finished();
}

// ---------------------------------------------------------------- warp collectives

void complete(Block& b, Warp& w, Fiber* me);

void arrive(Fiber* f) {
    Block& b = *worker->block;
    Warp& w = b.warps[f->warp];
    const unsigned bit = 1u << f->lane;
    const auto name = [f] { return coll_name(f->op, f->shfl); };  // only on the error paths
    if (!(f->mask & bit))
        block_error("thread %u (lane %u) calls %s with mask %08x, which leaves out its own lane", f->linear, f->lane, name(), f->mask);
    if (f->mask & ~w.exists)
        block_error("thread %u calls %s with mask %08x, but warp %u has only lanes %08x (block of %u threads)", f->linear, name(),
                    f->mask, f->warp, w.exists, b.n);
    if (f->mask & w.exited)
        block_error("thread %u calls %s with mask %08x, but lanes %08x of warp %u have already exited", f->linear, name(), f->mask,
                    f->mask & w.exited, f->warp);
    f->state = State::AtWarp;
    w.waiting |= bit;
    if ((w.waiting & f->mask) == f->mask) {
        complete(b, w, f);
    } else {
        yield_from(f);
    }
}

uint16_t lo16(uint32_t v) { return (uint16_t)(v & 0xffffu); }
uint16_t hi16(uint32_t v) { return (uint16_t)(v >> 16); }

void complete_ldmatrix(Block& b, Fiber* lanes) {
    const int num = lanes[0].num;
    const bool trans = lanes[0].trans;
    uint16_t m[4][8][8];
    for (int i = 0; i < num; ++i) {
        for (int r = 0; r < 8; ++r) {
            const Fiber& src = lanes[8 * i + r];
            const auto* p = (const uint16_t*)shared_pointer(src.addr, 16, 16, "ldmatrix row address");
            std::memcpy(m[i][r], p, 16);
        }
    }
    (void)b;
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < num; ++i) {
            const uint16_t e0 = trans ? m[i][2 * t][g] : m[i][g][2 * t];
            const uint16_t e1 = trans ? m[i][2 * t + 1][g] : m[i][g][2 * t + 1];
            lanes[l].regs[i] = (uint32_t)e0 | ((uint32_t)e1 << 16);
        }
    }
}

void complete_mma(Fiber* lanes) {
    float A[16][16], B[16][8], C[16][8];
    const bool bf = lanes[0].mtype == MmaType::BF16;
    auto cv = [bf](uint16_t h) { return bf ? bf16_to_float(h) : half_to_float(h); };
    for (int l = 0; l < 32; ++l) {
        const Fiber& f = lanes[l];
        const int g = l >> 2, t = l & 3;
        A[g][2 * t] = cv(lo16(f.a[0]));
        A[g][2 * t + 1] = cv(hi16(f.a[0]));
        A[g + 8][2 * t] = cv(lo16(f.a[1]));
        A[g + 8][2 * t + 1] = cv(hi16(f.a[1]));
        A[g][2 * t + 8] = cv(lo16(f.a[2]));
        A[g][2 * t + 9] = cv(hi16(f.a[2]));
        A[g + 8][2 * t + 8] = cv(lo16(f.a[3]));
        A[g + 8][2 * t + 9] = cv(hi16(f.a[3]));
        B[2 * t][g] = cv(lo16(f.b[0]));
        B[2 * t + 1][g] = cv(hi16(f.b[0]));
        B[2 * t + 8][g] = cv(lo16(f.b[1]));
        B[2 * t + 9][g] = cv(hi16(f.b[1]));
        C[g][2 * t] = f.c[0];
        C[g][2 * t + 1] = f.c[1];
        C[g + 8][2 * t] = f.c[2];
        C[g + 8][2 * t + 1] = f.c[3];
    }
    float D[16][8];
    for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 8; ++j) {
            float s = C[i][j];
            for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];  // products of 16-bit floats are exact in f32
            D[i][j] = s;
        }
    }
    for (int l = 0; l < 32; ++l) {
        Fiber& f = lanes[l];
        const int g = l >> 2, t = l & 3;
        f.d[0] = D[g][2 * t];
        f.d[1] = D[g][2 * t + 1];
        f.d[2] = D[g + 8][2 * t];
        f.d[3] = D[g + 8][2 * t + 1];
    }
}

void complete(Block& b, Warp& w, Fiber* me) {
    Fiber* lanes = b.f + me->warp * 32;  // lane l of this warp is lanes[l]
    const unsigned mask = me->mask;
    for (unsigned l = 0; l < 32; ++l) {
        if (!(mask & (1u << l))) continue;
        const Fiber& o = lanes[l];
        if (o.op != me->op || o.mask != me->mask || (o.op == Coll::Shuffle && (o.shfl != me->shfl || o.width != me->width)) ||
            (o.op == Coll::Ldmatrix && (o.num != me->num || o.trans != me->trans)) || (o.op == Coll::Mma && o.mtype != me->mtype))
            block_error("warp %u diverged: lane %u is in %s (mask %08x) while lane %u is in %s (mask %08x)", me->warp, me->lane,
                        coll_name(me->op, me->shfl), me->mask, l, coll_name(o.op, o.shfl), o.mask);
    }
    switch (me->op) {
        case Coll::Shuffle: {
            const int width = me->width;
            if (width < 1 || width > 32 || (width & (width - 1)))
                block_error("%s with width %d (must be a power of 2 up to 32)", coll_name(me->op, me->shfl), width);
            for (unsigned l = 0; l < 32; ++l) {
                if (!(mask & (1u << l))) continue;
                Fiber& f = lanes[l];
                const int base = (int)l & ~(width - 1);
                int src = (int)l;
                switch (f.shfl) {
                    case Shfl::Idx: src = base + (f.arg & (width - 1)); break;
                    case Shfl::Up: src = (int)l - f.arg >= base ? (int)l - f.arg : (int)l; break;
                    case Shfl::Down: src = (int)l + f.arg < base + width ? (int)l + f.arg : (int)l; break;
                    case Shfl::Xor: src = ((int)l ^ f.arg) < base + width ? ((int)l ^ f.arg) : (int)l; break;
                }
                if (src < 0 || src > 31 || !(mask & (1u << src)))
                    block_error("lane %u of warp %u reads lane %d in %s, which is not in the mask %08x", l, me->warp, src,
                                coll_name(me->op, f.shfl), mask);
                f.out = lanes[src].in;
            }
            break;
        }
        case Coll::Ballot: {
            unsigned bits = 0;
            for (unsigned l = 0; l < 32; ++l)
                if ((mask & (1u << l)) && lanes[l].in) bits |= 1u << l;
            for (unsigned l = 0; l < 32; ++l)
                if (mask & (1u << l)) lanes[l].out = bits;
            break;
        }
        case Coll::Match:
            for (unsigned l = 0; l < 32; ++l) {
                if (!(mask & (1u << l))) continue;
                unsigned same = 0;
                for (unsigned o = 0; o < 32; ++o)
                    if ((mask & (1u << o)) && lanes[o].in == lanes[l].in) same |= 1u << o;
                lanes[l].out = same;
            }
            break;
        case Coll::SyncWarp: break;
        case Coll::Ldmatrix: complete_ldmatrix(b, lanes); break;
        case Coll::Mma: complete_mma(lanes); break;
    }
    for (unsigned l = 0; l < 32; ++l)
        if (mask & (1u << l)) lanes[l].state = State::Ready;
    w.waiting &= ~mask;
    b.lowest = std::min(b.lowest, me->warp * 32 + (unsigned)__builtin_ctz(mask));
}

// ---------------------------------------------------------------- cp.async

void perform(const Copy& c) {
    if (c.src_bytes > 0) std::memcpy(c.dst, c.src, (std::size_t)c.src_bytes);
    if (c.cp_bytes > c.src_bytes) std::memset(c.dst + c.src_bytes, 0, (std::size_t)(c.cp_bytes - c.src_bytes));
}

// ---------------------------------------------------------------- one block

void fiber_main(void* arg) {
    auto* f = static_cast<Fiber*>(arg);
    Worker& w = *worker;
    fiber_started();
    w.release_finished();
    Block& b = *w.block;
    b.launch->kernel->thunk(b.launch->params);
    f->state = State::Done;
    Warp& wp = b.warps[f->warp];
    const unsigned bit = 1u << f->lane;
    wp.exited |= bit;
    for (unsigned l = 0; wp.waiting && l < 32; ++l) {
        const Fiber& o = b.f[f->warp * 32 + l];
        if ((wp.waiting & (1u << l)) && (o.mask & bit))
            block_error("thread %u returned while lane %u of its warp waits for it in %s (mask %08x)", f->linear, l,
                        coll_name(o.op, o.shfl), o.mask);
    }
    f->copies.clear();
    w.finished = f;
    Fiber* next = next_ready(b);
    fiber_exit_to(f->ctx, next ? enter(w, *next) : w.sched);
    __builtin_unreachable();
}

void describe_stall(Block& b) {
    std::string msg = "deadlock: no thread can go on;";
    std::vector<unsigned> at_bar, at_warp;
    for (unsigned i = 0; i < b.n; ++i) {
        if (b.f[i].state == State::AtBarrier) at_bar.push_back(i);
        if (b.f[i].state == State::AtWarp) at_warp.push_back(i);
    }
    if (!at_bar.empty()) msg += " threads " + range_list(at_bar) + " wait at a block barrier;";
    for (unsigned i : at_warp) {
        const Fiber& f = b.f[i];
        const unsigned missing = f.mask & ~b.warps[f.warp].waiting;
        char buf[200];
        std::snprintf(buf, sizeof buf, " thread %u waits in %s (mask %08x) for lanes %08x of warp %u;", i, coll_name(f.op, f.shfl),
                      f.mask, missing, f.warp);
        msg += buf;
        if (msg.size() > 1500) {
            msg += " ...";
            break;
        }
    }
    fail(b, msg);
}

// Releases a barrier every running thread has reached, or fails the block if they disagree.
void release_barrier(Block& b) {
    const Fiber* first = nullptr;
    std::vector<unsigned> done;
    for (unsigned i = 0; i < b.n; ++i) {
        const Fiber& f = b.f[i];
        if (f.state == State::Done) {
            done.push_back(i);
            continue;
        }
        if (!first) first = &f;
        if (!same_barrier(f, *first)) {
            std::vector<unsigned> here, there;
            for (unsigned j = 0; j < b.n; ++j) {
                if (b.f[j].state != State::AtBarrier) continue;
                (same_barrier(b.f[j], *first) ? here : there).push_back(j);
            }
            fail(b, "divergent __syncthreads: threads " + range_list(here) + " wait at " + barrier_site(*first) + ", threads " +
                        range_list(there) + " at " + barrier_site(f));
            return;
        }
    }
    if (!done.empty() && !options().allow_exit_before_barrier) {
        fail(b, "threads " + range_list(done) + " returned while the others wait at the barrier at " + barrier_site(*first) +
                    " (a barrier that not every thread reaches; REVELIO_SIM_EXIT_BARRIER=allow accepts it)");
        return;
    }
    int any = 0, all = 1, count = 0;
    for (unsigned i = 0; i < b.n; ++i) {
        const Fiber& f = b.f[i];
        if (f.state != State::AtBarrier) continue;
        any |= f.bar_pred != 0;
        all &= f.bar_pred != 0;
        count += f.bar_pred != 0;
    }
    const int result = first->bar_kind == 1 ? any : first->bar_kind == 2 ? all : count;
    b.lowest = 0;
    for (unsigned i = 0; i < b.n; ++i) {
        Fiber& f = b.f[i];
        if (f.state != State::AtBarrier) continue;
        f.bar_result = result;
        f.state = State::Ready;
    }
}

void schedule(Worker& w, Block& b) {
    b.perm.resize(b.n);
    for (unsigned i = 0; i < b.n; ++i) b.perm[i] = i;
    while (!b.failed) {
        if (options().order == Order::Random)
            for (unsigned i = b.n; i > 1; --i) std::swap(b.perm[i - 1], b.perm[splitmix(b.rng) % i]);
        Fiber* first = nullptr;
        for (unsigned p = 0; p < b.n && !first; ++p) {
            if (b.f[at(b, p)].state == State::Ready) {
                first = &b.f[at(b, p)];
                b.cursor = b.lowest = p;
            }
        }
        if (first) {
            fiber_switch(w.sched, enter(w, *first));  // runs the round
            current = nullptr;
            w.release_finished();
            continue;
        }
        unsigned done = 0, at_warp = 0;
        for (unsigned i = 0; i < b.n; ++i) {
            done += b.f[i].state == State::Done;
            at_warp += b.f[i].state == State::AtWarp;
        }
        if (done == b.n) break;
        if (at_warp) {
            describe_stall(b);
            break;
        }
        release_barrier(b);
    }
}

bool run_block(Launch& l, uint64_t index) {
    Worker& w = this_worker();
    Block b;
    b.launch = &l;
    b.geo.grid_dim = l.grid;
    b.geo.block_dim = l.block;
    b.geo.block_idx = {(unsigned)(index % l.grid.x), (unsigned)((index / l.grid.x) % l.grid.y),
                       (unsigned)(index / ((uint64_t)l.grid.x * l.grid.y))};
    b.n = l.block.x * l.block.y * l.block.z;
    b.nwarps = (b.n + 31) / 32;
    for (unsigned i = 0; i < b.nwarps; ++i) {
        const unsigned lanes = std::min(32u, b.n - i * 32);
        b.warps[i].exists = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    }
    b.region = w.smem;
    b.dyn_bytes = l.dynamic_smem;
    b.dyn_reserved = (l.dynamic_smem + 15) & ~(std::size_t)15;
    b.dyn = w.smem + region_bytes() - b.dyn_reserved;
    b.rng = options().seed ^ (l.id * 0x9e3779b97f4a7c15ull) ^ (index * 0xd1b54a32d192ed03ull);
    // Fresh shared memory is NaN (static variables are filled when first declared): what the
    // previous block left is never read as valid data.
    std::memset(b.dyn, 0xff, b.dyn_reserved);
    b.f = w.fibers.data();
    uint3 tid{0, 0, 0};
    for (unsigned i = 0; i < b.n; ++i) {
        Fiber& f = b.f[i];
        f.tid = tid;
        if (++tid.x == l.block.x) {
            tid.x = 0;
            if (++tid.y == l.block.y) tid.y = 0, ++tid.z;
        }
        f.geo = &b.geo;
        f.linear = i;
        f.lane = i & 31;
        f.warp = i >> 5;
        f.state = State::Ready;
        f.copies.clear();
        f.open_group = 0;
    }
    w.block = &b;
    schedule(w, b);
    w.block = nullptr;
    for (unsigned i = 0; i < b.n; ++i) w.give_stack(b.f[i]);  // threads a failure left suspended
    if (b.failed) {
        std::lock_guard<std::mutex> g(l.error_mutex);
        if (!l.failed.exchange(true)) l.error = b.error;
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- the worker pool

class Pool {
  public:
    void run(Launch& l, uint64_t blocks) {
        const unsigned helpers = std::min<uint64_t>(threads() - 1, blocks - 1);
        {
            std::unique_lock<std::mutex> g(m_);
            for (; started_ < helpers; ++started_) std::thread([this] { loop(); }).detach();  // live as long as the process
            job_ = &l;
            total_ = blocks;
            next_ = 0;
            busy_ = helpers;
            wanted_ = helpers;
            ++generation_;
        }
        cv_.notify_all();
        work(l);
        std::unique_lock<std::mutex> g(m_);
        done_cv_.wait(g, [this] { return busy_ == 0; });
        job_ = nullptr;
    }

  private:
    static unsigned threads() {
        const int w = options().workers;
        return w > 0 ? (unsigned)w : std::max(1u, std::thread::hardware_concurrency());
    }
    void work(Launch& l) {
        for (;;) {
            const uint64_t i = next_.fetch_add(1);
            if (i >= total_ || l.failed.load()) break;
            run_block(l, i);
        }
    }
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            Launch* l;
            {
                std::unique_lock<std::mutex> g(m_);
                cv_.wait(g, [&] { return generation_ != seen && wanted_ > 0; });
                seen = generation_;
                --wanted_;
                l = job_;
            }
            work(*l);
            std::lock_guard<std::mutex> g(m_);
            if (--busy_ == 0) done_cv_.notify_all();
        }
    }
    std::mutex m_;
    std::condition_variable cv_, done_cv_;
    unsigned started_ = 0;
    Launch* job_ = nullptr;
    uint64_t total_ = 0, generation_ = 0;
    std::atomic<uint64_t> next_{0};
    unsigned busy_ = 0, wanted_ = 0;
};

// ---------------------------------------------------------------- faults

struct sigaction previous_segv, previous_bus;

void on_fault(int sig, siginfo_t* si, void* uc) {
    if (worker && worker->block) {
        Block& b = *worker->block;
        const Fiber* f = static_cast<const Fiber*>(current);
        const char* what = "an address outside every buffer";
        const auto* a = (const unsigned char*)si->si_addr;
        if (a >= worker->smem + region_bytes() && a < worker->smem + region_bytes() + page_size())
            what = "past the end of the dynamic shared memory";
        for (unsigned i = 0; i < worker->stacks.size(); ++i)
            if (worker->stacks[i]->guards(a)) what = "a fiber's stack guard (stack overflow; raise REVELIO_SIM_STACK)";
        char buf[512];
        const int n = std::snprintf(buf, sizeof buf, "revelio-sim: %s, thread %u: memory fault at %p (%s)\n", block_name(b).c_str(),
                                    f ? f->linear : 0u, si->si_addr, what);
        if (n > 0) (void)!write(2, buf, (std::size_t)std::min(n, (int)sizeof buf - 1));
    }
    struct sigaction& prev = sig == SIGSEGV ? previous_segv : previous_bus;
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction) return prev.sa_sigaction(sig, si, uc);
    } else if (prev.sa_handler != SIG_IGN && prev.sa_handler != SIG_DFL) {
        return prev.sa_handler(sig);
    }
    signal(sig, SIG_DFL);  // returning re-runs the faulting access, which now kills the process
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa{};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &previous_segv);
        sigaction(SIGBUS, &sa, &previous_bus);
    });
}

// ---------------------------------------------------------------- what ran

// Kernels launched by this process: appended to REVELIO_SIM_COVERAGE at exit, and with
// REVELIO_SIM_PROFILE a table of launches and host time per kernel on stderr.
class Ledger {
  public:
    void add(const std::string& name, double seconds) {
        if (options().coverage_path.empty() && !options().profile) return;
        std::lock_guard<std::mutex> g(m_);
        auto& e = runs_[name];
        e.first += 1;
        e.second += seconds;
    }
    ~Ledger() {
        if (runs_.empty()) return;
        if (!options().coverage_path.empty()) {
            std::string text;
            for (const auto& r : runs_) text += r.first + "\n";
            const int fd = open(options().coverage_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                (void)!write(fd, text.data(), text.size());
                close(fd);
            }
        }
        if (options().profile) {
            std::vector<std::pair<double, std::string>> rows;
            for (const auto& r : runs_) rows.emplace_back(r.second.second, r.first);
            std::sort(rows.rbegin(), rows.rend());
            std::fprintf(stderr, "revelio-sim: %-40s %10s %12s\n", "kernel", "launches", "host seconds");
            for (const auto& [secs, name] : rows) std::fprintf(stderr, "revelio-sim: %-40s %10llu %12.3f\n", name.c_str(), runs_[name].first, secs);
        }
    }

  private:
    std::mutex m_;
    std::map<std::string, std::pair<unsigned long long, double>> runs_;
};

Ledger& ledger() {
    static Ledger c;
    return c;
}

}  // namespace

// ---------------------------------------------------------------- the API kernels call

void block_error(const char* fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!worker || !worker->block || !current) fatal("%s", buf);
    Block& b = *worker->block;
    auto* f = running();
    fail(b, std::string("thread ") + std::to_string(f->linear) + ": " + buf);
    fiber_exit_to(f->ctx, worker->sched);
    __builtin_unreachable();
}

uint64_t shuffle(Shfl kind, unsigned mask, uint64_t bits, int arg, int width) {
    Fiber* f = running();
    f->op = Coll::Shuffle;
    f->shfl = kind;
    f->mask = mask;
    f->in = bits;
    f->arg = arg;
    f->width = width;
    arrive(f);
    return f->out;
}

unsigned ballot(unsigned mask, int pred) {
    Fiber* f = running();
    f->op = Coll::Ballot;
    f->mask = mask;
    f->in = pred != 0;
    arrive(f);
    return (unsigned)f->out;
}

unsigned match_any(unsigned mask, uint64_t value) {
    Fiber* f = running();
    f->op = Coll::Match;
    f->mask = mask;
    f->in = value;
    arrive(f);
    return (unsigned)f->out;
}

void syncwarp(unsigned mask) {
    Fiber* f = running();
    f->op = Coll::SyncWarp;
    f->mask = mask;
    arrive(f);
}

unsigned active_mask() {
    const Fiber* f = running();
    const Warp& w = worker->block->warps[f->warp];
    return w.exists & ~w.exited;
}

int barrier(int kind, int pred, const char* file, int line) {
    Fiber* f = running();
    f->state = State::AtBarrier;
    f->bar_kind = kind;
    f->bar_pred = pred;
    f->bar_file = file;
    f->bar_line = line;
    yield_from(f);
    return f->bar_result;
}

void ldmatrix(int num, bool trans, uint32_t addr, uint32_t* out) {
    Fiber* f = running();
    f->op = Coll::Ldmatrix;
    f->mask = 0xffffffffu;
    f->num = num;
    f->trans = trans;
    f->addr = addr;
    arrive(f);
    for (int i = 0; i < num; ++i) out[i] = f->regs[i];
}

void mma_m16n8k16(MmaType t, float* d, const uint32_t* a, const uint32_t* b, const float* c) {
    Fiber* f = running();
    f->op = Coll::Mma;
    f->mask = 0xffffffffu;
    f->mtype = t;
    std::memcpy(f->a, a, sizeof f->a);
    std::memcpy(f->b, b, sizeof f->b);
    std::memcpy(f->c, c, sizeof f->c);
    arrive(f);
    std::memcpy(d, f->d, sizeof f->d);
}

void* shared_static(int site, std::size_t bytes, std::size_t align) {
    Block& b = *worker->block;
    for (const auto& s : b.statics)
        if (s.first == site) return b.region + s.second;
    if (align < 1) align = 1;
    const std::size_t off = (b.static_used + align - 1) / align * align;
    if (off + bytes > kSharedDefault)
        block_error("static __shared__ variables take %zu bytes, over the %zu a kernel may declare", off + bytes, kSharedDefault);
    if (off + bytes + b.dyn_reserved > region_bytes() || off + bytes + b.dyn_bytes > kSharedOptin)
        block_error("static (%zu) plus dynamic (%zu) shared memory exceed the device's %zu bytes per block", off + bytes, b.dyn_bytes,
                    kSharedOptin);
    b.statics.emplace_back(site, off);
    b.static_used = off + bytes;
    std::memset(b.region + off, 0xff, bytes);
    return b.region + off;
}

void* shared_dynamic() { return worker->block->dyn; }

std::size_t dynamic_smem_bytes() { return worker->block->dyn_bytes; }

uint32_t shared_address(const void* p) {
    const Block& b = *worker->block;
    const auto* a = (const unsigned char*)p;
    if (a < b.region || a >= b.region + region_bytes())
        block_error("cvta.to.shared of %p, which is not in the block's shared memory", p);
    return (uint32_t)(a - b.region);
}

void* shared_pointer(uint32_t addr, std::size_t bytes, std::size_t align, const char* what) {
    const Block& b = *worker->block;
    if (addr % align) block_error("%s %u is not %zu-byte aligned", what, addr, align);
    const std::size_t dyn_off = (std::size_t)(b.dyn - b.region);
    const bool in_static = (std::size_t)addr + bytes <= b.static_used;
    const bool in_dyn = addr >= dyn_off && (std::size_t)addr + bytes <= dyn_off + b.dyn_bytes;
    if (!in_static && !in_dyn)
        block_error("%s %u (+%zu bytes) is outside the block's shared memory (%zu static, %zu dynamic bytes)", what, addr, bytes,
                    b.static_used, b.dyn_bytes);
    return b.region + addr;
}

void cp_async(uint32_t dst, const void* src, int cp_bytes, int src_bytes) {
    Fiber* f = running();
    auto* d = (unsigned char*)shared_pointer(dst, (std::size_t)cp_bytes, (std::size_t)cp_bytes, "cp.async destination");
    if (src_bytes < 0 || src_bytes > cp_bytes) block_error("cp.async of %d source bytes into a %d-byte copy", src_bytes, cp_bytes);
    if (src_bytes > 0 && ((uintptr_t)src % (uintptr_t)cp_bytes))
        block_error("cp.async source %p is not %d-byte aligned", src, cp_bytes);
    const Copy c{d, (const unsigned char*)src, cp_bytes, src_bytes, f->open_group};
    bool eager = options().cp_async_eager;
    if (options().order == Order::Random) eager = splitmix(worker->block->rng) & 1;
    if (eager) {
        perform(c);
    } else {
        f->copies.push_back(c);
    }
}

void cp_async_commit() { running()->open_group++; }

void cp_async_wait(int n) {
    Fiber* f = running();
    const int limit = f->open_group - n;  // groups below this one have landed
    std::size_t keep = 0;
    for (std::size_t i = 0; i < f->copies.size(); ++i) {
        if (f->copies[i].group < limit) {
            perform(f->copies[i]);
        } else {
            f->copies[keep++] = f->copies[i];
        }
    }
    f->copies.resize(keep);
}

bool run_launch(Launch& l) {
    static std::mutex one_at_a_time;  // one stream: launches run in order
    static Pool& pool = *new Pool;    // never destroyed: its threads wait on it until the process ends
    std::lock_guard<std::mutex> g(one_at_a_time);
    install_fault_handler();
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t blocks = (uint64_t)l.grid.x * l.grid.y * l.grid.z;
    pool.run(l, blocks);
    ledger().add(l.kernel->name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return !l.failed.load();
}

}  // namespace rsim
