// The arithmetic of a translated TCP flow: advertised window, RTO
// estimator, congestion window. See tcp_flow.hpp; the RFC sections are
// named next to each rule.
#include "nat/tcp_flow.hpp"

#include <cstdlib>

namespace usernet::nat::tcp {

Advertised advertise_window(uint32_t rcv_nxt, uint32_t prev_edge, uint32_t free_bytes,
                            uint8_t scale) {
    uint64_t want = free_bytes;
    if (wire::seq_gt(prev_edge, rcv_nxt)) want = std::max<uint64_t>(want, prev_edge - rcv_nxt);
    uint64_t unit = uint64_t{1} << scale;
    uint64_t field = (want + unit - 1) >> scale;
    if (field > kMaxWindowField) field = kMaxWindowField;
    return {static_cast<uint16_t>(field), rcv_nxt + static_cast<uint32_t>(field << scale)};
}

void RtoEstimator::sample(uint32_t rtt_ms) {
    rtt_ms = std::min(rtt_ms, kRtoMaxMs);
    if (!sampled_) {
        // 2.2: SRTT <- R, RTTVAR <- R/2
        srtt8_ = rtt_ms << 3;
        rttvar4_ = rtt_ms << 1;
        sampled_ = true;
    } else {
        // 2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, SRTT <- 7/8 SRTT + 1/8 R'
        int64_t delta = int64_t{rtt_ms} - int64_t{srtt8_ >> 3};
        int64_t var = int64_t{rttvar4_} + std::llabs(delta) - int64_t{rttvar4_ >> 2};
        int64_t srtt = int64_t{srtt8_} + delta;
        rttvar4_ = static_cast<uint32_t>(std::max<int64_t>(var, 0));
        srtt8_ = static_cast<uint32_t>(std::max<int64_t>(srtt, 0));
    }
    // RTO <- SRTT + max(G, K*RTTVAR), G = 1 ms (the loop's clock), K = 4.
    uint64_t rto = uint64_t{srtt8_ >> 3} + std::max<uint64_t>(1, rttvar4_);
    base_ = static_cast<uint32_t>(std::clamp<uint64_t>(rto, kRtoMinMs, kRtoMaxMs));
    shift_ = 0;
}

uint32_t RtoEstimator::rto_ms() const {
    uint64_t r = uint64_t{base_} << shift_;
    return static_cast<uint32_t>(std::min<uint64_t>(r, kRtoMaxMs));
}

void CongestionWindow::on_ack(uint32_t acked, uint32_t mss, bool cwnd_limited) {
    if (!cwnd_limited || acked == 0) return;
    if (cwnd_ < ssthresh_) {
        // Slow start: grow by what was acknowledged (counting bytes, as
        // Linux counts packets), up to ssthresh; the rest goes to
        // congestion avoidance.
        uint32_t room = ssthresh_ - cwnd_;
        uint32_t grow = std::min(acked, room);
        cwnd_ += grow;
        acked -= grow;
        if (acked == 0) {
            cwnd_ = std::min(cwnd_, kMaxCwnd);
            return;
        }
    }
    // Congestion avoidance: one segment per cwnd of acknowledged bytes
    // (RFC 5681 3.1, byte counting as in RFC 3465).
    acc_ += acked;
    if (acc_ >= cwnd_) {
        acc_ -= cwnd_;
        cwnd_ += mss;
    }
    cwnd_ = std::min(cwnd_, kMaxCwnd);
}

void CongestionWindow::on_fast_retransmit(uint32_t flight, uint32_t mss) {
    ssthresh_ = std::max(flight / 2, 2 * mss);
    cwnd_ = std::min(ssthresh_ + 3 * mss, kMaxCwnd);
    acc_ = 0;
}

void CongestionWindow::on_sack_recovery(uint32_t flight, uint32_t mss) {
    ssthresh_ = std::max(flight / 2, 2 * mss);
    cwnd_ = ssthresh_;
    acc_ = 0;
}

void CongestionWindow::on_partial_ack(uint32_t acked, uint32_t mss) {
    cwnd_ = cwnd_ > acked ? cwnd_ - acked : 0;
    if (acked >= mss) cwnd_ += mss;
    cwnd_ = std::max(cwnd_, mss);
}

void CongestionWindow::on_recovery_end(uint32_t flight, uint32_t mss) {
    cwnd_ = std::min(ssthresh_, std::max(flight, mss) + mss);
    acc_ = 0;
}

void CongestionWindow::on_timeout(uint32_t flight, uint32_t mss) {
    ssthresh_ = std::max(flight / 2, 2 * mss);
    cwnd_ = kLossWindowSegments * mss;
    acc_ = 0;
}

bool SackBoard::add(uint32_t start, uint32_t end, uint32_t snd_una, uint32_t snd_max) {
    using wire::seq_ge;
    using wire::seq_gt;
    using wire::seq_le;
    using wire::seq_lt;
    if (!seq_lt(start, end) || seq_le(end, snd_una) || seq_gt(end, snd_max)) return false;
    if (seq_lt(start, snd_una)) start = snd_una;
    // Where the block goes: ranges wholly below it stay, those it touches
    // or overlaps merge into it, those above it move up.
    int lo = 0;
    while (lo < n_ && seq_lt(r_[lo].end, start)) lo++;
    int hi = lo;
    bool known = false;
    while (hi < n_ && seq_le(r_[hi].start, end)) {
        if (seq_le(r_[hi].start, start) && seq_ge(r_[hi].end, end)) known = true;
        if (seq_lt(r_[hi].start, start)) start = r_[hi].start;
        if (seq_gt(r_[hi].end, end)) end = r_[hi].end;
        hi++;
    }
    if (known) return false;
    // Ranges [lo, hi) become one: shift the rest by (1 - (hi - lo)).
    const int merged = hi - lo;
    if (merged == 0) {
        if (lo == kRanges) return false;  // above every range and no room: forgotten
        const int last = n_ == kRanges ? kRanges - 1 : n_;  // the highest goes if full
        for (int i = last; i > lo; i--) r_[i] = r_[i - 1];
        if (n_ < kRanges) n_++;
    } else {
        for (int i = hi; i < n_; i++) r_[i - merged + 1] = r_[i];
        n_ = static_cast<uint8_t>(n_ - merged + 1);
    }
    r_[lo] = {start, end};
    return true;
}

void SackBoard::trim(uint32_t snd_una) {
    int drop = 0;
    while (drop < n_ && wire::seq_le(r_[drop].end, snd_una)) drop++;
    for (int i = drop; i < n_; i++) r_[i - drop] = r_[i];
    n_ = static_cast<uint8_t>(n_ - drop);
    if (n_ > 0 && wire::seq_lt(r_[0].start, snd_una)) r_[0].start = snd_una;
}

bool SackBoard::next_hole(uint32_t from, uint32_t& start, uint32_t& end) const {
    for (int i = 0; i < n_; i++) {
        if (wire::seq_lt(from, r_[i].start)) {
            start = from;
            end = r_[i].start;
            return true;
        }
        if (wire::seq_lt(from, r_[i].end)) from = r_[i].end;
    }
    return false;
}

}  // namespace usernet::nat::tcp
