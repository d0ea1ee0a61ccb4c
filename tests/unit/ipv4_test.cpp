// IPv4 headers: real packets, lying lengths, options, fragments.
#include "wire/ipv4.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"
#include "wire/udp.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

TEST(Ipv4View, ParsesCapturedUdpPacket) {
    auto ip = Ipv4View::parse(ip_of(kDnsQueryA));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->src(), 0x0a00020fu);
    EXPECT_EQ(ip->dst(), 0x0a000202u);
    EXPECT_EQ(ip->src_addr(), IpAddr::v4(0x0a00020f));
    EXPECT_EQ(ip->dst_addr(), IpAddr::v4(0x0a000202));
    EXPECT_EQ(ip->protocol(), ipproto::udp);
    EXPECT_EQ(ip->ttl(), 64);
    EXPECT_EQ(ip->tos(), 0);
    EXPECT_EQ(ip->id(), 0x8798);
    EXPECT_TRUE(ip->dont_fragment());
    EXPECT_FALSE(ip->is_fragment());
    EXPECT_EQ(ip->header_len(), 20u);
    EXPECT_EQ(ip->total_len(), 57u);
    EXPECT_EQ(ip->payload().size(), 37u);
    EXPECT_EQ(ip->header().size(), 20u);
    EXPECT_TRUE(ip->checksum_ok());
}

TEST(Ipv4View, ReadsTosOfCapturedIcmpError) {
    auto ip = Ipv4View::parse(ip_of(kIcmpPortUnreach));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->tos(), 0xc0);
    EXPECT_EQ(ip->protocol(), ipproto::icmp);
    EXPECT_FALSE(ip->dont_fragment());
    EXPECT_TRUE(ip->checksum_ok());
}

TEST(Ipv4View, TrimsEthernetPaddingToTotalLength) {
    std::vector<uint8_t> pkt = vec(ip_of(kTcpRstAck));
    ASSERT_EQ(pkt.size(), 40u);
    pkt.resize(46, 0);  // a minimum-size Ethernet frame's payload
    auto ip = Ipv4View::parse(bytes(pkt));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->total_len(), 40u);
    EXPECT_EQ(ip->packet().size(), 40u);
    EXPECT_EQ(ip->payload().size(), 20u);
}

TEST(Ipv4View, RejectsTruncatedPacket) {
    Bytes ip = ip_of(kDnsQueryA);
    for (size_t n = 0; n < ip.size(); n++) EXPECT_FALSE(Ipv4View::parse(ip.first(n))) << n;
}

TEST(Ipv4View, RejectsTotalLengthBeyondBuffer) {
    std::vector<uint8_t> pkt = vec(ip_of(kDnsQueryA));
    store16(&pkt[2], static_cast<uint16_t>(pkt.size() + 1));
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
    store16(&pkt[2], 0xffff);
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
}

TEST(Ipv4View, RejectsTotalLengthBelowHeaderLength) {
    std::vector<uint8_t> pkt = vec(ip_of(kDnsQueryA));
    store16(&pkt[2], 19);
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
    store16(&pkt[2], 0);
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
    std::vector<uint8_t> opt = vec(ip_of(kUdpWithIpOptions));
    store16(&opt[2], 31);  // IHL says 32
    EXPECT_FALSE(Ipv4View::parse(bytes(opt)));
}

TEST(Ipv4View, AcceptsHeaderOnlyPacket) {
    std::vector<uint8_t> pkt = vec(ip_of(kDnsQueryA));
    store16(&pkt[2], 20);
    auto ip = Ipv4View::parse(bytes(pkt));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->payload().empty());
}

TEST(Ipv4View, RejectsIhlBelowFive) {
    std::vector<uint8_t> pkt = vec(ip_of(kDnsQueryA));
    for (uint8_t ihl = 0; ihl < 5; ihl++) {
        pkt[0] = static_cast<uint8_t>(0x40 | ihl);
        EXPECT_FALSE(Ipv4View::parse(bytes(pkt))) << int{ihl};
    }
}

TEST(Ipv4View, RejectsIhlBeyondBuffer) {
    std::vector<uint8_t> pkt = vec(ip_of(kTcpRstAck));
    ASSERT_EQ(pkt.size(), 40u);
    store16(&pkt[2], 40);
    pkt[0] = 0x4f;  // 60-byte header in a 40-byte buffer
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
}

TEST(Ipv4View, RejectsOtherIpVersions) {
    std::vector<uint8_t> pkt = vec(ip_of(kDnsQueryA));
    pkt[0] = 0x65;
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
    pkt[0] = 0x05;
    EXPECT_FALSE(Ipv4View::parse(bytes(pkt)));
}

TEST(Ipv4View, SkipsOptionsToReachPayload) {
    auto ip = Ipv4View::parse(ip_of(kUdpWithIpOptions));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->header_len(), 32u);
    EXPECT_TRUE(ip->checksum_ok());
    EXPECT_EQ(ip->header()[21], 7) << "the Record Route option is kept in header()";
    auto udp = UdpView::parse(ip->payload());
    ASSERT_TRUE(udp);
    EXPECT_EQ(udp->dst_port(), 5353);
    EXPECT_TRUE(udp->checksum_ok(ip->src_addr(), ip->dst_addr()));
    std::string text(udp->payload().begin(), udp->payload().end());
    EXPECT_EQ(text, "usernet-opts");
}

TEST(Ipv4View, FlagsFirstFragment) {
    auto ip = Ipv4View::parse(ip_of(kIpv4FirstFragment));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->more_fragments());
    EXPECT_EQ(ip->frag_offset(), 0);
    EXPECT_TRUE(ip->is_fragment());
    EXPECT_EQ(ip->total_len(), 1500u);
    EXPECT_TRUE(ip->checksum_ok());
}

TEST(Ipv4View, FlagsLastFragment) {
    auto ip = Ipv4View::parse(ip_of(kIpv4LastFragment));
    ASSERT_TRUE(ip);
    EXPECT_FALSE(ip->more_fragments());
    EXPECT_EQ(ip->frag_offset(), 370) << "2960 bytes in 8-byte units";
    EXPECT_TRUE(ip->is_fragment());
    EXPECT_EQ(ip->id(), Ipv4View::parse(ip_of(kIpv4FirstFragment))->id());
}

TEST(Ipv4View, DetectsCorruptedHeaderChecksum) {
    std::vector<uint8_t> pkt = vec(ip_of(kDnsQueryA));
    pkt[8]--;  // TTL
    auto ip = Ipv4View::parse(bytes(pkt));
    ASSERT_TRUE(ip);
    EXPECT_FALSE(ip->checksum_ok());
}

TEST(Ipv4Build, ReproducesCapturedHeader) {
    // Linux sent this SYN-ACK with DF, TTL 64 and IP id 0.
    Bytes real = ip_of(kTcpSynAck).first(20);
    uint8_t buf[20];
    build_ipv4(buf, 0x0a000202, 0x0a00020f, ipproto::tcp, 40, 64, 0, true);
    EXPECT_TRUE(std::equal(buf, buf + 20, real.begin()));
}

TEST(Ipv4Build, RoundTripsThroughParse) {
    std::vector<uint8_t> pkt(20 + 8, 0xab);
    EXPECT_EQ(build_ipv4(pkt.data(), 0xc0a80001, 0x08080808, ipproto::udp, 8, 17, 0x1234, false),
              20u);
    auto ip = Ipv4View::parse(bytes(pkt));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->checksum_ok());
    EXPECT_EQ(ip->src(), 0xc0a80001u);
    EXPECT_EQ(ip->dst(), 0x08080808u);
    EXPECT_EQ(ip->ttl(), 17);
    EXPECT_EQ(ip->id(), 0x1234);
    EXPECT_FALSE(ip->dont_fragment());
    EXPECT_FALSE(ip->is_fragment());
    EXPECT_EQ(ip->total_len(), 28u);
}
