#include "wire/checksum.hpp"

#include <bit>
#include <cstring>

namespace usernet::wire {

uint32_t csum_partial(Bytes data, uint32_t sum) {
    const uint8_t* p = data.data();
    size_t n = data.size();
    // The ones' complement sum does not depend on byte order (RFC 1071
    // 2(B)): sum native 32-bit words (two 16-bit words each) into four
    // 64-bit accumulators, which compilers vectorise, fold to 16 bits and
    // swap the result into network order once. No carry is lost: each
    // accumulator takes at most 2^32 words of under 2^32 each.
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    while (n >= 16) {
        uint32_t w[4];
        std::memcpy(w, p, 16);
        a0 += w[0];
        a1 += w[1];
        a2 += w[2];
        a3 += w[3];
        p += 16;
        n -= 16;
    }
    uint64_t acc = (a0 & 0xffffffffULL) + (a0 >> 32) + (a1 & 0xffffffffULL) + (a1 >> 32) +
                   (a2 & 0xffffffffULL) + (a2 >> 32) + (a3 & 0xffffffffULL) + (a3 >> 32);
    while (n >= 4) {
        uint32_t w;
        std::memcpy(&w, p, 4);
        acc += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        std::memcpy(&w, p, 2);
        acc += w;
        p += 2;
        n -= 2;
    }
    // An odd last byte is the first byte of a zero-padded word.
    if (n) acc += std::endian::native == std::endian::little ? uint64_t{p[0]} : uint64_t{p[0]} << 8;
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    uint32_t s = static_cast<uint32_t>((acc & 0xffff) + (acc >> 16));
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    if constexpr (std::endian::native == std::endian::little)
        s = static_cast<uint32_t>(((s & 0xff) << 8) | (s >> 8));
    uint64_t r = uint64_t{sum} + s;
    r = (r & 0xffffffffULL) + (r >> 32);
    return static_cast<uint32_t>(r);
}

uint16_t csum_fold(uint32_t sum) {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum & 0xffff);
}

uint32_t csum_pseudo(const IpAddr& src, const IpAddr& dst, uint8_t proto, uint32_t l4_len) {
    uint64_t acc = 0;
    if (src.is_v4()) {
        Ipv4 s = src.as_v4(), d = dst.as_v4();
        acc += (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff);
        acc += proto;
        acc += l4_len;
    } else {
        acc += csum_partial(Bytes(src.b.data(), 16));
        acc += csum_partial(Bytes(dst.b.data(), 16));
        acc += (l4_len >> 16) + (l4_len & 0xffff);
        acc += proto;
    }
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    return static_cast<uint32_t>(acc);
}

uint16_t csum_pseudo_partial(const IpAddr& src, const IpAddr& dst, uint8_t proto,
                             uint32_t l4_len) {
    return static_cast<uint16_t>(~csum_fold(csum_pseudo(src, dst, proto, l4_len)));
}

uint16_t csum_l4(const IpAddr& src, const IpAddr& dst, uint8_t proto, Bytes segment) {
    uint32_t ps = csum_pseudo(src, dst, proto, static_cast<uint32_t>(segment.size()));
    uint64_t acc = uint64_t{ps} + csum_partial(segment);
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    return csum_fold(static_cast<uint32_t>(acc));
}

uint16_t csum_update16(uint16_t old_csum, uint16_t old_word, uint16_t new_word) {
    // HC' = ~(~HC + ~m + m')
    uint32_t sum = static_cast<uint16_t>(~old_csum);
    sum += static_cast<uint16_t>(~old_word);
    sum += new_word;
    return csum_fold(sum);
}

uint16_t csum_update32(uint16_t old_csum, uint32_t old_val, uint32_t new_val) {
    uint16_t c = csum_update16(old_csum, static_cast<uint16_t>(old_val >> 16),
                               static_cast<uint16_t>(new_val >> 16));
    return csum_update16(c, static_cast<uint16_t>(old_val), static_cast<uint16_t>(new_val));
}

}  // namespace usernet::wire
