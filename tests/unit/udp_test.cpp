// UDP: length checks, checksum on real frames, the zero checksum.
#include "wire/udp.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

namespace {
const IpAddr kGuest = IpAddr::v4(0x0a00020f);
const IpAddr kGateway = IpAddr::v4(0x0a000202);

Bytes udp_of_dns_query() { return bytes(kDnsQueryA).subspan(kEthIp); }
}  // namespace

TEST(UdpView, ParsesCapturedDatagram) {
    auto u = UdpView::parse(udp_of_dns_query());
    ASSERT_TRUE(u);
    EXPECT_EQ(u->src_port(), 56168);
    EXPECT_EQ(u->dst_port(), 53);
    EXPECT_EQ(u->checksum(), 0xc8dd);
    EXPECT_EQ(u->segment().size(), 37u);
    EXPECT_EQ(u->payload().size(), 29u);
    EXPECT_EQ(u->payload()[0], 0x73);  // DNS id 0x73aa
}

TEST(UdpView, VerifiesChecksumOfCapturedDatagram) {
    auto u = UdpView::parse(udp_of_dns_query());
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->checksum_ok(kGuest, kGateway));
    EXPECT_FALSE(u->checksum_ok(kGuest, IpAddr::v4(0x0a000203))) << "pseudo-header covers dst";
}

TEST(UdpView, DetectsCorruptedPayload) {
    std::vector<uint8_t> seg = vec(udp_of_dns_query());
    seg.back() ^= 0x01;
    auto u = UdpView::parse(bytes(seg));
    ASSERT_TRUE(u);
    EXPECT_FALSE(u->checksum_ok(kGuest, kGateway));
}

TEST(UdpView, RejectsLengthBeyondBuffer) {
    std::vector<uint8_t> seg = vec(udp_of_dns_query());
    store16(&seg[4], static_cast<uint16_t>(seg.size() + 1));
    EXPECT_FALSE(UdpView::parse(bytes(seg)));
    EXPECT_FALSE(UdpView::parse(udp_of_dns_query().first(36))) << "truncated datagram";
}

TEST(UdpView, RejectsLengthBelowHeader) {
    std::vector<uint8_t> seg = vec(udp_of_dns_query());
    for (uint16_t len = 0; len < 8; len++) {
        store16(&seg[4], len);
        EXPECT_FALSE(UdpView::parse(bytes(seg))) << len;
    }
    for (size_t n = 0; n < 8; n++) EXPECT_FALSE(UdpView::parse(udp_of_dns_query().first(n)));
}

TEST(UdpView, TrimsToLengthField) {
    std::vector<uint8_t> seg = vec(udp_of_dns_query());
    seg.resize(seg.size() + 9, 0);
    auto u = UdpView::parse(bytes(seg));
    ASSERT_TRUE(u);
    EXPECT_EQ(u->segment().size(), 37u);
    EXPECT_TRUE(u->checksum_ok(kGuest, kGateway));
}

TEST(UdpView, AcceptsZeroChecksumOverIpv4Only) {
    auto u = UdpView::parse(bytes(kUdpZeroChecksum).subspan(kEthIp));
    ASSERT_TRUE(u);
    EXPECT_EQ(u->checksum(), 0);
    EXPECT_EQ(u->src_port(), 41764);
    EXPECT_EQ(u->dst_port(), 7777);
    EXPECT_TRUE(u->checksum_ok(kGuest, kGateway));
    // RFC 8200 8.1: a zero UDP checksum over IPv6 is invalid.
    EXPECT_FALSE(u->checksum_ok(*IpAddr::parse("fec0::15"), *IpAddr::parse("fec0::2")));
}

TEST(UdpBuild, RoundTripsOverIpv4AndIpv6) {
    for (auto [src, dst] : {std::pair{kGateway, kGuest},
                            std::pair{*IpAddr::parse("fec0::3"), *IpAddr::parse("fec0::15")}}) {
        std::vector<uint8_t> seg(8 + 5);
        std::copy_n("hello", 5, seg.begin() + 8);
        EXPECT_EQ(build_udp(seg.data(), src, dst, 53, 40000, 5), 8u);
        auto u = UdpView::parse(bytes(seg));
        ASSERT_TRUE(u);
        EXPECT_EQ(u->src_port(), 53);
        EXPECT_EQ(u->dst_port(), 40000);
        EXPECT_EQ(u->payload().size(), 5u);
        EXPECT_NE(u->checksum(), 0);
        EXPECT_TRUE(u->checksum_ok(src, dst));
    }
}

TEST(UdpBuild, ReproducesCapturedChecksum) {
    std::vector<uint8_t> seg = vec(udp_of_dns_query());
    build_udp(seg.data(), kGuest, kGateway, 56168, 53, seg.size() - 8);
    EXPECT_TRUE(std::equal(seg.begin(), seg.end(), udp_of_dns_query().begin()));
}

TEST(UdpBuild, MapsComputedZeroChecksumToAllOnes) {
    // Pick a payload word that makes the computed checksum zero: with the
    // word at 0 the checksum is ~S, and adding ~S to the sum gives 0xffff.
    std::vector<uint8_t> seg(8 + 2, 0);
    build_udp(seg.data(), kGuest, kGateway, 1000, 2000, 2);
    uint16_t c = load16(&seg[6]);
    store16(&seg[8], c);
    build_udp(seg.data(), kGuest, kGateway, 1000, 2000, 2);
    EXPECT_EQ(load16(&seg[6]), 0xffff);
    auto u = UdpView::parse(bytes(seg));
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->checksum_ok(kGuest, kGateway));
}
