// ICMPv4: real echo and error messages, the builder.
#include "wire/icmp4.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"
#include "wire/ipv4.hpp"
#include "wire/udp.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

TEST(Icmp4View, ParsesCapturedEchoRequest) {
    auto m = Icmp4View::parse(bytes(kIcmpEchoRequest).subspan(kEthIp));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), icmptype::echo_request);
    EXPECT_EQ(m->code(), 0);
    EXPECT_EQ(m->echo_id(), 0x01ff);
    EXPECT_EQ(m->echo_seq(), 0);
    EXPECT_EQ(m->checksum(), 0x79e2);
    EXPECT_EQ(m->payload().size(), 56u);
    EXPECT_TRUE(m->checksum_ok());
}

TEST(Icmp4View, ParsesCapturedEchoReply) {
    auto m = Icmp4View::parse(bytes(kIcmpEchoReply).subspan(kEthIp));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), icmptype::echo_reply);
    EXPECT_EQ(m->echo_id(), 0x01ff);
    EXPECT_TRUE(m->checksum_ok());
}

TEST(Icmp4View, ExposesQuotedDatagramOfPortUnreachable) {
    auto m = Icmp4View::parse(bytes(kIcmpPortUnreach).subspan(kEthIp));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), icmptype::dest_unreach);
    EXPECT_EQ(m->code(), icmpcode::port_unreach);
    EXPECT_EQ(m->rest(), 0u);
    EXPECT_TRUE(m->checksum_ok());
    auto quoted = Ipv4View::parse(m->payload());
    ASSERT_TRUE(quoted);
    EXPECT_EQ(quoted->src(), 0x0a00020fu);
    EXPECT_EQ(quoted->protocol(), ipproto::udp);
    auto udp = UdpView::parse(quoted->payload());
    ASSERT_TRUE(udp);
    EXPECT_EQ(udp->src_port(), 41764);
    EXPECT_EQ(udp->dst_port(), 7777);
}

TEST(Icmp4View, ExposesQuotedHeaderWithOptions) {
    Bytes ip = ip_of(kIcmpPortUnreachWithOptions);
    auto outer = Ipv4View::parse(ip);
    ASSERT_TRUE(outer);
    EXPECT_EQ(outer->header_len(), 32u) << "Linux echoed the Record Route option";
    auto m = Icmp4View::parse(outer->payload());
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->checksum_ok());
    auto quoted = Ipv4View::parse(m->payload());
    ASSERT_TRUE(quoted);
    EXPECT_EQ(quoted->header_len(), 32u);
    EXPECT_EQ(UdpView::parse(quoted->payload())->dst_port(), 5353);
}

TEST(Icmp4View, RejectsMessageShorterThanHeader) {
    Bytes msg = bytes(kIcmpEchoRequest).subspan(kEthIp);
    for (size_t n = 0; n < 8; n++) EXPECT_FALSE(Icmp4View::parse(msg.first(n))) << n;
    auto bare = Icmp4View::parse(msg.first(8));
    ASSERT_TRUE(bare);
    EXPECT_TRUE(bare->payload().empty());
}

TEST(Icmp4View, DetectsCorruptedChecksum) {
    std::vector<uint8_t> msg = vec(bytes(kIcmpEchoRequest).subspan(kEthIp));
    msg[20] ^= 0xff;
    EXPECT_FALSE(Icmp4View::parse(bytes(msg))->checksum_ok());
}

TEST(Icmp4Build, EchoReplyMatchesCapturedReply) {
    // Turn the captured request into a reply as a responder would.
    std::vector<uint8_t> msg = vec(bytes(kIcmpEchoRequest).subspan(kEthIp));
    auto req = Icmp4View::parse(bytes(msg));
    ASSERT_TRUE(req);
    build_icmp4(msg.data(), icmptype::echo_reply, 0, req->rest(), msg.size());
    Bytes real = bytes(kIcmpEchoReply).subspan(kEthIp);
    EXPECT_TRUE(std::equal(msg.begin(), msg.end(), real.begin(), real.end()));
}

TEST(Icmp4Build, ErrorWithQuoteChecksums) {
    std::vector<uint8_t> msg(8 + 28);
    Bytes quote = ip_of(kUdpZeroChecksum).first(28);
    std::copy(quote.begin(), quote.end(), msg.begin() + 8);
    EXPECT_EQ(build_icmp4(msg.data(), icmptype::dest_unreach, icmpcode::frag_needed, 1280,
                          msg.size()),
              8u);
    auto m = Icmp4View::parse(bytes(msg));
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->checksum_ok());
    EXPECT_EQ(m->code(), icmpcode::frag_needed);
    EXPECT_EQ(m->rest(), 1280u);
}
