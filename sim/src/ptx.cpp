// ptx.cpp: the inline PTX our kernels use, executed on the CPU, and the kernel registry.
//
// build.py turns every `asm("template" : outputs : inputs)` of kernels/ into a PtxSite (parsed
// once, when the library loads) and a call PtxSite::run({operands}); operands come in GCC's
// numbering (outputs first), so `%N` in the template is operand N. Supported instructions:
//   cvt.f32.f16, cvt.rn.f16.f32, cvt.rn.{f16x2,bf16x2}.f32  exact IEEE conversions (round to
//                                                           nearest even; NaN -> 0x7fff)
//   ex2.approx[.ftz].f32, rcp.approx[.ftz].f32             exp2f and 1/x in f32 (the GPU's are
//                                                           within 2 ulp); .ftz flushes
//                                                           subnormal inputs and results
//   mov.u32 %0, %dynamic_smem_size                          the launch's dynamic smem bytes
//   cvta.to.shared.u64 (+ cvt.u32.u64)                      offset in the block's smem window
//   cp.async.{ca,cg}.shared.global [d], [s], N[, src]       queued copy (exec.cpp)
//   cp.async.commit_group / wait_group N / wait_all
//   ldmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16
//   mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32
//   ""                                                      (a compiler barrier: nothing)
// Anything else stops the library from loading, naming the kernel source line.

#include "half.h"
#include "sim.h"

#include <cstdlib>
#include <map>
#include <memory>

namespace rsim {

static float ftz(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }

// ---------------------------------------------------------------- sites

namespace {

enum Op { Nop, CvtF32F16, CvtF16F32, CvtF16x2, CvtBf16x2, Ex2, Rcp, DynSmem, CvtaShared, CpAsync, CpCommit, CpWait, CpWaitAll, Ldmatrix, Mma };
enum Flag { Ftz = 1, Trans = 2, Bf16 = 4 };

std::string squeeze(const char* t) {
    std::string s;
    bool space = false;
    for (const char* p = t; *p; ++p) {
        if (*p == '%' && p[1] == '%') continue;  // "%%" is a literal '%'
        if (std::isspace((unsigned char)*p)) {
            space = !s.empty();
            continue;
        }
        if (space) s += ' ';
        space = false;
        s += *p;
    }
    return s;
}

bool starts(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

uint64_t read(const AsmOperand& o) {
    if (o.kind == AsmOperand::In) return o.bits;
    uint64_t v = 0;
    std::memcpy(&v, o.ptr, o.bytes);
    return v;
}
uint32_t read_u32(const AsmOperand& o) { return (uint32_t)read(o); }
float read_f32(const AsmOperand& o) {
    const uint32_t b = read_u32(o);
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
void write(const AsmOperand& o, uint64_t v, const char* where) {
    if (o.kind == AsmOperand::In) fatal("%s: asm writes to an input operand", where);
    std::memcpy(o.ptr, &v, o.bytes);
}
void write_f32(const AsmOperand& o, float f, const char* where) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    write(o, b, where);
}

}  // namespace

PtxSite::PtxSite(const char* tmpl, const char* where) : op_(Nop), flags_(0), nref_(0), refs_{}, where_(where) {
    const std::string s = squeeze(tmpl);
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == '%' && std::isdigit((unsigned char)s[i + 1])) {
            if (nref_ == 16) fatal("%s: too many operands in `%s`", where, tmpl);
            refs_[nref_++] = std::atoi(s.c_str() + i + 1);
        }
    }
    auto has = [&](const char* p) { return s.find(p) != std::string::npos; };
    if (s.empty()) {
        op_ = Nop;
    } else if (starts(s, "cvt.f32.f16 ")) {
        op_ = CvtF32F16;
    } else if (starts(s, "cvt.rn.f16.f32 ")) {
        op_ = CvtF16F32;
    } else if (starts(s, "cvt.rn.f16x2.f32 ")) {
        op_ = CvtF16x2;
    } else if (starts(s, "cvt.rn.bf16x2.f32 ")) {
        op_ = CvtBf16x2;
    } else if (starts(s, "ex2.approx.ftz.f32 ") || starts(s, "ex2.approx.f32 ")) {
        op_ = Ex2;
        flags_ = has(".ftz") ? Ftz : 0;
    } else if (starts(s, "rcp.approx.ftz.f32 ") || starts(s, "rcp.approx.f32 ")) {
        op_ = Rcp;
        flags_ = has(".ftz") ? Ftz : 0;
    } else if (starts(s, "mov.u32 ") && has("%dynamic_smem_size")) {
        op_ = DynSmem;
    } else if (has("cvta.to.shared.u64") && has("cvt.u32.u64")) {
        op_ = CvtaShared;
    } else if (starts(s, "cp.async.cg.shared.global ") || starts(s, "cp.async.ca.shared.global ")) {
        op_ = CpAsync;
        // "[%0], [%1], 16, %2;": the copy size is the literal after the second operand.
        const std::size_t p = s.find("], ", s.find("], ") + 3);
        flags_ = p == std::string::npos ? 0 : std::atoi(s.c_str() + p + 3);
        if (flags_ != 4 && flags_ != 8 && flags_ != 16) fatal("%s: cp.async size in `%s`", where, tmpl);
    } else if (s == "cp.async.commit_group;") {
        op_ = CpCommit;
    } else if (starts(s, "cp.async.wait_group ")) {
        op_ = CpWait;
    } else if (s == "cp.async.wait_all;") {
        op_ = CpWaitAll;
    } else if (starts(s, "ldmatrix.sync.aligned.m8n8.") && has(".shared.b16")) {
        op_ = Ldmatrix;
        flags_ = has(".trans") ? Trans : 0;
        const int num = has(".x4") ? 4 : has(".x2") ? 2 : 1;
        if (nref_ != num + 1) fatal("%s: ldmatrix operands in `%s`", where, tmpl);
    } else if (starts(s, "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 ") ||
               starts(s, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 ")) {
        op_ = Mma;
        flags_ = has(".bf16") ? Bf16 : 0;
        if (nref_ != 14) fatal("%s: mma operands in `%s`", where, tmpl);
    } else {
        fatal("%s: the simulator does not implement the inline PTX `%s`; add it to sim/src/ptx.cpp", where, tmpl);
    }
}

void PtxSite::run(std::initializer_list<AsmOperand> list) const {
    const AsmOperand* ops = list.begin();
    const int n = (int)list.size();
    for (int i = 0; i < nref_; ++i)
        if (refs_[i] >= n) fatal("%s: operand %%%d of %d", where_, refs_[i], n);
    auto op = [&](int i) -> const AsmOperand& { return ops[refs_[i]]; };
    switch (op_) {
        case Nop: break;
        case CvtF32F16: write_f32(op(0), half_to_float((uint16_t)read(op(1))), where_); break;
        case CvtF16F32: write(op(0), float_to_half(read_f32(op(1))), where_); break;
        case CvtF16x2:  // d = {cvt(a) in the upper half, cvt(b) in the lower}
            write(op(0), (uint32_t)float_to_half(read_f32(op(2))) | ((uint32_t)float_to_half(read_f32(op(1))) << 16), where_);
            break;
        case CvtBf16x2:
            write(op(0), (uint32_t)float_to_bf16(read_f32(op(2))) | ((uint32_t)float_to_bf16(read_f32(op(1))) << 16), where_);
            break;
        case Ex2: {
            const bool z = flags_ & Ftz;
            const float x = read_f32(op(1));
            const float y = std::exp2(z ? ftz(x) : x);
            write_f32(op(0), z ? ftz(y) : y, where_);
            break;
        }
        case Rcp: {
            const bool z = flags_ & Ftz;
            const float x = read_f32(op(1));
            const float y = 1.0f / (z ? ftz(x) : x);
            write_f32(op(0), z ? ftz(y) : y, where_);
            break;
        }
        case DynSmem: write(op(0), (uint32_t)dynamic_smem_bytes(), where_); break;
        case CvtaShared: write(op(1), shared_address((const void*)(uintptr_t)read(op(0))), where_); break;
        case CpAsync:
            cp_async(read_u32(op(0)), (const void*)(uintptr_t)read(op(1)), flags_, nref_ > 2 ? (int)read_u32(op(2)) : flags_);
            break;
        case CpCommit: cp_async_commit(); break;
        case CpWait: cp_async_wait((int)read(op(0))); break;
        case CpWaitAll:
            cp_async_commit();
            cp_async_wait(0);
            break;
        case Ldmatrix: {
            const int num = nref_ - 1;
            uint32_t r[4];
            ldmatrix(num, flags_ & Trans, read_u32(op(num)), r);
            for (int i = 0; i < num; ++i) write(op(i), r[i], where_);
            break;
        }
        case Mma: {
            uint32_t a[4], b[2];
            float c[4], d[4];
            for (int i = 0; i < 4; ++i) a[i] = read_u32(op(4 + i));
            for (int i = 0; i < 2; ++i) b[i] = read_u32(op(8 + i));
            for (int i = 0; i < 4; ++i) c[i] = read_f32(op(10 + i));
            mma_m16n8k16(flags_ & Bf16 ? MmaType::BF16 : MmaType::F16, d, a, b, c);
            for (int i = 0; i < 4; ++i) write_f32(op(i), d[i], where_);
            break;
        }
    }
}

// ---------------------------------------------------------------- kernel registry

namespace {
std::vector<KernelInfo>& registry() {
    static std::vector<KernelInfo> r;
    return r;
}
}  // namespace

KernelReg::KernelReg(const char* module, const char* name, Thunk thunk, int nparams, const unsigned* param_bytes) {
    if (find_kernel(name)) fatal("kernel %s is defined twice (%s)", name, module);
    registry().push_back({module, name, thunk, std::vector<unsigned>(param_bytes, param_bytes + nparams)});
}

const std::vector<KernelInfo>& all_kernels() { return registry(); }

const KernelInfo* find_kernel(const std::string& name) {
    for (const auto& k : registry())
        if (k.name == name) return &k;
    return nullptr;
}

}  // namespace rsim
