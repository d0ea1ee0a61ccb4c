// IPv6 headers and their extension header chains, ICMPv6 and neighbor
// discovery: real frames of a Linux guest, and chains built to lie.
#include "wire/ipv6.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_frames6.hpp"
#include "test_util.hpp"
#include "wire/icmp6.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

namespace {

const MacAddr kGuestMac{{0x92, 0x5a, 0x6a, 0x71, 0x2b, 0xbe}};
const IpAddr kGuestLl = *IpAddr::parse("fe80::905a:6aff:fe71:2bbe");
const IpAddr kGuestGlobal = *IpAddr::parse("fec0::905a:6aff:fe71:2bbe");

template <size_t N>
Bytes ip6_of(const std::array<uint8_t, N>& f) {
    return Bytes(f.data() + kEth, N - kEth);
}

// A packet whose extension headers are given as (type, bytes) in order,
// ending in `last` with an 8-byte payload.
[[gnu::noinline]] std::vector<uint8_t> chain(const std::vector<std::pair<uint8_t, std::vector<uint8_t>>>& hdrs,
                           uint8_t last) {
    size_t n = 8;
    for (const auto& h : hdrs) n += h.second.size();
    std::vector<uint8_t> body(n, 0xab);
    size_t at = 0;
    for (size_t i = 0; i < hdrs.size(); i++) {
        std::copy(hdrs[i].second.begin(), hdrs[i].second.end(), body.begin() + at);
        body[at] = i + 1 < hdrs.size() ? hdrs[i + 1].first : last;
        at += hdrs[i].second.size();
    }
    std::vector<uint8_t> p(kIpv6HeaderLen + body.size());
    build_ipv6(p.data(), kGuestGlobal, *IpAddr::parse("2001:db8::1"),
               hdrs.empty() ? last : hdrs[0].first, body.size());
    std::copy(body.begin(), body.end(), p.begin() + kIpv6HeaderLen);
    return p;
}

// (Not inlined: g++ 12 at -O3 warns falsely about the vector's bounds.)
[[gnu::noinline]] std::vector<uint8_t> opts8(std::initializer_list<uint8_t> tlvs) {
    std::vector<uint8_t> h((2 + tlvs.size() + 7) / 8 * 8, 0);  // the rest: Pad1s
    std::copy(tlvs.begin(), tlvs.end(), h.begin() + 2);
    h[1] = static_cast<uint8_t>(h.size() / 8 - 1);
    return h;
}

}  // namespace

TEST(Ipv6View, WalksTheHopByHopHeaderOfARealMldReport) {
    auto ip = Ipv6View::parse(ip6_of(kMld2ReportUnspecified));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->src_addr().is_unspecified());
    EXPECT_EQ(ip->dst_addr(), *IpAddr::parse("ff02::16"));
    EXPECT_EQ(ip->hop_limit(), 1);
    EXPECT_TRUE(ip->has_hop_by_hop());
    EXPECT_TRUE(ip->router_alert());
    EXPECT_FALSE(ip->discard());
    EXPECT_EQ(ip->ext_headers(), 1u);
    EXPECT_EQ(ip->header_len(), 48u);
    EXPECT_EQ(ip->protocol(), ipproto::icmpv6);
    auto icmp = Icmp6View::parse(ip->payload());
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), icmp6type::mld2_report);
    EXPECT_TRUE(icmp->checksum_ok(ip->src_addr(), ip->dst_addr()));
}

TEST(Ipv6View, ReadsARealDuplicateAddressDetectionProbe) {
    auto ip = Ipv6View::parse(ip6_of(kNsDad));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->src_addr().is_unspecified());
    EXPECT_EQ(ip->dst_addr(), solicited_node(kGuestLl));
    EXPECT_EQ(ip->hop_limit(), 255);
    EXPECT_EQ(ip->ext_headers(), 0u);
    auto icmp = Icmp6View::parse(ip->payload());
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), icmp6type::neighbor_solicit);
    EXPECT_EQ(icmp->nd_target(), kGuestLl);
    EXPECT_TRUE(icmp->checksum_ok(ip->src_addr(), ip->dst_addr()));
    auto opts = NdpOptions::parse(icmp->body());
    ASSERT_TRUE(opts);
    EXPECT_FALSE(opts->find(ndopt::source_lla));  // none from :: (RFC 4861 7.1.1)
}

TEST(Ipv6View, ReadsTheSourceLinkLayerAddressOfARealRouterSolicitation) {
    auto ip = Ipv6View::parse(ip6_of(kRouterSolicit));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->src_addr(), kGuestLl);
    EXPECT_EQ(ip->dst_addr(), *IpAddr::parse("ff02::2"));
    auto icmp = Icmp6View::parse(ip->payload());
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), icmp6type::router_solicit);
    EXPECT_TRUE(icmp->checksum_ok(ip->src_addr(), ip->dst_addr()));
    auto opts = NdpOptions::parse(icmp->body());
    ASSERT_TRUE(opts);
    EXPECT_EQ(opts->lla(ndopt::source_lla), kGuestMac);
}

TEST(Ipv6View, ReadsARealNeighborSolicitationForTheGateway) {
    auto ip = Ipv6View::parse(ip6_of(kNsForGateway));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->src_addr(), kGuestGlobal);
    auto icmp = Icmp6View::parse(ip->payload());
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->nd_target(), *IpAddr::parse("fec0::2"));
    EXPECT_EQ(ip->dst_addr(), solicited_node(icmp->nd_target()));
    auto opts = NdpOptions::parse(icmp->body());
    ASSERT_TRUE(opts);
    EXPECT_EQ(opts->lla(ndopt::source_lla), kGuestMac);
    EXPECT_FALSE(opts->lla(ndopt::target_lla));
}

TEST(Ipv6View, ChecksumOfARealEchoRequestCoversThePseudoHeader) {
    auto ip = Ipv6View::parse(ip6_of(kEcho6Request));
    ASSERT_TRUE(ip);
    auto icmp = Icmp6View::parse(ip->payload());
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), icmp6type::echo_request);
    EXPECT_TRUE(icmp->checksum_ok(ip->src_addr(), ip->dst_addr()));
    // The same message from another source fails: the pseudo-header counts.
    EXPECT_FALSE(icmp->checksum_ok(kGuestLl, ip->dst_addr()));
    std::vector<uint8_t> f(kEcho6Request.begin(), kEcho6Request.end());
    f.back() ^= 1;
    auto ip2 = Ipv6View::parse(Bytes(f.data() + kEth, f.size() - kEth));
    auto icmp2 = Icmp6View::parse(ip2->payload());
    EXPECT_FALSE(icmp2->checksum_ok(ip2->src_addr(), ip2->dst_addr()));
}

TEST(Ipv6View, TrimsEthernetPaddingAndRefusesAPayloadLongerThanTheFrame) {
    auto p = chain({}, ipproto::udp);
    std::vector<uint8_t> padded = p;
    padded.resize(p.size() + 10, 0);
    auto ip = Ipv6View::parse(bytes(padded));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->total_len(), p.size());
    EXPECT_EQ(ip->payload().size(), 8u);
    std::vector<uint8_t> cut(p.begin(), p.end() - 1);
    EXPECT_FALSE(Ipv6View::parse(bytes(cut)));
    EXPECT_FALSE(Ipv6View::parse(Bytes(p.data(), 39)));
    p[0] = 0x45;  // version 4
    EXPECT_FALSE(Ipv6View::parse(bytes(p)));
}

TEST(Ipv6View, WalksDestinationOptionsRoutingAndAuthenticationHeaders) {
    std::vector<uint8_t> ah(16, 0);
    ah[1] = 2;  // (2 + 2) * 4 = 16 bytes
    std::vector<uint8_t> rh{0, 0, 4, 0, 0, 0, 0, 0};  // segments left 0
    auto p = chain({{ipproto::ipv6_dstopts, opts8({1, 2, 0, 0})},
                    {ipproto::ipv6_route, rh},
                    {ipproto::ah, ah}},
                   ipproto::tcp);
    auto ip = Ipv6View::parse(bytes(p));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->ext_headers(), 3u);
    EXPECT_EQ(ip->header_len(), 40u + 8 + 8 + 16);
    EXPECT_EQ(ip->protocol(), ipproto::tcp);
    EXPECT_EQ(ip->payload().size(), 8u);
    EXPECT_FALSE(ip->routing_pending());
    EXPECT_FALSE(ip->discard());
}

TEST(Ipv6View, EspAndNoNextHeaderEndTheWalk) {
    auto esp = Ipv6View::parse(bytes(chain({{ipproto::ipv6_dstopts, opts8({})}}, ipproto::esp)));
    ASSERT_TRUE(esp);
    EXPECT_EQ(esp->protocol(), ipproto::esp);
    EXPECT_EQ(esp->header_len(), 48u);
    auto none = Ipv6View::parse(bytes(chain({}, ipproto::ipv6_nonxt)));
    ASSERT_TRUE(none);
    EXPECT_EQ(none->protocol(), ipproto::ipv6_nonxt);
}

TEST(Ipv6View, AChainLongerThanTheLimitIsMalformed) {
    std::vector<std::pair<uint8_t, std::vector<uint8_t>>> hdrs;
    for (size_t i = 0; i < kMaxExtHeaders; i++) hdrs.push_back({ipproto::ipv6_dstopts, opts8({})});
    EXPECT_TRUE(Ipv6View::parse(bytes(chain(hdrs, ipproto::udp))));
    hdrs.push_back({ipproto::ipv6_dstopts, opts8({})});
    EXPECT_FALSE(Ipv6View::parse(bytes(chain(hdrs, ipproto::udp))));
}

TEST(Ipv6View, AHeaderRunningPastThePacketIsMalformed) {
    auto p = chain({{ipproto::ipv6_dstopts, opts8({})}}, ipproto::udp);
    p[kIpv6HeaderLen + 1] = 5;  // claims 48 bytes; 16 follow
    EXPECT_FALSE(Ipv6View::parse(bytes(p)));
    // A next header that promises an extension header where only 4 bytes are.
    std::vector<uint8_t> q(kIpv6HeaderLen + 4, 0);
    build_ipv6(q.data(), kGuestGlobal, kGuestLl, ipproto::ipv6_frag, 4);
    EXPECT_FALSE(Ipv6View::parse(bytes(q)));
}

TEST(Ipv6View, HopByHopAnywhereButFirstEndsTheWalkWithAParameterProblem) {
    auto p = chain({{ipproto::ipv6_dstopts, opts8({})}, {ipproto::ipv6_hopopts, opts8({})}},
                   ipproto::udp);
    auto ip = Ipv6View::parse(bytes(p));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->misplaced_hop_by_hop());
    EXPECT_FALSE(ip->has_hop_by_hop());
    EXPECT_TRUE(ip->discard());
    EXPECT_EQ(ip->protocol(), ipproto::ipv6_hopopts);
    EXPECT_EQ(ip->header_len(), kIpv6HeaderLen + 8);
    // RFC 8200 4.1, as Linux answers it: code 1, at the destination
    // options header's next header field, the one naming hop-by-hop.
    ASSERT_TRUE(ip->problem());
    EXPECT_EQ(ip->problem()->code, 1);
    EXPECT_EQ(ip->problem()->pointer, kIpv6HeaderLen);
    // Right after the fixed header it is where it belongs.
    auto first = Ipv6View::parse(bytes(chain({{ipproto::ipv6_hopopts, opts8({})}}, ipproto::udp)));
    ASSERT_TRUE(first);
    EXPECT_FALSE(first->misplaced_hop_by_hop());
    EXPECT_FALSE(first->discard());
    EXPECT_EQ(first->protocol(), ipproto::udp);
}

TEST(Ipv6View, OptionsAreWalkedAndAnUnknownOneThatSaysDiscardMarksThePacket) {
    // Unknown type 0x1e (action 00: skip) passes; 0x5e (01: discard) marks.
    auto skip = Ipv6View::parse(bytes(chain({{ipproto::ipv6_dstopts, opts8({0x1e, 1, 0})}},
                                            ipproto::udp)));
    ASSERT_TRUE(skip);
    EXPECT_FALSE(skip->discard());
    auto drop = Ipv6View::parse(bytes(chain({{ipproto::ipv6_hopopts, opts8({0x5e, 1, 0})}},
                                            ipproto::udp)));
    ASSERT_TRUE(drop);
    EXPECT_TRUE(drop->discard());
    // An option whose length runs past its header is malformed.
    auto p = chain({{ipproto::ipv6_dstopts, opts8({1, 2, 0, 0})}}, ipproto::udp);
    p[kIpv6HeaderLen + 3] = 9;
    EXPECT_FALSE(Ipv6View::parse(bytes(p)));
}

TEST(Ipv6View, ARoutingHeaderWithSegmentsLeftIsFlagged) {
    std::vector<uint8_t> rh{0, 0, 4, 1, 0, 0, 0, 0};
    auto ip = Ipv6View::parse(bytes(chain({{ipproto::ipv6_route, rh}}, ipproto::udp)));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->routing_pending());
    EXPECT_TRUE(ip->discard());
    // RFC 8200 4.4 (RFC 5095 for type 0): Parameter Problem, code 0,
    // pointing at the routing type, the third byte of the header.
    ASSERT_TRUE(ip->problem());
    EXPECT_EQ(ip->problem()->code, 0);
    EXPECT_EQ(ip->problem()->pointer, kIpv6HeaderLen + 2);
    // With no segments left the header is ignored (RFC 8200 4.4).
    rh[3] = 0;
    auto done = Ipv6View::parse(bytes(chain({{ipproto::ipv6_route, rh}}, ipproto::udp)));
    ASSERT_TRUE(done);
    EXPECT_FALSE(done->discard());
    EXPECT_FALSE(done->problem());
    EXPECT_EQ(done->protocol(), ipproto::udp);
}

TEST(Ipv6View, AnUnknownOptionSaysWhetherAParameterProblemIsDue) {
    // Action 01 (0x5e): discard silently. 10 (0x9e): discard and report,
    // whatever the destination. 11 (0xde): report unless it is multicast.
    auto silent = Ipv6View::parse(bytes(chain({{ipproto::ipv6_dstopts, opts8({0x5e, 1, 0})}},
                                              ipproto::udp)));
    ASSERT_TRUE(silent);
    EXPECT_TRUE(silent->discard());
    EXPECT_FALSE(silent->problem());
    // The option sits after the Pad1 in the second header: 40 + 8 + 2 + 1.
    auto p = chain({{ipproto::ipv6_hopopts, opts8({})}, {ipproto::ipv6_dstopts, opts8({0, 0x9e, 1, 0})}},
                   ipproto::udp);
    auto said = Ipv6View::parse(bytes(p));
    ASSERT_TRUE(said);
    ASSERT_TRUE(said->problem());
    EXPECT_EQ(said->problem()->code, 2);
    EXPECT_EQ(said->problem()->pointer, kIpv6HeaderLen + 8 + 2 + 1);
    auto q = chain({{ipproto::ipv6_dstopts, opts8({0xde, 1, 0})}}, ipproto::udp);
    ASSERT_TRUE(Ipv6View::parse(bytes(q))->problem());
    q[24] = 0xff;  // a multicast destination
    auto mc = Ipv6View::parse(bytes(q));
    ASSERT_TRUE(mc);
    EXPECT_TRUE(mc->discard());
    EXPECT_FALSE(mc->problem());
    q[kIpv6HeaderLen + 2] = 0x9e;
    EXPECT_TRUE(Ipv6View::parse(bytes(q))->problem());
}

TEST(Ipv6View, OnlyTheFirstHeaderToDiscardForIsReported) {
    // A silent discard first: a receiver stops there and says nothing of
    // the routing header after it.
    std::vector<uint8_t> rh{0, 0, 0, 1, 0, 0, 0, 0};
    auto ip = Ipv6View::parse(bytes(chain(
        {{ipproto::ipv6_dstopts, opts8({0x5e, 1, 0})}, {ipproto::ipv6_route, rh}}, ipproto::udp)));
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->discard());
    EXPECT_FALSE(ip->problem());
    // The routing header first: it is the one reported.
    auto r = Ipv6View::parse(bytes(chain(
        {{ipproto::ipv6_route, rh}, {ipproto::ipv6_dstopts, opts8({0x9e, 1, 0})}}, ipproto::udp)));
    ASSERT_TRUE(r && r->problem());
    EXPECT_EQ(r->problem()->code, 0);
    EXPECT_EQ(r->problem()->pointer, kIpv6HeaderLen + 2);
}

TEST(Ipv6View, FragmentsStopTheWalkAndAtomicFragmentsDoNot) {
    std::vector<uint8_t> first{0, 0, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78};  // offset 0, M
    auto f1 = Ipv6View::parse(bytes(chain({{ipproto::ipv6_frag, first}}, ipproto::udp)));
    ASSERT_TRUE(f1);
    EXPECT_TRUE(f1->is_fragment());
    EXPECT_TRUE(f1->more_fragments());
    EXPECT_EQ(f1->frag_offset(), 0);
    EXPECT_EQ(f1->frag_id(), 0x12345678u);
    EXPECT_EQ(f1->protocol(), ipproto::udp);
    // A later fragment: what follows is data, even if it looks like a header.
    std::vector<uint8_t> later{0, 0, 0x00, 0xa8, 0, 0, 0, 1};  // offset 21 (168 bytes)
    auto f2 = Ipv6View::parse(bytes(chain({{ipproto::ipv6_frag, later}}, ipproto::ipv6_dstopts)));
    ASSERT_TRUE(f2);
    EXPECT_TRUE(f2->is_fragment());
    EXPECT_EQ(f2->frag_offset(), 21);
    EXPECT_EQ(f2->protocol(), ipproto::ipv6_dstopts);
    EXPECT_EQ(f2->header_len(), 48u);
    std::vector<uint8_t> atomic{0, 0, 0, 0, 0, 0, 0, 9};
    auto a = Ipv6View::parse(bytes(chain({{ipproto::ipv6_frag, atomic}}, ipproto::udp)));
    ASSERT_TRUE(a);
    EXPECT_FALSE(a->is_fragment());
    EXPECT_EQ(a->protocol(), ipproto::udp);
}

TEST(NdpOptions, AZeroLengthOrOverlongOptionMakesTheMessageMalformed) {
    std::vector<uint8_t> ok{1, 1, 1, 2, 3, 4, 5, 6};
    EXPECT_TRUE(NdpOptions::parse(bytes(ok)));
    std::vector<uint8_t> zero{1, 0, 1, 2, 3, 4, 5, 6};
    EXPECT_FALSE(NdpOptions::parse(bytes(zero)));
    std::vector<uint8_t> longer{1, 2, 1, 2, 3, 4, 5, 6};
    EXPECT_FALSE(NdpOptions::parse(bytes(longer)));
    std::vector<uint8_t> odd{1};
    EXPECT_FALSE(NdpOptions::parse(bytes(odd)));
    // A link-layer option of another size is not an Ethernet address.
    std::vector<uint8_t> wide{1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    auto o = NdpOptions::parse(bytes(wide));
    ASSERT_TRUE(o);
    EXPECT_FALSE(o->lla(ndopt::source_lla));
}

TEST(Icmp6View, EachTypeNeedsItsFixedPart) {
    std::vector<uint8_t> ns(23, 0);
    ns[0] = icmp6type::neighbor_solicit;
    EXPECT_FALSE(Icmp6View::parse(bytes(ns)));
    ns.push_back(0);
    EXPECT_TRUE(Icmp6View::parse(bytes(ns)));
    std::vector<uint8_t> echo{icmp6type::echo_request, 0, 0, 0, 0, 0, 0};
    EXPECT_FALSE(Icmp6View::parse(bytes(echo)));
    std::vector<uint8_t> other{icmp6type::mld2_report, 0, 0, 0};
    EXPECT_TRUE(Icmp6View::parse(bytes(other)));
    EXPECT_FALSE(Icmp6View::parse(Bytes(other.data(), 3)));
}

TEST(Ipv6Addresses, SolicitedNodeMulticastMacAndLinkLocal) {
    EXPECT_EQ(solicited_node(*IpAddr::parse("fec0::2")), *IpAddr::parse("ff02::1:ff00:2"));
    EXPECT_EQ(multicast_mac(*IpAddr::parse("ff02::1:ff71:2bbe")),
              (MacAddr{{0x33, 0x33, 0xff, 0x71, 0x2b, 0xbe}}));
    EXPECT_EQ(link_local_of(MacAddr{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}}),
              *IpAddr::parse("fe80::5055:aff:fe00:202"));
    EXPECT_EQ(link_local_of(kGuestMac), kGuestLl);
    EXPECT_TRUE(is_v6_link_local(kGuestLl));
    EXPECT_FALSE(is_v6_link_local(kGuestGlobal));
    EXPECT_TRUE(is_v6_multicast(*IpAddr::parse("ff02::16")));
    EXPECT_FALSE(is_v6_multicast(IpAddr::v4(0xe0000001)));
}
