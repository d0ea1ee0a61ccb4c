// SLIP, RFC 1055: IP packets on a serial line, each ended by END (0xc0);
// END and ESC (0xdb) inside a packet are sent as ESC ESC_END (0xdc) and
// ESC ESC_ESC (0xdd). There is nothing else: no header, no checksum, no
// negotiation (the addresses are configured at both ends).
//
// The decoder is bounded: a packet longer than its buffer is counted and
// discarded up to the next END. As RFC 1055 suggests, ESC followed by any
// other byte keeps that byte (counted); empty packets (END END, the line
// noise flush many senders start with) are skipped. Pure: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "wire/bytes.hpp"

namespace usernet::ports::slip {

inline constexpr uint8_t kEnd = 0xc0;
inline constexpr uint8_t kEsc = 0xdb;
inline constexpr uint8_t kEscEnd = 0xdc;
inline constexpr uint8_t kEscEsc = 0xdd;

struct SlipStats {
    uint64_t packets = 0;
    uint64_t too_long = 0;
    uint64_t bad_escapes = 0;
};

class SlipDecoder {
public:
    explicit SlipDecoder(size_t max_packet);

    // Calls on_packet(wire::Bytes) for every complete packet; the span is
    // valid during the call only.
    template <class F>
    void feed(wire::Bytes in, F&& on_packet) {
        for (uint8_t c : in) {
            if (c == kEnd) {
                if (!discard_ && len_ > 0) {
                    stats_.packets++;
                    on_packet(wire::Bytes(buf_.get(), len_));
                }
                len_ = 0;
                escape_ = false;
                discard_ = false;
                continue;
            }
            if (discard_) continue;
            if (escape_) {
                escape_ = false;
                if (c == kEscEnd) c = kEnd;
                else if (c == kEscEsc) c = kEsc;
                else stats_.bad_escapes++;
            } else if (c == kEsc) {
                escape_ = true;
                continue;
            }
            if (len_ == cap_) {
                stats_.too_long++;
                discard_ = true;
                continue;
            }
            buf_[len_++] = c;
        }
    }
    const SlipStats& stats() const { return stats_; }

private:
    std::unique_ptr<uint8_t[]> buf_;
    size_t cap_;
    size_t len_ = 0;
    bool escape_ = false;
    bool discard_ = false;
    SlipStats stats_;
};

// The most bytes slip_encode() writes for a packet of n bytes.
constexpr size_t slip_max_encoded(size_t n) { return 2 * n + 2; }

// Writes END, the escaped packet and END into out; returns the length, or
// 0 when out is shorter than slip_max_encoded(packet.size()).
size_t slip_encode(wire::MutBytes out, wire::Bytes packet);

}  // namespace usernet::ports::slip
