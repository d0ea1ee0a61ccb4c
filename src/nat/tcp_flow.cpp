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

}  // namespace usernet::nat::tcp
