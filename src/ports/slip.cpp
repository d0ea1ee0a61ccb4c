// SLIP framing (see slip.hpp).
#include "ports/slip.hpp"

#include <algorithm>

namespace usernet::ports::slip {

SlipDecoder::SlipDecoder(size_t max_packet) : cap_(std::max<size_t>(max_packet, 1)) {
    buf_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
}

size_t slip_encode(wire::MutBytes out, wire::Bytes packet) {
    if (out.size() < slip_max_encoded(packet.size())) return 0;
    uint8_t* p = out.data();
    size_t n = 0;
    // A leading END flushes whatever line noise the receiver has gathered.
    p[n++] = kEnd;
    for (uint8_t c : packet) {
        if (c == kEnd) {
            p[n++] = kEsc;
            p[n++] = kEscEnd;
        } else if (c == kEsc) {
            p[n++] = kEsc;
            p[n++] = kEscEsc;
        } else {
            p[n++] = c;
        }
    }
    p[n++] = kEnd;
    return n;
}

}  // namespace usernet::ports::slip
