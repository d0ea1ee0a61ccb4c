// One translated TCP connection: its fixed-size state, and the arithmetic
// the translator applies to it (RFC 9293 sequence space, RFC 7323 window
// scaling, RFC 6298 retransmission timer, RFC 5681/6582 congestion window).
//
// Everything here is plain data and pure functions, so that the numbers
// that decide what reaches the guest can be tested without sockets. The
// socket work, the state machine and the event handling are in tcp_nat.cpp,
// whose top comment is the theory of operation.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/event_loop.hpp"
#include "nat/tcp_ooo.hpp"
#include "wire/addr.hpp"
#include "wire/tcp.hpp"

namespace usernet::nat {
class TcpNat;
}

namespace usernet::nat::tcp {

// --- limits and constants ---------------------------------------------------

inline constexpr uint32_t kRtoInitialMs = 1000;  // RFC 6298 2.1
inline constexpr uint32_t kRtoMinMs = 200;       // Linux's TCP_RTO_MIN, below RFC 6298's 1 s
inline constexpr uint32_t kRtoMaxMs = 60000;     // RFC 6298 2.5
inline constexpr uint32_t kInitialCwndSegments = 10;  // RFC 6928
inline constexpr uint32_t kLossWindowSegments = 2;    // after an RTO (RFC 5681 allows 1)
inline constexpr uint32_t kMaxCwnd = 1u << 30;
inline constexpr uint32_t kDefaultMss = 536;  // RFC 9293 3.7.1: no MSS option
inline constexpr uint8_t kOurWindowScale = 7; // 8 MiB at most, 128-byte steps
inline constexpr uint32_t kMaxWindowField = 65535;

// --- sequence space -----------------------------------------------------------

// The part of a guest segment's payload that is new: `skip` bytes at its
// start were already accepted, `len` bytes after them start exactly at
// rcv_nxt. Out of order (the segment starts beyond rcv_nxt) yields
// in_order == false; a pure duplicate yields len == 0.
struct NewData {
    uint32_t skip = 0;
    uint32_t len = 0;
    bool in_order = true;
};
inline NewData new_data(uint32_t seq, uint32_t payload_len, uint32_t rcv_nxt) {
    if (wire::seq_gt(seq, rcv_nxt)) return {0, 0, false};
    uint32_t skip = rcv_nxt - seq;
    if (skip >= payload_len) return {payload_len, 0, true};
    return {skip, payload_len - skip, true};
}

// RFC 9293 3.10.7.4, first check: whether a segment occupying seg_len
// sequence numbers from seq overlaps the receive window [rcv_nxt,
// rcv_nxt + rcv_wnd), a zero-length one up to the right edge inclusive.
// Also true for a segment that starts at or before
// rcv_nxt and carries new bytes: the translator offers those to the kernel
// even when its window was closed (it may have room again by now).
inline bool seq_acceptable(uint32_t seq, uint32_t seg_len, uint32_t rcv_nxt, uint32_t rcv_wnd) {
    using wire::seq_ge;
    using wire::seq_le;
    using wire::seq_lt;
    if (seg_len > 0 && seq_le(seq, rcv_nxt) && seq_lt(rcv_nxt, seq + seg_len)) return true;
    if (seg_len == 0) {
        // Up to and including the right edge, as Linux's tcp_sequence():
        // a guest that has sent the whole window sends its ACKs from there.
        return seq_ge(seq, rcv_nxt) && seq_le(seq, rcv_nxt + rcv_wnd);
    }
    if (rcv_wnd == 0) return false;
    uint32_t last = seq + seg_len - 1;
    return (seq_ge(seq, rcv_nxt) && seq_lt(seq, rcv_nxt + rcv_wnd)) ||
           (seq_ge(last, rcv_nxt) && seq_lt(last, rcv_nxt + rcv_wnd));
}

// RFC 5961 3.2: what to do with a RST carrying sequence number seq.
enum class RstVerdict { accept, challenge, drop };
inline RstVerdict rst_verdict(uint32_t seq, uint32_t rcv_nxt, uint32_t rcv_wnd) {
    if (seq == rcv_nxt) return RstVerdict::accept;
    uint32_t wnd = std::max<uint32_t>(rcv_wnd, 1);
    bool in_window = wire::seq_gt(seq, rcv_nxt) && wire::seq_lt(seq, rcv_nxt + wnd);
    return in_window ? RstVerdict::challenge : RstVerdict::drop;
}

// RFC 9293 3.10.7.4 fifth check with RFC 5961 5.2: an ACK for data not
// yet sent is answered with an ACK and dropped; one older than the largest
// window the guest has offered is dropped (blind injection); otherwise it
// is processed (old duplicates then change nothing).
enum class AckVerdict { process, ack_and_drop, drop };
inline AckVerdict ack_verdict(uint32_t ack, uint32_t snd_una, uint32_t snd_max,
                              uint32_t max_snd_wnd) {
    if (wire::seq_gt(ack, snd_max)) return AckVerdict::ack_and_drop;
    if (wire::seq_lt(ack, snd_una - std::max<uint32_t>(max_snd_wnd, 1))) return AckVerdict::drop;
    return AckVerdict::process;
}

// --- the window usernet advertises ---------------------------------------------

struct Advertised {
    uint16_t field = 0;       // the header's window field (scaled)
    uint32_t right_edge = 0;  // rcv_nxt + (field << scale)
};
// The window to advertise: free_bytes of room from rcv_nxt, but never a
// right edge left of prev_edge (RFC 9293 3.8.6.2.2: do not shrink), rounded
// up to the scale's granularity so that rounding never shrinks it either,
// and capped by what the field can hold. Unscaled for a SYN (scale 0).
Advertised advertise_window(uint32_t rcv_nxt, uint32_t prev_edge, uint32_t free_bytes,
                            uint8_t scale);

// --- retransmission timer (RFC 6298) ---------------------------------------------

// Smoothed RTT and variance in milliseconds (fixed point: srtt in 1/8 ms,
// rttvar in 1/4 ms as in BSD), the RTO derived from them, clamped to
// [kRtoMinMs, kRtoMaxMs], and the exponential backoff applied on timeouts.
class RtoEstimator {
public:
    // Feeds one RTT measurement (from data that was not retransmitted,
    // Karn's rule). Clears the backoff (RFC 6298 5.7 allows it).
    void sample(uint32_t rtt_ms);
    // Doubles the timeout (5.5), up to kRtoMaxMs.
    void backoff() {
        if (shift_ < 16) shift_++;
    }
    void reset_backoff() { shift_ = 0; }
    bool backed_off() const { return shift_ != 0; }
    uint32_t rto_ms() const;
    bool has_sample() const { return sampled_; }
    uint32_t srtt_ms() const { return srtt8_ >> 3; }
    // SRTT + 4 RTTVAR without the 200 ms floor (for the tail loss probe).
    uint32_t raw_rto_ms() const { return (srtt8_ >> 3) + std::max<uint32_t>(1, rttvar4_); }

private:
    uint32_t srtt8_ = 0;
    uint32_t rttvar4_ = 0;
    uint32_t base_ = kRtoInitialMs;
    uint8_t shift_ = 0;
    bool sampled_ = false;
};

// --- congestion window (RFC 5681 with NewReno recovery, RFC 6582) ----------------

// In bytes. Grows in slow start by the bytes acknowledged, in congestion
// avoidance by one segment per window; only while the sender is actually
// limited by it (RFC 7661), so an idle or receiver-limited flow does not
// build up a window it never tested.
class CongestionWindow {
public:
    void init(uint32_t mss) {
        cwnd_ = kInitialCwndSegments * mss;
        ssthresh_ = kMaxCwnd;
        acc_ = 0;
    }
    uint32_t cwnd() const { return cwnd_; }
    uint32_t ssthresh() const { return ssthresh_; }
    bool in_slow_start() const { return cwnd_ < ssthresh_; }

    // New data acknowledged outside recovery. cwnd_limited: the flight
    // before this ACK filled (nearly) the whole congestion window.
    void on_ack(uint32_t acked, uint32_t mss, bool cwnd_limited);
    // Third duplicate ACK: halve, and inflate by the three segments that
    // have left the network (RFC 5681 3.2 steps 2-3).
    void on_fast_retransmit(uint32_t flight, uint32_t mss);
    // Loss recovery with SACK (RFC 6675 5 step 4.2): half the flight, no
    // inflation: what may be sent is counted by the pipe instead.
    void on_sack_recovery(uint32_t flight, uint32_t mss);
    // Further duplicate ACKs during recovery (step 4).
    void on_recovery_dupack(uint32_t mss) { cwnd_ = std::min(cwnd_ + mss, kMaxCwnd); }
    // An ACK inside recovery that does not cover the recovery point
    // (RFC 6582 3.2 step 3 "partial ACK"): deflate by what it acknowledged.
    void on_partial_ack(uint32_t acked, uint32_t mss);
    // The ACK that ends recovery (RFC 6582 step 3 "full ACK").
    void on_recovery_end(uint32_t flight, uint32_t mss);
    // Retransmission timeout (RFC 5681 3.1 eq. 4 and the loss window).
    void on_timeout(uint32_t flight, uint32_t mss);
    // Remembers the window before a loss response, and restores it when
    // the retransmission turns out to have been spurious (RFC 3522).
    void save() {
        saved_cwnd_ = cwnd_;
        saved_ssthresh_ = ssthresh_;
    }
    void undo() {
        cwnd_ = std::max(cwnd_, saved_cwnd_);
        ssthresh_ = std::max(ssthresh_, saved_ssthresh_);
    }

private:
    uint32_t cwnd_ = 0;
    uint32_t ssthresh_ = kMaxCwnd;
    uint32_t acc_ = 0;  // bytes acknowledged toward the next additive increase
    uint32_t saved_cwnd_ = 0;
    uint32_t saved_ssthresh_ = kMaxCwnd;
};

// --- what the guest holds beyond a hole (RFC 2018, RFC 6675 3) -------------------

// The scoreboard of a sender using SACK: the ranges the guest's ACKs have
// reported holding above snd_una, merged, ascending, at most kRanges of
// them. What a guest reports is a hint (RFC 2018 8: it may drop them
// again), so the ranges only choose what to retransmit first; an RTO
// forgets them. When blocks would make more ranges than fit, the highest
// are forgotten: the holes they bound are retransmitted once the guest
// reports them again, or reached by partial ACKs as in NewReno.
class SackBoard {
public:
    static constexpr int kRanges = 4;
    struct Range {
        uint32_t start = 0, end = 0;  // [start, end)
    };
    bool empty() const { return n_ == 0; }
    int size() const { return n_; }
    Range range(int i) const { return r_[i]; }
    void clear() { n_ = 0; }
    // Merges one block of an ACK. Blocks that are empty, at or below
    // snd_una (a D-SACK, RFC 2883) or beyond what was sent are ignored;
    // returns whether the block brought bytes not known before.
    bool add(uint32_t start, uint32_t end, uint32_t snd_una, uint32_t snd_max);
    // Forgets what is at or below a new snd_una.
    void trim(uint32_t snd_una);
    // Bytes in all the ranges.
    uint32_t bytes() const {
        uint32_t n = 0;
        for (int i = 0; i < n_; i++) n += r_[i].end - r_[i].start;
        return n;
    }
    // The end of the highest range (valid when not empty).
    uint32_t high() const { return r_[n_ - 1].end; }
    // The first hole at or above `from` and below high(): [start, end),
    // end being where the next range starts. False if there is none.
    bool next_hole(uint32_t from, uint32_t& start, uint32_t& end) const;

private:
    Range r_[kRanges];
    uint8_t n_ = 0;
};

inline constexpr uint8_t kNoOoo = 0xff;

// --- the flow --------------------------------------------------------------------

// Which end opened the connection and how far the handshake is.
enum class Phase : uint8_t {
    free,         // in the pool
    syn_pending,  // guest SYN seen, host connect() in progress
    syn_rcvd,     // SYN-ACK sent to the guest, waiting for its ACK
    syn_sent,     // inbound: SYN sent to the guest, waiting for its SYN-ACK
    established,  // data both ways; the closing flags below refine it
    linger,       // both directions closed, host socket closed; absorbs retransmitted FINs
};

struct FlowKey {
    wire::IpAddr guest;
    wire::IpAddr remote;  // as the guest sees it
    uint16_t guest_port = 0;
    uint16_t remote_port = 0;
    friend bool operator==(const FlowKey&, const FlowKey&) = default;
};

struct FlowKeyHash {
    size_t operator()(const FlowKey& k) const noexcept {
        wire::IpAddrHash h;
        size_t x = h(k.guest) * 0x9e3779b97f4a7c15ULL;
        x ^= h(k.remote) + 0x7f4a7c159e3779b9ULL + (x << 6) + (x >> 2);
        x ^= (size_t{k.guest_port} << 16 | k.remote_port) * 0xbf58476d1ce4e5b9ULL;
        return x;
    }
};

// Everything the translator keeps about one connection. Naming follows
// RFC 9293 from usernet's side toward the guest: "snd" is host-to-guest
// data (the bytes waiting in the host socket's receive queue), "rcv" is
// guest-to-host data (written to the socket as it arrives).
struct FlowState {
    FlowKey key;
    int fd = -1;
    Phase phase = Phase::free;
    // Closing and bookkeeping flags.
    bool guest_fin : 1 = false;     // guest FIN accepted, shutdown(SHUT_WR) done
    bool host_eof : 1 = false;      // host EOF read; fin_seq is valid
    bool fin_sent : 1 = false;      // our FIN is in flight (cleared on rewind)
    bool fin_acked : 1 = false;     // guest acknowledged our FIN
    bool want_out : 1 = false;      // EPOLLOUT in the interest set (window update)
    bool ack_queued : 1 = false;    // on the end-of-batch ACK list
    bool ack_force : 1 = false;     // ... and it must go out even if nothing changed
    bool tx_queued : 1 = false;     // on the end-of-batch send list
    bool in_recovery : 1 = false;   // NewReno fast recovery
    bool rtt_timing : 1 = false;    // rtt_seq/rtt_start time a segment
    bool host_rdhup : 1 = false;    // EPOLLRDHUP seen (EOF detection without SO_PEEK_OFF)
    bool host_pending : 1 = false;  // a peek may find data (cleared when one comes back empty)
    bool persist : 1 = false;       // the timer is probing a zero window
    bool pto_armed : 1 = false;     // the timer is a tail loss probe, not the RTO
    bool guest_wscale : 1 = false;  // the guest's SYN carried a window scale option
    bool neigh_wait : 1 = false;    // our SYN could not leave (guest MAC unknown yet)
    bool ts_on : 1 = false;         // RFC 7323 timestamps on every segment
    bool sack_on : 1 = false;       // RFC 2018: the guest may be told what is held beyond a hole
    bool undo_ok : 1 = false;       // a spurious retransmission can still be undone (Eifel)
    bool host_keepalive : 1 = false;  // the guest sent a keepalive: SO_KEEPALIVE is on
    bool host_reset : 1 = false;    // the host reset: what it sent before goes out, no FIN
    bool host_urg : 1 = false;      // EPOLLPRI seen: the host sent urgent data (short peeks
                                    // may stop at its mark, not at the end of the data)
    bool local : 1 = false;         // fd is a unix stream socket (a guest forward), not TCP
    bool ack_delayed : 1 = false;   // on the delayed-ACK list (a short segment's ACK waits
                                    // for the host's answer to carry it)
    bool sack_recovery : 1 = false; // the recovery under way is RFC 6675's (with in_recovery)
    bool tlp_out : 1 = false;       // a tail loss probe of the last segment awaits its ACK
    uint8_t snd_wscale = 0;    // guest's shift, applied to its window field
    uint8_t rcv_wscale = 0;    // our shift, applied to what we advertise
    uint8_t dupacks = 0;
    uint8_t retries = 0;       // timeouts without progress
    uint8_t ooo = kNoOoo;      // out-of-order queue lent from TcpNat's pool (index), if any
    uint16_t mss = kDefaultMss;     // payload per segment toward the guest
    uint16_t guest_syn_mss = 0;     // the guest's MSS option (0: absent)
    uint16_t ingress_mtu = 1500;    // L3 MTU the guest's SYN came in on
    uint16_t last_wnd_field = 0;    // window field of the last segment sent
    uint16_t rexmit_dups = 0;       // duplicate ACKs since the last head retransmission
    uint16_t rexmit_expect_dups = 0;  // ... that the flight behind it explains (+3)
    // guest -> host
    uint32_t irs = 0;         // guest's initial sequence number
    uint32_t rcv_nxt = 0;     // next byte expected from the guest
    uint32_t rcv_adv = 0;     // right edge of the window last advertised
    uint32_t last_ack_sent = 0;
    // host -> guest
    uint32_t iss = 0;
    uint32_t snd_una = 0;     // oldest byte the guest has not acknowledged
    uint32_t acked_unread = 0;  // acknowledged bytes still at the head of the socket's queue
    uint32_t snd_nxt = 0;     // next byte to send
    uint32_t snd_max = 0;     // highest snd_nxt so far
    uint32_t snd_wnd = 0;     // guest's window, scaled
    uint32_t max_snd_wnd = 0;
    uint32_t snd_wl1 = 0, snd_wl2 = 0;  // segment seq/ack of the last window update
    uint32_t fin_seq = 0;     // sequence number of our FIN (end of host data)
    uint32_t recover = 0;     // RFC 6582 recovery point
    uint32_t high_rxt = 0;    // RFC 6675 HighRxt: retransmitted up to here in this recovery
    uint32_t rxt_fence = 0;   // snd_nxt when the latest retransmission left
    uint32_t rtt_seq = 0;
    uint32_t rtt_start = 0;   // low 32 bits of the loop's ms clock
    uint32_t ts_recent = 0;   // the guest's TSval to echo (RFC 7323 4.3)
    uint32_t ts_offset = 0;   // origin of our TSval clock (random per flow)
    uint32_t rexmit_tsval = 0;  // our TSval on the first retransmission of a loss episode
    uint32_t active_epoch = 0;  // the last second (loop clock) in which the guest sent data
    uint32_t port = UINT32_MAX;  // the guest's switch port: its limits are counted there
    RtoEstimator rto;
    CongestionWindow cc;
    SackBoard sacked;         // the guest's SACK blocks (sack_on flows)

    // Host data in flight: bytes between snd_una and snd_nxt, FIN excluded.
    uint32_t data_in_flight() const {
        uint32_t end = (fin_sent && wire::seq_gt(snd_nxt, fin_seq)) ? fin_seq : snd_nxt;
        return wire::seq_gt(end, snd_una) ? end - snd_una : 0;
    }
};

// A flow as the event loop sees it: the state, its socket handler and one
// timer (handshake retries, RTO, zero-window probe or linger, by phase).
struct Flow final : core::IoHandler {
    explicit Flow(TcpNat& nat);
    Flow(const Flow&) = delete;
    Flow& operator=(const Flow&) = delete;
    void on_io(uint32_t events) override;

    TcpNat& nat;
    core::Timer timer;
    FlowState st;
    uint32_t gen = 0;  // bumped at each reuse, so stale references can tell
};

}  // namespace usernet::nat::tcp
