// half.h: exact conversions between f32 and the 16-bit floats (f16, bf16), as the GPU's cvt.rn
// instructions do them: round to nearest even, overflow to infinity, NaN to the canonical 0x7fff.

#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace rsim {

inline float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        const float v = std::ldexp((float)m, -24);  // zero or subnormal: m * 2^-24, exact
        return sign ? -v : v;
    }
    if (e == 31) return bits_to_float(sign | 0x7f800000u | (m << 13));
    return bits_to_float(sign | ((e + 112) << 23) | (m << 13));
}

inline float bf16_to_float(uint16_t h) { return bits_to_float((uint32_t)h << 16); }

inline uint16_t float_to_half(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7fff;          // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to infinity
    if (a >= 0x38800000u) {                      // normal: rebias, round 23 -> 10 bits
        const uint32_t r = a - 0x38000000u;
        return (uint16_t)(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
    }
    // Subnormal or zero: the value in units of 2^-24, rounded to nearest even (exact scaling).
    const float v = std::nearbyint(std::fabs(f) * 16777216.0f);
    return (uint16_t)(sign | (uint16_t)v);
}

inline uint16_t float_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace rsim
