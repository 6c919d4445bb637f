// module.cpp: reading a cubin (ELF64) or PTX image into a Module (see module.h).
//
// From a cubin: kernels are the global function symbols marked as entries (st_other 0x10);
// registers per thread come from the EIATTR_REGCOUNT records of `.nv.info`, the launch bound
// from EIATTR_MAX_THREADS and the parameter sizes from EIATTR_KPARAM_INFO in
// `.nv.info.<kernel>`, static shared memory from the size of `.nv.shared.<kernel>`. The
// parameter sizes are checked against the host build's signature, so a struct laid out
// differently by g++ and NVCC is caught at load.
// From PTX: kernels are the `.entry` names (no limits known).

#include "module.h"

#include <cstring>
#include <map>

namespace rsim {

Function* Module::find(const std::string& name) const {
    for (const auto& f : functions)
        if (f->name == name) return f.get();
    return nullptr;
}

namespace {

struct Elf64Header {
    unsigned char ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct Elf64Section {
    uint32_t name, type;
    uint64_t flags, addr, offset, size;
    uint32_t link, info;
    uint64_t addralign, entsize;
};
struct Elf64Symbol {
    uint32_t name;
    unsigned char info, other;
    uint16_t shndx;
    uint64_t value, size;
};

constexpr uint8_t kEiattrMaxThreads = 0x05;
constexpr uint8_t kEiattrKparamInfo = 0x17;
constexpr uint8_t kEiattrRegcount = 0x2f;
constexpr uint8_t kEifmtSval = 0x04;  // attribute with a 16-bit size and a payload

// Calls f(attr, payload, size) for each record of an .nv.info section.
template <typename F> void each_attr(const unsigned char* p, std::size_t n, F f) {
    std::size_t i = 0;
    while (i + 4 <= n) {
        const uint8_t fmt = p[i], attr = p[i + 1];
        if (fmt == kEifmtSval) {
            uint16_t size;
            std::memcpy(&size, p + i + 2, 2);
            if (i + 4 + size > n) return;
            f(attr, p + i + 4, (std::size_t)size);
            i += 4 + size;
        } else {
            f(attr, p + i + 2, (std::size_t)2);  // 16-bit value in place of the size
            i += 4;
        }
    }
}

bool load_cubin(const unsigned char* img, Module& m, std::string& error) {
    Elf64Header h;
    std::memcpy(&h, img, sizeof h);
    if (h.ident[4] != 2 || h.shentsize != sizeof(Elf64Section)) {
        error = "not a 64-bit cubin";
        return false;
    }
    std::vector<Elf64Section> sec(h.shnum);
    for (unsigned i = 0; i < h.shnum; ++i) std::memcpy(&sec[i], img + h.shoff + i * sizeof(Elf64Section), sizeof(Elf64Section));
    auto sec_name = [&](const Elf64Section& s) { return std::string((const char*)img + sec[h.shstrndx].offset + s.name); };
    const Elf64Section* symtab = nullptr;
    for (const auto& s : sec)
        if (s.type == 2) symtab = &s;  // SHT_SYMTAB
    if (!symtab) {
        error = "cubin without a symbol table";
        return false;
    }
    const char* strtab = (const char*)img + sec[symtab->link].offset;
    std::map<uint32_t, Function*> by_symbol;
    const std::size_t nsym = symtab->size / sizeof(Elf64Symbol);
    for (std::size_t i = 0; i < nsym; ++i) {
        Elf64Symbol s;
        std::memcpy(&s, img + symtab->offset + i * sizeof(Elf64Symbol), sizeof s);
        const bool func = (s.info & 0xf) == 2, global = (s.info >> 4) == 1, entry = (s.other & 0x10) != 0;
        if (!(func && global && entry)) continue;
        auto f = std::make_unique<Function>();
        f->name = strtab + s.name;
        by_symbol[(uint32_t)i] = f.get();
        m.functions.push_back(std::move(f));
    }
    for (const auto& s : sec) {
        const std::string name = sec_name(s);
        const unsigned char* p = img + s.offset;
        if (name == ".nv.info") {
            each_attr(p, s.size, [&](uint8_t attr, const unsigned char* v, std::size_t n) {
                if (attr != kEiattrRegcount || n < 8) return;
                uint32_t sym, regs;
                std::memcpy(&sym, v, 4);
                std::memcpy(&regs, v + 4, 4);
                if (by_symbol.count(sym)) by_symbol[sym]->registers = (int)regs;
            });
        } else if (name.rfind(".nv.info.", 0) == 0) {
            Function* f = m.find(name.substr(9));
            if (!f) continue;
            std::map<unsigned, unsigned> params;  // ordinal -> bytes
            each_attr(p, s.size, [&](uint8_t attr, const unsigned char* v, std::size_t n) {
                if (attr == kEiattrMaxThreads && n >= 12) {
                    uint32_t x, y, z;
                    std::memcpy(&x, v, 4);
                    std::memcpy(&y, v + 4, 4);
                    std::memcpy(&z, v + 8, 4);
                    f->max_threads = (int)(x * y * z);
                } else if (attr == kEiattrKparamInfo && n >= 12) {
                    uint16_t ordinal;
                    uint32_t flags;
                    std::memcpy(&ordinal, v + 4, 2);
                    std::memcpy(&flags, v + 8, 4);
                    params[ordinal] = (flags >> 18) & 0x3fff;
                }
            });
            if (!f->kernel) f->kernel = find_kernel(f->name);
            if (f->kernel && !params.empty()) {
                const auto& host = f->kernel->param_bytes;
                bool same = params.size() == host.size();
                for (unsigned i = 0; same && i < host.size(); ++i) same = params.count(i) && params[i] == host[i];
                if (!same) {
                    error = "kernel " + f->name + ": the GPU build takes " + std::to_string(params.size()) +
                            " parameters of sizes";
                    for (const auto& [k, v] : params) error += " " + std::to_string(v);
                    error += ", the host build " + std::to_string(host.size()) + " of sizes";
                    for (unsigned v : host) error += " " + std::to_string(v);
                    return false;
                }
            }
        } else if (name.rfind(".nv.shared.", 0) == 0) {
            if (Function* f = m.find(name.substr(11))) f->static_smem = s.size;
        }
    }
    return true;
}

bool load_ptx(const char* text, Module& m) {
    const char* p = text;
    while ((p = std::strstr(p, ".entry")) != nullptr) {
        p += 6;
        while (*p == ' ' || *p == '\t') ++p;
        const char* e = p;
        while ((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || (*e >= '0' && *e <= '9') || *e == '_' || *e == '$') ++e;
        if (e > p) {
            auto f = std::make_unique<Function>();
            f->name.assign(p, e);
            m.functions.push_back(std::move(f));
        }
        p = e;
    }
    return true;
}

}  // namespace

bool load_image(const void* image, Module& m, std::string& error) {
    const auto* img = (const unsigned char*)image;
    const bool elf = img[0] == 0x7f && img[1] == 'E' && img[2] == 'L' && img[3] == 'F';
    if (!(elf ? load_cubin(img, m, error) : load_ptx((const char*)image, m))) return false;
    for (auto& f : m.functions) {
        if (!f->kernel) f->kernel = find_kernel(f->name);
        if (!f->kernel) {
            error = "kernel " + f->name +
                    " is in the module but not in the simulator's build: rebuild it (python3 sim/build.py) from the same "
                    "kernels/ as the binary";
            return false;
        }
    }
    // Every kernel the simulator has for this source file must be in the image too.
    if (!m.functions.empty()) {
        const std::string& source = m.functions[0]->kernel->module;
        for (const auto& k : all_kernels()) {
            if (k.module == source && !m.find(k.name)) {
                error = "kernel " + k.name + " of the simulator's " + source +
                        " is not in the module: the simulator was built from other kernels/ than the binary";
                return false;
            }
        }
    }
    return true;
}

}  // namespace rsim
