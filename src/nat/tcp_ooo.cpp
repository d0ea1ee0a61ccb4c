#include "nat/tcp_ooo.hpp"

#include <algorithm>
#include <cstring>

#include "wire/tcp.hpp"

namespace usernet::nat::tcp {

namespace {
constexpr uint32_t kMask = OooQueue::kBytes - 1;
static_assert((OooQueue::kBytes & kMask) == 0, "the ring's size is a power of two");
}  // namespace

void OooQueue::copy_in(uint32_t seq, const uint8_t* p, uint32_t len) {
    uint32_t pos = seq & kMask;
    uint32_t first = std::min(len, kBytes - pos);
    std::memcpy(ring_ + pos, p, first);
    if (len > first) std::memcpy(ring_, p + first, len - first);
}

OooQueue::Added OooQueue::add(uint32_t seq, std::span<const uint8_t> data, bool fin,
                              uint32_t rcv_nxt, uint32_t right_edge) {
    using wire::seq_ge;
    using wire::seq_gt;
    using wire::seq_le;
    using wire::seq_lt;
    if (!seq_gt(seq, rcv_nxt) || data.size() > kBytes) return Added::refused;
    const uint32_t len = static_cast<uint32_t>(data.size());
    uint32_t s = seq;
    uint32_t e = seq + len;
    // Nothing past the right edge of the window, past a FIN already seen,
    // or farther than the ring reaches from what it holds.
    if (seq_gt(e, right_edge)) e = right_edge;
    if (has_fin_ && seq_gt(e, fin_seq_)) e = fin_seq_;
    if (n_ > 0) {
        uint32_t lo = seq_lt(ranges_[0].start, s) ? ranges_[0].start : s;
        if (seq_gt(e, lo + kBytes)) e = lo + kBytes;
        uint32_t floor = ranges_[n_ - 1].end - kBytes;
        if (seq_lt(s, floor)) s = floor;
    } else if (seq_gt(e, s + kBytes)) {
        e = s + kBytes;
    }
    const bool whole = s == seq && e == seq + len;
    // A FIN counts only behind all of the segment's data, inside the
    // window, and with nothing held beyond it.
    const bool take_fin = fin && whole && seq_le(e, right_edge) &&
                          (n_ == 0 || seq_le(ranges_[n_ - 1].end, e)) &&
                          !(has_fin_ && fin_seq_ != e);
    if (!seq_lt(s, e)) {
        if (!take_fin) return Added::refused;
        has_fin_ = true;
        fin_seq_ = e;
        return Added::stored;
    }

    // Merge [s, e) into the sorted ranges: those that end before it stay
    // in front, those that touch it join it, the rest follow. Positions
    // are compared as offsets from the lowest sequence number involved.
    const uint32_t base = n_ > 0 && seq_lt(ranges_[0].start, s) ? ranges_[0].start : s;
    auto off = [base](uint32_t x) { return x - base; };
    std::array<Range, kMaxRanges + 1> out{};
    size_t k = 0;
    Range joined{s, e};
    bool placed = false;
    for (size_t i = 0; i < n_; i++) {
        const Range& r = ranges_[i];
        if (off(r.end) < off(joined.start)) {
            out[k++] = r;
        } else if (off(r.start) > off(joined.end)) {
            if (!placed) {
                out[k++] = joined;
                placed = true;
            }
            out[k++] = r;
        } else {
            if (off(r.start) < off(joined.start)) joined.start = r.start;
            if (off(r.end) > off(joined.end)) joined.end = r.end;
        }
        if (k > kMaxRanges) return Added::refused;
    }
    if (!placed) out[k++] = joined;
    if (k > kMaxRanges) return Added::refused;

    copy_in(s, data.data() + (s - seq), e - s);
    std::copy(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k), ranges_.begin());
    n_ = k;
    latest_seq_ = s;
    if (take_fin) {
        has_fin_ = true;
        fin_seq_ = e;
    }
    return whole ? Added::stored : Added::clipped;
}

void OooQueue::trim(uint32_t rcv_nxt) {
    size_t drop = 0;
    while (drop < n_ && wire::seq_le(ranges_[drop].end, rcv_nxt)) drop++;
    if (drop > 0) {
        std::copy(ranges_.begin() + static_cast<std::ptrdiff_t>(drop),
                  ranges_.begin() + static_cast<std::ptrdiff_t>(n_), ranges_.begin());
        n_ -= drop;
    }
    if (has_fin_ && wire::seq_lt(fin_seq_, rcv_nxt)) has_fin_ = false;
}

uint32_t OooQueue::ready(uint32_t rcv_nxt, iovec out[2], int* n) const {
    *n = 0;
    if (n_ == 0) return 0;
    const Range& r = ranges_[0];
    if (wire::seq_gt(r.start, rcv_nxt) || wire::seq_le(r.end, rcv_nxt)) return 0;
    uint32_t len = r.end - rcv_nxt;
    uint32_t pos = rcv_nxt & kMask;
    uint32_t first = std::min(len, kBytes - pos);
    out[0] = {ring_ + pos, first};
    *n = 1;
    if (len > first) {
        out[1] = {ring_, len - first};
        *n = 2;
    }
    return len;
}

int OooQueue::latest() const {
    for (size_t i = 0; i < n_; i++) {
        const Range& r = ranges_[i];
        if (wire::seq_ge(latest_seq_, r.start) && wire::seq_lt(latest_seq_, r.end))
            return static_cast<int>(i);
    }
    return -1;
}

uint32_t OooQueue::held() const {
    uint32_t sum = 0;
    for (size_t i = 0; i < n_; i++) sum += ranges_[i].end - ranges_[i].start;
    return sum;
}

}  // namespace usernet::nat::tcp
