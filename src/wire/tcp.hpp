// TCP headers and options (RFC 9293; window scale and timestamps RFC 7323;
// SACK-permitted RFC 2018).
//
// parse() checks the data offset against the buffer. Options are parsed on
// demand by parse_options(), which walks the option area with a bound on
// every kind/length pair and ignores what it does not know. Urgent data is
// not interpreted: the urgent pointer is exposed but the NAT treats the
// bytes as ordinary in-band data (libslirp's CVE-2026-9539 came from it).
#pragma once

#include <array>
#include <optional>

#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace usernet::wire {

inline constexpr size_t kTcpHeaderLen = 20;
inline constexpr size_t kTcpMaxHeaderLen = 60;

namespace tcpflag {
inline constexpr uint8_t fin = 0x01;
inline constexpr uint8_t syn = 0x02;
inline constexpr uint8_t rst = 0x04;
inline constexpr uint8_t psh = 0x08;
inline constexpr uint8_t ack = 0x10;
inline constexpr uint8_t urg = 0x20;
inline constexpr uint8_t ece = 0x40;
inline constexpr uint8_t cwr = 0x80;
}  // namespace tcpflag

struct TcpOptions {
    std::optional<uint16_t> mss;
    std::optional<uint8_t> wscale;  // clamped to 14 as RFC 7323 2.3 says
    bool sack_permitted = false;
    std::optional<uint32_t> ts_val;
    std::optional<uint32_t> ts_ecr;
    // SACK blocks (RFC 2018 3): [left, right) edges, as many as fit.
    struct SackBlock {
        uint32_t left = 0;
        uint32_t right = 0;
    };
    std::array<SackBlock, 4> sack{};
    uint8_t sack_blocks = 0;
};

// Parses an option area. Malformed options (a length that runs past the
// end or is below 2) end the walk; what was parsed before stays valid.
TcpOptions parse_tcp_options(Bytes opts);

class TcpView {
public:
    static std::optional<TcpView> parse(Bytes seg) {
        if (seg.size() < kTcpHeaderLen) return std::nullopt;
        size_t off = static_cast<size_t>(seg[12] >> 4) * 4;
        if (off < kTcpHeaderLen || off > seg.size()) return std::nullopt;
        TcpView v;
        v.seg_ = seg;
        v.off_ = off;
        return v;
    }
    uint16_t src_port() const { return load16(&seg_[0]); }
    uint16_t dst_port() const { return load16(&seg_[2]); }
    uint32_t seq() const { return load32(&seg_[4]); }
    uint32_t ack() const { return load32(&seg_[8]); }
    uint8_t flags() const { return seg_[13]; }
    bool has(uint8_t f) const { return (flags() & f) != 0; }
    uint16_t window() const { return load16(&seg_[14]); }
    uint16_t checksum() const { return load16(&seg_[16]); }
    uint16_t urgent() const { return load16(&seg_[18]); }
    size_t header_len() const { return off_; }
    Bytes options() const { return seg_.subspan(kTcpHeaderLen, off_ - kTcpHeaderLen); }
    TcpOptions parse_options() const { return parse_tcp_options(options()); }
    Bytes segment() const { return seg_; }
    Bytes payload() const { return seg_.subspan(off_); }
    // Sequence space the segment occupies (payload plus SYN and FIN).
    uint32_t seg_len() const {
        return static_cast<uint32_t>(payload().size()) + (has(tcpflag::syn) ? 1 : 0) +
               (has(tcpflag::fin) ? 1 : 0);
    }
    bool checksum_ok(const IpAddr& src, const IpAddr& dst) const {
        return csum_l4(src, dst, 6, seg_) == 0;
    }

private:
    TcpView() = default;
    Bytes seg_;
    size_t off_ = 0;
};

// What a builder puts in the option area (SYN options only where set).
struct TcpOptionsOut {
    uint16_t mss = 0;       // 0: absent
    int wscale = -1;        // -1: absent
    bool sack_permitted = false;
};

// Writes a TCP header (options padded to 4 bytes) with checksum zero.
// Returns the header length. The caller places the payload after it and
// calls finish_tcp_checksum().
size_t build_tcp(uint8_t* p, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                 uint8_t flags, uint16_t window, const TcpOptionsOut* opts = nullptr);

// Computes and stores the checksum over header + payload (seg_len bytes at p).
inline void finish_tcp_checksum(uint8_t* p, size_t seg_len, const IpAddr& src, const IpAddr& dst) {
    store16(p + 16, 0);
    store16(p + 16, csum_l4(src, dst, 6, Bytes(p, seg_len)));
}

// Serial-number arithmetic (RFC 1982) for 32-bit sequence numbers.
inline bool seq_lt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }
inline bool seq_le(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) <= 0; }
inline bool seq_gt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }
inline bool seq_ge(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

}  // namespace usernet::wire
