// The TCP translator's arithmetic: which guest bytes are new, which
// segments and RSTs are acceptable (RFC 9293, RFC 5961), the window we
// advertise (never shrinking, scaled), the RTO estimator (RFC 6298) and
// the congestion window (RFC 5681, RFC 6582), the SACK scoreboard (RFC
// 2018, RFC 6675).
#include "nat/tcp_flow.hpp"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace usernet::nat::tcp {
namespace {

// --- new data -----------------------------------------------------------------

TEST(TcpSeq, TcpSeq_InOrderSegmentIsAllNew) {
    NewData nd = new_data(1000, 500, 1000);
    EXPECT_TRUE(nd.in_order);
    EXPECT_EQ(nd.skip, 0u);
    EXPECT_EQ(nd.len, 500u);
}

TEST(TcpSeq, TcpSeq_RetransmissionOverlappingAcceptedBytesIsTrimmed) {
    NewData nd = new_data(1000, 500, 1200);
    EXPECT_TRUE(nd.in_order);
    EXPECT_EQ(nd.skip, 200u);
    EXPECT_EQ(nd.len, 300u);
}

TEST(TcpSeq, TcpSeq_FullyOldSegmentHasNoNewBytes) {
    NewData nd = new_data(1000, 500, 1500);
    EXPECT_TRUE(nd.in_order);
    EXPECT_EQ(nd.len, 0u);
}

TEST(TcpSeq, TcpSeq_SegmentBeyondRcvNxtIsOutOfOrder) {
    EXPECT_FALSE(new_data(1001, 500, 1000).in_order);
}

TEST(TcpSeq, TcpSeq_NewDataWorksAcrossSequenceWrap) {
    NewData nd = new_data(0xffffff00u, 0x200, 0x00000010u);
    EXPECT_TRUE(nd.in_order);
    EXPECT_EQ(nd.skip, 0x110u);
    EXPECT_EQ(nd.len, 0xf0u);
}

// --- acceptability ----------------------------------------------------------------

TEST(TcpSeq, TcpSeq_PureAckAtRcvNxtIsAcceptableEvenWithZeroWindow) {
    EXPECT_TRUE(seq_acceptable(5000, 0, 5000, 0));
    EXPECT_TRUE(seq_acceptable(5000, 0, 5000, 1000));
}

TEST(TcpSeq, TcpSeq_KeepaliveBelowRcvNxtIsNotAcceptable) {
    // Keepalives use rcv_nxt - 1 and must be answered with an ACK.
    EXPECT_FALSE(seq_acceptable(4999, 0, 5000, 1000));
    EXPECT_FALSE(seq_acceptable(4999, 1, 5000, 1000));
}

TEST(TcpSeq, TcpSeq_PureAckAtTheRightWindowEdgeIsAcceptableAsLinuxDoes) {
    // tcp_sequence(): !after(seq, rcv_nxt + rcv_wnd). A guest that has sent
    // the whole window (beyond what usernet took) ACKs from its edge.
    EXPECT_TRUE(seq_acceptable(6000, 0, 5000, 1000));
    EXPECT_FALSE(seq_acceptable(6001, 0, 5000, 1000));
    EXPECT_FALSE(seq_acceptable(6000, 1, 5000, 1000));  // data there is beyond the window
    EXPECT_FALSE(seq_acceptable(5001, 0, 5000, 0));
}

TEST(TcpSeq, TcpSeq_DataAtRcvNxtIsOfferedEvenWhenWindowIsClosed) {
    EXPECT_TRUE(seq_acceptable(5000, 100, 5000, 0));
}

TEST(TcpSeq, TcpSeq_SegmentBeyondWindowIsNotAcceptable) {
    EXPECT_FALSE(seq_acceptable(7000, 100, 5000, 1000));
    EXPECT_TRUE(seq_acceptable(5500, 100, 5000, 1000));  // in window, out of order
}

TEST(TcpSeq, TcpSeq_RstOnlyAtRcvNxtResets) {
    EXPECT_EQ(rst_verdict(5000, 5000, 1000), RstVerdict::accept);
    EXPECT_EQ(rst_verdict(5001, 5000, 1000), RstVerdict::challenge);
    EXPECT_EQ(rst_verdict(5999, 5000, 1000), RstVerdict::challenge);
    EXPECT_EQ(rst_verdict(6000, 5000, 1000), RstVerdict::drop);
    EXPECT_EQ(rst_verdict(4999, 5000, 1000), RstVerdict::drop);
    EXPECT_EQ(rst_verdict(0x80000000u, 5000, 1000), RstVerdict::drop);
}

TEST(TcpSeq, TcpSeq_AckForUnsentDataIsAnsweredAndDropped) {
    EXPECT_EQ(ack_verdict(2001, 1000, 2000, 65535), AckVerdict::ack_and_drop);
    EXPECT_EQ(ack_verdict(2000, 1000, 2000, 65535), AckVerdict::process);
    EXPECT_EQ(ack_verdict(1000, 1000, 2000, 65535), AckVerdict::process);
}

TEST(TcpSeq, TcpSeq_AckFarBehindTheWindowIsDropped) {
    // RFC 5961 5.2: older than SND.UNA - MAX.SND.WND.
    EXPECT_EQ(ack_verdict(100000, 200000, 210000, 65535), AckVerdict::drop);
    EXPECT_EQ(ack_verdict(150000, 200000, 210000, 65535), AckVerdict::process);
}

// --- advertised window ------------------------------------------------------------

TEST(TcpWindow, TcpWindow_FreeRoomIsAdvertisedScaled) {
    Advertised a = advertise_window(1000, 1000, 128 * 100, 7);
    EXPECT_EQ(a.field, 100);
    EXPECT_EQ(a.right_edge, 1000u + 12800u);
}

TEST(TcpWindow, TcpWindow_RightEdgeNeverMovesLeft) {
    // 10000 bytes offered earlier; the socket now has less room.
    Advertised a = advertise_window(3000, 11000, 2000, 0);
    EXPECT_EQ(a.field, 8000);
    EXPECT_EQ(a.right_edge, 11000u);
}

TEST(TcpWindow, TcpWindow_ScaleRoundingDoesNotShrink) {
    // Old edge 1000 + 300 = 1300; with 128-byte units this rounds up to 384.
    Advertised a = advertise_window(1000, 1300, 0, 7);
    EXPECT_EQ(a.field, 3);
    EXPECT_GE(a.right_edge, 1300u);
}

TEST(TcpWindow, TcpWindow_FieldIsCappedAt65535) {
    Advertised a = advertise_window(0, 0, 10'000'000, 0);
    EXPECT_EQ(a.field, 65535);
    EXPECT_EQ(a.right_edge, 65535u);
    Advertised b = advertise_window(0, 0, 100'000'000, 7);
    EXPECT_EQ(b.field, 65535);
}

TEST(TcpWindow, TcpWindow_NoRoomAndNoOldEdgeIsZeroWindow) {
    Advertised a = advertise_window(5000, 5000, 0, 7);
    EXPECT_EQ(a.field, 0);
    EXPECT_EQ(a.right_edge, 5000u);
}

// --- RTO ------------------------------------------------------------------------------

TEST(TcpRto, TcpRto_InitialTimeoutIsOneSecond) {
    RtoEstimator r;
    EXPECT_FALSE(r.has_sample());
    EXPECT_EQ(r.rto_ms(), 1000u);
}

TEST(TcpRto, TcpRto_FirstSampleSetsSrttAndVariance) {
    RtoEstimator r;
    r.sample(100);  // SRTT 100, RTTVAR 50: RTO = 100 + 4 * 50 = 300
    EXPECT_EQ(r.srtt_ms(), 100u);
    EXPECT_EQ(r.rto_ms(), 300u);
}

TEST(TcpRto, TcpRto_FastPathIsClampedToTheMinimum) {
    RtoEstimator r;
    for (int i = 0; i < 20; i++) r.sample(0);
    EXPECT_EQ(r.rto_ms(), kRtoMinMs);
}

TEST(TcpRto, TcpRto_SteadySamplesConvergeOnTheRtt) {
    RtoEstimator r;
    for (int i = 0; i < 100; i++) r.sample(400);
    EXPECT_EQ(r.srtt_ms(), 400u);
    EXPECT_GE(r.rto_ms(), 400u);
    EXPECT_LE(r.rto_ms(), 410u);
}

TEST(TcpRto, TcpRto_BackoffDoublesUpToSixtySeconds) {
    RtoEstimator r;
    r.backoff();
    EXPECT_EQ(r.rto_ms(), 2000u);
    r.backoff();
    EXPECT_EQ(r.rto_ms(), 4000u);
    for (int i = 0; i < 30; i++) r.backoff();
    EXPECT_EQ(r.rto_ms(), kRtoMaxMs);
    r.reset_backoff();
    EXPECT_EQ(r.rto_ms(), 1000u);
}

TEST(TcpRto, TcpRto_NewSampleClearsBackoff) {
    RtoEstimator r;
    r.sample(100);
    r.backoff();
    r.backoff();
    EXPECT_EQ(r.rto_ms(), 1200u);
    r.sample(100);
    EXPECT_LT(r.rto_ms(), 400u);
}

// --- congestion window ------------------------------------------------------------------

constexpr uint32_t kMss = 1460;

TEST(TcpCwnd, TcpCwnd_StartsAtTenSegments) {
    CongestionWindow c;
    c.init(kMss);
    EXPECT_EQ(c.cwnd(), 10 * kMss);
    EXPECT_TRUE(c.in_slow_start());
}

TEST(TcpCwnd, TcpCwnd_SlowStartDoublesPerWindow) {
    CongestionWindow c;
    c.init(kMss);
    c.on_ack(10 * kMss, kMss, true);
    EXPECT_EQ(c.cwnd(), 20 * kMss);
}

TEST(TcpCwnd, TcpCwnd_DoesNotGrowWhenNotLimitedByIt) {
    CongestionWindow c;
    c.init(kMss);
    c.on_ack(10 * kMss, kMss, false);
    EXPECT_EQ(c.cwnd(), 10 * kMss);
}

TEST(TcpCwnd, TcpCwnd_FastRetransmitHalvesAndInflates) {
    CongestionWindow c;
    c.init(kMss);
    c.on_fast_retransmit(40 * kMss, kMss);
    EXPECT_EQ(c.ssthresh(), 20 * kMss);
    EXPECT_EQ(c.cwnd(), 23 * kMss);
    c.on_recovery_dupack(kMss);
    EXPECT_EQ(c.cwnd(), 24 * kMss);
    c.on_recovery_end(30 * kMss, kMss);
    EXPECT_EQ(c.cwnd(), 20 * kMss);
    EXPECT_FALSE(c.in_slow_start());
}

TEST(TcpCwnd, TcpCwnd_SsthreshNeverBelowTwoSegments) {
    CongestionWindow c;
    c.init(kMss);
    c.on_fast_retransmit(kMss, kMss);
    EXPECT_EQ(c.ssthresh(), 2 * kMss);
    c.on_timeout(0, kMss);
    EXPECT_EQ(c.ssthresh(), 2 * kMss);
}

TEST(TcpCwnd, TcpCwnd_TimeoutCollapsesToLossWindow) {
    CongestionWindow c;
    c.init(kMss);
    c.on_ack(100 * kMss, kMss, true);
    c.on_timeout(60 * kMss, kMss);
    EXPECT_EQ(c.cwnd(), kLossWindowSegments * kMss);
    EXPECT_EQ(c.ssthresh(), 30 * kMss);
    EXPECT_TRUE(c.in_slow_start());
}

TEST(TcpCwnd, TcpCwnd_CongestionAvoidanceAddsOneSegmentPerWindow) {
    CongestionWindow c;
    c.init(kMss);
    c.on_fast_retransmit(20 * kMss, kMss);  // ssthresh 10 segments
    c.on_recovery_end(10 * kMss, kMss);     // cwnd = ssthresh
    ASSERT_EQ(c.cwnd(), 10 * kMss);
    for (int i = 0; i < 9; i++) c.on_ack(kMss, kMss, true);
    EXPECT_EQ(c.cwnd(), 10 * kMss);
    c.on_ack(kMss, kMss, true);
    EXPECT_EQ(c.cwnd(), 11 * kMss);
}

TEST(TcpCwnd, TcpCwnd_PartialAckDeflatesButKeepsOneSegment) {
    CongestionWindow c;
    c.init(kMss);
    c.on_fast_retransmit(20 * kMss, kMss);  // cwnd 13 segments
    c.on_partial_ack(5 * kMss, kMss);
    EXPECT_EQ(c.cwnd(), 9 * kMss);
    c.on_partial_ack(100 * kMss, kMss);
    EXPECT_EQ(c.cwnd(), kMss);
}

TEST(TcpCwnd, TcpCwnd_SlowStartStopsAtSsthresh) {
    CongestionWindow c;
    c.init(kMss);
    c.on_timeout(16 * kMss, kMss);  // ssthresh 8, cwnd 2
    c.on_ack(20 * kMss, kMss, true);
    // 6 segments reach ssthresh, the other 14 count toward avoidance: +1.
    EXPECT_EQ(c.cwnd(), 9 * kMss);
}

// --- SACK scoreboard -------------------------------------------------------------

std::vector<std::pair<uint32_t, uint32_t>> ranges(const SackBoard& b) {
    std::vector<std::pair<uint32_t, uint32_t>> v;
    for (int i = 0; i < b.size(); i++) v.emplace_back(b.range(i).start, b.range(i).end);
    return v;
}
using R = std::vector<std::pair<uint32_t, uint32_t>>;

TEST(TcpSack, TcpSack_BlocksMergeInOrder) {
    SackBoard b;
    EXPECT_TRUE(b.add(3000, 4000, 1000, 10000));
    EXPECT_TRUE(b.add(1500, 2000, 1000, 10000));
    EXPECT_TRUE(b.add(6000, 7000, 1000, 10000));
    EXPECT_EQ(ranges(b), (R{{1500, 2000}, {3000, 4000}, {6000, 7000}}));
    // Touching and overlapping blocks join what they meet.
    EXPECT_TRUE(b.add(2000, 3000, 1000, 10000));
    EXPECT_EQ(ranges(b), (R{{1500, 4000}, {6000, 7000}}));
    EXPECT_TRUE(b.add(3500, 6500, 1000, 10000));
    EXPECT_EQ(ranges(b), (R{{1500, 7000}}));
    EXPECT_EQ(b.high(), 7000u);
}

TEST(TcpSack, TcpSack_RepeatedAndInvalidBlocksChangeNothing) {
    SackBoard b;
    EXPECT_TRUE(b.add(3000, 4000, 1000, 10000));
    EXPECT_FALSE(b.add(3000, 4000, 1000, 10000));  // reported again
    EXPECT_FALSE(b.add(3200, 3800, 1000, 10000));  // inside
    EXPECT_FALSE(b.add(500, 1000, 1000, 10000));   // D-SACK: at or below snd_una
    EXPECT_FALSE(b.add(9000, 11000, 1000, 10000)); // beyond what was sent
    EXPECT_FALSE(b.add(5000, 5000, 1000, 10000));  // empty
    EXPECT_FALSE(b.add(5000, 4000, 1000, 10000));  // reversed
    EXPECT_EQ(ranges(b), (R{{3000, 4000}}));
    EXPECT_TRUE(b.add(800, 1200, 1000, 10000));    // straddles snd_una: clipped
    EXPECT_EQ(ranges(b), (R{{1000, 1200}, {3000, 4000}}));
}

TEST(TcpSack, TcpSack_FullBoardForgetsTheHighest) {
    SackBoard b;
    for (uint32_t i = 0; i < SackBoard::kRanges; i++)
        EXPECT_TRUE(b.add(2000 + 1000 * i, 2500 + 1000 * i, 1000, 100000));
    EXPECT_EQ(b.size(), SackBoard::kRanges);
    // Above every range: no room, forgotten.
    EXPECT_FALSE(b.add(50000, 51000, 1000, 100000));
    EXPECT_EQ(b.high(), 5500u);
    // Below them: kept, and the highest range goes.
    EXPECT_TRUE(b.add(1200, 1300, 1000, 100000));
    EXPECT_EQ(ranges(b), (R{{1200, 1300}, {2000, 2500}, {3000, 3500}, {4000, 4500}}));
}

TEST(TcpSack, TcpSack_TrimDropsWhatTheAckCovers) {
    SackBoard b;
    b.add(2000, 3000, 1000, 10000);
    b.add(4000, 5000, 1000, 10000);
    b.trim(3000);
    EXPECT_EQ(ranges(b), (R{{4000, 5000}}));
    b.trim(4500);
    EXPECT_EQ(ranges(b), (R{{4500, 5000}}));
    b.trim(6000);
    EXPECT_TRUE(b.empty());
}

TEST(TcpSack, TcpSack_NextHoleSkipsHeldRanges) {
    SackBoard b;
    b.add(2000, 3000, 1000, 10000);
    b.add(4000, 5000, 1000, 10000);
    uint32_t start = 0, end = 0;
    ASSERT_TRUE(b.next_hole(1000, start, end));
    EXPECT_EQ(start, 1000u);
    EXPECT_EQ(end, 2000u);
    ASSERT_TRUE(b.next_hole(1500, start, end));  // part of the first hole sent again
    EXPECT_EQ(start, 1500u);
    ASSERT_TRUE(b.next_hole(2000, start, end));  // the first hole done: the second
    EXPECT_EQ(start, 3000u);
    EXPECT_EQ(end, 4000u);
    EXPECT_FALSE(b.next_hole(4000, start, end));  // above the highest range: not a hole
    EXPECT_FALSE(b.next_hole(5000, start, end));
}

TEST(TcpSack, TcpSack_WorksAcrossSequenceWrap) {
    SackBoard b;
    const uint32_t una = 0xffffff00u;
    EXPECT_TRUE(b.add(0xffffff80u, 0x80u, una, 0x1000u));
    EXPECT_TRUE(b.add(0x100u, 0x200u, una, 0x1000u));
    EXPECT_EQ(ranges(b), (R{{0xffffff80u, 0x80u}, {0x100u, 0x200u}}));
    uint32_t start = 0, end = 0;
    ASSERT_TRUE(b.next_hole(una, start, end));
    EXPECT_EQ(start, una);
    EXPECT_EQ(end, 0xffffff80u);
    ASSERT_TRUE(b.next_hole(0xffffff80u, start, end));
    EXPECT_EQ(start, 0x80u);
    EXPECT_EQ(end, 0x100u);
    b.trim(0x90u);
    EXPECT_EQ(ranges(b), (R{{0x100u, 0x200u}}));
}

TEST(TcpFlow, TcpFlow_StateFitsInAFewCacheLines) {
    EXPECT_LE(sizeof(Flow), 312u);
}

TEST(TcpFlow, TcpFlow_DataInFlightExcludesTheFin) {
    FlowState s;
    s.snd_una = 100;
    s.snd_nxt = 151;
    s.host_eof = true;
    s.fin_seq = 150;
    s.fin_sent = true;
    EXPECT_EQ(s.data_in_flight(), 50u);
    s.fin_sent = false;
    s.snd_nxt = 120;
    EXPECT_EQ(s.data_in_flight(), 20u);
}

}  // namespace
}  // namespace usernet::nat::tcp
