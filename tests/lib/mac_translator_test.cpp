// MAC translation (src/ports/mac_translator.*) on real frames: busybox
// udhcpc's DISCOVER and REQUEST, dnsmasq's OFFER and ACK and the kernel's
// ARP, captured on a veth pair (tests/unit/captured_frames.hpp). The
// guest there is 52:54:00:12:34:56; the LAN is to see kLan instead.
#include "ports/mac_translator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../unit/captured_frames.hpp"
#include "../unit/captured_frames6.hpp"
#include "wire/arp.hpp"
#include "wire/checksum.hpp"
#include "wire/dhcp4.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/udp.hpp"

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;
namespace td = testdata;

const wire::MacAddr kGuest{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::MacAddr kLan{{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01}};
const wire::MacAddr kOther{{0x02, 0x00, 0x00, 0x00, 0x00, 0x07}};

template <size_t N>
Frame frame(const std::array<uint8_t, N>& a) {
    return Frame(a.begin(), a.end());
}

Frame joined(const MacTranslator::Out& o) {
    Frame f(o.head.begin(), o.head.end());
    f.insert(f.end(), o.tail.begin(), o.tail.end());
    return f;
}

// The UDP segment of an untagged IPv4 frame.
wire::UdpView udp_of(const Frame& f) {
    auto eth = wire::EthernetView::parse(f);
    auto ip = wire::Ipv4View::parse(eth->payload());
    return *wire::UdpView::parse(ip->payload());
}

bool udp_checksum_ok(const Frame& f) {
    auto eth = wire::EthernetView::parse(f);
    auto ip = wire::Ipv4View::parse(eth->payload());
    return udp_of(f).checksum_ok(ip->src_addr(), ip->dst_addr());
}

wire::Dhcp4View dhcp_of(const Frame& f) { return *wire::Dhcp4View::parse(udp_of(f).payload()); }

// Replaces every 6-byte occurrence of `from` in the frame with `to` and
// recomputes the UDP checksum from scratch: the reference the translator's
// incremental update must match.
Frame replaced(Frame f, const wire::MacAddr& from, const wire::MacAddr& to) {
    for (size_t i = 0; i + 6 <= f.size(); i++)
        if (std::memcmp(&f[i], from.b.data(), 6) == 0) to.store(&f[i]);
    auto eth = wire::EthernetView::parse(f);
    if (eth && eth->ethertype() == wire::ethertype::ipv4) {
        auto ip = wire::Ipv4View::parse(eth->payload());
        if (ip && ip->protocol() == wire::ipproto::udp) {
            size_t l4 = wire::kEthHeaderLen + ip->header_len();
            size_t len = wire::load16(&f[l4 + 4]);
            wire::store16(&f[l4 + 6], 0);
            uint16_t c = wire::csum_l4(ip->src_addr(), ip->dst_addr(), 17, wire::Bytes(&f[l4], len));
            wire::store16(&f[l4 + 6], c == 0 ? 0xffff : c);
        }
    }
    return f;
}

// The guest of captured_frames6.hpp (a Linux 6.1 namespace guest).
const wire::MacAddr kGuest6{{0x92, 0x5a, 0x6a, 0x71, 0x2b, 0xbe}};

// As replaced(), for an untagged IPv6 frame carrying ICMPv6: every 6-byte
// occurrence of `from` becomes `to`, the ICMPv6 checksum recomputed.
Frame replaced6(Frame f, const wire::MacAddr& from, const wire::MacAddr& to) {
    for (size_t i = 0; i + 6 <= f.size(); i++)
        if (std::memcmp(&f[i], from.b.data(), 6) == 0) to.store(&f[i]);
    auto ip = wire::Ipv6View::parse(wire::EthernetView::parse(f)->payload());
    const size_t l4 = static_cast<size_t>(ip->payload().data() - f.data());
    wire::finish_icmp6(&f[l4], ip->payload().size(), ip->src_addr(), ip->dst_addr());
    return f;
}

bool icmp6_checksum_ok(const Frame& f) {
    auto ip = wire::Ipv6View::parse(wire::EthernetView::parse(f)->payload());
    auto icmp = wire::Icmp6View::parse(ip->payload());
    return icmp && icmp->checksum_ok(ip->src_addr(), ip->dst_addr());
}

TEST(MacTranslator, NeighborDiscoveryLinkLayerOptionsSayTheLanMac) {
    for (const Frame& captured : {frame(td::kRouterSolicit), frame(td::kNsForGateway)}) {
        MacTranslator x(kLan);
        Frame f = captured;
        x.to_lan(f);
        // Ethernet source and the source link-layer address option, with
        // the checksum a full recomputation gives.
        EXPECT_EQ(f, replaced6(captured, kGuest6, kLan));
        EXPECT_TRUE(icmp6_checksum_ok(f));
        auto ip = wire::Ipv6View::parse(wire::EthernetView::parse(f)->payload());
        auto icmp = wire::Icmp6View::parse(ip->payload());
        EXPECT_EQ(*wire::NdpOptions::parse(icmp->body())->lla(wire::ndopt::source_lla), kLan);
        EXPECT_EQ(x.stats().ndp, 1u);
        // The way back: an option holding the LAN MAC says the guest's.
        Frame back = joined(x.to_guest(f));
        Frame want = replaced6(f, kLan, kGuest6);
        std::copy(f.begin(), f.begin() + 12, want.begin());  // its Ethernet source stays
        EXPECT_EQ(back, want);
        EXPECT_TRUE(icmp6_checksum_ok(back));
    }
}

TEST(MacTranslator, NeighborDiscoveryWithoutItsMacAndOtherIpv6AreNotTouched) {
    MacTranslator x(kLan);
    // Duplicate address detection has no link-layer option; an echo
    // request none either: only the Ethernet source changes.
    for (const Frame& captured : {frame(td::kNsDad), frame(td::kEcho6Request),
                                  frame(td::kMld2ReportUnspecified)}) {
        Frame f = captured;
        x.to_lan(f);
        Frame want = captured;
        kLan.store(&want[6]);
        EXPECT_EQ(f, want);
    }
    EXPECT_EQ(x.stats().ndp, 0u);
    // An option holding another MAC is left alone.
    Frame ns = frame(td::kNsForGateway);
    kOther.store(&ns[ns.size() - 6]);
    Frame f = ns;
    x.to_lan(f);
    EXPECT_EQ(wire::MacAddr::from(&f[f.size() - 6]), kOther);
    EXPECT_EQ(x.stats().ndp, 0u);
}

TEST(MacTranslator, UdhcpcDiscoverLeavesTheGuestWithTheLanMacEverywhere) {
    MacTranslator x(kLan);
    Frame f = frame(td::kDhcpDiscoverUdhcpc);
    ASSERT_EQ(*dhcp_of(f).chaddr(), kGuest);
    EXPECT_EQ(x.to_lan(f), MacTranslator::Learned::first);
    EXPECT_EQ(*x.guest_mac(), kGuest);
    // Ethernet source, chaddr and the 01:MAC client identifier now say kLan,
    // and the UDP checksum is exactly what a full recomputation gives.
    EXPECT_EQ(f, replaced(frame(td::kDhcpDiscoverUdhcpc), kGuest, kLan));
    EXPECT_TRUE(udp_checksum_ok(f));
    auto d = dhcp_of(f);
    EXPECT_EQ(*d.chaddr(), kLan);
    auto id = d.client_id();
    ASSERT_TRUE(id);
    ASSERT_EQ(id->size(), 7u);
    EXPECT_EQ(wire::MacAddr::from(id->data() + 1), kLan);
    EXPECT_EQ(wire::EthernetView::parse(f)->src(), kLan);
    EXPECT_EQ(x.stats().dhcp, 1u);
    EXPECT_EQ(x.stats().to_lan, 1u);
}

TEST(MacTranslator, UdhcpcRequestIsTranslatedToo) {
    MacTranslator x(kLan);
    Frame f = frame(td::kDhcpRequestUdhcpc);
    x.to_lan(f);
    EXPECT_EQ(f, replaced(frame(td::kDhcpRequestUdhcpc), kGuest, kLan));
    EXPECT_TRUE(udp_checksum_ok(f));
}

TEST(MacTranslator, DnsmasqOfferAndAckToTheLanMacComeBackAsCaptured) {
    for (const Frame& captured : {frame(td::kDhcpOfferDnsmasq), frame(td::kDhcpAckDnsmasq)}) {
        MacTranslator x(kLan);
        Frame discover = frame(td::kDhcpDiscoverUdhcpc);
        x.to_lan(discover);  // learns the guest's MAC
        // What the server sent on the LAN, where the guest is kLan.
        Frame on_lan = replaced(captured, kGuest, kLan);
        ASSERT_TRUE(udp_checksum_ok(on_lan));
        MacTranslator::Out out = x.to_guest(on_lan);
        // Byte for byte what dnsmasq sent the guest itself, checksum included.
        EXPECT_EQ(joined(out), captured);
        EXPECT_LE(out.head.size(), MacTranslator::kHeadCapacity);
        EXPECT_EQ(x.stats().to_guest, 1u);
    }
}

TEST(MacTranslator, ArpBothWays) {
    MacTranslator x(kLan);
    // The guest asks for the gateway: sender hardware address and source.
    Frame req = frame(td::kArpRequest);
    ASSERT_EQ(wire::EthernetView::parse(req)->src(), kGuest);
    x.to_lan(req);
    EXPECT_EQ(req, replaced(frame(td::kArpRequest), kGuest, kLan));
    auto arp = wire::ArpView::parse(wire::EthernetView::parse(req)->payload());
    EXPECT_EQ(arp->sender_mac(), kLan);
    // The answer on the LAN names kLan as target; the guest sees itself.
    Frame reply = frame(td::kArpReply);
    ASSERT_EQ(wire::EthernetView::parse(reply)->dst(), kGuest);
    Frame on_lan = replaced(reply, kGuest, kLan);
    EXPECT_EQ(joined(x.to_guest(on_lan)), reply);
    EXPECT_EQ(x.stats().arp, 2u);
}

TEST(MacTranslator, OtherTrafficCostsOnlyTheDestinationMac) {
    MacTranslator x(kLan);
    Frame syn = frame(td::kTcpSyn);
    x.to_lan(syn);
    wire::MacAddr guest = *x.guest_mac();
    Frame data = frame(td::kTcpData);
    Frame on_lan = data;
    kLan.store(&on_lan[0]);
    MacTranslator::Out out = x.to_guest(on_lan);
    EXPECT_EQ(out.head.size(), 6u);  // the destination MAC alone is copied
    EXPECT_EQ(out.tail.data(), on_lan.data() + 6);
    Frame expect = on_lan;
    guest.store(&expect[0]);
    EXPECT_EQ(joined(out), expect);
}

TEST(MacTranslator, FramesForOthersAndBroadcastsPassUntouched) {
    MacTranslator x(kLan);
    Frame req = frame(td::kArpRequest);
    x.to_lan(req);
    // A broadcast ARP request from someone else, for someone else.
    Frame bcast = frame(td::kArpRequest);
    kOther.store(&bcast[6]);
    kOther.store(&bcast[14 + 8]);
    MacTranslator::Out out = x.to_guest(bcast);
    EXPECT_EQ(out.head.data(), bcast.data());
    EXPECT_EQ(out.head.size(), bcast.size());
    EXPECT_TRUE(out.tail.empty());
    // Another client's DISCOVER flooded to us.
    Frame other = replaced(frame(td::kDhcpDiscoverUdhcpc), kGuest, kOther);
    out = x.to_guest(other);
    EXPECT_EQ(out.head.data(), other.data());
}

TEST(MacTranslator, NothingTowardTheGuestIsRewrittenBeforeItSpoke) {
    MacTranslator x(kLan);
    Frame on_lan = replaced(frame(td::kDhcpOfferDnsmasq), kGuest, kLan);
    MacTranslator::Out out = x.to_guest(on_lan);
    EXPECT_EQ(out.head.data(), on_lan.data());
    EXPECT_EQ(out.size(), on_lan.size());
}

TEST(MacTranslator, AGuestWhoseMacChangesKeepsTheLanMac) {
    MacTranslator x(kLan);
    Frame a = frame(td::kDhcpRequestUdhcpc);
    EXPECT_EQ(x.to_lan(a), MacTranslator::Learned::first);
    // The same guest after a snapshot restore: a new MAC everywhere.
    Frame b = replaced(frame(td::kDhcpRequestUdhcpc), kGuest, kOther);
    EXPECT_EQ(x.to_lan(b), MacTranslator::Learned::changed);
    EXPECT_EQ(a, b);  // the LAN cannot tell them apart
    EXPECT_EQ(*x.guest_mac(), kOther);
    EXPECT_EQ(x.stats().guest_mac_changes, 1u);
    Frame again = replaced(frame(td::kDhcpRequestUdhcpc), kGuest, kOther);
    EXPECT_EQ(x.to_lan(again), MacTranslator::Learned::same);
    // Replies now go to the new MAC.
    Frame ack = frame(td::kDhcpAckDnsmasq);
    Frame out = joined(x.to_guest(replaced(ack, kGuest, kLan)));
    EXPECT_EQ(out, replaced(ack, kGuest, kOther));
}

// dhclient renews with the chaddr and client identifier of the MAC it
// started with, from a NIC whose MAC has changed since: the request still
// says the LAN MAC everywhere (the gateway drops a chaddr that is not the
// frame's source).
TEST(MacTranslator, ARequestNamingTheGuestsOldMacSaysTheLanMac) {
    MacTranslator x(kLan);
    Frame first = frame(td::kDhcpRequestUdhcpc);
    x.to_lan(first);
    Frame f = frame(td::kDhcpRequestUdhcpc);
    kOther.store(&f[6]);  // the NIC's new MAC; chaddr and option 61 keep kGuest
    EXPECT_EQ(x.to_lan(f), MacTranslator::Learned::changed);
    EXPECT_EQ(f, replaced(frame(td::kDhcpRequestUdhcpc), kGuest, kLan));
    EXPECT_TRUE(udp_checksum_ok(f));
}

TEST(MacTranslator, ZeroChecksumStaysZeroAndPartialIsLeftToBeCompleted) {
    {
        MacTranslator x(kLan);
        Frame f = frame(td::kDhcpDiscoverUdhcpc);
        wire::store16(&f[14 + 20 + 6], 0);
        x.to_lan(f);
        EXPECT_EQ(wire::load16(&f[14 + 20 + 6]), 0);
        EXPECT_EQ(*dhcp_of(f).chaddr(), kLan);
    }
    {
        MacTranslator x(kLan);
        Frame f = frame(td::kDhcpDiscoverUdhcpc);
        wire::store16(&f[14 + 20 + 6], 0x1234);  // a pseudo-header sum, say
        wire::Offload off;
        off.csum_partial = true;
        off.csum_start = 14 + 20;
        off.csum_offset = 6;
        x.to_lan(f, off);
        EXPECT_EQ(wire::load16(&f[14 + 20 + 6]), 0x1234);
        EXPECT_EQ(*dhcp_of(f).chaddr(), kLan);
    }
}

TEST(MacTranslator, ClientIdAtAnOddOffsetKeepsTheChecksumRight) {
    // One pad option in front of the options moves the identifier by one.
    Frame f = frame(td::kDhcpDiscoverUdhcpc);
    const size_t opts = 14 + 20 + 8 + wire::kDhcp4OptionsOffset;
    f.insert(f.begin() + static_cast<long>(opts), uint8_t{0});
    f.pop_back();  // keep the lengths: the padding after END shrinks
    // The IPv4 and UDP lengths are unchanged; fix the UDP checksum.
    Frame good = replaced(f, kOther, kOther);  // recomputes only
    ASSERT_TRUE(udp_checksum_ok(good));
    MacTranslator x(kLan);
    Frame t = good;
    x.to_lan(t);
    EXPECT_TRUE(udp_checksum_ok(t));
    EXPECT_EQ(t, replaced(good, kGuest, kLan));
    auto id = dhcp_of(t).client_id();
    ASSERT_TRUE(id);
    EXPECT_EQ(wire::MacAddr::from(id->data() + 1), kLan);
}

TEST(MacTranslator, VlanTaggedDhcpIsTranslated) {
    Frame f = frame(td::kDhcpDiscoverUdhcpc);
    const uint8_t tag[4] = {0x81, 0x00, 0x00, 0x05};
    f.insert(f.begin() + 12, tag, tag + 4);
    MacTranslator x(kLan);
    x.to_lan(f);
    Frame untagged = f;
    untagged.erase(untagged.begin() + 12, untagged.begin() + 16);
    EXPECT_EQ(untagged, replaced(frame(td::kDhcpDiscoverUdhcpc), kGuest, kLan));
}

TEST(MacTranslator, EveryTruncationIsSafeAndNeverTouchesBytesBeyondIt) {
    for (const Frame& full : {frame(td::kDhcpDiscoverUdhcpc), frame(td::kArpRequest),
                              replaced(frame(td::kDhcpAckDnsmasq), kGuest, kLan),
                              replaced6(frame(td::kNsForGateway), kGuest6, kGuest),
                              replaced6(frame(td::kNsForGateway), kGuest6, kLan)}) {
        for (size_t n = 0; n <= full.size(); n++) {
            MacTranslator x(kLan);
            Frame learn = frame(td::kArpRequest);
            x.to_lan(learn);
            Frame f(full.begin(), full.begin() + static_cast<long>(n));
            f.resize(n + 16, 0xee);  // guard bytes after the view
            x.to_lan(wire::MutBytes(f.data(), n));
            for (size_t i = n; i < f.size(); i++) ASSERT_EQ(f[i], 0xee) << n;
            MacTranslator::Out o = x.to_guest(wire::Bytes(full.data(), n));
            EXPECT_EQ(o.size(), n);
        }
    }
}

TEST(MacTranslator, RepliesTooLongForTheHeadAreOnlyPartlyTranslated) {
    MacTranslator x(kLan);
    Frame d = frame(td::kDhcpDiscoverUdhcpc);
    x.to_lan(d);
    // An ACK with a client identifier beyond kHeadCapacity: grow the
    // options with pads before it.
    Frame ack = replaced(frame(td::kDhcpAckDnsmasq), kGuest, kLan);
    const size_t opts = 14 + 20 + 8 + wire::kDhcp4OptionsOffset;
    ack.resize(opts);  // cut at the options, rebuild them
    ack.insert(ack.end(), 2100, uint8_t{0});
    const uint8_t cid[] = {61, 7, 1, 0, 0, 0, 0, 0, 0};
    ack.insert(ack.end(), cid, cid + sizeof cid);
    kLan.store(&ack[ack.size() - 6]);
    const uint8_t tail[] = {53, 1, 5, 255};
    ack.insert(ack.end(), tail, tail + sizeof tail);
    wire::store16(&ack[14 + 2], static_cast<uint16_t>(ack.size() - 14));
    wire::store16(&ack[14 + 10], 0);
    wire::store16(&ack[14 + 10],
                  wire::csum_fold(wire::csum_partial(wire::Bytes(&ack[14], 20))));
    wire::store16(&ack[14 + 20 + 4], static_cast<uint16_t>(ack.size() - 34));
    ack = replaced(ack, kOther, kOther);  // UDP checksum
    ASSERT_TRUE(udp_checksum_ok(ack));
    Frame out = joined(x.to_guest(ack));
    EXPECT_EQ(x.stats().dhcp_too_long, 1u);
    EXPECT_TRUE(udp_checksum_ok(out));
    EXPECT_EQ(*dhcp_of(out).chaddr(), kGuest);
    EXPECT_EQ(wire::MacAddr::from(dhcp_of(out).client_id()->data() + 1), kLan);
}

}  // namespace
}  // namespace usernet::ports
