// The gateway port on a real switch: ARP, ICMP echo, DHCP through frames,
// what goes to the NAT and what is dropped, and how frames toward guests
// are built.
#include "gateway/gateway.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "../unit/captured_frames.hpp"
#include "../unit/captured_frames6.hpp"
#include "gateway/dhcp4_server.hpp"
#include "gateway/dns_forwarder.hpp"
#include "wire/arp.hpp"
#include "wire/dhcp4.hpp"
#include "wire/dhcp6.hpp"
#include "wire/dns.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv6.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {
namespace {

using wire::Bytes;
using wire::Ipv4;
using wire::MacAddr;

Ipv4 ip(const char* s) { return *wire::ipv4_parse(s); }

const MacAddr kGuestMac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const MacAddr kOtherMac{{0x52, 0x54, 0x00, 0x65, 0x43, 0x21}};

class GuestPort : public sw::Port {
public:
    explicit GuestPort(uint32_t mtu) : mtu_(mtu) {}
    void deliver(Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return "guest"; }
    std::vector<std::vector<uint8_t>> frames;

private:
    uint32_t mtu_;
};

class RecordingSink : public IpSink {
public:
    void from_guest(const GuestPacket& p) override {
        pkts.push_back(p);
        l4.emplace_back(p.l4.begin(), p.l4.end());
    }
    void port_gone(sw::PortId port) override { gone.push_back(port); }
    std::vector<sw::PortId> gone;
    std::vector<GuestPacket> pkts;
    std::vector<std::vector<uint8_t>> l4;
};

// An Ethernet + IPv4 frame around l4 (whose checksum the caller filled).
std::vector<uint8_t> ipv4_frame(const MacAddr& dst_mac, const MacAddr& src_mac, Ipv4 src,
                                Ipv4 dst, uint8_t proto, Bytes l4, uint8_t ttl = 64,
                                uint16_t frag = 0x4000) {
    std::vector<uint8_t> f(34 + l4.size());
    wire::build_ethernet(f.data(), dst_mac, src_mac, wire::ethertype::ipv4);
    wire::build_ipv4(f.data() + 14, src, dst, proto, l4.size(), ttl, 7);
    if (frag != 0x4000) {
        wire::store16(&f[20], frag);
        wire::store16(&f[24], 0);
        wire::store16(&f[24], wire::csum_fold(wire::csum_partial(Bytes(&f[14], 20))));
    }
    std::memcpy(f.data() + 34, l4.data(), l4.size());
    if (f.size() < 60) f.resize(60);
    return f;
}

std::vector<uint8_t> udp_frame(const MacAddr& dst_mac, const MacAddr& src_mac, Ipv4 src,
                               Ipv4 dst, uint16_t sport, uint16_t dport, Bytes payload,
                               uint8_t ttl = 64) {
    std::vector<uint8_t> seg(8 + payload.size());
    std::memcpy(seg.data() + 8, payload.data(), payload.size());
    wire::build_udp(seg.data(), wire::IpAddr::v4(src), wire::IpAddr::v4(dst), sport, dport,
                    payload.size());
    return ipv4_frame(dst_mac, src_mac, src, dst, wire::ipproto::udp, seg, ttl);
}

std::vector<uint8_t> echo_frame(Ipv4 src, Ipv4 dst, uint16_t id, uint16_t seq, size_t data_len,
                                const MacAddr& dst_mac) {
    std::vector<uint8_t> m(8 + data_len);
    for (size_t i = 0; i < data_len; i++) m[8 + i] = static_cast<uint8_t>(i * 7);
    wire::build_icmp4(m.data(), wire::icmptype::echo_request, 0, (uint32_t{id} << 16) | seq,
                      m.size());
    return ipv4_frame(dst_mac, kGuestMac, src, dst, wire::ipproto::icmp, m);
}

struct Parsed {
    wire::EthernetView eth;
    wire::Ipv4View ip;
};

std::optional<Parsed> parse_ip(const std::vector<uint8_t>& f) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv4) return std::nullopt;
    auto ip = wire::Ipv4View::parse(eth->payload());
    if (!ip) return std::nullopt;
    return Parsed{*eth, *ip};
}

struct GatewayTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    GuestPort guest{1400};
    RecordingSink sink;
    std::unique_ptr<Gateway> gw;
    NetConfig cfg;

    void SetUp() override {
        sw.attach(guest);
        cfg.dhcp_count = 32;
        gw = std::make_unique<Gateway>(loop, sw, cfg);
        gw->set_ip_sink(&sink);
    }
    void input(const std::vector<uint8_t>& f) { sw.input(guest.id(), f); }
    template <size_t N>
    void input(const std::array<uint8_t, N>& f) {
        sw.input(guest.id(), Bytes(f.data(), N));
    }
    // Puts the guest's MAC behind the guest port and its address in the
    // gateway's neighbor table, as its first frames would.
    void guest_says_hello(Ipv4 a = 0x0a00020f, const MacAddr& m = kGuestMac) {
        auto f = echo_frame(a, ip("10.0.2.2"), 1, 1, 8, wire::MacAddr{{0x52, 0x55, 10, 0, 2, 2}});
        m.store(&f[6]);
        input(f);
        guest.frames.clear();
    }
};

// --- ARP ---------------------------------------------------------------------

TEST_F(GatewayTest, Gateway_AnswersArpForItsAddressWithItsMac) {
    input(testdata::kArpRequest);  // who has 10.0.2.2, tell 10.0.2.15
    ASSERT_EQ(guest.frames.size(), 1u);
    const auto& f = guest.frames[0];
    EXPECT_EQ(f.size(), 60u);
    auto eth = wire::EthernetView::parse(f);
    EXPECT_EQ(eth->dst(), kGuestMac);
    EXPECT_EQ(eth->src(), cfg.gw_mac);
    auto arp = wire::ArpView::parse(eth->payload());
    ASSERT_TRUE(arp);
    EXPECT_EQ(arp->op(), wire::arpop::reply);
    EXPECT_EQ(arp->sender_mac(), cfg.gw_mac);
    EXPECT_EQ(arp->sender_ip(), ip("10.0.2.2"));
    EXPECT_EQ(arp->target_mac(), kGuestMac);
    EXPECT_EQ(arp->target_ip(), ip("10.0.2.15"));
    EXPECT_EQ(gw->gw_stats().arp_replies, 1u);
    // The asker was learned on the way.
    EXPECT_TRUE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.15"))));
    EXPECT_EQ(gw->path_mtu(wire::IpAddr::v4(ip("10.0.2.15"))), 1400u);
}

TEST_F(GatewayTest, Gateway_AnswersArpForDnsButNotForOtherAddresses) {
    auto ask = [&](Ipv4 target) {
        std::vector<uint8_t> f(60, 0);
        size_t n = wire::build_ethernet(f.data(), MacAddr::broadcast(), kGuestMac,
                                        wire::ethertype::arp);
        wire::build_arp(f.data() + n, wire::arpop::request, kGuestMac, ip("10.0.2.15"), MacAddr{},
                        target);
        input(f);
    };
    ask(ip("10.0.2.3"));
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(wire::ArpView::parse(Bytes(guest.frames[0]).subspan(14))->sender_ip(),
              ip("10.0.2.3"));
    ask(ip("10.0.2.16"));  // another guest answers for itself
    ask(ip("8.8.8.8"));
    EXPECT_EQ(guest.frames.size(), 1u);
}

TEST_F(GatewayTest, Gateway_ArpWhoseSenderIsNotTheFrameSourceIsIgnored) {
    std::vector<uint8_t> f(60, 0);
    size_t n = wire::build_ethernet(f.data(), MacAddr::broadcast(), kGuestMac, wire::ethertype::arp);
    wire::build_arp(f.data() + n, wire::arpop::request, kOtherMac, ip("10.0.2.20"), MacAddr{},
                    ip("10.0.2.2"));
    input(f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.20"))));
    // The source guard keeps it off the LAN: no other guest sees it either.
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
}

TEST_F(GatewayTest, Gateway_GratuitousArpIsLearnedButClaimsOnOurAddressesAreNot) {
    std::vector<uint8_t> f(60, 0);
    size_t n = wire::build_ethernet(f.data(), MacAddr::broadcast(), kGuestMac, wire::ethertype::arp);
    wire::build_arp(f.data() + n, wire::arpop::request, kGuestMac, ip("10.0.2.40"), MacAddr{},
                    ip("10.0.2.40"));
    input(f);
    EXPECT_TRUE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.40"))));
    EXPECT_TRUE(guest.frames.empty());
    wire::build_arp(f.data() + n, wire::arpop::reply, kGuestMac, ip("10.0.2.3"), MacAddr{},
                    ip("10.0.2.3"));
    input(f);
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.3"))));
}

// --- ICMP echo ---------------------------------------------------------------

TEST_F(GatewayTest, Gateway_EchoesPingToTheGatewayWithSameIdSeqAndData) {
    input(testdata::kIcmpEchoRequest);  // busybox ping 10.0.2.2, id 0x01ff seq 0
    ASSERT_EQ(guest.frames.size(), 1u);
    auto p = parse_ip(guest.frames[0]);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->eth.dst(), kGuestMac);
    EXPECT_EQ(p->ip.src(), ip("10.0.2.2"));
    EXPECT_EQ(p->ip.dst(), ip("10.0.2.15"));
    EXPECT_TRUE(p->ip.checksum_ok());
    auto icmp = wire::Icmp4View::parse(p->ip.payload());
    ASSERT_TRUE(icmp);
    EXPECT_TRUE(icmp->checksum_ok());
    EXPECT_EQ(icmp->type(), wire::icmptype::echo_reply);
    EXPECT_EQ(icmp->echo_id(), 0x01ff);
    EXPECT_EQ(icmp->echo_seq(), 0);
    auto req = wire::Ipv4View::parse(Bytes(testdata::kIcmpEchoRequest).subspan(14));
    auto req_icmp = wire::Icmp4View::parse(req->payload());
    ASSERT_EQ(icmp->payload().size(), req_icmp->payload().size());
    EXPECT_EQ(0, std::memcmp(icmp->payload().data(), req_icmp->payload().data(),
                             icmp->payload().size()));
    EXPECT_EQ(gw->gw_stats().icmp_echo_replies, 1u);
    EXPECT_TRUE(sink.pkts.empty());
}

TEST_F(GatewayTest, Gateway_EchoesPingToDnsAddressEvenWithoutLoopbackMapping) {
    gw.reset();
    cfg.map_gateway_to_loopback = false;
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    for (const char* dst : {"10.0.2.3", "10.0.2.2"}) {
        guest.frames.clear();
        input(echo_frame(ip("10.0.2.15"), ip(dst), 9, 3, 1000, cfg.gw_mac));
        ASSERT_EQ(guest.frames.size(), 1u) << dst;
        auto p = parse_ip(guest.frames[0]);
        EXPECT_EQ(p->ip.src(), ip(dst));
        EXPECT_EQ(p->ip.total_len(), 20u + 8u + 1000u);
    }
}

TEST_F(GatewayTest, Gateway_PingWithBadChecksumIsDroppedAndCounted) {
    auto f = echo_frame(ip("10.0.2.15"), ip("10.0.2.2"), 1, 1, 16, cfg.gw_mac);
    f[34 + 8] ^= 0xff;  // payload byte: the ICMP checksum no longer holds
    input(f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
}

// --- IPv4 input --------------------------------------------------------------

TEST_F(GatewayTest, Gateway_BadIpHeaderChecksumIsDropped) {
    auto f = echo_frame(ip("10.0.2.15"), ip("10.0.2.2"), 1, 1, 16, cfg.gw_mac);
    f[14 + 10] ^= 0x01;
    input(f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.15"))));
}

TEST_F(GatewayTest, Gateway_RealFragmentsWaitForTheMissingOneAndTimeOut) {
    // The first and last fragments of a 3000-byte ping; the middle one
    // never comes.
    input(testdata::kIpv4FirstFragment);
    input(testdata::kIpv4LastFragment);
    EXPECT_EQ(gw->reassembly_stats().fragments, 2u);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_TRUE(sink.pkts.empty());
    loop.advance_clock_for_tests(Reassembler::kTimeout4Ms);
    loop.run_once(0);
    input(testdata::kIpv4LastFragment);  // starts over, after dropping the old one
    EXPECT_EQ(gw->reassembly_stats().dropped_timeout, 1u);
    EXPECT_TRUE(sink.pkts.empty());
}

TEST_F(GatewayTest, Gateway_RoutedPacketReachesTheSinkWithItsGuestDetails) {
    const uint8_t data[] = {1, 2, 3, 4, 5};
    input(udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("93.184.216.34"), 40000, 9999,
                    data));
    ASSERT_EQ(sink.pkts.size(), 1u);
    const GuestPacket& p = sink.pkts[0];
    EXPECT_EQ(p.src, wire::IpAddr::v4(ip("10.0.2.15")));
    EXPECT_EQ(p.dst, wire::IpAddr::v4(ip("93.184.216.34")));
    EXPECT_EQ(p.proto, wire::ipproto::udp);
    EXPECT_EQ(p.ttl, 64);
    EXPECT_EQ(p.ingress_mtu, 1400u);
    EXPECT_EQ(p.src_mac, kGuestMac);
    EXPECT_EQ(sink.l4[0].size(), 8u + sizeof data);
    EXPECT_EQ(p.ip_packet.size(), 20u + 8u + sizeof data);
    // TCP to the gateway address goes to the NAT too (it maps to loopback).
    input(testdata::kTcpSyn);
    ASSERT_EQ(sink.pkts.size(), 2u);
    EXPECT_EQ(sink.pkts[1].proto, wire::ipproto::tcp);
    EXPECT_EQ(gw->gw_stats().routed, 2u);
}

TEST_F(GatewayTest, Gateway_ExpiringTtlOnARoutedPacketSendsTimeExceeded) {
    const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    auto f = udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("192.0.2.1"), 33434, 33435, data,
                       1);
    input(f);
    EXPECT_TRUE(sink.pkts.empty());
    EXPECT_EQ(gw->gw_stats().dropped_ttl, 1u);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto p = parse_ip(guest.frames[0]);
    EXPECT_EQ(p->ip.src(), ip("10.0.2.2"));
    EXPECT_EQ(p->ip.dst(), ip("10.0.2.15"));
    auto icmp = wire::Icmp4View::parse(p->ip.payload());
    EXPECT_EQ(icmp->type(), wire::icmptype::time_exceeded);
    EXPECT_TRUE(icmp->checksum_ok());
    // The quote: the offending IP header and the first 8 bytes after it.
    ASSERT_EQ(icmp->payload().size(), 28u);
    EXPECT_EQ(0, std::memcmp(icmp->payload().data(), &f[14], 28));
    // TTL 1 toward the gateway's own address is not routed: delivered.
    input(udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("10.0.2.2"), 1, 2, data, 1));
    EXPECT_EQ(sink.pkts.size(), 1u);
}

TEST_F(GatewayTest, Gateway_ABurstOfTtlOnePacketsGetsABoundedNumberOfTimeExceeded) {
    const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7, 8};
    // All in one wakeup: the loop's clock does not move, the bucket is not
    // refilled.
    const int burst = 500;
    for (int i = 0; i < burst; i++)
        input(udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("192.0.2.1"),
                        static_cast<uint16_t>(33434 + i), 33435, data, 1));
    EXPECT_EQ(gw->gw_stats().dropped_ttl, static_cast<uint64_t>(burst));
    size_t replies = 0;
    for (auto& f : guest.frames) {
        auto p = parse_ip(f);
        if (!p || p->ip.protocol() != wire::ipproto::icmp) continue;
        auto icmp = wire::Icmp4View::parse(p->ip.payload());
        if (icmp && icmp->type() == wire::icmptype::time_exceeded) replies++;
    }
    EXPECT_EQ(replies, Gateway::kIcmpErrorBurst);
    EXPECT_EQ(gw->gw_stats().icmp_rate_limited, burst - Gateway::kIcmpErrorBurst);
    // The bucket refills with the clock.
    core::Millis t0 = loop.now();
    while (loop.now() - t0 < 20) loop.run_once(10);
    guest.frames.clear();
    input(udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("192.0.2.1"), 1, 2, data, 1));
    EXPECT_EQ(guest.frames.size(), 1u);
}

TEST_F(GatewayTest, Gateway_IgnoresBroadcastsAndOtherGuestsUnicast) {
    const uint8_t data[] = {1, 2, 3};
    input(udp_frame(MacAddr::broadcast(), kGuestMac, ip("10.0.2.15"), ip("10.0.2.255"), 137, 137,
                    data));
    input(udp_frame(kOtherMac, kGuestMac, ip("10.0.2.15"), ip("10.0.2.16"), 1000, 1000, data));
    EXPECT_TRUE(sink.pkts.empty());
    EXPECT_EQ(gw->gw_stats().dropped_not_for_us, 2u);
}

TEST_F(GatewayTest, Gateway_ImpossibleSourcesAreDropped) {
    const uint8_t data[] = {1};
    for (const char* src : {"10.0.2.2", "127.0.0.1", "224.0.0.1", "10.0.2.255"})
        input(udp_frame(cfg.gw_mac, kGuestMac, ip(src), ip("1.1.1.1"), 1, 1, data));
    EXPECT_TRUE(sink.pkts.empty());
    // None of them is an address a guest may use: the source guard drops
    // them before the switch forwards them anywhere.
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 4u);
    EXPECT_EQ(sw.stats().dropped_guard, 4u);
}

TEST_F(GatewayTest, Gateway_CountsOtherEthertypesAsUnsupportedAndBrokenIpv6AsMalformed) {
    std::vector<uint8_t> f(60, 0);
    wire::build_ethernet(f.data(), cfg.gw_mac, kGuestMac, 0x88cc);
    input(f);
    EXPECT_EQ(gw->gw_stats().dropped_unsupported, 1u);
    wire::build_ethernet(f.data(), cfg.gw_mac, kGuestMac, wire::ethertype::ipv6);
    input(f);  // version 0
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
}

// --- sending toward guests ---------------------------------------------------

TEST_F(GatewayTest, Gateway_SendToUnknownGuestSendsOneArpRequestAndHoldsThePacket) {
    std::memset(gw->tx_l4(), 0, 8);
    auto dst = wire::IpAddr::v4(ip("10.0.2.50"));
    auto src = wire::IpAddr::v4(ip("1.2.3.4"));
    EXPECT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 8));  // held
    EXPECT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 8));  // within the second
    EXPECT_EQ(gw->gw_stats().held_for_neighbor, 2u);
    EXPECT_EQ(gw->gw_stats().dropped_no_neighbor, 0u);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto eth = wire::EthernetView::parse(guest.frames[0]);
    EXPECT_TRUE(eth->dst().is_broadcast());
    auto arp = wire::ArpView::parse(eth->payload());
    ASSERT_TRUE(arp);
    EXPECT_EQ(arp->op(), wire::arpop::request);
    EXPECT_EQ(arp->sender_ip(), ip("10.0.2.2"));
    EXPECT_EQ(arp->target_ip(), ip("10.0.2.50"));
    // Another address gets its own request; an address off the LAN none,
    // and its packet is dropped.
    EXPECT_TRUE(gw->send_ip(src, wire::IpAddr::v4(ip("10.0.2.51")), wire::ipproto::udp, 8));
    EXPECT_FALSE(gw->send_ip(src, wire::IpAddr::v4(ip("8.8.8.8")), wire::ipproto::udp, 8));
    EXPECT_EQ(guest.frames.size(), 2u);
    EXPECT_EQ(gw->gw_stats().arp_requests, 2u);
    EXPECT_EQ(gw->gw_stats().dropped_no_neighbor, 1u);
}

// What waited for the guest's MAC goes, once, when the guest shows up (as a
// kernel's neighbor queue sends it), from the loop; a packet held longer
// than kHoldMs is dropped instead.
TEST_F(GatewayTest, Gateway_HeldPacketsGoWhenTheGuestAnswersAndExpireOtherwise) {
    auto src = wire::IpAddr::v4(ip("93.184.216.34"));
    auto dst = wire::IpAddr::v4(ip("10.0.2.15"));
    uint8_t* l4 = gw->tx_l4();
    const uint8_t data[] = {0xaa, 0xbb};
    std::memcpy(l4 + 8, data, 2);
    wire::build_udp(l4, src, dst, 53, 4000, 2);
    ASSERT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 10));
    ASSERT_EQ(guest.frames.size(), 1u);  // the ARP request
    guest_says_hello();                  // the guest speaks: its MAC is known
    EXPECT_TRUE(guest.frames.empty());   // not from inside the input
    loop.run_once(0);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto p = parse_ip(guest.frames[0]);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->eth.dst(), kGuestMac);
    EXPECT_EQ(p->ip.src(), ip("93.184.216.34"));
    EXPECT_EQ(p->ip.total_len(), 30u);
    EXPECT_EQ(gw->gw_stats().held_sent, 1u);
    loop.run_once(0);
    EXPECT_EQ(guest.frames.size(), 1u);  // once

    // Nobody answers for 10.0.2.60: after kHoldMs its packet is gone.
    guest.frames.clear();
    wire::build_udp(l4, src, wire::IpAddr::v4(ip("10.0.2.60")), 53, 4000, 2);
    ASSERT_TRUE(gw->send_ip(src, wire::IpAddr::v4(ip("10.0.2.60")), wire::ipproto::udp, 10));
    const core::Millis t0 = loop.now();
    while (loop.now() - t0 <= Gateway::kHoldMs + 50) loop.run_once(20);
    guest_says_hello(ip("10.0.2.60"), MacAddr{{0x52, 0x54, 0, 0, 0, 0x60}});
    loop.run_once(0);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().held_expired, 1u);
}

// A guest idle for longer than kNeighborIdleMs is asked again; when it
// answers from the entry the gateway still has (same MAC, same port), the
// packets held meanwhile go too.
TEST_F(GatewayTest, Gateway_HeldPacketsGoWhenAnIdleGuestAnswersAgain) {
    guest_says_hello();
    loop.advance_clock_for_tests(Gateway::kNeighborIdleMs + cfg.claim_hold_ms + 1000);
    loop.run_once(0);
    guest.frames.clear();  // router advertisements of the idle spell
    auto src = wire::IpAddr::v4(ip("93.184.216.34"));
    auto dst = wire::IpAddr::v4(ip("10.0.2.15"));
    uint8_t* l4 = gw->tx_l4();
    wire::build_udp(l4, src, dst, 53, 4000, 2);
    ASSERT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 10));
    EXPECT_EQ(gw->gw_stats().held_for_neighbor, 1u);
    ASSERT_EQ(guest.frames.size(), 1u);  // the ARP request
    guest_says_hello();
    loop.run_once(0);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto p = parse_ip(guest.frames[0]);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->eth.dst(), kGuestMac);
    EXPECT_EQ(gw->gw_stats().held_sent, 1u);
}

TEST_F(GatewayTest, Gateway_SendPadsShortFramesAndWritesValidHeaders) {
    guest_says_hello();
    uint8_t* l4 = gw->tx_l4();
    const uint8_t data[] = {0xaa, 0xbb};
    std::memcpy(l4 + 8, data, 2);
    auto src = wire::IpAddr::v4(ip("93.184.216.34"));
    auto dst = wire::IpAddr::v4(ip("10.0.2.15"));
    wire::build_udp(l4, src, dst, 53, 4000, 2);
    ASSERT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 10));
    ASSERT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 10));
    ASSERT_EQ(guest.frames.size(), 2u);
    const auto& f = guest.frames[0];
    EXPECT_EQ(f.size(), 60u);
    auto p = parse_ip(f);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->eth.dst(), kGuestMac);
    EXPECT_EQ(p->eth.src(), cfg.gw_mac);
    EXPECT_EQ(p->ip.total_len(), 30u);
    EXPECT_TRUE(p->ip.checksum_ok());
    EXPECT_EQ(p->ip.ttl(), 64);
    auto udp = wire::UdpView::parse(p->ip.payload());
    ASSERT_TRUE(udp);
    EXPECT_TRUE(udp->checksum_ok(src, dst));
    for (size_t i = 14 + 30; i < 60; i++) EXPECT_EQ(f[i], 0) << i;
    // A fresh IP id for each packet.
    EXPECT_NE(p->ip.id(), parse_ip(guest.frames[1])->ip.id());
}

TEST_F(GatewayTest, Gateway_SendLargerThanTheGuestsMtuIsFragmentedUnlessOffloaded) {
    guest_says_hello();  // the guest port's MTU is 1400
    auto src = wire::IpAddr::v4(ip("93.184.216.34"));
    auto dst = wire::IpAddr::v4(ip("10.0.2.15"));
    std::memset(gw->tx_l4(), 0, 1400);
    EXPECT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 1380));
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(guest.frames[0].size(), 14u + 1400u);
    EXPECT_TRUE(gw->send_ip(src, dst, wire::ipproto::udp, 1381));
    ASSERT_EQ(guest.frames.size(), 3u);  // 1376 bytes, then 5
    EXPECT_EQ(guest.frames[1].size(), 14u + 20 + 1376);
    EXPECT_EQ(gw->gw_stats().fragments_sent, 2u);
    // Offloaded (a partial checksum): the attachment's MTU is the limit.
    wire::Offload off;
    off.csum_partial = true;
    EXPECT_FALSE(gw->send_ip(src, dst, wire::ipproto::udp, 1381, 64, &off));
    EXPECT_EQ(gw->gw_stats().dropped_too_big, 1u);
}

// Messages laid end to end in the transmit buffer (the TCP translator's
// peek of a run of segments) go out one after another, each with its
// headers written over the tail of the one before; one that must wait for
// the guest's MAC, or be fragmented, is moved to the front first, and the
// ones after it are intact.
TEST_F(GatewayTest, Gateway_MessagesLaidEndToEndGoOutOneAfterAnother) {
    auto src = wire::IpAddr::v4(ip("93.184.216.34"));
    auto dst = wire::IpAddr::v4(ip("10.0.2.15"));
    constexpr size_t kMsg = 600;
    auto fill = [&](size_t n) {
        for (size_t i = 0; i < n; i++)
            std::memset(gw->tx_l4() + i * kMsg, static_cast<int>(0x10 + i), kMsg);
    };
    auto payload_is = [&](const std::vector<uint8_t>& frame, size_t ip_payload, uint8_t byte) {
        auto p = parse_ip(frame);
        if (!p || p->ip.payload().size() != ip_payload) return false;
        for (uint8_t b : p->ip.payload())
            if (b != byte) return false;
        return true;
    };
    // Unknown guest: the first is held (moved to the front), the rest
    // wait in the buffer and go as they are.
    fill(3);
    ASSERT_TRUE(gw->send_ip(src, dst, 253, kMsg, 64, nullptr, kMsg));
    ASSERT_EQ(guest.frames.size(), 1u);  // the ARP request
    guest.frames.clear();
    guest_says_hello();  // the port's MTU is 1400
    loop.run_once(0);
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_TRUE(payload_is(guest.frames[0], kMsg, 0x11));
    ASSERT_TRUE(gw->send_ip(src, dst, 253, kMsg, 64, nullptr, 2 * kMsg));
    ASSERT_EQ(guest.frames.size(), 2u);
    EXPECT_TRUE(payload_is(guest.frames[1], kMsg, 0x12));
    // Known guest: each in place.
    guest.frames.clear();
    fill(4);
    for (size_t i = 0; i < 4; i++)
        ASSERT_TRUE(gw->send_ip(src, dst, 253, kMsg, 64, nullptr, i * kMsg));
    ASSERT_EQ(guest.frames.size(), 4u);
    for (size_t i = 0; i < 4; i++)
        EXPECT_TRUE(payload_is(guest.frames[i], kMsg, static_cast<uint8_t>(0x10 + i))) << i;
    // Over the MTU: fragmented from the front; the message after it stays.
    guest.frames.clear();
    std::memset(gw->tx_l4() + kMsg, 0x21, 1500);
    std::memset(gw->tx_l4() + kMsg + 1500, 0x22, kMsg);
    ASSERT_TRUE(gw->send_ip(src, dst, 253, 1500, 64, nullptr, kMsg));
    ASSERT_EQ(guest.frames.size(), 2u);
    auto first = parse_ip(guest.frames[0]);
    ASSERT_TRUE(first);
    EXPECT_TRUE(first->ip.more_fragments());
    for (uint8_t b : first->ip.payload()) ASSERT_EQ(b, 0x21);
    ASSERT_TRUE(gw->send_ip(src, dst, 253, kMsg, 64, nullptr, kMsg + 1500));
    ASSERT_EQ(guest.frames.size(), 3u);
    EXPECT_TRUE(payload_is(guest.frames[2], kMsg, 0x22));
    // Past the buffer: refused.
    EXPECT_FALSE(gw->send_ip(src, dst, 253, kMsg, 64, nullptr, Gateway::tx_l4_capacity()));
    EXPECT_FALSE(gw->send_ip(src, dst, 253, 2, 64, nullptr, Gateway::tx_l4_capacity() - 1));
}

TEST_F(GatewayTest, Gateway_FirstGuestIsTheNewestLeaseOrNeighbor) {
    EXPECT_TRUE(gw->first_guest_v4().is_unspecified());
    guest_says_hello(ip("10.0.2.40"));
    EXPECT_EQ(gw->first_guest_v4(), wire::IpAddr::v4(ip("10.0.2.40")));
    gw->bind_lease(ip("10.0.2.15"), kOtherMac, 1500, loop.now() + 1000);
    EXPECT_EQ(gw->first_guest_v4(), wire::IpAddr::v4(ip("10.0.2.15")));
    EXPECT_EQ(gw->neighbor_mac(ip("10.0.2.15")), kOtherMac);
    gw->learn_neighbor(ip("10.0.2.2"), kOtherMac, 1500);  // ours: never a neighbor
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.2"))));
}

// --- DHCP through frames -----------------------------------------------------

std::optional<wire::Dhcp4View> dhcp_of(const std::vector<uint8_t>& f, Parsed* out = nullptr) {
    auto p = parse_ip(f);
    if (!p || p->ip.protocol() != wire::ipproto::udp) return std::nullopt;
    auto udp = wire::UdpView::parse(p->ip.payload());
    if (!udp || udp->src_port() != 67 || udp->dst_port() != 68) return std::nullopt;
    if (!udp->checksum_ok(p->ip.src_addr(), p->ip.dst_addr())) return std::nullopt;
    if (out) *out = *p;
    return wire::Dhcp4View::parse(udp->payload());
}

std::vector<uint8_t> dhcp_request_frame(uint8_t type, uint32_t xid, std::optional<Ipv4> requested,
                                        std::optional<Ipv4> server, Ipv4 ciaddr = 0,
                                        const MacAddr& m = kGuestMac,
                                        std::optional<std::vector<uint8_t>> client_id = {},
                                        std::optional<uint16_t> max_size = {},
                                        std::optional<std::string> hostname = {}) {
    std::vector<uint8_t> msg(548);
    wire::Dhcp4Builder b(msg);
    b.set_op(wire::dhcp4op::boot_request);
    b.set_xid(xid);
    b.set_chaddr(m);
    b.set_ciaddr(ciaddr);
    b.add_u8(wire::dhcp4opt::message_type, type);
    if (requested) b.add_ipv4(wire::dhcp4opt::requested_ip, *requested);
    if (server) b.add_ipv4(wire::dhcp4opt::server_id, *server);
    if (client_id) b.add_option(wire::dhcp4opt::client_id, *client_id);
    if (max_size) b.add_u16(wire::dhcp4opt::max_message_size, *max_size);
    if (hostname)
        b.add_option(wire::dhcp4opt::hostname,
                     Bytes(reinterpret_cast<const uint8_t*>(hostname->data()), hostname->size()));
    msg.resize(b.finish());
    if (ciaddr)
        return udp_frame(MacAddr{{0x52, 0x55, 10, 0, 2, 2}}, m, ciaddr, ip("10.0.2.2"), 68, 67,
                         msg);
    return udp_frame(MacAddr::broadcast(), m, 0, 0xffffffff, 68, 67, msg);
}

TEST_F(GatewayTest, Dhcp_DiscoverFromUdhcpcGetsAnOfferWithEveryOption) {
    input(testdata::kDhcpDiscoverUdhcpc);
    ASSERT_EQ(guest.frames.size(), 1u);
    Parsed p{*wire::EthernetView::parse(guest.frames[0]),
             *wire::Ipv4View::parse(Bytes(guest.frames[0]).subspan(14))};
    auto d = dhcp_of(guest.frames[0], &p);
    ASSERT_TRUE(d);
    EXPECT_TRUE(p.eth.dst().is_broadcast());
    EXPECT_EQ(p.ip.src(), ip("10.0.2.2"));
    EXPECT_EQ(p.ip.dst(), 0xffffffffu);
    EXPECT_EQ(d->op(), wire::dhcp4op::boot_reply);
    EXPECT_EQ(d->xid(), 0x25af816du);
    EXPECT_EQ(d->chaddr(), kGuestMac);
    EXPECT_EQ(d->yiaddr(), ip("10.0.2.15"));
    EXPECT_EQ(d->message_type(), wire::dhcp4msg::offer);
    EXPECT_EQ(d->server_id(), ip("10.0.2.2"));
    auto u32 = [&](uint8_t code) {
        auto o = d->find(code);
        return o && o->size() == 4 ? wire::load32(o->data()) : 0u;
    };
    EXPECT_EQ(u32(wire::dhcp4opt::subnet_mask), 0xffffff00u);
    EXPECT_EQ(u32(wire::dhcp4opt::router), ip("10.0.2.2"));
    EXPECT_EQ(u32(wire::dhcp4opt::dns_server), ip("10.0.2.3"));
    EXPECT_EQ(u32(wire::dhcp4opt::lease_time), 86400u);
    EXPECT_EQ(u32(wire::dhcp4opt::renewal_time), 43200u);
    EXPECT_EQ(u32(wire::dhcp4opt::rebinding_time), 75600u);
    auto mtu = d->find(wire::dhcp4opt::mtu);
    ASSERT_TRUE(mtu && mtu->size() == 2);
    EXPECT_EQ(wire::load16(mtu->data()), 1400);  // the guest port's MTU
    EXPECT_FALSE(d->find(wire::dhcp4opt::domain_name));
    EXPECT_EQ(gw->dhcp().stats().offers, 1u);
}

TEST_F(GatewayTest, Dhcp_RequestFromUdhcpcIsAckedAndBindsTheNeighbor) {
    // udhcpc's captured REQUEST selects 10.0.2.41 from server 10.0.2.2,
    // which is in this test's pool (.15 + 32).
    input(testdata::kDhcpRequestUdhcpc);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto d = dhcp_of(guest.frames[0]);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), wire::dhcp4msg::ack);
    EXPECT_EQ(d->yiaddr(), ip("10.0.2.41"));
    EXPECT_TRUE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.41"))));
    EXPECT_EQ(gw->neighbor_mac(ip("10.0.2.41")), kGuestMac);
    EXPECT_EQ(gw->first_guest_v4(), wire::IpAddr::v4(ip("10.0.2.41")));
    EXPECT_EQ(gw->path_mtu(wire::IpAddr::v4(ip("10.0.2.41"))), 1400u);
}

TEST_F(GatewayTest, Dhcp_FullExchangeThenRenewalByUnicast) {
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    auto offer = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(offer);
    Ipv4 a = offer->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, a, ip("10.0.2.2")));
    auto ack = dhcp_of(guest.frames.at(1));
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->message_type(), wire::dhcp4msg::ack);
    EXPECT_EQ(ack->yiaddr(), a);
    // RENEWING: unicast from the leased address, answered by unicast.
    input(dhcp_request_frame(wire::dhcp4msg::request, 2, std::nullopt, std::nullopt, a));
    Parsed p{*wire::EthernetView::parse(guest.frames.at(2)),
             *wire::Ipv4View::parse(Bytes(guest.frames.at(2)).subspan(14))};
    auto renew = dhcp_of(guest.frames.at(2), &p);
    ASSERT_TRUE(renew);
    EXPECT_EQ(renew->message_type(), wire::dhcp4msg::ack);
    EXPECT_EQ(renew->ciaddr(), a);
    EXPECT_EQ(p.eth.dst(), kGuestMac);
    EXPECT_EQ(p.ip.dst(), a);
}

TEST_F(GatewayTest, Dhcp_RequestForAnotherClientsAddressIsNakedByBroadcast) {
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    Ipv4 a = dhcp_of(guest.frames.at(0))->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, a, ip("10.0.2.2")));
    guest.frames.clear();
    // Another machine (another MAC) in INIT-REBOOT asks for the same address.
    input(dhcp_request_frame(wire::dhcp4msg::request, 9, a, std::nullopt, 0, kOtherMac));
    ASSERT_EQ(guest.frames.size(), 1u);
    Parsed p{*wire::EthernetView::parse(guest.frames[0]),
             *wire::Ipv4View::parse(Bytes(guest.frames[0]).subspan(14))};
    auto nak = dhcp_of(guest.frames[0], &p);
    ASSERT_TRUE(nak);
    EXPECT_EQ(nak->message_type(), wire::dhcp4msg::nak);
    EXPECT_EQ(nak->yiaddr(), 0u);
    EXPECT_FALSE(nak->find(wire::dhcp4opt::lease_time));
    EXPECT_TRUE(p.eth.dst().is_broadcast());
    EXPECT_EQ(p.ip.dst(), 0xffffffffu);
    EXPECT_EQ(gw->dhcp().stats().naks, 1u);
}

TEST_F(GatewayTest, Dhcp_RequestToAnotherServerIsNotAnswered) {
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    Ipv4 a = dhcp_of(guest.frames.at(0))->yiaddr();
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, a, ip("10.0.2.99")));
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_FALSE(gw->dhcp().leases().lookup(Dhcp4ClientKey::from_mac(kGuestMac), loop.now()));
}

TEST_F(GatewayTest, Dhcp_ReleaseForgetsTheGuest) {
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    Ipv4 a = dhcp_of(guest.frames.at(0))->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, a, ip("10.0.2.2")));
    ASSERT_TRUE(gw->knows_guest(wire::IpAddr::v4(a)));
    input(dhcp_request_frame(wire::dhcp4msg::release, 2, std::nullopt, ip("10.0.2.2"), a));
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(a)));
    EXPECT_EQ(gw->dhcp().stats().releases, 1u);
}

TEST_F(GatewayTest, Dhcp_InformGetsConfigurationWithoutALease) {
    guest_says_hello(ip("10.0.2.77"));
    input(dhcp_request_frame(wire::dhcp4msg::inform, 5, std::nullopt, std::nullopt,
                             ip("10.0.2.77")));
    ASSERT_EQ(guest.frames.size(), 1u);
    auto d = dhcp_of(guest.frames[0]);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), wire::dhcp4msg::ack);
    EXPECT_EQ(d->yiaddr(), 0u);
    EXPECT_FALSE(d->find(wire::dhcp4opt::lease_time));
    EXPECT_TRUE(d->find(wire::dhcp4opt::router));
}

// A DISCOVER with a vendor class (60) and a user class (77), as PXE ROMs,
// iPXE and UEFI HTTP boot send them.
std::vector<uint8_t> boot_discover(uint32_t xid, const std::string& vendor,
                                   const std::string& user = "") {
    std::vector<uint8_t> msg(548);
    wire::Dhcp4Builder b(msg);
    b.set_op(wire::dhcp4op::boot_request);
    b.set_xid(xid);
    b.set_chaddr(kGuestMac);
    b.add_u8(wire::dhcp4opt::message_type, wire::dhcp4msg::discover);
    if (!vendor.empty()) b.add_string(wire::dhcp4opt::vendor_class, vendor);
    if (!user.empty()) b.add_string(wire::dhcp4opt::user_class, user);
    msg.resize(b.finish());
    return udp_frame(MacAddr::broadcast(), kGuestMac, 0, 0xffffffff, 68, 67, msg);
}

std::string text_of(const wire::Dhcp4View& d, uint8_t code) {
    auto o = d.find(code);
    return o ? std::string(o->begin(), o->end()) : std::string("(none)");
}

std::string file_of(const wire::Dhcp4View& d) {
    auto f = d.file();
    return std::string(f.begin(), std::find(f.begin(), f.end(), uint8_t{0}));
}

TEST_F(GatewayTest, Dhcp_BootfileNameGoesToEveryClientWithUsAsTheTftpServer) {
    gw.reset();
    cfg.bootfile = "pxelinux.0";
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    for (auto [vendor, user] : {std::pair{"PXEClient:Arch:00000:UNDI:002001", ""},
                                std::pair{"", ""}, std::pair{"PXEClient", "iPXE"}}) {
        guest.frames.clear();
        input(boot_discover(7, vendor, user));
        ASSERT_EQ(guest.frames.size(), 1u) << vendor;
        auto d = dhcp_of(guest.frames[0]);
        ASSERT_TRUE(d);
        EXPECT_EQ(d->siaddr(), ip("10.0.2.2"));
        EXPECT_EQ(file_of(*d), "pxelinux.0");
        EXPECT_EQ(text_of(*d, wire::dhcp4opt::bootfile_name), "pxelinux.0");
        EXPECT_EQ(text_of(*d, wire::dhcp4opt::tftp_server_name), "10.0.2.2");
        EXPECT_FALSE(d->find(wire::dhcp4opt::vendor_class));
    }
}

TEST_F(GatewayTest, Dhcp_TftpServerNameReplacesTheGatewayInOption66) {
    gw.reset();
    cfg.bootfile = "pxelinux.0";
    cfg.tftp_server_name = "boot.example.test";
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    input(boot_discover(4, "PXEClient:Arch:00000:UNDI:002001"));
    auto d = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(d);
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::tftp_server_name), "boot.example.test");
    EXPECT_EQ(d->siaddr(), ip("10.0.2.2"));
    EXPECT_EQ(file_of(*d), "pxelinux.0");
}

TEST_F(GatewayTest, Dhcp_BootfileUrlGoesOnlyToClientsThatFetchUrls) {
    gw.reset();
    cfg.bootfile = "http://10.0.2.2:8080/boot.efi";
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    // A PXE ROM: no boot file at all (it could not fetch it).
    input(boot_discover(1, "PXEClient:Arch:00000:UNDI:002001"));
    auto d = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->find(wire::dhcp4opt::bootfile_name));
    EXPECT_EQ(file_of(*d), "");
    EXPECT_EQ(d->siaddr(), 0u);
    // iPXE: the URL.
    guest.frames.clear();
    input(boot_discover(2, "PXEClient:Arch:00000:UNDI:002001", "iPXE"));
    d = dhcp_of(guest.frames.at(0));
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::bootfile_name), cfg.bootfile);
    EXPECT_EQ(file_of(*d), cfg.bootfile);
    EXPECT_EQ(d->siaddr(), 0u);  // no TFTP server involved
    // UEFI HTTP boot: the URL, and its vendor class back (UEFI 2.5 24.7).
    guest.frames.clear();
    input(boot_discover(3, "HTTPClient:Arch:00016:UNDI:003001"));
    d = dhcp_of(guest.frames.at(0));
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::bootfile_name), cfg.bootfile);
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::vendor_class), "HTTPClient");
}

TEST_F(GatewayTest, Dhcp_NoBootfileNoBootOptions) {
    input(boot_discover(1, "PXEClient:Arch:00000:UNDI:002001"));
    auto d = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->find(wire::dhcp4opt::bootfile_name));
    EXPECT_FALSE(d->find(wire::dhcp4opt::tftp_server_name));
    EXPECT_EQ(d->siaddr(), 0u);
}

TEST_F(GatewayTest, Dhcp_HostnameSearchListRoutesAndLeaseTime) {
    gw.reset();
    cfg.hostname = "vm";
    cfg.domain = "lan.test";
    cfg.dns_search = {"lan.test", "corp.example"};
    cfg.lease_seconds = 3600;
    cfg.dhcp_routes = {{ip("192.168.50.0"), 24, ip("10.0.2.9")}, {ip("172.16.0.0"), 12, ip("10.0.2.2")}};
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    auto d = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(d);
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::hostname), "vm");
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::domain_search),
              std::string("\3lan\4test\0\4corp\7example\0", 24));
    auto lt = d->find(wire::dhcp4opt::lease_time);
    ASSERT_TRUE(lt && lt->size() == 4);
    EXPECT_EQ(wire::load32(lt->data()), 3600u);
    // RFC 3442: /24 takes 3 octets, /12 two, the default route none.
    const std::string want("\x18\xc0\xa8\x32\x0a\x00\x02\x09"
                           "\x0c\xac\x10\x0a\x00\x02\x02"
                           "\x00\x0a\x00\x02\x02", 20);
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::classless_route), want);
}

// A --dhcp-route 0.0.0.0/0 is the default route: none is added beside it.
TEST_F(GatewayTest, Dhcp_ARouteToEverywhereReplacesTheDefaultOne) {
    gw.reset();
    cfg.dhcp_routes = {{0, 0, ip("10.0.2.9")}, {ip("192.168.50.0"), 24, ip("10.0.2.2")}};
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    auto d = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(d);
    const std::string want("\x00\x0a\x00\x02\x09"
                           "\x18\xc0\xa8\x32\x0a\x00\x02\x02", 13);
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::classless_route), want);
}

// A reply too large for the client (576 bytes without option 57, RFC 2131)
// still goes, without the options that did not fit, least needed first;
// a client that takes more gets them all. RFC 6842: the client identifier
// comes back.
// RFC 3397: names with a common suffix share it through pointers, so a
// list twice as long as option 119's 255 bytes still fits it; router
// advertisements and DHCPv6 carry it as it is (no compression there).
TEST_F(GatewayTest, Dhcp_TheSearchListIsCompressed) {
    gw.reset();
    for (int i = 0; i < 12; i++)
        cfg.dns_search.push_back("subdomain" + std::to_string(i) +
                                 ".averyveryverylongdomainname-example.org");
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    const wire::Bytes w = gw->search_wire4();
    EXPECT_LE(w.size(), 255u);
    // Decoded as a resolver would: every name, in order.
    std::vector<std::string> names;
    for (size_t at = 0; at < w.size();) {
        std::string name;
        size_t p = at;
        bool jumped = false;
        while (w[p] != 0) {
            if ((w[p] & 0xc0) == 0xc0) {
                if (!jumped) at = p + 2;
                jumped = true;
                p = ((w[p] & 0x3f) << 8) | w[p + 1];
                continue;
            }
            name += (name.empty() ? "" : ".") + std::string(w.begin() + p + 1, w.begin() + p + 1 + w[p]);
            p += 1 + w[p];
        }
        if (!jumped) at = p + 1;
        names.push_back(name);
    }
    ASSERT_EQ(names.size(), 12u);
    EXPECT_EQ(names[0], "subdomain0.averyveryverylongdomainname-example.org");
    EXPECT_EQ(names[11], "subdomain11.averyveryverylongdomainname-example.org");
}

TEST_F(GatewayTest, Dhcp_AReplyTooLargeForTheClientGoesWithoutWhatDoesNotFit) {
    gw.reset();
    cfg.domain = "lab.internal";
    cfg.hostname = "vm";
    // Six names without a common suffix, so that compression (RFC 3397)
    // leaves them at 252 bytes.
    for (int i = 0; i < 6; i++)
        cfg.dns_search.push_back("s" + std::to_string(i) + "-a-longer-domain-name-xyz1234.example" +
                                 std::to_string(i));
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    ASSERT_GT(gw->search_wire4().size(), 250u);
    std::vector<uint8_t> cid{1, 0x52, 0x54, 0, 0x12, 0x34, 0x56};
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt, 0, kGuestMac,
                             cid));
    ASSERT_EQ(guest.frames.size(), 1u);
    auto d = dhcp_of(guest.frames[0]);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), wire::dhcp4msg::offer);
    EXPECT_LE(guest.frames[0].size(), 14u + 576u);
    EXPECT_TRUE(d->find(wire::dhcp4opt::router));
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::hostname), "vm");
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::domain_name), "lab.internal");
    EXPECT_FALSE(d->find(wire::dhcp4opt::domain_search));
    auto echoed = d->find(wire::dhcp4opt::client_id);
    ASSERT_TRUE(echoed);
    EXPECT_EQ(std::vector<uint8_t>(echoed->begin(), echoed->end()), cid);
    EXPECT_EQ(gw->dhcp().stats().options_left_out, 1u);
    // Option 57 = 1500: everything.
    input(dhcp_request_frame(wire::dhcp4msg::discover, 2, std::nullopt, std::nullopt, 0, kGuestMac,
                             cid, 1500));
    ASSERT_EQ(guest.frames.size(), 2u);
    auto big = dhcp_of(guest.frames[1]);
    ASSERT_TRUE(big);
    EXPECT_EQ(text_of(*big, wire::dhcp4opt::domain_search).size(), gw->search_wire4().size());
}

TEST_F(GatewayTest, Dhcp_ARenewalWithoutAHostNameKeepsTheName) {
    // RFC 2131 lets a client leave option 12 out when it renews.
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, ip("10.0.2.15"), std::nullopt, 0,
                             kGuestMac, {}, {}, std::string("keepme")));
    ASSERT_EQ(dhcp_of(guest.frames.at(0))->message_type(), wire::dhcp4msg::ack);
    std::vector<wire::IpAddr> addrs;
    ASSERT_TRUE(gw->local_addresses("keepme", addrs));
    guest_says_hello();
    input(dhcp_request_frame(wire::dhcp4msg::request, 2, std::nullopt, std::nullopt,
                             ip("10.0.2.15")));
    ASSERT_EQ(dhcp_of(guest.frames.at(0))->message_type(), wire::dhcp4msg::ack);
    EXPECT_TRUE(gw->local_addresses("keepme", addrs));
    ASSERT_FALSE(addrs.empty());
    EXPECT_EQ(addrs[0], wire::IpAddr::v4(ip("10.0.2.15")));
}

// A DHCP host name (option 12) is the first guest's to hold it, and a
// static lease's (--dhcp-host MAC=ADDR,NAME) always: another guest that
// sends it keeps its address, unnamed, and cannot draw the others'
// connections to that name away to itself.
TEST_F(GatewayTest, Dhcp_AGuestCannotTakeAnothersOrAStaticLeasesName) {
    gw.reset();
    cfg.dhcp_hosts = {{kGuestMac, ip("10.0.2.200"), "web"}};
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    const MacAddr m1{{0x52, 0x54, 0, 0, 0, 0x31}}, m2{{0x52, 0x54, 0, 0, 0, 0x32}};
    auto lease = [&](uint32_t xid, const MacAddr& m, const std::string& name) {
        guest.frames.clear();
        input(dhcp_request_frame(wire::dhcp4msg::discover, xid, std::nullopt, std::nullopt, 0, m));
        const Ipv4 a = dhcp_of(guest.frames.at(0))->yiaddr();
        guest.frames.clear();
        input(dhcp_request_frame(wire::dhcp4msg::request, xid, a, ip("10.0.2.2"), 0, m, {}, {},
                                 name));
        EXPECT_EQ(dhcp_of(guest.frames.at(0))->message_type(), wire::dhcp4msg::ack);
        return a;
    };
    std::vector<wire::IpAddr> addrs;
    const Ipv4 a1 = lease(1, m1, "victim");
    ASSERT_TRUE(gw->local_addresses("victim", addrs));
    EXPECT_EQ(addrs.at(0), wire::IpAddr::v4(a1));
    const Ipv4 a2 = lease(2, m2, "Victim");
    ASSERT_NE(a1, a2);
    ASSERT_TRUE(gw->local_addresses("victim", addrs));
    EXPECT_EQ(addrs.at(0), wire::IpAddr::v4(a1));
    lease(3, m2, "web.example");  // the static lease's, not bound yet
    EXPECT_FALSE(gw->local_addresses("web", addrs));
    EXPECT_EQ(gw->dhcp().stats().names_refused, 2u);
    // The holder renews under its name; the static guest takes its own.
    lease(4, m1, "victim");
    ASSERT_TRUE(gw->local_addresses("victim", addrs));
    EXPECT_EQ(addrs.at(0), wire::IpAddr::v4(a1));
    lease(5, kGuestMac, "");
    ASSERT_TRUE(gw->local_addresses("web", addrs));
    EXPECT_EQ(addrs.at(0), wire::IpAddr::v4(ip("10.0.2.200")));
    EXPECT_EQ(gw->dhcp().stats().names_refused, 2u);
}

TEST_F(GatewayTest, Dhcp_AStaticLeaseIsItsMacsAloneInsideOrOutsideThePool) {
    gw.reset();
    cfg.dhcp_hosts = {{kGuestMac, ip("10.0.2.200"), "web"}, {kOtherMac, ip("10.0.2.15"), ""}};
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    // kGuestMac gets its address (outside the pool), whatever it asks for.
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, ip("10.0.2.16"), std::nullopt));
    auto d = dhcp_of(guest.frames.at(0));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->yiaddr(), ip("10.0.2.200"));
    EXPECT_EQ(text_of(*d, wire::dhcp4opt::hostname), "web");
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, ip("10.0.2.16"), ip("10.0.2.2")));
    EXPECT_EQ(dhcp_of(guest.frames.at(0))->message_type(), wire::dhcp4msg::nak);
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, ip("10.0.2.200"), ip("10.0.2.2")));
    d = dhcp_of(guest.frames.at(0));
    EXPECT_EQ(d->message_type(), wire::dhcp4msg::ack);
    EXPECT_EQ(d->yiaddr(), ip("10.0.2.200"));
    std::vector<wire::IpAddr> addrs;
    EXPECT_TRUE(gw->local_addresses("web", addrs));
    // A third MAC never gets 10.0.2.15, the first pool address, held for
    // kOtherMac; it gets the next one.
    const MacAddr third{{0x52, 0x54, 0, 0, 0, 0x33}};
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::discover, 2, ip("10.0.2.15"), std::nullopt, 0, third));
    EXPECT_EQ(dhcp_of(guest.frames.at(0))->yiaddr(), ip("10.0.2.16"));
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::request, 2, ip("10.0.2.15"), ip("10.0.2.2"), 0, third));
    EXPECT_EQ(dhcp_of(guest.frames.at(0))->message_type(), wire::dhcp4msg::nak);
}

// Two client identifiers on one MAC (firmware, then an OS with a DUID; or
// two clients on one interface) share the MAC's one address: each is ACKed
// it, renewals under either keep it, and the guard lets it be used. (One
// lease each would leave one of them an address the guard drops.)
TEST_F(GatewayTest, Dhcp_ClientIdentifiersOnOneMacShareItsAddress) {
    std::vector<uint8_t> id1{0xff, 1, 2, 3, 4}, id2{0xff, 5, 6, 7, 8};
    auto type_of = [&](size_t i) { return dhcp_of(guest.frames.at(i))->message_type(); };
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt, 0, kGuestMac,
                             id1));
    ASSERT_EQ(guest.frames.size(), 1u);
    const wire::Ipv4 a = dhcp_of(guest.frames[0])->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 2, a, ip("10.0.2.2"), 0, kGuestMac, id1));
    input(dhcp_request_frame(wire::dhcp4msg::discover, 3, std::nullopt, std::nullopt, 0, kGuestMac,
                             id2));
    input(dhcp_request_frame(wire::dhcp4msg::request, 4, a, ip("10.0.2.2"), 0, kGuestMac, id2));
    input(dhcp_request_frame(wire::dhcp4msg::request, 5, std::nullopt, std::nullopt, a, kGuestMac,
                             id1));
    ASSERT_EQ(guest.frames.size(), 5u);
    EXPECT_EQ(type_of(1), wire::dhcp4msg::ack);
    EXPECT_EQ(type_of(2), wire::dhcp4msg::offer);
    EXPECT_EQ(dhcp_of(guest.frames[2])->yiaddr(), a);
    EXPECT_EQ(type_of(3), wire::dhcp4msg::ack);
    EXPECT_EQ(type_of(4), wire::dhcp4msg::ack) << "the first identifier renews";
    EXPECT_EQ(dhcp_of(guest.frames[4])->yiaddr(), a);
}

// A renewal that names our server but not the address (against RFC 2131
// 4.3.2; libslirp takes it) renews the client's ciaddr.
TEST_F(GatewayTest, Dhcp_ARenewalWithOurServerIdButNoRequestedAddressRenewsCiaddr) {
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    ASSERT_EQ(guest.frames.size(), 1u);
    const wire::Ipv4 a = dhcp_of(guest.frames[0])->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 2, a, ip("10.0.2.2")));
    input(dhcp_request_frame(wire::dhcp4msg::request, 3, std::nullopt, ip("10.0.2.2"), a));
    ASSERT_EQ(guest.frames.size(), 3u);
    auto renewed = dhcp_of(guest.frames[2]);
    ASSERT_TRUE(renewed);
    EXPECT_EQ(renewed->message_type(), wire::dhcp4msg::ack);
    EXPECT_EQ(renewed->yiaddr(), a);
}

// A BOOTP client (no option 53; RFC 1497 options or none at all) gets its
// address at once in a BOOTREPLY with the network's options and none of
// DHCP's own, and keeps it: asking again gets the same.
TEST_F(GatewayTest, Dhcp_BootpClientGetsABootReply) {
    for (bool cookie : {true, false}) {
        guest.frames.clear();
        std::vector<uint8_t> msg(wire::kDhcp4MinLen);
        wire::Dhcp4Builder b(msg);
        b.set_op(wire::dhcp4op::boot_request);
        b.set_xid(7);
        b.set_chaddr(kGuestMac);
        ASSERT_EQ(b.finish(), msg.size());  // the cookie, then the end option
        if (!cookie) std::fill(msg.begin() + 236, msg.end(), uint8_t{0});  // RFC 951
        auto f = udp_frame(MacAddr::broadcast(), kGuestMac, 0, 0xffffffff, 68, 67, msg);
        input(f);
        ASSERT_EQ(guest.frames.size(), 1u) << cookie;
        Parsed p{*wire::EthernetView::parse(guest.frames[0]),
                 *wire::Ipv4View::parse(Bytes(guest.frames[0]).subspan(14))};
        auto r = dhcp_of(guest.frames[0], &p);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->op(), wire::dhcp4op::boot_reply);
        EXPECT_EQ(r->xid(), 7u);
        EXPECT_EQ(r->yiaddr(), ip("10.0.2.15"));
        EXPECT_EQ(r->siaddr(), ip("10.0.2.2"));
        EXPECT_EQ(p.ip.dst(), 0xffffffffu);
        EXPECT_FALSE(r->message_type());
        EXPECT_FALSE(r->server_id());
        EXPECT_FALSE(r->find(wire::dhcp4opt::lease_time));
        auto mask = r->find(wire::dhcp4opt::subnet_mask);
        ASSERT_TRUE(mask);
        EXPECT_EQ(wire::load32(mask->data()), 0xffffff00u);
        auto router = r->find(wire::dhcp4opt::router);
        ASSERT_TRUE(router);
        EXPECT_EQ(wire::load32(router->data()), ip("10.0.2.2"));
        EXPECT_TRUE(r->find(wire::dhcp4opt::dns_server));
        EXPECT_GE(r->message().size(), wire::kDhcp4MinLen);
    }
    EXPECT_EQ(gw->dhcp().stats().bootp_replies, 2u);
}

TEST_F(GatewayTest, Dhcp_MessageWhoseChaddrIsNotTheSenderIsIgnored) {
    auto f = dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt, 0,
                                kOtherMac);
    kGuestMac.store(&f[6]);
    input(f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->dhcp().stats().dropped_ignored, 1u);
}

// --- DNS without upstreams ---------------------------------------------------

TEST_F(GatewayTest, Dns_WithoutUpstreamsQueriesAreRefusedAtOnce) {
    guest_says_hello();
    // busybox's example.com A query, sent to the DNS address.
    Bytes q = Bytes(testdata::kDnsQueryA).subspan(42);
    input(udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("10.0.2.3"), 41000, 53, q));
    ASSERT_EQ(guest.frames.size(), 1u);
    auto p = parse_ip(guest.frames[0]);
    EXPECT_EQ(p->ip.src(), ip("10.0.2.3"));
    auto udp = wire::UdpView::parse(p->ip.payload());
    EXPECT_EQ(udp->src_port(), 53);
    EXPECT_EQ(udp->dst_port(), 41000);
    auto dns = wire::DnsView::parse(udp->payload());
    ASSERT_TRUE(dns);
    EXPECT_EQ(dns->id(), 0x73aa);
    EXPECT_TRUE(dns->qr());
    EXPECT_EQ(dns->rcode(), wire::dnsrcode::refused);
    EXPECT_EQ(gw->dns().stats().refused, 1u);
    EXPECT_TRUE(sink.pkts.empty());
}

TEST_F(GatewayTest, Dns_TcpToTheDnsAddressGoesToTheNat) {
    auto syn = std::vector<uint8_t>(testdata::kTcpSyn.begin(), testdata::kTcpSyn.end());
    // Re-address the SYN to 10.0.2.3 (fix the IP and TCP checksums).
    auto iph = &syn[14];
    wire::store32(iph + 16, ip("10.0.2.3"));
    wire::store16(iph + 10, 0);
    wire::store16(iph + 10, wire::csum_fold(wire::csum_partial(Bytes(iph, 20))));
    input(syn);
    ASSERT_EQ(sink.pkts.size(), 1u);
    EXPECT_EQ(sink.pkts[0].dst, wire::IpAddr::v4(ip("10.0.2.3")));
}


// --- the IP source guard (DHCP snooping, IP source guard) ----------------------

// A second guest on a port of its own.
struct TwoPortTest : GatewayTest {
    GuestPort other{1500};
    void SetUp() override {
        GatewayTest::SetUp();
        sw.attach(other);
    }
    // A routed UDP datagram from (mac, src) on port `from`.
    void send_from(sw::Port& from, const MacAddr& mac, Ipv4 src, Ipv4 dst = 0x01010101) {
        const uint8_t data[] = {1, 2, 3};
        sw.input(from.id(), udp_frame(cfg.gw_mac, mac, src, dst, 1000, 2000, data));
    }
    // A routed packet reached the sink from this source.
    bool routed_from(Ipv4 src) const {
        for (const auto& p : sink.pkts)
            if (p.src == wire::IpAddr::v4(src)) return true;
        return false;
    }
};

TEST_F(TwoPortTest, Guard_AnotherMacCannotSendFromALeasedAddress) {
    gw->bind_lease(ip("10.0.2.15"), kGuestMac, 1500, loop.now() + 100'000, guest.id());
    send_from(other, kOtherMac, ip("10.0.2.15"));
    EXPECT_TRUE(sink.pkts.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
    // The lease holder keeps its address, its MAC and its port.
    EXPECT_EQ(gw->neighbor_mac(ip("10.0.2.15")), kGuestMac);
    EXPECT_EQ(gw->port_of(wire::IpAddr::v4(ip("10.0.2.15"))), guest.id());
    send_from(guest, kGuestMac, ip("10.0.2.15"));
    ASSERT_EQ(sink.pkts.size(), 1u);
    EXPECT_EQ(sink.pkts[0].port, guest.id());
}

TEST_F(TwoPortTest, Guard_ArpFromAnotherMacCannotTakeALeasedAddress) {
    gw->bind_lease(ip("10.0.2.15"), kGuestMac, 1500, loop.now() + 100'000, guest.id());
    std::vector<uint8_t> f(60, 0);
    size_t n = wire::build_ethernet(f.data(), MacAddr::broadcast(), kOtherMac, wire::ethertype::arp);
    wire::build_arp(f.data() + n, wire::arpop::reply, kOtherMac, ip("10.0.2.15"), MacAddr{},
                    ip("10.0.2.15"));
    guest.frames.clear();
    sw.input(other.id(), f);
    EXPECT_TRUE(guest.frames.empty());  // not flooded to the victim's port either
    EXPECT_EQ(gw->neighbor_mac(ip("10.0.2.15")), kGuestMac);
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
}

// Linux also takes ARP of hardware type 6 (IEEE 802) on Ethernet: the
// guard drops any ARP that is not Ethernet/IPv4 instead of letting it
// speak for the gateway's address unchecked.
TEST_F(TwoPortTest, Guard_ArpOfAnotherHardwareTypeIsDropped) {
    std::vector<uint8_t> f(60, 0);
    size_t n = wire::build_ethernet(f.data(), kGuestMac, kOtherMac, wire::ethertype::arp);
    wire::build_arp(f.data() + n, wire::arpop::request, kOtherMac, ip("10.0.2.2"), MacAddr{},
                    ip("10.0.2.15"));
    f[n + 1] = 6;  // hardware type IEEE 802
    guest.frames.clear();
    sw.input(other.id(), f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
}

TEST_F(TwoPortTest, Guard_LeasedMacSendsOnlyFromItsLease) {
    gw->bind_lease(ip("10.0.2.15"), kGuestMac, 1500, loop.now() + 100'000, guest.id());
    send_from(guest, kGuestMac, ip("10.0.2.40"));
    EXPECT_TRUE(sink.pkts.empty());
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.40"))));
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
}

TEST_F(TwoPortTest, Guard_StaticGuestHoldsOneAddressFirstComeUntilItLapses) {
    cfg.claim_hold_ms = 50;
    gw.reset();
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    gw->set_ip_sink(&sink);
    send_from(guest, kGuestMac, ip("10.0.2.40"));
    EXPECT_TRUE(routed_from(ip("10.0.2.40")));
    send_from(guest, kGuestMac, ip("10.0.2.41"));  // a second address: no
    send_from(other, kOtherMac, ip("10.0.2.40"));  // someone else's: no
    EXPECT_FALSE(routed_from(ip("10.0.2.41")));
    EXPECT_EQ(sink.pkts.size(), 1u);
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 2u);
    // Unused for longer than the hold, the claim lapses: the address is
    // free for the next guest, and the first may move to another one.
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    loop.run_once(0);
    send_from(other, kOtherMac, ip("10.0.2.40"));
    send_from(guest, kGuestMac, ip("10.0.2.41"));
    EXPECT_EQ(sink.pkts.size(), 3u);
    EXPECT_EQ(gw->neighbor_mac(ip("10.0.2.40")), kOtherMac);
    EXPECT_EQ(gw->neighbor_mac(ip("10.0.2.41")), kGuestMac);
}

// Gratuitous ARPs from made-up MACs for the addresses of the DHCP pool:
// an attachment's static claims inside the pool count, with its leases,
// against its share (dhcp_leases_per_port), and a claim nobody renews
// with traffic frees its address for DHCP after the claim hold, so a few
// frames cannot leave the guests that ask by DHCP without an address.
TEST_F(TwoPortTest, Guard_GratuitousArpsCannotTakeTheDhcpPool) {
    cfg.claim_hold_ms = 50;
    gw.reset();
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    gw->set_ip_sink(&sink);
    auto garp = [&](uint8_t i) {
        const MacAddr m{{0x02, 0xaa, 0xbb, 0, 0, i}};
        std::vector<uint8_t> f(60, 0);
        size_t n = wire::build_ethernet(f.data(), MacAddr::broadcast(), m, wire::ethertype::arp);
        wire::build_arp(f.data() + n, wire::arpop::request, m, ip("10.0.2.15") + i, MacAddr{},
                        ip("10.0.2.15") + i);
        sw.input(other.id(), f);
    };
    for (uint8_t i = 0; i < 16; i++) garp(i);
    size_t taken = 0;
    for (uint8_t i = 0; i < 16; i++) taken += gw->neighbor_mac(ip("10.0.2.15") + i).has_value();
    EXPECT_EQ(taken, cfg.dhcp_leases_per_port);
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 16u - cfg.dhcp_leases_per_port);
    // Outside the pool a static address is not counted.
    send_from(other, kOtherMac, ip("10.0.2.100"));
    EXPECT_TRUE(routed_from(ip("10.0.2.100")));
    // Held, those addresses are not offered; silent past the hold, they are.
    auto offered = [&](uint32_t xid) -> std::optional<Ipv4> {
        for (const auto& f : guest.frames)
            if (auto d = dhcp_of(f); d && d->xid() == xid) return d->yiaddr();
        return std::nullopt;
    };
    const wire::Ipv4 first_taken = gw->neighbor_mac(ip("10.0.2.15")) ? ip("10.0.2.15") : 0;
    ASSERT_EQ(first_taken, ip("10.0.2.15"));
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, ip("10.0.2.15"), std::nullopt));
    ASSERT_TRUE(offered(1));
    EXPECT_NE(*offered(1), ip("10.0.2.15"));
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    loop.run_once(0);
    input(dhcp_request_frame(wire::dhcp4msg::discover, 2, ip("10.0.2.15"), std::nullopt, 0,
                             MacAddr{{0x52, 0x54, 0, 0, 0, 0x77}}));
    ASSERT_TRUE(offered(2));
    EXPECT_EQ(*offered(2), ip("10.0.2.15"));
}

// DHCP snooping: the gateway is the LAN's DHCP server (v4 and v6); a
// guest's server messages, which would race it and give the others a
// router of the guest's choosing, are dropped.
TEST_F(TwoPortTest, Guard_AGuestsDhcpServerMessagesAreDropped) {
    send_from(other, kOtherMac, ip("10.0.2.40"));  // its own address
    ASSERT_TRUE(routed_from(ip("10.0.2.40")));
    std::vector<uint8_t> msg(300, 0);
    guest.frames.clear();
    sw.input(other.id(), udp_frame(MacAddr::broadcast(), kOtherMac, ip("10.0.2.40"), 0xffffffff,
                                   67, 68, msg));
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
}

// The same in fragments: a first fragment holds the UDP header, which no
// later fragment can overwrite, so it is judged as the whole datagram
// would be, and one too short to hold the ports is refused. Later
// fragments, and fragments of any other datagram, pass.
TEST_F(TwoPortTest, Guard_AGuestsDhcpServerMessagesInFragmentsAreDropped) {
    send_from(other, kOtherMac, ip("10.0.2.40"));
    ASSERT_TRUE(routed_from(ip("10.0.2.40")));
    auto fragment = [&](std::vector<uint8_t> f, uint16_t frag_word, size_t ip_payload) {
        const uint16_t old = wire::load16(&f[14 + 6]);
        wire::store16(&f[14 + 6], frag_word);
        wire::store16(&f[14 + 10], wire::csum_update16(wire::load16(&f[14 + 10]), old, frag_word));
        const uint16_t old_len = wire::load16(&f[14 + 2]);
        const auto len = static_cast<uint16_t>(20 + ip_payload);
        wire::store16(&f[14 + 2], len);
        wire::store16(&f[14 + 10], wire::csum_update16(wire::load16(&f[14 + 10]), old_len, len));
        f.resize(std::max<size_t>(14 + len, 60));
        return f;
    };
    std::vector<uint8_t> msg(300, 0);
    auto ack = udp_frame(MacAddr::broadcast(), kOtherMac, ip("10.0.2.40"), 0xffffffff, 67, 68, msg);
    guest.frames.clear();
    sw.input(other.id(), fragment(ack, 0x2000, 64));  // MF, offset 0: the first 64 bytes
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
    sw.input(other.id(), fragment(ack, 0x2000, 4));  // a first fragment without the ports
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
    sw.input(other.id(), fragment(ack, 0x0008, 64));  // offset 64: no header in it
    EXPECT_EQ(guest.frames.size(), 1u);
    auto other_udp = udp_frame(MacAddr::broadcast(), kOtherMac, ip("10.0.2.40"), 0xffffffff,
                               5000, 68, msg);
    sw.input(other.id(), fragment(other_udp, 0x2000, 64));
    EXPECT_EQ(guest.frames.size(), 2u);
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
}

// IPv4, IPv6 or ARP wrapped in LLC/SNAP (RFC 1042) would carry past the
// guard what it refuses in Ethernet framing (a spoofed source here), to
// stacks that take that form: dropped. Other LLC (spanning tree, say)
// passes.
TEST_F(TwoPortTest, Guard_IpAndArpUnderLlcSnapAreDropped) {
    auto spoofed = udp_frame(MacAddr::broadcast(), kOtherMac, ip("10.0.2.2"), 0xffffffff, 1, 2,
                             std::vector<uint8_t>(20, 0));
    auto snap = [&](uint16_t inner) {
        std::vector<uint8_t> f(spoofed.begin(), spoofed.begin() + 12);
        const uint8_t llc[] = {0xaa, 0xaa, 0x03, 0, 0, 0, static_cast<uint8_t>(inner >> 8),
                               static_cast<uint8_t>(inner)};
        const size_t len = sizeof llc + spoofed.size() - 14;
        f.push_back(static_cast<uint8_t>(len >> 8));
        f.push_back(static_cast<uint8_t>(len));
        f.insert(f.end(), std::begin(llc), std::end(llc));
        f.insert(f.end(), spoofed.begin() + 14, spoofed.end());
        return f;
    };
    guest.frames.clear();
    for (uint16_t t : {wire::ethertype::ipv4, wire::ethertype::ipv6, wire::ethertype::arp})
        sw.input(other.id(), snap(t));
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 3u);
    // The same with jumbo frames' LLC type (0x8870, as scapy writes LLC),
    // 802.1H's OUI, a two-byte control field, a VLAN tag inside, and IP
    // straight on SAP 0x06.
    auto f = snap(wire::ethertype::ipv4);
    f[12] = 0x88;
    f[13] = 0x70;
    sw.input(other.id(), f);
    f = snap(wire::ethertype::ipv4);
    f[19] = 0xf8;
    sw.input(other.id(), f);
    f = snap(wire::ethertype::ipv6);
    f[16] = 0x13;
    sw.input(other.id(), f);
    f = snap(wire::ethertype::ipv4);
    f.insert(f.begin() + 17, 0x00);  // an I-format control field of two bytes
    sw.input(other.id(), f);
    sw.input(other.id(), snap(wire::ethertype::vlan));
    f = snap(wire::ethertype::ipv4);
    f[14] = 0x06;
    f[15] = 0x06;
    sw.input(other.id(), f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 9u);
    std::vector<uint8_t> stp(60, 0);
    wire::build_ethernet(stp.data(), MacAddr{{0x01, 0x80, 0xc2, 0, 0, 0}}, kOtherMac, 0);
    stp[12] = 0;
    stp[13] = 38;
    stp[14] = 0x42;  // DSAP/SSAP 0x42: spanning tree's LLC
    stp[15] = 0x42;
    stp[16] = 0x03;
    sw.input(other.id(), stp);
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 9u);
}

// ICMP errors are limited per attachment: one guest provoking them as fast
// as it can (TTL 1 here) uses up its own bucket, and another guest still
// gets its errors (a port unreachable, a time exceeded) at once.
TEST_F(TwoPortTest, IcmpErrors_OneGuestsFloodLeavesTheOthersTheirErrors) {
    const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7, 8};
    auto time_exceeded = [](const std::vector<std::vector<uint8_t>>& frames) {
        size_t n = 0;
        for (auto& f : frames) {
            auto p = parse_ip(f);
            if (!p || p->ip.protocol() != wire::ipproto::icmp) continue;
            auto icmp = wire::Icmp4View::parse(p->ip.payload());
            if (icmp && icmp->type() == wire::icmptype::time_exceeded) n++;
        }
        return n;
    };
    send_from(other, kOtherMac, ip("10.0.2.40"));  // the other guest is known
    for (int i = 0; i < 500; i++)  // one wakeup: no refill
        input(udp_frame(cfg.gw_mac, kGuestMac, ip("10.0.2.15"), ip("192.0.2.1"),
                        static_cast<uint16_t>(33434 + i), 33435, data, 1));
    EXPECT_EQ(time_exceeded(guest.frames), Gateway::kIcmpErrorBurst);
    for (int i = 0; i < 10; i++)
        sw.input(other.id(), udp_frame(cfg.gw_mac, kOtherMac, ip("10.0.2.40"), ip("192.0.2.1"),
                                       static_cast<uint16_t>(40000 + i), 33435, data, 1));
    EXPECT_EQ(time_exceeded(other.frames), 10u);
}

TEST_F(TwoPortTest, Guard_SourcesOutsideTheSubnetAreDroppedEvenBetweenGuests) {
    send_from(other, kOtherMac, ip("10.0.2.50"));  // the other guest exists
    guest.frames.clear();
    const uint8_t data[] = {1};
    // Toward the gateway and toward the other guest's MAC alike.
    sw.input(guest.id(), udp_frame(cfg.gw_mac, kGuestMac, ip("192.0.2.7"), ip("1.1.1.1"), 1, 1, data));
    sw.input(guest.id(), udp_frame(kOtherMac, kGuestMac, ip("192.0.2.7"), ip("10.0.2.50"), 1, 1, data));
    EXPECT_EQ(sink.pkts.size(), 1u);  // only the other guest's own datagram
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 2u);
}

// Stacked tags (802.1Q in 802.1Q, 802.1ad) hide the source from the guard:
// dropped, toward the gateway and toward another guest alike. One 802.1Q
// tag is looked through, and its source checked.
TEST_F(TwoPortTest, Guard_StackedVlanTagsAreDropped) {
    send_from(other, kOtherMac, ip("10.0.2.50"));
    other.frames.clear();
    const uint8_t data[] = {1};
    auto tagged = [&](const MacAddr& dst, std::initializer_list<uint16_t> tpids, Ipv4 src) {
        std::vector<uint8_t> f = udp_frame(dst, kGuestMac, src, ip("10.0.2.50"), 1, 1, data);
        for (uint16_t tpid : tpids) {  // each new tag goes outside the last
            uint8_t tag[4];
            wire::store16(tag, tpid);
            wire::store16(tag + 2, 100);
            f.insert(f.begin() + 12, tag, tag + 4);
        }
        return f;
    };
    const uint64_t before = gw->gw_stats().dropped_spoofed;
    sw.input(guest.id(), tagged(kOtherMac, {0x8100, 0x8100}, ip("8.8.8.8")));
    sw.input(guest.id(), tagged(kOtherMac, {0x88a8}, ip("8.8.8.8")));
    sw.input(guest.id(), tagged(MacAddr::broadcast(), {0x8100, 0x88a8}, ip("10.0.2.15")));
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, before + 3);
    sw.input(guest.id(), tagged(kOtherMac, {0x8100}, ip("8.8.8.8")));  // one tag: looked into
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, before + 4);
}

TEST_F(TwoPortTest, Guard_ZeroSourceOnlyForDhcp) {
    const uint8_t data[] = {1};
    input(udp_frame(cfg.gw_mac, kGuestMac, 0, ip("10.0.2.3"), 41000, 53, data));
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    EXPECT_EQ(gw->dhcp().stats().offers, 1u);
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
}

TEST_F(TwoPortTest, Guard_ReservedAddressIsUsedOnlyFromItsAttachment) {
    gw->reserve(ip("10.0.2.15"), guest.id());
    send_from(other, kOtherMac, ip("10.0.2.15"));
    EXPECT_TRUE(sink.pkts.empty());
    send_from(guest, kGuestMac, ip("10.0.2.15"));
    EXPECT_TRUE(routed_from(ip("10.0.2.15")));
}

TEST_F(TwoPortTest, Dhcp_NeverOffersAnAddressReservedForAnotherAttachment) {
    gw->reserve(ip("10.0.2.15"), other.id());  // the first address of the pool
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, ip("10.0.2.15"), std::nullopt));
    ASSERT_EQ(guest.frames.size(), 1u);
    Ipv4 a = dhcp_of(guest.frames[0])->yiaddr();
    EXPECT_NE(a, ip("10.0.2.15"));
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::request, 2, ip("10.0.2.15"), std::nullopt));
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(dhcp_of(guest.frames[0])->message_type(), wire::dhcp4msg::nak);
}

TEST_F(TwoPortTest, Dhcp_NeverOffersAServiceAddress) {
    // A guest forward's address inside the pool (libslirp allows it).
    gw->add_service_addr(wire::IpAddr::v4(ip("10.0.2.15")));
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, ip("10.0.2.15"), std::nullopt));
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(dhcp_of(guest.frames[0])->yiaddr(), ip("10.0.2.16"));
}

TEST_F(TwoPortTest, Guard_DetachedPortLosesItsGuestsAndTheSinkIsTold) {
    send_from(other, kOtherMac, ip("10.0.2.50"));
    ASSERT_TRUE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.50"))));
    sw::PortId id = other.id();
    sw.detach(other);
    EXPECT_FALSE(gw->knows_guest(wire::IpAddr::v4(ip("10.0.2.50"))));
    ASSERT_EQ(sink.gone.size(), 1u);
    EXPECT_EQ(sink.gone[0], id);
    // The address is free for a guest elsewhere at once.
    send_from(guest, kGuestMac, ip("10.0.2.50"));
    EXPECT_TRUE(routed_from(ip("10.0.2.50")) && sink.pkts.back().port == guest.id());
}

TEST_F(GatewayTest, Dhcp_MessagesAreRateLimitedPerPort) {
    for (uint32_t i = 0; i < 100; i++)
        input(dhcp_request_frame(wire::dhcp4msg::discover, i, std::nullopt, std::nullopt));
    EXPECT_EQ(gw->dhcp().stats().discovers, static_cast<uint64_t>(Gateway::kDhcpBurst));
    EXPECT_EQ(gw->gw_stats().dropped_rate, 100 - static_cast<uint64_t>(Gateway::kDhcpBurst));
}

// An uplink has a network behind one port: set_hosts_behind() lifts the
// attachment's quota of 4 offers or leases (and its message budget).
TEST_F(GatewayTest, Dhcp_APortWithANetworkBehindItLeasesToManyHosts) {
    // Hosts behind the port, each DISCOVER then REQUEST; the leases bound.
    auto leases = [&](uint32_t from, uint32_t to) {
        size_t n = 0;
        for (uint32_t i = from; i < to; i++) {
            MacAddr m{{0x02, 0x00, 0x00, 0x00, 0x01, static_cast<uint8_t>(i)}};
            guest.frames.clear();
            input(dhcp_request_frame(wire::dhcp4msg::discover, 100 + i, std::nullopt, std::nullopt,
                                     0, m));
            if (guest.frames.empty()) continue;
            Ipv4 a = dhcp_of(guest.frames.back())->yiaddr();
            guest.frames.clear();
            input(dhcp_request_frame(wire::dhcp4msg::request, 100 + i, a, ip("10.0.2.2"), 0, m));
            if (!guest.frames.empty() &&
                dhcp_of(guest.frames.back())->message_type() == wire::dhcp4msg::ack)
                n++;
        }
        return n;
    };
    EXPECT_EQ(leases(0, 6), 4u);  // a guest's attachment: 4
    uint64_t dropped = gw->gw_stats().dropped_rate;
    gw->set_hosts_behind(guest.id(), 4096);
    // The rest of the pool (10.0.2.15-30, 16 addresses), 24 messages in
    // one burst, beyond the 16 a guest's attachment may send at once.
    EXPECT_EQ(leases(6, 18), 12u);
    EXPECT_EQ(gw->gw_stats().dropped_rate, dropped);
    EXPECT_EQ(gw->dhcp().leases().port_count(guest.id(), loop.now()), 16u);
}

TEST_F(GatewayTest, Dhcp_DiscoverWithoutClientIdFindsTheLeaseTakenWithOne) {
    // udhcpc sends option 61 = 01:MAC; a client that later omits it is the
    // same client (as dnsmasq treats it).
    std::vector<uint8_t> cid = {1};
    cid.insert(cid.end(), kGuestMac.b.begin(), kGuestMac.b.end());
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt, 0,
                             kGuestMac, cid));
    Ipv4 a = dhcp_of(guest.frames.at(0))->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, a, ip("10.0.2.2"), 0, kGuestMac, cid));
    guest.frames.clear();
    input(dhcp_request_frame(wire::dhcp4msg::discover, 2, std::nullopt, std::nullopt));
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(dhcp_of(guest.frames[0])->yiaddr(), a);
}

TEST_F(TwoPortTest, Dhcp_ReleaseFromAnotherPortOrMacIsIgnored) {
    input(dhcp_request_frame(wire::dhcp4msg::discover, 1, std::nullopt, std::nullopt));
    Ipv4 a = dhcp_of(guest.frames.at(0))->yiaddr();
    input(dhcp_request_frame(wire::dhcp4msg::request, 1, a, ip("10.0.2.2")));
    ASSERT_TRUE(gw->knows_guest(wire::IpAddr::v4(a)));
    // The same client identifier (the MAC, here) from the other port, with
    // the victim's MAC as chaddr but its own Ethernet source: dropped as a
    // foreign chaddr; with a matching source MAC it is a MAC on the wrong
    // port, which the switch does not let move while the owner is live.
    auto rel = dhcp_request_frame(wire::dhcp4msg::release, 2, std::nullopt, ip("10.0.2.2"));
    sw.input(other.id(), rel);
    auto decl = dhcp_request_frame(wire::dhcp4msg::decline, 3, a, ip("10.0.2.2"));
    kOtherMac.store(&decl[6]);
    sw.input(other.id(), decl);
    EXPECT_TRUE(gw->knows_guest(wire::IpAddr::v4(a)));
    EXPECT_EQ(gw->dhcp().leases().lookup(Dhcp4ClientKey::from_mac(kGuestMac), loop.now()), a);
}

// --- IPv6 --------------------------------------------------------------------

// The guest of captured_frames6.hpp.
const MacAddr kGuest6Mac{{0x92, 0x5a, 0x6a, 0x71, 0x2b, 0xbe}};
const wire::IpAddr kGuest6Ll = *wire::IpAddr::parse("fe80::905a:6aff:fe71:2bbe");
const wire::IpAddr kGuest6 = *wire::IpAddr::parse("fec0::905a:6aff:fe71:2bbe");
wire::IpAddr ip6(const char* s) { return *wire::IpAddr::parse(s); }

// An Ethernet + IPv6 frame around an ICMPv6 message whose checksum this
// fills. (Not inlined: g++ 12 at -O3 takes the vectors' sizes for bounds
// it cannot prove and warns falsely, -Warray-bounds.)
[[gnu::noinline]] std::vector<uint8_t> icmp6_frame(const MacAddr& dst_mac, const MacAddr& src_mac,
                                                   const wire::IpAddr& src, const wire::IpAddr& dst,
                                                   std::vector<uint8_t> msg, uint8_t hop_limit = 255) {
    wire::finish_icmp6(msg.data(), msg.size(), src, dst);
    std::array<uint8_t, 54> hdr{};
    wire::build_ethernet(hdr.data(), dst_mac, src_mac, wire::ethertype::ipv6);
    wire::build_ipv6(hdr.data() + 14, src, dst, wire::ipproto::icmpv6, msg.size(), hop_limit);
    std::vector<uint8_t> f(hdr.begin(), hdr.end());
    f.resize(hdr.size() + msg.size());
    std::memcpy(f.data() + hdr.size(), msg.data(), msg.size());
    return f;
}

// A neighbor solicitation or advertisement for target, with a link-layer
// address option when lla_type is not 0.
[[gnu::noinline]] std::vector<uint8_t> nd_msg(uint8_t type, const wire::IpAddr& target, uint8_t lla_type = 0,
                            const MacAddr& lla = kGuest6Mac, uint8_t flags = 0) {
    std::vector<uint8_t> m(lla_type ? 32 : 24, 0);
    m[0] = type;
    m[4] = flags;
    std::memcpy(&m[8], target.b.data(), 16);
    if (lla_type) {
        m[24] = lla_type;
        m[25] = 1;
        lla.store(&m[26]);
    }
    return m;
}

struct Icmp6Out {
    wire::EthernetView eth;
    wire::Ipv6View ip;
    wire::Icmp6View icmp;
};

std::optional<Icmp6Out> parse_icmp6(const std::vector<uint8_t>& f) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv6) return std::nullopt;
    auto ip = wire::Ipv6View::parse(eth->payload());
    if (!ip || ip->protocol() != wire::ipproto::icmpv6) return std::nullopt;
    auto icmp = wire::Icmp6View::parse(ip->payload());
    if (!icmp || !icmp->checksum_ok(ip->src_addr(), ip->dst_addr())) return std::nullopt;
    return Icmp6Out{*eth, *ip, *icmp};
}

TEST_F(GatewayTest, Gateway6_AnswersARealNeighborSolicitationForTheGateway) {
    input(testdata::kNsForGateway);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto na = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(na);
    EXPECT_EQ(na->eth.dst(), kGuest6Mac);
    EXPECT_EQ(na->eth.src(), cfg.gw_mac);
    EXPECT_EQ(na->ip.src_addr(), ip6("fec0::2"));
    EXPECT_EQ(na->ip.dst_addr(), kGuest6);
    EXPECT_EQ(na->ip.hop_limit(), 255);
    EXPECT_EQ(na->icmp.type(), wire::icmp6type::neighbor_advert);
    EXPECT_EQ(na->icmp.nd_target(), ip6("fec0::2"));
    EXPECT_TRUE(na->icmp.na_router());
    EXPECT_TRUE(na->icmp.na_solicited());
    EXPECT_TRUE(na->icmp.na_override());
    auto opts = wire::NdpOptions::parse(na->icmp.body());
    ASSERT_TRUE(opts);
    EXPECT_EQ(opts->lla(wire::ndopt::target_lla), cfg.gw_mac);
    // The guest that asked is now a neighbor: the gateway can reach it.
    EXPECT_TRUE(gw->knows_guest(kGuest6));
    EXPECT_EQ(gw->path_mtu(kGuest6), 1400u);
}

TEST_F(GatewayTest, Gateway6_AnswersForDnsAndLinkLocalButNotForOtherAddresses) {
    for (const char* a : {"fec0::3", "fe80::2", "fec0::4", "fec0::15"}) {
        guest.frames.clear();
        auto t = ip6(a);
        input(icmp6_frame(wire::multicast_mac(wire::solicited_node(t)), kGuest6Mac, kGuest6,
                          wire::solicited_node(t),
                          nd_msg(wire::icmp6type::neighbor_solicit, t, wire::ndopt::source_lla)));
        const bool ours = gw->is_own_v6(t);
        EXPECT_EQ(guest.frames.size(), ours ? 1u : 0u) << a;
    }
    EXPECT_EQ(gw->gw_stats().neighbor_adverts, 2u);
}

TEST_F(GatewayTest, Gateway6_DefendsItsAddressAgainstDuplicateAddressDetection) {
    const auto t = ip6("fec0::2");
    input(icmp6_frame(wire::multicast_mac(wire::solicited_node(t)), kGuest6Mac, wire::IpAddr{},
                      wire::solicited_node(t), nd_msg(wire::icmp6type::neighbor_solicit, t)));
    ASSERT_EQ(guest.frames.size(), 1u);
    auto na = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(na);
    EXPECT_EQ(na->ip.dst_addr(), ip6("ff02::1"));
    EXPECT_EQ(na->eth.dst(), (MacAddr{{0x33, 0x33, 0, 0, 0, 1}}));
    EXPECT_FALSE(na->icmp.na_solicited());
    EXPECT_EQ(na->icmp.nd_target(), t);
}

TEST_F(GatewayTest, Gateway6_NeighborDiscoveryWithAHopLimitBelow255IsDropped) {
    const auto t = ip6("fec0::2");
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, kGuest6, t,
                      nd_msg(wire::icmp6type::neighbor_solicit, t, wire::ndopt::source_lla), 254));
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
}

TEST_F(GatewayTest, Gateway6_AnswersARealRouterSolicitationWithPrefixMtuAndDns) {
    cfg.domain = "example.org";
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    input(testdata::kRouterSolicit);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto ra = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(ra);
    EXPECT_EQ(ra->eth.dst(), kGuest6Mac);
    EXPECT_EQ(ra->ip.src_addr(), ip6("fe80::2"));
    EXPECT_EQ(ra->ip.dst_addr(), kGuest6Ll);
    EXPECT_EQ(ra->ip.hop_limit(), 255);
    EXPECT_EQ(ra->icmp.type(), wire::icmp6type::router_advert);
    wire::Bytes m = ra->icmp.message();
    EXPECT_EQ(m[4], 64);                          // hop limit for the guest
    EXPECT_EQ(wire::load16(&m[6]), 1800);         // router lifetime
    auto opts = wire::NdpOptions::parse(ra->icmp.body());
    ASSERT_TRUE(opts);
    EXPECT_EQ(opts->lla(wire::ndopt::source_lla), cfg.gw_mac);
    auto mtu = opts->find(wire::ndopt::mtu);
    ASSERT_TRUE(mtu);
    EXPECT_EQ(wire::load32(&mtu->data[4]), 1400u);  // the guest port's own
    auto pi = opts->find(wire::ndopt::prefix_info);
    ASSERT_TRUE(pi);
    ASSERT_EQ(pi->data.size(), 32u);
    EXPECT_EQ(pi->data[2], 64);
    EXPECT_EQ(pi->data[3], 0xc0);  // on-link, autonomous
    EXPECT_EQ(wire::IpAddr::v6_from(&pi->data[16]), ip6("fec0::"));
    auto rdnss = opts->find(wire::ndopt::rdnss);
    ASSERT_TRUE(rdnss);
    EXPECT_EQ(wire::IpAddr::v6_from(&rdnss->data[8]), ip6("fec0::3"));
    auto dnssl = opts->find(wire::ndopt::dnssl);
    ASSERT_TRUE(dnssl);
    const uint8_t name[] = {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'o', 'r', 'g', 0};
    EXPECT_EQ(0, std::memcmp(&dnssl->data[8], name, sizeof name));
}

TEST_F(GatewayTest, Gateway6_AdvertisesUnsolicitedToEveryPortWithItsMtu) {
    GuestPort big{65520};
    sw.attach(big);
    core::Millis t0 = loop.now();
    while (loop.now() - t0 < 1200 && guest.frames.empty()) loop.run_once(50);
    ASSERT_EQ(guest.frames.size(), 1u);
    ASSERT_EQ(big.frames.size(), 1u);
    for (auto* g : {&guest, &big}) {
        auto ra = parse_icmp6(g->frames[0]);
        ASSERT_TRUE(ra);
        EXPECT_EQ(ra->ip.dst_addr(), ip6("ff02::1"));
        auto mtu = wire::NdpOptions::parse(ra->icmp.body())->find(wire::ndopt::mtu);
        EXPECT_EQ(wire::load32(&mtu->data[4]), g->mtu());
    }
    sw.detach(big);
}

// RFC 4861 6.3.4: a host ignores an MTU option below IPv6's 1280, so a
// port with a smaller MTU gets none; 6.2.4: the first three unsolicited
// advertisements come at most 16 s apart, the next at the configured pace.
TEST_F(GatewayTest, Gateway6_InitialAdvertisementsComeSoonAndNoneCarriesAnMtuBelow1280) {
    GuestPort small{1200};
    sw.attach(small);
    std::vector<core::Millis> at;
    const core::Millis t0 = loop.now();
    for (int s = 0; s < 90; s++) {
        loop.advance_clock_for_tests(1000);
        loop.run_once(0);
        if (small.frames.size() > at.size()) at.push_back(loop.now() - t0);
    }
    ASSERT_EQ(at.size(), 3u) << "advertisements in the first 90 s";
    EXPECT_LE(at[1] - at[0], 16'000);
    EXPECT_LE(at[2] - at[1], 16'000);
    for (const auto& f : small.frames) {
        auto ra = parse_icmp6(f);
        ASSERT_TRUE(ra);
        auto opts = wire::NdpOptions::parse(ra->icmp.body());
        ASSERT_TRUE(opts);
        EXPECT_FALSE(opts->find(wire::ndopt::mtu));
        EXPECT_TRUE(opts->find(wire::ndopt::prefix_info));
    }
    sw.detach(small);
}

// The gateway's own addresses are a destination: a protocol it does not
// speak gets ICMP protocol unreachable (RFC 1122 3.2.2.1) or, over IPv6,
// Parameter Problem code 1 at the byte naming it (RFC 8200 4); "no next
// header" is dropped quietly.
TEST_F(GatewayTest, Gateway_AnUnknownProtocolToTheGatewayIsAnsweredAsADestinationWould) {
    const uint8_t data[16] = {1, 2, 3};
    std::vector<uint8_t> f(14 + 20 + sizeof data);
    wire::build_ethernet(f.data(), cfg.gw_mac, kGuestMac, wire::ethertype::ipv4);
    wire::build_ipv4(f.data() + 14, ip("10.0.2.15"), ip("10.0.2.2"), 132, sizeof data);
    std::memcpy(f.data() + 34, data, sizeof data);
    input(f);
    EXPECT_TRUE(sink.pkts.empty());
    ASSERT_EQ(guest.frames.size(), 1u);
    auto p = parse_ip(guest.frames[0]);
    ASSERT_TRUE(p);
    auto icmp = wire::Icmp4View::parse(p->ip.payload());
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), wire::icmptype::dest_unreach);
    EXPECT_EQ(icmp->code(), wire::icmpcode::proto_unreach);
    EXPECT_EQ(p->ip.src(), ip("10.0.2.2"));
    // Routed elsewhere, the same protocol is the NAT's business.
    guest.frames.clear();
    wire::build_ipv4(f.data() + 14, ip("10.0.2.15"), ip("192.0.2.1"), 132, sizeof data);
    input(f);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(sink.pkts.size(), 1u);

    for (uint8_t proto : {uint8_t{132}, wire::ipproto::ipv6_nonxt}) {
        guest.frames.clear();
        std::vector<uint8_t> g(14 + 40 + sizeof data);
        wire::build_ethernet(g.data(), cfg.gw_mac, kGuest6Mac, wire::ethertype::ipv6);
        wire::build_ipv6(g.data() + 14, kGuest6, ip6("fec0::2"), proto, sizeof data, 64);
        input(g);
        if (proto == wire::ipproto::ipv6_nonxt) {
            EXPECT_TRUE(guest.frames.empty());
            continue;
        }
        ASSERT_EQ(guest.frames.size(), 1u);
        auto pp = parse_icmp6(guest.frames[0]);
        ASSERT_TRUE(pp);
        EXPECT_EQ(pp->icmp.type(), wire::icmp6type::param_problem);
        EXPECT_EQ(pp->icmp.code(), 1);
        EXPECT_EQ(wire::load32(pp->icmp.message().data() + 4), 6u);
    }
}

// RFC 8200 4.5: a fragment other than the last must carry a multiple of 8
// bytes (Parameter Problem code 0 at the payload length), and none may end
// beyond 65535 (at the fragment offset).
TEST_F(GatewayTest, Gateway6_FragmentsOfImpossibleLengthsGetParameterProblems) {
    auto frag = [&](uint16_t offset8, bool more, size_t len) {
        std::vector<uint8_t> f(14 + 40 + 8 + len, 0x11);
        wire::build_ethernet(f.data(), cfg.gw_mac, kGuest6Mac, wire::ethertype::ipv6);
        wire::build_ipv6(f.data() + 14, kGuest6, ip6("fec0::2"), wire::ipproto::ipv6_frag, 8 + len, 64);
        uint8_t* fh = f.data() + 54;
        fh[0] = wire::ipproto::udp;
        fh[1] = 0;
        wire::store16(fh + 2, static_cast<uint16_t>(offset8 << 3 | (more ? 1 : 0)));
        wire::store32(fh + 4, 0x1234);
        return f;
    };
    input(frag(0, true, 100));  // 100: not a multiple of 8
    ASSERT_EQ(guest.frames.size(), 1u);
    auto pp = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(pp);
    EXPECT_EQ(pp->icmp.type(), wire::icmp6type::param_problem);
    EXPECT_EQ(pp->icmp.code(), 0);
    EXPECT_EQ(wire::load32(pp->icmp.message().data() + 4), 4u);
    guest.frames.clear();
    input(frag(8190, false, 104));  // 65520 + 104 > 65535
    ASSERT_EQ(guest.frames.size(), 1u);
    pp = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(pp);
    EXPECT_EQ(wire::load32(pp->icmp.message().data() + 4), 40u + 2);
    guest.frames.clear();
    input(frag(0, true, 104));  // a good first fragment: held, no answer
    EXPECT_TRUE(guest.frames.empty());
}

// RFC 4443 4.2: an echo to all nodes or all routers is answered from a
// unicast address of ours, the link-local one to a link-local source.
TEST_F(GatewayTest, Gateway6_AnswersAnEchoToAllNodesAndAllRouters) {
    std::vector<uint8_t> msg{wire::icmp6type::echo_request, 0, 0, 0, 0, 9, 0, 1, 'm', 'c'};
    for (const char* group : {"ff02::1", "ff02::2"}) {
        for (const auto& src : {kGuest6Ll, kGuest6}) {
            guest.frames.clear();
            input(icmp6_frame(wire::multicast_mac(ip6(group)), kGuest6Mac, src, ip6(group), msg, 64));
            ASSERT_EQ(guest.frames.size(), 1u) << group;
            auto r = parse_icmp6(guest.frames[0]);
            ASSERT_TRUE(r);
            EXPECT_EQ(r->icmp.type(), wire::icmp6type::echo_reply);
            EXPECT_EQ(r->ip.dst_addr(), src);
            EXPECT_EQ(r->ip.src_addr(), src == kGuest6Ll ? ip6("fe80::2") : ip6("fec0::2"));
        }
    }
    // Another group is not ours.
    guest.frames.clear();
    input(icmp6_frame(wire::multicast_mac(ip6("ff02::fb")), kGuest6Mac, kGuest6Ll, ip6("ff02::fb"), msg, 64));
    EXPECT_TRUE(guest.frames.empty());
}

TEST_F(GatewayTest, Gateway6_AnswersARealPingToItsAddress) {
    input(testdata::kEcho6Request);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->icmp.type(), wire::icmp6type::echo_reply);
    EXPECT_EQ(r->ip.src_addr(), ip6("fec0::2"));
    EXPECT_EQ(r->ip.dst_addr(), kGuest6);
    auto req = wire::Ipv6View::parse(wire::Bytes(testdata::kEcho6Request.data() + 14, testdata::kEcho6Request.size() - 14));
    EXPECT_EQ(r->icmp.message().size(), req->payload().size());
    EXPECT_EQ(0, std::memcmp(r->icmp.message().data() + 4, req->payload().data() + 4,
                             req->payload().size() - 4));
    EXPECT_EQ(gw->gw_stats().icmp_echo_replies, 1u);
}

TEST_F(GatewayTest, Gateway6_RoutedPacketReachesTheSinkAndHopLimitOneGetsTimeExceeded) {
    std::vector<uint8_t> msg{wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1, 'h', 'i'};
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, kGuest6, ip6("2001:db8::1"), msg, 64));
    ASSERT_EQ(sink.pkts.size(), 1u);
    EXPECT_EQ(sink.pkts[0].src, kGuest6);
    EXPECT_EQ(sink.pkts[0].dst, ip6("2001:db8::1"));
    EXPECT_EQ(sink.pkts[0].proto, wire::ipproto::icmpv6);
    EXPECT_EQ(sink.pkts[0].port, guest.id());
    guest.frames.clear();
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, kGuest6, ip6("2001:db8::1"), msg, 1));
    EXPECT_EQ(sink.pkts.size(), 1u);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto te = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(te);
    EXPECT_EQ(te->icmp.type(), wire::icmp6type::time_exceeded);
    EXPECT_EQ(te->ip.src_addr(), ip6("fec0::2"));
    // The quote is the whole offending packet (it fits in 1280 bytes).
    EXPECT_EQ(te->icmp.message().size(), 8 + 40 + msg.size());
}

// An echo request to dst behind one extension header `ext` (its next
// header byte is filled in here).
[[gnu::noinline]] std::vector<uint8_t> echo6_behind(const MacAddr& dst_mac, const wire::IpAddr& dst,
                                                    uint8_t ext_type, std::vector<uint8_t> ext) {
    std::vector<uint8_t> msg{wire::icmp6type::echo_request, 0, 0, 0, 0, 7, 0, 1, 'r', 'h'};
    wire::finish_icmp6(msg.data(), msg.size(), kGuest6, dst);
    ext[0] = wire::ipproto::icmpv6;
    std::vector<uint8_t> f(14 + 40 + ext.size() + msg.size());
    wire::build_ethernet(f.data(), dst_mac, kGuest6Mac, wire::ethertype::ipv6);
    wire::build_ipv6(f.data() + 14, kGuest6, dst, ext_type, ext.size() + msg.size(), 64);
    std::memcpy(f.data() + 54, ext.data(), ext.size());
    std::memcpy(f.data() + 54 + ext.size(), msg.data(), msg.size());
    return f;
}

// RFC 5095 / RFC 8200 4.4: a type 0 routing header with segments left is
// answered with a Parameter Problem pointing at its routing type, whether
// the packet was for the gateway or to be routed; with none left it is
// ignored. RFC 8200 4.2: an unknown option of action 10 is answered with
// code 2, one of action 01 silently dropped.
TEST_F(GatewayTest, Gateway6_RoutingHeadersAndUnknownOptionsGetParameterProblems) {
    std::vector<uint8_t> rh0(24, 0);  // type 0, one address, one segment left
    rh0[1] = 2;
    rh0[3] = 1;
    for (const auto& dst : {ip6("fec0::2"), ip6("2001:db8::1")}) {
        guest.frames.clear();
        const auto f = echo6_behind(cfg.gw_mac, dst, wire::ipproto::ipv6_route, rh0);
        input(f);
        ASSERT_EQ(guest.frames.size(), 1u) << dst.to_string();
        auto pp = parse_icmp6(guest.frames[0]);
        ASSERT_TRUE(pp);
        EXPECT_EQ(pp->icmp.type(), wire::icmp6type::param_problem);
        EXPECT_EQ(pp->icmp.code(), 0);
        const auto m = pp->icmp.message();
        EXPECT_EQ(wire::load32(m.data() + 4), 40u + 2);
        EXPECT_EQ(pp->ip.dst_addr(), kGuest6);
        EXPECT_EQ(pp->ip.src_addr(), dst == ip6("fec0::2") ? dst : ip6("fec0::2"));
        ASSERT_EQ(m.size(), 8 + f.size() - 14);  // the whole packet quoted
        EXPECT_EQ(0, std::memcmp(m.data() + 8, f.data() + 14, f.size() - 14));
    }
    EXPECT_TRUE(sink.pkts.empty());
    EXPECT_EQ(gw->gw_stats().icmp6_param_problems, 2u);

    guest.frames.clear();
    rh0[3] = 0;  // no segments left: processed as if the header were not there
    input(echo6_behind(cfg.gw_mac, ip6("fec0::2"), wire::ipproto::ipv6_route, rh0));
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(parse_icmp6(guest.frames[0])->icmp.type(), wire::icmp6type::echo_reply);

    guest.frames.clear();
    std::vector<uint8_t> dopt{0, 0, 0x9e, 1, 0, 1, 0, 0};  // action 10, then PadN
    input(echo6_behind(cfg.gw_mac, ip6("fec0::2"), wire::ipproto::ipv6_dstopts, dopt));
    ASSERT_EQ(guest.frames.size(), 1u);
    auto pp = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(pp);
    EXPECT_EQ(pp->icmp.type(), wire::icmp6type::param_problem);
    EXPECT_EQ(pp->icmp.code(), 2);
    EXPECT_EQ(wire::load32(pp->icmp.message().data() + 4), 40u + 2);

    guest.frames.clear();
    dopt[2] = 0x5e;  // action 01: dropped without a word
    input(echo6_behind(cfg.gw_mac, ip6("fec0::2"), wire::ipproto::ipv6_dstopts, dopt));
    // Nor is one sent for a frame to another guest's MAC.
    dopt[2] = 0x9e;
    input(echo6_behind(kOtherMac, ip6("fec0::2"), wire::ipproto::ipv6_dstopts, dopt));
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().icmp6_param_problems, 3u);

    // A hop-by-hop header after a destination options header (RFC 8200
    // 4.1): code 1, pointing at the next header field that names it.
    guest.frames.clear();
    std::vector<uint8_t> two{0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0};
    auto f = echo6_behind(cfg.gw_mac, ip6("fec0::2"), wire::ipproto::ipv6_dstopts, two);
    f[54] = wire::ipproto::ipv6_hopopts;
    f[62] = wire::ipproto::icmpv6;
    input(f);
    ASSERT_EQ(guest.frames.size(), 1u);
    pp = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(pp);
    EXPECT_EQ(pp->icmp.type(), wire::icmp6type::param_problem);
    EXPECT_EQ(pp->icmp.code(), 1);
    EXPECT_EQ(wire::load32(pp->icmp.message().data() + 4), 40u);
    EXPECT_TRUE(sink.pkts.empty());
    EXPECT_EQ(gw->gw_stats().icmp6_param_problems, 4u);
}

TEST_F(GatewayTest, Gateway6_TheGuardDropsRouterAdvertisementsAndRedirectsFromGuests) {
    GuestPort other{1500};
    sw.attach(other);
    std::vector<uint8_t> ra(16, 0);
    ra[0] = wire::icmp6type::router_advert;
    input(icmp6_frame(wire::multicast_mac(ip6("ff02::1")), kGuest6Mac, kGuest6Ll, ip6("ff02::1"), ra));
    std::vector<uint8_t> redirect(40, 0);
    redirect[0] = wire::icmp6type::redirect;
    input(icmp6_frame(kOtherMac, kGuest6Mac, kGuest6Ll, ip6("fe80::1"), redirect));
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 2u);
    EXPECT_EQ(sw.stats().dropped_guard, 2u);
    sw.detach(other);
}

// What the guard cannot read it cannot vouch for: a router advertisement
// behind more extension headers than the parser walks (receivers walk
// them all) is dropped, not passed; and with the gateway's IPv6 off a
// guest still may not be the other guests' router.
// Fragments cannot carry past the guard what it refuses whole (RFC 6980:
// neighbor discovery is never fragmented; RFC 7113: a first fragment
// must hold the upper-layer header): a router advertisement or a neighbor
// advertisement as a first fragment, also behind a destination options
// header, a DHCPv6 server's message, and a first fragment whose chain
// ends before its upper-layer header. An echo request in fragments passes.
TEST_F(GatewayTest, Gateway6_TheGuardJudgesFirstFragmentsAsWholePackets) {
    GuestPort other{1500};
    sw.attach(other);
    const auto all = ip6("ff02::1");
    // A first fragment (offset 0, M set) from the guest's link-local
    // address to all nodes: the fragment header, then `ext`, then `l4`.
    auto first_fragment = [&](uint8_t upper, std::vector<uint8_t> ext, std::vector<uint8_t> l4) {
        std::vector<uint8_t> body{upper, 0, 0, 1, 0, 0, 0, 9};  // next, 0, offset 0 + M, id
        if (!ext.empty()) body[0] = wire::ipproto::ipv6_dstopts;
        body.insert(body.end(), ext.begin(), ext.end());
        body.insert(body.end(), l4.begin(), l4.end());
        std::vector<uint8_t> f(14 + 40 + body.size());
        wire::build_ethernet(f.data(), wire::multicast_mac(all), kGuest6Mac, wire::ethertype::ipv6);
        wire::build_ipv6(f.data() + 14, kGuest6Ll, all, wire::ipproto::ipv6_frag, body.size(), 255);
        std::memcpy(f.data() + 54, body.data(), body.size());
        return f;
    };
    std::vector<uint8_t> ra(64, 0);
    ra[0] = wire::icmp6type::router_advert;
    std::vector<uint8_t> na(64, 0);
    na[0] = wire::icmp6type::neighbor_advert;
    std::vector<uint8_t> dstopts{wire::ipproto::icmpv6, 0, 1, 4, 0, 0, 0, 0};
    std::vector<uint8_t> dhcp6(64, 0);
    wire::store16(&dhcp6[0], wire::kDhcp6ServerPort);
    wire::store16(&dhcp6[2], wire::kDhcp6ClientPort);
    input(first_fragment(wire::ipproto::icmpv6, {}, ra));
    input(first_fragment(wire::ipproto::icmpv6, dstopts, ra));
    input(first_fragment(wire::ipproto::icmpv6, {}, na));
    input(first_fragment(wire::ipproto::udp, {}, dhcp6));
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 4u);
    // A destination options header that claims more than the fragment has.
    std::vector<uint8_t> long_opts{wire::ipproto::icmpv6, 9, 1, 4, 0, 0, 0, 0};
    input(first_fragment(wire::ipproto::icmpv6, long_opts, ra));
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
    std::vector<uint8_t> echo(64, 0);
    echo[0] = wire::icmp6type::echo_request;
    input(first_fragment(wire::ipproto::icmpv6, dstopts, echo));
    EXPECT_EQ(other.frames.size(), 1u);
    sw.detach(other);
}

TEST_F(GatewayTest, Gateway6_TheGuardDropsWhatItCannotReadAndRouterAdvertisementsWithIpv6Off) {
    GuestPort other{1500};
    sw.attach(other);
    const auto all = ip6("ff02::1");
    std::vector<uint8_t> ra(16, 0);
    ra[0] = wire::icmp6type::router_advert;
    wire::finish_icmp6(ra.data(), ra.size(), kGuest6Ll, all);
    constexpr size_t kHeaders = 9;
    std::vector<uint8_t> f(14 + 40 + 8 * kHeaders + ra.size());
    wire::build_ethernet(f.data(), wire::multicast_mac(all), kGuest6Mac, wire::ethertype::ipv6);
    wire::build_ipv6(f.data() + 14, kGuest6Ll, all, 60, 8 * kHeaders + ra.size(), 255);
    for (size_t i = 0; i < kHeaders; i++) {
        uint8_t* h = f.data() + 54 + 8 * i;
        h[0] = i + 1 < kHeaders ? 60 : wire::ipproto::icmpv6;  // destination options
        h[1] = 0;
        h[2] = 1;  // PadN of 4
        h[3] = 4;
    }
    std::memcpy(f.data() + 54 + 8 * kHeaders, ra.data(), ra.size());
    input(f);
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 1u);
    // Nor does it pass one behind a hop-by-hop header out of place, where
    // its walk stops.
    f[54 + 8 * 7] = 0;  // the eighth header names hop-by-hop as the ninth
    input(f);
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_malformed, 2u);
    sw.detach(other);

    cfg.ipv6 = false;
    gw.reset();  // (its destructor takes the guard away)
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    gw->set_ip_sink(&sink);
    sw.attach(other);
    input(icmp6_frame(wire::multicast_mac(all), kGuest6Mac, kGuest6Ll, all, ra));
    EXPECT_TRUE(other.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 1u);
    // Other IPv6 between guests still passes (plain L2).
    input(icmp6_frame(kOtherMac, kGuest6Mac, kGuest6Ll, ip6("fe80::99"),
                      {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    EXPECT_EQ(other.frames.size(), 1u);
    sw.detach(other);
}

TEST_F(GatewayTest, Gateway6_TheGuardDropsNeighborAdvertisementsForAddressesNotTheSenders) {
    GuestPort other{1500};
    sw.attach(other);
    const auto all = ip6("ff02::1");
    const MacAddr all_mac = wire::multicast_mac(all);
    // For the gateway's address: never.
    input(icmp6_frame(all_mac, kGuest6Mac, kGuest6, all,
                      nd_msg(wire::icmp6type::neighbor_advert, ip6("fec0::2"),
                             wire::ndopt::target_lla, kGuest6Mac, 0x20)));
    // For an address another guest holds.
    sw.input(other.id(), icmp6_frame(cfg.gw_mac, kOtherMac, ip6("fec0::99"), ip6("fec0::2"),
                                     {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    input(icmp6_frame(all_mac, kGuest6Mac, kGuest6, all,
                      nd_msg(wire::icmp6type::neighbor_advert, ip6("fec0::99"),
                             wire::ndopt::target_lla, kGuest6Mac, 0x20)));
    // A link-layer option naming another MAC.
    input(icmp6_frame(all_mac, kGuest6Mac, kGuest6, all,
                      nd_msg(wire::icmp6type::neighbor_advert, kGuest6, wire::ndopt::target_lla,
                             kOtherMac, 0x20)));
    EXPECT_EQ(gw->gw_stats().dropped_spoofed, 3u);
    EXPECT_EQ(sw.stats().dropped_guard, 3u);
    for (auto& f : other.frames) {
        auto m = parse_icmp6(f);
        EXPECT_FALSE(m && m->icmp.type() == wire::icmp6type::neighbor_advert);
    }
    // Its own address it may advertise.
    other.frames.clear();
    input(icmp6_frame(all_mac, kGuest6Mac, kGuest6, all,
                      nd_msg(wire::icmp6type::neighbor_advert, kGuest6, wire::ndopt::target_lla,
                             kGuest6Mac, 0x20)));
    EXPECT_EQ(other.frames.size(), 1u);
    sw.detach(other);
}

TEST_F(GatewayTest, Gateway6_TheGuardLetsUnspecifiedSourcesOnlyProbeAndReport) {
    GuestPort other{1500};
    sw.attach(other);
    input(testdata::kMld2ReportUnspecified);
    input(testdata::kNsDad);
    EXPECT_EQ(other.frames.size(), 2u);
    EXPECT_EQ(sw.stats().dropped_guard, 0u);
    // Anything else from :: is a spoof.
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, wire::IpAddr{}, ip6("2001:db8::1"),
                      {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
    sw.detach(other);
}

TEST_F(GatewayTest, Gateway6_AMacHoldsAFewAddressesAndNotAnotherGuestsOrOutsideThePrefix) {
    auto ping_from = [&](const MacAddr& m, const wire::IpAddr& src) {
        input(icmp6_frame(cfg.gw_mac, m, src, ip6("fec0::2"),
                          {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    };
    ping_from(kGuest6Mac, kGuest6);
    ping_from(kGuest6Mac, kGuest6Ll);
    EXPECT_EQ(sw.stats().dropped_guard, 0u);
    ping_from(kOtherMac, kGuest6);               // another guest's
    ping_from(kGuest6Mac, ip6("2001:db8::5"));   // outside the prefix
    ping_from(kGuest6Mac, ip6("fec0::"));        // the subnet-router anycast address
    EXPECT_EQ(sw.stats().dropped_guard, 3u);
    // Temporary addresses come and go: the idlest of the MAC's makes room.
    for (int i = 0; i < 20; i++) {
        wire::IpAddr a = ip6("fec0::1:0");
        a.b[15] = static_cast<uint8_t>(i + 1);
        ping_from(kGuest6Mac, a);
    }
    EXPECT_EQ(sw.stats().dropped_guard, 3u);
    EXPECT_LE(gw->neighbor6_count(), Gateway::kMaxV6PerMac);
}

TEST_F(GatewayTest, Gateway6_SendingToAnUnknownGuestSolicitsIt) {
    std::memset(gw->tx_l4(), 0, 8);
    EXPECT_TRUE(gw->send_ip(ip6("fec0::2"), ip6("fec0::77"), wire::ipproto::udp, 8));  // held
    ASSERT_EQ(guest.frames.size(), 1u);
    auto ns = parse_icmp6(guest.frames[0]);
    ASSERT_TRUE(ns);
    EXPECT_EQ(ns->icmp.type(), wire::icmp6type::neighbor_solicit);
    EXPECT_EQ(ns->icmp.nd_target(), ip6("fec0::77"));
    EXPECT_EQ(ns->ip.dst_addr(), wire::solicited_node(ip6("fec0::77")));
    // Once a second, not once a packet.
    EXPECT_TRUE(gw->send_ip(ip6("fec0::2"), ip6("fec0::77"), wire::ipproto::udp, 8));
    EXPECT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(gw->gw_stats().held_for_neighbor, 2u);
}

TEST_F(GatewayTest, Gateway6_WithIpv6OffTheGatewayIgnoresIt) {
    cfg.ipv6 = false;
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    input(testdata::kNsForGateway);
    input(testdata::kRouterSolicit);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->gw_stats().dropped_unsupported, 2u);
}

TEST_F(GatewayTest, Gateway6_HeldPacketsGoWhenAnIdleGuestAnswersAgain) {
    auto ping = [&] {
        input(icmp6_frame(cfg.gw_mac, kGuest6Mac, kGuest6, ip6("fec0::2"),
                          {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
        guest.frames.clear();
    };
    ping();
    loop.advance_clock_for_tests(Gateway::kNeighborIdleMs + 1000);
    loop.run_once(0);
    guest.frames.clear();  // router advertisements of the idle spell
    std::memset(gw->tx_l4(), 0, 8);
    wire::build_udp(gw->tx_l4(), ip6("fec0::2"), kGuest6, 53, 4000, 0);
    ASSERT_TRUE(gw->send_ip(ip6("fec0::2"), kGuest6, wire::ipproto::udp, 8));
    EXPECT_EQ(gw->gw_stats().held_for_neighbor, 1u);
    ASSERT_EQ(guest.frames.size(), 1u);  // the neighbor solicitation
    ping();
    loop.run_once(0);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto eth = wire::EthernetView::parse(guest.frames[0]);
    ASSERT_TRUE(eth);
    EXPECT_EQ(eth->dst(), kGuest6Mac);
    EXPECT_EQ(gw->gw_stats().held_sent, 1u);
}


// A newcomer's duplicate address detection for an address another guest
// holds, however idle, does not move it: the holder's defence (an
// advertisement from that address) passes the guard and reaches the
// newcomer, whose detection then fails (RFC 4862 5.4).
TEST_F(GatewayTest, Gateway6_AnIdleHoldersAddressIsDefendedNotTakenByAProbe) {
    GuestPort other{1500};
    sw.attach(other);
    const MacAddr newcomer{{0x02, 0, 0, 0, 0, 0x77}};
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, kGuest6, ip6("fec0::2"),
                      {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    loop.advance_clock_for_tests(cfg.claim_hold_ms + 5000);
    loop.run_once(0);
    auto probe = icmp6_frame(wire::multicast_mac(wire::solicited_node(kGuest6)), newcomer,
                             wire::IpAddr{}, wire::solicited_node(kGuest6),
                             nd_msg(wire::icmp6type::neighbor_solicit, kGuest6));
    sw.input(other.id(), probe);
    guest.frames.clear();
    other.frames.clear();
    const auto all = ip6("ff02::1");
    input(icmp6_frame(wire::multicast_mac(all), kGuest6Mac, kGuest6, all,
                      nd_msg(wire::icmp6type::neighbor_advert, kGuest6, wire::ndopt::target_lla,
                             kGuest6Mac, 0x20)));
    ASSERT_EQ(other.frames.size(), 1u);  // the defence reached the newcomer
    EXPECT_EQ(sw.stats().dropped_guard, 0u);
    // The holder still sends from it; the newcomer may not.
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, kGuest6, ip6("fec0::2"),
                      {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 2}, 64));
    EXPECT_EQ(sw.stats().dropped_guard, 0u);
    sw.input(other.id(), icmp6_frame(cfg.gw_mac, newcomer, kGuest6, ip6("fec0::2"),
                                     {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 3}, 64));
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
    sw.detach(other);
}

// The IPv6 partner of an address --config-net gave one attachment is that
// attachment's, before the guest has sent from it.
TEST_F(GatewayTest, Gateway6_TheReservedAddresssPartnerIsItsAttachments) {
    GuestPort other{1500};
    sw.attach(other);
    gw->reserve(ip("10.0.2.15"), guest.id());
    const MacAddr thief{{0x02, 0, 0, 0, 0, 0x66}};
    sw.input(other.id(), icmp6_frame(cfg.gw_mac, thief, ip6("fec0::f"), ip6("fec0::2"),
                                     {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
    EXPECT_FALSE(gw->knows_guest(ip6("fec0::f")));
    input(icmp6_frame(cfg.gw_mac, kGuest6Mac, ip6("fec0::f"), ip6("fec0::2"),
                      {wire::icmp6type::echo_request, 0, 0, 0, 0, 1, 0, 1}, 64));
    EXPECT_EQ(sw.stats().dropped_guard, 1u);
    EXPECT_TRUE(gw->knows_guest(ip6("fec0::f")));
    sw.detach(other);
}

}  // namespace
}  // namespace usernet::gw
