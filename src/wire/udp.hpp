// UDP headers (RFC 768).
//
// parse() checks the length field against the buffer (and trims to it); a
// zero checksum means "none" over IPv4 and is accepted there.
#pragma once

#include <optional>

#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace usernet::wire {

inline constexpr size_t kUdpHeaderLen = 8;

class UdpView {
public:
    static std::optional<UdpView> parse(Bytes seg) {
        if (seg.size() < kUdpHeaderLen) return std::nullopt;
        size_t len = load16(&seg[4]);
        if (len < kUdpHeaderLen || len > seg.size()) return std::nullopt;
        UdpView v;
        v.seg_ = seg.first(len);
        return v;
    }
    uint16_t src_port() const { return load16(&seg_[0]); }
    uint16_t dst_port() const { return load16(&seg_[2]); }
    uint16_t checksum() const { return load16(&seg_[6]); }
    Bytes segment() const { return seg_; }
    Bytes payload() const { return seg_.subspan(kUdpHeaderLen); }
    // True if the checksum is absent (IPv4 only) or verifies.
    bool checksum_ok(const IpAddr& src, const IpAddr& dst) const {
        if (checksum() == 0) return src.is_v4();
        uint64_t acc = uint64_t{csum_pseudo(src, dst, 17, static_cast<uint32_t>(seg_.size()))} +
                       csum_partial(seg_);
        acc = (acc & 0xffffffffULL) + (acc >> 32);
        return csum_fold(static_cast<uint32_t>(acc)) == 0;
    }

private:
    UdpView() = default;
    Bytes seg_;
};

// Writes a UDP header for a payload already in place after it and fills in
// the checksum. Returns the header length.
inline size_t build_udp(uint8_t* p, const IpAddr& src, const IpAddr& dst, uint16_t sport,
                        uint16_t dport, size_t payload_len) {
    size_t len = kUdpHeaderLen + payload_len;
    store16(p, sport);
    store16(p + 2, dport);
    store16(p + 4, static_cast<uint16_t>(len));
    store16(p + 6, 0);
    uint16_t c = csum_l4(src, dst, 17, Bytes(p, len));
    store16(p + 6, c == 0 ? 0xffff : c);
    return kUdpHeaderLen;
}

}  // namespace usernet::wire
