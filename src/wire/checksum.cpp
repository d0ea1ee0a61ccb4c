#include "wire/checksum.hpp"

#include <cstring>

namespace usernet::wire {

uint32_t csum_partial(Bytes data, uint32_t sum) {
    const uint8_t* p = data.data();
    size_t n = data.size();
    // Sum big-endian words 32 bits at a time into a 64-bit accumulator:
    // loading four bytes big-endian is two adjacent 16-bit words.
    uint64_t acc = sum;
    while (n >= 8) {
        acc += load32(p);
        acc += load32(p + 4);
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        acc += load32(p);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        acc += load16(p);
        p += 2;
        n -= 2;
    }
    if (n) acc += uint32_t{p[0]} << 8;
    // Fold 64 -> 32 bits, keeping the end-around carries.
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    acc = (acc & 0xffffffffULL) + (acc >> 32);
    return static_cast<uint32_t>(acc);
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
