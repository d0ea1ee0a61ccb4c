// IcmpNat: echo through ping sockets or the raw fallback (whichever this
// host allows; tests that need one skip without), and the ICMP errors every
// translator sends to guests.
#include "nat/icmp_nat.hpp"

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace usernet::testing {
namespace {

using Mode = nat::IcmpNat::Mode;

// Sends an echo request and runs the loop until a reply arrives or the
// mode turns out to be unavailable.
bool ping(NatHarness& h, wire::Ipv4 src, wire::Ipv4 dst, uint16_t id, uint16_t seq,
          size_t len = 32) {
    size_t before = h.ip_frames().size();
    h.input(echo_frame(src, dst, id, seq, len));
    if (h.nat->icmp().mode() == Mode::unavailable) return false;
    return h.run_until([&] { return h.ip_frames().size() > before; });
}

TEST(IcmpNat, IcmpNat_EchoIsAnsweredWithTheGuestsIdentifierAndSequence) {
    if (!enter_private_netns()) GTEST_SKIP() << "cannot make a network namespace (needs root)";
    NatHarness h;
    if (!ping(h, kGuestIp, kLocalDst, 0x1234, 7))
        GTEST_SKIP() << "neither ping sockets nor a raw socket are allowed here";
    auto f = *h.first_of(wire::ipproto::icmp);
    EXPECT_EQ(f.src, kLocalDst);  // from the address the guest pinged
    EXPECT_EQ(f.dst, kGuestIp);
    auto icmp = wire::Icmp4View::parse(f.l4);
    ASSERT_TRUE(icmp);
    EXPECT_TRUE(icmp->checksum_ok());
    EXPECT_EQ(icmp->type(), wire::icmptype::echo_reply);
    EXPECT_EQ(icmp->echo_id(), 0x1234);
    EXPECT_EQ(icmp->echo_seq(), 7);
    ASSERT_EQ(icmp->payload().size(), 32u);
    for (size_t i = 0; i < 32; i++) EXPECT_EQ(icmp->payload()[i], static_cast<uint8_t>(i * 7));
    EXPECT_EQ(h.nat->icmp().flow_count(), 1u);
    // The next request of the same session uses the same flow.
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 0x1234, 8));
    EXPECT_EQ(h.nat->icmp().flow_count(), 1u);
    EXPECT_EQ(h.nat->icmp().stats().echo_replies, 2u);
}

TEST(IcmpNat, IcmpNat_TwoGuestsWithTheSameIdentifierGetTheirOwnReplies) {
    if (!enter_private_netns()) GTEST_SKIP() << "cannot make a network namespace (needs root)";
    NatHarness h;
    const wire::Ipv4 other = kGuestIp + 1;
    const wire::MacAddr other_mac{{0x52, 0x54, 0, 0, 0, 0x16}};
    if (!ping(h, kGuestIp, kLocalDst, 1, 1)) GTEST_SKIP() << "no ICMP echo here";
    size_t before = h.ip_frames().size();
    h.input(echo_frame(other, kLocalDst, 1, 1, 32, 64, other_mac));
    ASSERT_TRUE(h.run_until([&] { return h.ip_frames().size() > before; }));
    EXPECT_EQ(h.nat->icmp().flow_count(), 2u);
    auto frames = h.ip_frames();
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].dst, kGuestIp);
    EXPECT_EQ(frames[1].dst, other);
    for (auto& f : frames) EXPECT_EQ(wire::Icmp4View::parse(f.l4)->echo_id(), 1);
}

TEST(IcmpNat, IcmpNat_BadChecksumAndOtherTypesAreDropped) {
    NatHarness h;
    auto f = echo_frame(kGuestIp, kLocalDst, 1, 1, 8);
    f[34 + 2] ^= 1;
    h.input(f);
    EXPECT_EQ(h.nat->icmp().stats().dropped_checksum, 1u);
    std::vector<uint8_t> ts(20);
    wire::build_icmp4(ts.data(), 13, 0, 0, ts.size());  // timestamp request
    h.input(ipv4_frame(kGuestIp, kLocalDst, wire::ipproto::icmp, ts));
    EXPECT_EQ(h.nat->icmp().stats().dropped_unsupported, 1u);
    EXPECT_EQ(h.nat->icmp().flow_count(), 0u);
    EXPECT_EQ(h.nat->icmp().mode(), Mode::undecided);  // nothing probed yet
}

TEST(IcmpNat, IcmpNat_FlowCapEvictsTheLeastRecentlyUsed) {
    if (!enter_private_netns()) GTEST_SKIP() << "cannot make a network namespace (needs root)";
    nat::NatLimits lim;
    lim.icmp_flows = 2;
    NatHarness h(lim);
    if (!ping(h, kGuestIp, kLocalDst, 1, 1)) GTEST_SKIP() << "no ICMP echo here";
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 2, 1));
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 3, 1));
    EXPECT_EQ(h.nat->icmp().flow_count(), 2u);
    EXPECT_EQ(h.nat->icmp().stats().flows_evicted, 1u);
}

TEST(IcmpNat, IcmpNat_IdleFlowsExpire) {
    if (!enter_private_netns()) GTEST_SKIP() << "cannot make a network namespace (needs root)";
    nat::NatLimits lim;
    lim.icmp_idle_ms = 50;
    NatHarness h(lim);
    if (!ping(h, kGuestIp, kLocalDst, 1, 1)) GTEST_SKIP() << "no ICMP echo here";
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    h.loop.run_once(0);
    h.nat->icmp().expire_idle();
    EXPECT_EQ(h.nat->icmp().flow_count(), 0u);
    EXPECT_EQ(h.nat->icmp().stats().flows_expired, 1u);
}

TEST(IcmpNat, IcmpNat_UnmappedDestinationGetsHostUnreachable) {
    NatHarness h;
    h.input(echo_frame(kGuestIp, 0x0a000263, 1, 1, 8));  // 10.0.2.99
    auto f = h.first_of(wire::ipproto::icmp);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->src, kGatewayIp);
    EXPECT_EQ(wire::Icmp4View::parse(f->l4)->type(), wire::icmptype::dest_unreach);
}

// --- errors toward guests ----------------------------------------------------

std::vector<uint8_t> udp_packet() {
    auto f = udp_frame(kGuestIp, 0xc0000201, 1000, 2000, bytes("data"));
    return std::vector<uint8_t>(f.begin() + 14, f.begin() + 14 + 20 + 8 + 4);
}

TEST(IcmpErrors, IcmpErrors_AreRateLimited) {
    NatHarness h;
    auto q = udp_packet();
    int sent = 0;
    for (int i = 0; i < 200; i++)
        sent += h.nat->icmp().send_error4(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                          3, 1, 0, q);
    EXPECT_GE(sent, 40);
    EXPECT_LE(sent, 60);
    EXPECT_EQ(h.nat->icmp().stats().errors_rate_limited, static_cast<uint64_t>(200 - sent));
}

TEST(IcmpErrors, IcmpErrors_NeverAboutAnIcmpErrorOrToABroadcast) {
    NatHarness h;
    std::vector<uint8_t> err(28);
    wire::build_ipv4(err.data(), kGuestIp, 0xc0000201, wire::ipproto::icmp, 8);
    wire::build_icmp4(err.data() + 20, 3, 3, 0, 8);
    EXPECT_FALSE(h.nat->icmp().send_error4(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                           3, 1, 0, err));
    EXPECT_FALSE(h.nat->icmp().send_error4(wire::IpAddr::v4(kGatewayIp),
                                           wire::IpAddr::v4(0x0a0002ff), 3, 1, 0, udp_packet()));
    EXPECT_TRUE(h.nat->icmp().send_error4(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                          3, 1, 0, udp_packet()));
}

TEST(IcmpErrors, IcmpErrors_QuoteIsCutToKeepTheErrorWithin576Bytes) {
    NatHarness h;
    auto f = udp_frame(kGuestIp, 0xc0000201, 1000, 2000, std::vector<uint8_t>(1200, 0xab));
    std::vector<uint8_t> pkt(f.begin() + 14, f.end());
    ASSERT_TRUE(h.nat->icmp().send_error4(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                          3, 1, 0, pkt));
    auto e = h.first_of(wire::ipproto::icmp);
    ASSERT_TRUE(e);
    EXPECT_EQ(20 + e->l4.size(), 576u);
    EXPECT_TRUE(wire::Icmp4View::parse(e->l4)->checksum_ok());
}

TEST(IcmpErrors, IcmpErrors_LocalSendFailuresMapToUnreachableCodes) {
    EXPECT_EQ(nat::unreach_code_for_errno(ENETUNREACH), wire::icmpcode::net_unreach);
    EXPECT_EQ(nat::unreach_code_for_errno(EHOSTUNREACH), wire::icmpcode::host_unreach);
    EXPECT_EQ(nat::unreach_code_for_errno(EPERM), wire::icmpcode::admin_prohibited);
    EXPECT_FALSE(nat::unreach_code_for_errno(EAGAIN));
}

}  // namespace
}  // namespace usernet::testing
