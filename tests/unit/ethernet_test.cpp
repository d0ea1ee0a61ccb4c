// Ethernet II with and without an 802.1Q tag.
#include "wire/ethernet.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

namespace {
// The captured ARP request with an 802.1Q tag (PCP 7, VID 100) inserted.
std::vector<uint8_t> tagged_arp(uint16_t tci = 0xe064) {
    std::vector<uint8_t> f(kArpRequest.size() + 4);
    std::copy(kArpRequest.begin(), kArpRequest.begin() + 12, f.begin());
    f[12] = 0x81;
    f[13] = 0x00;
    f[14] = static_cast<uint8_t>(tci >> 8);
    f[15] = static_cast<uint8_t>(tci);
    std::copy(kArpRequest.begin() + 12, kArpRequest.end(), f.begin() + 16);
    return f;
}
}  // namespace

TEST(EthernetView, ParsesCapturedUntaggedFrame) {
    auto e = EthernetView::parse(bytes(kArpRequest));
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->dst().is_broadcast());
    EXPECT_EQ(e->src(), *MacAddr::parse("52:54:00:12:34:56"));
    EXPECT_EQ(e->ethertype(), ethertype::arp);
    EXPECT_FALSE(e->has_vlan_tag());
    EXPECT_EQ(e->header_len(), 14u);
    EXPECT_EQ(e->payload().size(), 28u);
    EXPECT_EQ(e->frame().size(), kArpRequest.size());
}

TEST(EthernetView, ParsesFrameWith8021QTag) {
    auto f = tagged_arp();
    auto e = EthernetView::parse(bytes(f));
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->has_vlan_tag());
    EXPECT_EQ(e->vlan_id(), 100) << "priority bits are not part of the VID";
    EXPECT_EQ(e->ethertype(), ethertype::arp);
    EXPECT_EQ(e->header_len(), 18u);
    ASSERT_EQ(e->payload().size(), 28u);
    EXPECT_TRUE(std::equal(e->payload().begin(), e->payload().end(), kArpRequest.begin() + 14));
    EXPECT_EQ(e->src(), *MacAddr::parse("52:54:00:12:34:56"));
}

TEST(EthernetView, RejectsFrameShorterThanHeader) {
    for (size_t n = 0; n < 14; n++)
        EXPECT_FALSE(EthernetView::parse(bytes(kArpRequest).first(n))) << n;
    EXPECT_TRUE(EthernetView::parse(bytes(kArpRequest).first(14)));
}

TEST(EthernetView, RejectsTaggedFrameShorterThanTag) {
    auto f = tagged_arp();
    for (size_t n = 14; n < 18; n++) EXPECT_FALSE(EthernetView::parse(bytes(f).first(n))) << n;
    auto e = EthernetView::parse(bytes(f).first(18));
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->payload().empty());
}

TEST(EthernetView, BuildWritesParsableHeader) {
    uint8_t buf[kEthHeaderLen];
    MacAddr dst = *MacAddr::parse("52:54:00:12:34:56");
    MacAddr src = *MacAddr::parse("52:55:0a:00:02:02");
    EXPECT_EQ(build_ethernet(buf, dst, src, ethertype::ipv6), kEthHeaderLen);
    auto e = EthernetView::parse(Bytes(buf, sizeof buf));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->dst(), dst);
    EXPECT_EQ(e->src(), src);
    EXPECT_EQ(e->ethertype(), ethertype::ipv6);
    // Same bytes as the header of the captured ARP reply, with its type.
    build_ethernet(buf, dst, src, ethertype::arp);
    EXPECT_TRUE(std::equal(buf, buf + 14, kArpReply.begin()));
}

namespace {
// An Ethernet frame carrying an IP header that claims ip_len bytes, with
// `have` bytes after the Ethernet header (the rest zeros: payload, junk).
std::vector<uint8_t> ip_frame(uint16_t type, size_t have, uint16_t ip_len, uint8_t first = 0x45,
                              bool tagged = false) {
    std::vector<uint8_t> f(14 + (tagged ? 4 : 0) + have);
    size_t at = 12;
    if (tagged) {
        store16(&f[12], ethertype::vlan);
        store16(&f[14], 100);
        at = 16;
    }
    store16(&f[at], type);
    uint8_t* ip = &f[at + 2];
    if (type == ethertype::ipv4 && have >= 20) {
        ip[0] = first;
        store16(ip + 2, ip_len);
    } else if (type == ethertype::ipv6 && have >= 40) {
        ip[0] = 0x60;
        store16(ip + 4, ip_len);  // the payload length
    }
    return f;
}
}  // namespace

// QEMU's i82559er sends a 1514-byte frame in a 2600-byte datagram: the
// frame's real length comes from its IP packet's length field.
TEST(EthernetView, IpFrameLengthFollowsTheIpPacket) {
    EXPECT_EQ(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 2586, 1500))), 1514u);
    EXPECT_EQ(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 1500, 1500))), 1514u);
    EXPECT_EQ(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 2586, 1500, 0x45, true))), 1518u);
    EXPECT_EQ(ip_frame_length(bytes(ip_frame(ethertype::ipv6, 2586, 1460))), 1514u);
    // The packet must be whole, its header sane; other types have none.
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 1499, 1500))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 100, 19))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 100, 40, 0x44))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 100, 40, 0x65))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 100, 20, 0x46))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv4, 19, 19))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv6, 100, 0))));   // a jumbogram
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::ipv6, 1499, 1460))));
    EXPECT_FALSE(ip_frame_length(bytes(ip_frame(ethertype::arp, 100, 0))));
    EXPECT_FALSE(ip_frame_length(bytes(std::vector<uint8_t>(13))));
}
