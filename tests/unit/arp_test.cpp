// ARP: real request and reply, what is refused, the builder.
#include "wire/arp.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

TEST(ArpView, ParsesCapturedRequest) {
    auto a = ArpView::parse(bytes(kArpRequest).subspan(kEth));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->op(), arpop::request);
    EXPECT_EQ(a->sender_mac(), *MacAddr::parse("52:54:00:12:34:56"));
    EXPECT_EQ(a->sender_ip(), 0x0a00020fu);
    EXPECT_TRUE(a->target_mac().is_zero());
    EXPECT_EQ(a->target_ip(), 0x0a000202u);
}

TEST(ArpView, ParsesCapturedReply) {
    auto a = ArpView::parse(bytes(kArpReply).subspan(kEth));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->op(), arpop::reply);
    EXPECT_EQ(a->sender_mac(), *MacAddr::parse("52:55:0a:00:02:02"));
    EXPECT_EQ(a->sender_ip(), 0x0a000202u);
    EXPECT_EQ(a->target_mac(), *MacAddr::parse("52:54:00:12:34:56"));
    EXPECT_EQ(a->target_ip(), 0x0a00020fu);
}

TEST(ArpView, AcceptsTrailingEthernetPadding) {
    std::vector<uint8_t> p = vec(bytes(kArpRequest).subspan(kEth));
    p.resize(46, 0);
    EXPECT_TRUE(ArpView::parse(bytes(p)));
}

TEST(ArpView, RejectsTruncatedPacket) {
    Bytes p = bytes(kArpRequest).subspan(kEth);
    for (size_t n = 0; n < 28; n++) EXPECT_FALSE(ArpView::parse(p.first(n))) << n;
}

TEST(ArpView, RejectsNonEthernetOrNonIpv4Arp) {
    const std::vector<uint8_t> good = vec(bytes(kArpRequest).subspan(kEth));
    struct Mutation {
        size_t at;
        uint8_t value;
    };
    for (Mutation m : {Mutation{1, 6}, Mutation{0, 1}, Mutation{2, 0x86}, Mutation{3, 0xdd},
                       Mutation{4, 8}, Mutation{5, 16}}) {
        std::vector<uint8_t> p = good;
        p[m.at] = m.value;
        EXPECT_FALSE(ArpView::parse(bytes(p))) << "byte " << m.at;
    }
}

TEST(ArpBuild, ReproducesCapturedReply) {
    uint8_t buf[kArpLen];
    EXPECT_EQ(build_arp(buf, arpop::reply, *MacAddr::parse("52:55:0a:00:02:02"), 0x0a000202,
                        *MacAddr::parse("52:54:00:12:34:56"), 0x0a00020f),
              kArpLen);
    Bytes real = bytes(kArpReply).subspan(kEth);
    EXPECT_TRUE(std::equal(buf, buf + kArpLen, real.begin(), real.end()));
}
