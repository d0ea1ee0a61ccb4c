// Guest bytes that arrived beyond a hole (RFC 9293 3.10.7.4: "segments
// with higher beginning sequence numbers may be held for later
// processing"), kept until the hole is filled and then written to the host
// socket in order.
//
// One queue is a ring of kBytes indexed by sequence number (byte s lives at
// s mod kBytes) and up to kMaxRanges disjoint, sorted ranges saying which
// sequence numbers it holds. Every byte of every range lies within kBytes
// of every other, so no two live bytes share a slot; a segment that would
// break that is clipped. Plain data and pure functions, so that it is
// tested without sockets; the translator (tcp_nat.cpp) lends a queue to a
// flow from a bounded pool when the flow first needs one and takes it back
// once it is empty.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace usernet::nat::tcp {

class OooQueue {
public:
    static constexpr uint32_t kBytes = 1024 * 1024;  // a power of two
    static constexpr size_t kMaxRanges = 8;
    struct Range {
        uint32_t start = 0;  // first sequence number held
        uint32_t end = 0;    // one past the last
    };
    enum class Added {
        stored,   // all of the segment's bytes beyond rcv_nxt are held
        clipped,  // some are (the window or the ring cut it short)
        refused,  // none: no room, or nothing inside the limits
    };

    explicit OooQueue(uint8_t* ring) : ring_(ring) {}

    // Holds the bytes of a segment that starts at seq, beyond rcv_nxt,
    // clipped to the right edge of the window (right_edge, exclusive) and
    // to the ring. fin: the segment carried a FIN after its data; it is
    // remembered when the data reaches it.
    Added add(uint32_t seq, std::span<const uint8_t> data, bool fin, uint32_t rcv_nxt,
              uint32_t right_edge);

    // Forgets ranges wholly below rcv_nxt (already written). A range that
    // rcv_nxt falls inside is kept whole: a short write can move rcv_nxt
    // back, and those bytes are still good.
    void trim(uint32_t rcv_nxt);

    // The held bytes that continue the stream at rcv_nxt (the first range,
    // when it starts at or before rcv_nxt), as up to two slices of the
    // ring. Returns their length (0: still a hole).
    uint32_t ready(uint32_t rcv_nxt, iovec out[2], int* n) const;

    // Whether the guest's FIN sits at seq (its data all written).
    bool fin_at(uint32_t seq) const { return has_fin_ && fin_seq_ == seq; }
    bool has_fin() const { return has_fin_; }
    uint32_t fin_seq() const { return fin_seq_; }  // valid while has_fin()
    bool empty() const { return n_ == 0 && !has_fin_; }
    void clear() {
        n_ = 0;
        has_fin_ = false;
    }

    // The held ranges, lowest first; latest(): the index of the range that
    // holds the most recently added segment (RFC 2018 4: the first SACK
    // block), or -1.
    std::span<const Range> ranges() const { return {ranges_.data(), n_}; }
    int latest() const;
    // Bytes held (for statistics and tests).
    uint32_t held() const;

private:
    void copy_in(uint32_t seq, const uint8_t* p, uint32_t len);

    uint8_t* ring_;
    std::array<Range, kMaxRanges> ranges_{};
    size_t n_ = 0;
    uint32_t latest_seq_ = 0;
    uint32_t fin_seq_ = 0;
    bool has_fin_ = false;
};

}  // namespace usernet::nat::tcp
