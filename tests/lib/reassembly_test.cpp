// IP fragments both ways: the gateway reassembles what a guest fragments
// (under the limits of reassembly.hpp) and fragments what exceeds a guest's
// MTU. Fragments are made here the way a host's IP layer makes them.
#include "gateway/reassembly.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "gateway/gateway.hpp"
#include "nat_harness.hpp"

namespace usernet::testing {
namespace {

const wire::MacAddr kGwMac{{0x52, 0x55, 10, 0, 2, 2}};
const wire::IpAddr kRemote4 = wire::IpAddr::v4(0xc6336407);  // 198.51.100.7
const wire::IpAddr kGuest6 = *wire::IpAddr::parse("fec0::15");
const wire::IpAddr kRemote6 = *wire::IpAddr::parse("2001:db8::7");

class Sink : public gw::IpSink {
public:
    void from_guest(const gw::GuestPacket& p) override {
        l4.emplace_back(p.l4.begin(), p.l4.end());
        src.push_back(p.src);
    }
    void port_gone(sw::PortId) override {}
    std::vector<std::vector<uint8_t>> l4;
    std::vector<wire::IpAddr> src;
};

// A UDP datagram of n payload bytes with a valid checksum.
[[gnu::noinline]] std::vector<uint8_t> udp_datagram(const wire::IpAddr& src,
                                                    const wire::IpAddr& dst, size_t n) {
    std::vector<uint8_t> d(8 + n);
    for (size_t i = 0; i < n; i++) d[8 + i] = static_cast<uint8_t>(i * 13 + 7);
    wire::build_udp(d.data(), src, dst, 40000, 9999, n);
    return d;
}

struct Frag {
    size_t offset;
    size_t len;
    bool more;
};

// The fragment of l4 at f as an Ethernet frame from kGuestMac.
[[gnu::noinline]] std::vector<uint8_t> frag4(const std::vector<uint8_t>& l4, Frag f,
                                             uint16_t id = 77) {
    std::vector<uint8_t> out(34 + f.len);
    wire::build_ethernet(out.data(), kGwMac, kGuestMac, wire::ethertype::ipv4);
    uint8_t* ip = out.data() + 14;
    wire::build_ipv4(ip, kGuestIp, kRemote4.as_v4(), wire::ipproto::udp, f.len, 64, id, false);
    wire::store16(ip + 6, static_cast<uint16_t>(f.offset / 8 | (f.more ? 0x2000 : 0)));
    wire::store16(ip + 10, 0);
    wire::store16(ip + 10, wire::csum_fold(wire::csum_partial(wire::Bytes(ip, 20))));
    std::memcpy(out.data() + 34, l4.data() + f.offset, f.len);
    if (out.size() < 60) out.resize(60);
    return out;
}

[[gnu::noinline]] std::vector<uint8_t> frag6(const std::vector<uint8_t>& l4, Frag f,
                                             uint32_t id = 77) {
    std::vector<uint8_t> out(62 + f.len);
    wire::build_ethernet(out.data(), kGwMac, kGuestMac, wire::ethertype::ipv6);
    wire::build_ipv6(out.data() + 14, kGuest6, kRemote6, wire::ipproto::ipv6_frag, 8 + f.len);
    uint8_t* fh = out.data() + 54;
    fh[0] = wire::ipproto::udp;
    wire::store16(fh + 2, static_cast<uint16_t>(f.offset | (f.more ? 1 : 0)));
    wire::store32(fh + 4, id);
    std::memcpy(out.data() + 62, l4.data() + f.offset, f.len);
    return out;
}

struct FragTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    CapturePort guest;
    CapturePort other;
    Sink sink;
    gw::NetConfig cfg;
    std::unique_ptr<gw::Gateway> gw;
    std::vector<uint8_t> d4 = udp_datagram(wire::IpAddr::v4(kGuestIp), kRemote4, 3000);
    std::vector<uint8_t> d6 = udp_datagram(kGuest6, kRemote6, 3000);

    void SetUp() override {
        sw.attach(guest);
        sw.attach(other);
        gw = std::make_unique<gw::Gateway>(loop, sw, cfg);
        gw->set_ip_sink(&sink);
    }
    void TearDown() override { gw->set_ip_sink(nullptr); }
    void input(const std::vector<uint8_t>& f, sw::Port* p = nullptr) {
        sw.input((p ? p : &guest)->id(), f);
    }
};

TEST_F(FragTest, Fragments_AGuestsIpv4FragmentsInAnyOrderReachTheNatWhole) {
    input(frag4(d4, {1480, 1480, true}));
    input(frag4(d4, {2960, d4.size() - 2960, false}));
    EXPECT_TRUE(sink.l4.empty());
    input(frag4(d4, {0, 1480, true}));
    ASSERT_EQ(sink.l4.size(), 1u);
    EXPECT_EQ(sink.l4[0], d4);  // the checksum held: the NAT got it
    EXPECT_EQ(gw->reassembly_stats().reassembled, 1u);
    // A duplicate of a fragment already taken does not disturb anything.
    input(frag4(d4, {0, 1480, true}, 78));
    input(frag4(d4, {0, 1480, true}, 78));
    input(frag4(d4, {1480, d4.size() - 1480, false}, 78));
    EXPECT_EQ(sink.l4.size(), 2u);
}

TEST_F(FragTest, Fragments_AGuestsIpv6FragmentsReachTheNatWhole) {
    input(dad_probe_frame(kGuestMac, kGuest6));  // its address, by the guard
    input(frag6(d6, {0, 1448, true}));
    input(frag6(d6, {1448, d6.size() - 1448, false}));
    ASSERT_EQ(sink.l4.size(), 1u);
    EXPECT_EQ(sink.l4[0], d6);
    EXPECT_EQ(sink.src[0], kGuest6);
}

TEST_F(FragTest, Fragments_OverlapsDropTheWholeDatagram) {
    // RFC 5722: the second fragment rewrites bytes of the first.
    input(frag4(d4, {0, 1480, true}));
    input(frag4(d4, {1472, d4.size() - 1472, false}));
    EXPECT_EQ(gw->reassembly_stats().dropped_overlap, 1u);
    // What remains cannot complete it: the datagram is gone.
    input(frag4(d4, {1480, d4.size() - 1480, false}));
    EXPECT_TRUE(sink.l4.empty());
    input(dad_probe_frame(kGuestMac, kGuest6));
    input(frag6(d6, {0, 1448, true}));
    input(frag6(d6, {8, 1448, true}));
    EXPECT_EQ(gw->reassembly_stats().dropped_overlap, 2u);
}

TEST_F(FragTest, Fragments_BadLengthsAndEndsAreRefused) {
    input(frag4(d4, {0, 1001, true}));  // not the last, yet not a multiple of 8
    EXPECT_EQ(gw->reassembly_stats().dropped_invalid, 1u);
    std::vector<uint8_t> big(65600);
    input(frag4(big, {65528, 16, false}));  // past 65535 bytes
    EXPECT_EQ(gw->reassembly_stats().dropped_invalid, 2u);
    input(frag4(d4, {2960, d4.size() - 2960, false}));
    input(frag4(d4, {1480, 1480, false}));  // a second, different end
    EXPECT_EQ(gw->reassembly_stats().dropped_invalid, 3u);
    EXPECT_TRUE(sink.l4.empty());
    EXPECT_EQ(gw->reassembly_stats().fragments, 4u);
}

TEST_F(FragTest, Fragments_AnAttachmentHoldsAtMostItsQuotaOfDatagrams) {
    // Many first fragments that never complete, from one attachment.
    for (uint16_t id = 1; id <= 40; id++) input(frag4(d4, {0, 1480, true}, id));
    size_t held = gw->reassembly_stats().fragments - gw->reassembly_stats().dropped_limit;
    EXPECT_EQ(held, gw::Reassembler::kPerPort);
    // Another attachment still gets its datagrams through.
    const wire::MacAddr mac2{{0x02, 0, 0, 0, 0, 2}};
    auto f1 = frag4(d4, {0, 1480, true}, 9);
    auto f2 = frag4(d4, {1480, d4.size() - 1480, false}, 9);
    for (auto* f : {&f1, &f2}) {
        mac2.store(f->data() + 6);
        // its own address
        wire::store32(f->data() + 14 + 12, 0x0a000210);
        wire::store16(f->data() + 14 + 10, 0);
        wire::store16(f->data() + 14 + 10,
                      wire::csum_fold(wire::csum_partial(wire::Bytes(f->data() + 14, 20))));
    }
    // (the UDP checksum covers the source address: this datagram is not
    // the guest's d4 any more, so only its arrival is checked)
    input(f1, &other);
    input(f2, &other);
    EXPECT_EQ(gw->reassembly_stats().reassembled, 1u);
}

TEST_F(FragTest, Fragments_TooManyPiecesDropTheDatagram) {
    std::vector<uint8_t> d(8 * (gw::Reassembler::kMaxPieces + 2));
    for (size_t i = 0; i <= gw::Reassembler::kMaxPieces; i++) input(frag4(d, {i * 8, 8, true}));
    EXPECT_EQ(gw->reassembly_stats().dropped_limit, 1u);
}

// A datagram not complete in time: ICMP time exceeded, code 1 (fragment
// reassembly), quoting its first fragment; none when the first fragment
// never came (RFC 792, RFC 8200 4.5).
TEST_F(FragTest, Fragments_ADatagramThatRunsOutOfTimeIsReportedWithCode1) {
    gw->learn_neighbor(kGuestIp, kGuestMac, 1500);
    input(frag4(d4, {0, 1480, true}, 51));        // fragment zero, never completed
    input(frag4(d4, {1480, 1480, true}, 52));     // no fragment zero
    input(frag6(d6, {0, 1448, true}, 61));
    // The frames that are ICMP time exceeded (router advertisements come too).
    auto errors = [&] {
        std::vector<std::vector<uint8_t>> out;
        for (const auto& f : guest.frames) {
            if (auto v4 = wire::Ipv4View::parse(wire::Bytes(f).subspan(14));
                v4 && v4->protocol() == wire::ipproto::icmp &&
                v4->payload()[0] == wire::icmptype::time_exceeded)
                out.push_back(f);
            if (auto v6 = wire::Ipv6View::parse(wire::Bytes(f).subspan(14));
                v6 && v6->protocol() == wire::ipproto::icmpv6 &&
                v6->payload()[0] == wire::icmp6type::time_exceeded)
                out.push_back(f);
        }
        return out;
    };
    guest.frames.clear();
    loop.advance_clock_for_tests(gw::Reassembler::kTimeout4Ms + 1);
    loop.run_once(0);
    auto e4 = errors();
    ASSERT_EQ(e4.size(), 1u);  // the IPv4 one only, so far
    auto ip = wire::Ipv4View::parse(wire::Bytes(e4[0]).subspan(14));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->protocol(), wire::ipproto::icmp);
    EXPECT_EQ(ip->dst(), kGuestIp);
    auto icmp = ip->payload();
    EXPECT_EQ(icmp[0], wire::icmptype::time_exceeded);
    EXPECT_EQ(icmp[1], 1);
    ASSERT_EQ(icmp.size(), 8u + 20u + 8u);  // the first fragment's header and 8 bytes
    EXPECT_EQ(wire::load16(icmp.data() + 8 + 4), 51);  // its id
    EXPECT_EQ(wire::load16(icmp.data() + 8 + 6), 0x2000);  // MF, offset 0
    EXPECT_EQ(gw->reassembly_stats().dropped_timeout, 2u);

    guest.frames.clear();
    loop.advance_clock_for_tests(gw::Reassembler::kTimeout6Ms);
    loop.run_once(0);
    auto e6 = errors();
    ASSERT_EQ(e6.size(), 1u);
    auto ip6 = wire::Ipv6View::parse(wire::Bytes(e6[0]).subspan(14));
    ASSERT_TRUE(ip6);
    EXPECT_EQ(ip6->protocol(), wire::ipproto::icmpv6);
    EXPECT_EQ(ip6->dst_addr(), kGuest6);
    auto icmp6 = ip6->payload();
    EXPECT_EQ(icmp6[0], wire::icmp6type::time_exceeded);
    EXPECT_EQ(icmp6[1], 1);
    // The quote: the first fragment's IPv6 header and fragment header (id 61).
    ASSERT_GE(icmp6.size(), 8u + 48u);
    EXPECT_EQ(icmp6[8 + 6], wire::ipproto::ipv6_frag);
    EXPECT_EQ(wire::load32(icmp6.data() + 8 + 40 + 4), 61u);
    EXPECT_EQ(gw->reassembly_stats().dropped_timeout, 3u);
    EXPECT_EQ(gw->reassembly_stats().fragments, 3u);
}

// The frames a guest port received, put back together by a Reassembler of
// its own (as the guest's IP layer would).
template <class View>
std::optional<std::vector<uint8_t>> reassemble(const CapturePort& p, size_t* count) {
    gw::Reassembler r;
    *count = 0;
    for (const auto& f : p.frames) {
        auto ip = View::parse(wire::Bytes(f).subspan(14));
        if (!ip) continue;
        EXPECT_LE(f.size() - 14, p.mtu());
        EXPECT_TRUE(ip->is_fragment());
        ++*count;
        if (auto whole = r.add(*ip, 1, 0)) {
            auto v = View::parse(*whole);
            return std::vector<uint8_t>(v->payload().begin(), v->payload().end());
        }
    }
    return std::nullopt;
}

TEST_F(FragTest, Fragments_ADatagramLargerThanTheGuestsMtuGoesAsIpv4Fragments) {
    guest.mtu_value = 1400;
    gw->learn_neighbor(kGuestIp, kGuestMac, guest.mtu(), guest.id());
    std::vector<uint8_t> d = udp_datagram(kRemote4, wire::IpAddr::v4(kGuestIp), 4000);
    std::memcpy(gw->tx_l4(), d.data(), d.size());
    ASSERT_TRUE(gw->send_ip(kRemote4, wire::IpAddr::v4(kGuestIp), wire::ipproto::udp, d.size()));
    size_t n = 0;
    auto whole = reassemble<wire::Ipv4View>(guest, &n);
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, d);
    EXPECT_EQ(n, 3u);  // 1376 + 1376 + 1256 bytes
    EXPECT_EQ(gw->gw_stats().fragments_sent, 3u);
}

TEST_F(FragTest, Fragments_ADatagramLargerThanTheGuestsMtuGoesAsIpv6Fragments) {
    guest.mtu_value = 1280;
    input(dad_probe_frame(kGuestMac, kGuest6));
    std::vector<uint8_t> d = udp_datagram(kRemote6, kGuest6, 5000);
    std::memcpy(gw->tx_l4(), d.data(), d.size());
    ASSERT_TRUE(gw->send_ip(kRemote6, kGuest6, wire::ipproto::udp, d.size()));
    size_t n = 0;
    auto whole = reassemble<wire::Ipv6View>(guest, &n);
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, d);
    EXPECT_EQ(n, 5u);  // 1232 bytes each, the last 80
}

}  // namespace
}  // namespace usernet::testing
