// The TCP translator's out-of-order queue (nat/tcp_ooo.hpp): which bytes
// beyond a hole it holds, how ranges merge, what it hands back once the
// hole fills, its limits (window, ring, ranges) and the guest's FIN.
#include "nat/tcp_ooo.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace usernet::nat::tcp {
namespace {

std::vector<uint8_t> bytes(size_t n, uint32_t first_seq) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++) v[i] = static_cast<uint8_t>((first_seq + i) * 13 + 7);
    return v;
}

// What ready() hands back, as one string of bytes.
std::vector<uint8_t> gather(const OooQueue& q, uint32_t rcv_nxt) {
    iovec iov[2];
    int n = 0;
    uint32_t len = q.ready(rcv_nxt, iov, &n);
    std::vector<uint8_t> out;
    for (int i = 0; i < n; i++) {
        auto* p = static_cast<uint8_t*>(iov[i].iov_base);
        out.insert(out.end(), p, p + iov[i].iov_len);
    }
    EXPECT_EQ(out.size(), len);
    return out;
}

struct Fixture {
    std::unique_ptr<uint8_t[]> ring = std::make_unique<uint8_t[]>(OooQueue::kBytes);
    OooQueue q{ring.get()};
};

constexpr uint32_t kWide = 1u << 30;  // a right edge far away

TEST(TcpOoo, TcpOoo_SegmentsBeyondAHoleAreHandedBackInOrderOnceItFills) {
    Fixture f;
    const uint32_t r = 5000;
    // 5000..5999 is missing; 6000..6999 and 7000..7499 came.
    EXPECT_EQ(f.q.add(6000, bytes(1000, 6000), false, r, r + kWide), OooQueue::Added::stored);
    EXPECT_EQ(f.q.add(7000, bytes(500, 7000), false, r, r + kWide), OooQueue::Added::stored);
    ASSERT_EQ(f.q.ranges().size(), 1u);  // adjacent: one range
    EXPECT_EQ(f.q.ranges()[0].start, 6000u);
    EXPECT_EQ(f.q.ranges()[0].end, 7500u);
    EXPECT_TRUE(gather(f.q, r).empty());  // still a hole
    // The hole filled (the translator wrote 5000..5999): 6000..7499 follow.
    EXPECT_EQ(gather(f.q, 6000), bytes(1500, 6000));
    f.q.trim(7500);
    EXPECT_TRUE(f.q.empty());
}

TEST(TcpOoo, TcpOoo_OverlappingAndDisjointSegmentsMergeIntoSortedRanges) {
    Fixture f;
    const uint32_t r = 100;
    f.q.add(1000, bytes(100, 1000), false, r, r + kWide);
    f.q.add(500, bytes(100, 500), false, r, r + kWide);
    f.q.add(800, bytes(100, 800), false, r, r + kWide);
    ASSERT_EQ(f.q.ranges().size(), 3u);
    EXPECT_EQ(f.q.latest(), 1);  // the range holding 800..899
    // One segment that covers 550..1050 joins all three.
    f.q.add(550, bytes(500, 550), false, r, r + kWide);
    ASSERT_EQ(f.q.ranges().size(), 1u);
    EXPECT_EQ(f.q.ranges()[0].start, 500u);
    EXPECT_EQ(f.q.ranges()[0].end, 1100u);
    EXPECT_EQ(f.q.held(), 600u);
    EXPECT_EQ(gather(f.q, 500), bytes(600, 500));
    // rcv_nxt inside the range: only the rest is handed back.
    EXPECT_EQ(gather(f.q, 700), bytes(400, 700));
}

TEST(TcpOoo, TcpOoo_NothingPastTheWindowsRightEdgeIsHeld) {
    Fixture f;
    EXPECT_EQ(f.q.add(2000, bytes(1000, 2000), false, 1000, 2500), OooQueue::Added::clipped);
    ASSERT_EQ(f.q.ranges().size(), 1u);
    EXPECT_EQ(f.q.ranges()[0].end, 2500u);
    EXPECT_EQ(f.q.add(2500, bytes(100, 2500), false, 1000, 2500), OooQueue::Added::refused);
    // A segment at or before rcv_nxt is not out of order.
    EXPECT_EQ(f.q.add(1000, bytes(10, 1000), false, 1000, 2500), OooQueue::Added::refused);
}

TEST(TcpOoo, TcpOoo_HeldBytesNeverSpanMoreThanTheRing) {
    Fixture f;
    const uint32_t r = 0;
    const uint32_t k = OooQueue::kBytes;
    f.q.add(1000, bytes(1000, 1000), false, r, r + kWide);
    // This one reaches past 1000 + kBytes: cut there, so that it cannot
    // overwrite the slots of 1000..1999.
    EXPECT_EQ(f.q.add(k, bytes(2000, k), false, r, r + kWide), OooQueue::Added::clipped);
    EXPECT_EQ(f.q.ranges().back().end, 1000 + k);
    EXPECT_EQ(gather(f.q, 1000), bytes(1000, 1000));
    // What lies wholly beyond is refused.
    EXPECT_EQ(f.q.add(k + 1000, bytes(100, k + 1000), false, r, r + kWide),
              OooQueue::Added::refused);
}

TEST(TcpOoo, TcpOoo_TheRingWrapsAndSoDoesTheSequenceSpace) {
    Fixture f;
    // Slots near the end of the ring and sequence numbers near 2^32.
    const uint32_t r = 0xffffffffu - OooQueue::kBytes / 2;
    const uint32_t seq = r + OooQueue::kBytes / 2 - 300;  // wraps the ring and 2^32 both
    auto data = bytes(OooQueue::kBytes / 4, seq);
    EXPECT_EQ(f.q.add(seq, data, false, r, r + kWide), OooQueue::Added::stored);
    iovec iov[2];
    int n = 0;
    EXPECT_EQ(f.q.ready(seq, iov, &n), data.size());
    EXPECT_EQ(n, 2);  // two slices: the ring's end, then its start
    EXPECT_EQ(gather(f.q, seq), data);
    f.q.trim(seq + static_cast<uint32_t>(data.size()));
    EXPECT_TRUE(f.q.empty());
}

TEST(TcpOoo, TcpOoo_AFullSetOfRangesRefusesANewHoleButTakesWhatJoinsOne) {
    Fixture f;
    const uint32_t r = 0;
    for (uint32_t i = 0; i < OooQueue::kMaxRanges; i++)
        ASSERT_EQ(f.q.add(1000 + i * 200, bytes(100, 1000 + i * 200), false, r, r + kWide),
                  OooQueue::Added::stored);
    EXPECT_EQ(f.q.ranges().size(), OooQueue::kMaxRanges);
    EXPECT_EQ(f.q.add(10000, bytes(100, 10000), false, r, r + kWide), OooQueue::Added::refused);
    EXPECT_EQ(f.q.add(1100, bytes(100, 1100), false, r, r + kWide), OooQueue::Added::stored);
    EXPECT_EQ(f.q.ranges().size(), OooQueue::kMaxRanges - 1);
}

TEST(TcpOoo, TcpOoo_TrimForgetsWrittenRangesAndKeepsOneRcvNxtFallsInside) {
    Fixture f;
    f.q.add(100, bytes(100, 100), false, 0, kWide);
    f.q.add(300, bytes(100, 300), false, 0, kWide);
    f.q.trim(250);  // 100..199 written
    ASSERT_EQ(f.q.ranges().size(), 1u);
    f.q.trim(350);  // inside 300..399: kept whole (a short write may move rcv_nxt back)
    ASSERT_EQ(f.q.ranges().size(), 1u);
    EXPECT_EQ(gather(f.q, 320), bytes(80, 320));
}

TEST(TcpOoo, TcpOoo_AFinIsKeptBehindItsDataAndBoundsLaterData) {
    Fixture f;
    EXPECT_EQ(f.q.add(2000, bytes(500, 2000), true, 1000, kWide), OooQueue::Added::stored);
    EXPECT_TRUE(f.q.has_fin());
    EXPECT_TRUE(f.q.fin_at(2500));
    EXPECT_FALSE(f.q.empty());
    // Nothing is held past the FIN.
    EXPECT_EQ(f.q.add(2500, bytes(100, 2500), false, 1000, kWide), OooQueue::Added::refused);
    // Data in front of it is.
    EXPECT_EQ(f.q.add(1500, bytes(500, 1500), false, 1000, kWide), OooQueue::Added::stored);
    EXPECT_EQ(gather(f.q, 1500), bytes(1000, 1500));
    f.q.trim(2501);  // the FIN was taken
    EXPECT_TRUE(f.q.empty());
}

TEST(TcpOoo, TcpOoo_AFinAloneOrCutShortOrBeforeHeldDataIsNotTaken) {
    Fixture f;
    // A FIN with no data, beyond a hole.
    EXPECT_EQ(f.q.add(3000, {}, true, 1000, kWide), OooQueue::Added::stored);
    EXPECT_TRUE(f.q.fin_at(3000));
    Fixture g;
    // The window cut the data short: the FIN is not in it.
    EXPECT_EQ(g.q.add(2000, bytes(500, 2000), true, 1000, 2200), OooQueue::Added::clipped);
    EXPECT_FALSE(g.q.has_fin());
    Fixture h;
    // Held data beyond where a FIN claims the stream ends: not a FIN to trust.
    h.q.add(5000, bytes(100, 5000), false, 1000, kWide);
    h.q.add(2000, bytes(100, 2000), true, 1000, kWide);
    EXPECT_FALSE(h.q.has_fin());
}

}  // namespace
}  // namespace usernet::nat::tcp
