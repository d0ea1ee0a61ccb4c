// UdpNat and Forwarder against real host sockets on 127.0.0.1: the guest
// side is frames through a real switch and gateway.
#include "nat/udp_nat.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <thread>

#include "nat/forward.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/tcp_nat.hpp"
#include "nat_harness.hpp"
#include "wire/tcp.hpp"

namespace usernet::testing {
namespace {

using nat::ForwardSpec;

struct Server {
    int fd = udp_socket_on_loopback();
    uint16_t port = local_port(fd);
    ~Server() { close(fd); }
};

// Receives one datagram on s (2 s at most) and sends `reply` back to its source.
sockaddr_in echo_once(const Server& s, std::string* got = nullptr, const char* reply = "pong") {
    char buf[2048];
    sockaddr_in from{};
    ssize_t n = recv_wait(s.fd, buf, sizeof buf, &from);
    EXPECT_GT(n, 0) << "nothing reached the server";
    if (got && n > 0) got->assign(buf, static_cast<size_t>(n));
    sendto(s.fd, reply, std::strlen(reply), 0, reinterpret_cast<sockaddr*>(&from), sizeof from);
    return from;
}

TEST(UdpNat, UdpNat_GatewayAddressReachesHostLoopbackAndTheReplyComesFromTheGateway) {
    NatHarness h;
    Server srv;
    h.input(udp_frame(kGuestIp, kGatewayIp, 40000, srv.port, bytes("ping")));
    std::string got;
    sockaddr_in from = echo_once(srv, &got);
    EXPECT_EQ(got, "ping");
    EXPECT_EQ(ntohl(from.sin_addr.s_addr), kLoopback);
    ASSERT_TRUE(h.run_until([&] { return h.got(wire::ipproto::udp); }));
    auto f = *h.first_of(wire::ipproto::udp);
    EXPECT_EQ(f.src, kGatewayIp);
    EXPECT_EQ(f.dst, kGuestIp);
    auto udp = wire::UdpView::parse(f.l4);
    ASSERT_TRUE(udp);
    EXPECT_EQ(udp->src_port(), srv.port);
    EXPECT_EQ(udp->dst_port(), 40000);
    EXPECT_TRUE(udp->checksum_ok(wire::IpAddr::v4(f.src), wire::IpAddr::v4(f.dst)));
    EXPECT_EQ(std::string(udp->payload().begin(), udp->payload().end()), "pong");
    EXPECT_EQ(h.nat->udp().stats().to_host, 1u);
    EXPECT_EQ(h.nat->udp().stats().to_guest, 1u);
    EXPECT_EQ(h.nat->udp().flow_count(), 1u);
}

TEST(UdpNat, UdpNat_OneHostPortForEveryDestinationOfAGuestPort) {
    NatHarness h;
    Server a, b;
    h.input(udp_frame(kGuestIp, kGatewayIp, 40001, a.port, bytes("1")));
    h.input(udp_frame(kGuestIp, kGatewayIp, 40001, b.port, bytes("2")));
    sockaddr_in fa = echo_once(a), fb = echo_once(b);
    EXPECT_EQ(fa.sin_port, fb.sin_port);  // endpoint-independent mapping
    EXPECT_EQ(h.nat->udp().flow_count(), 1u);
    // Another guest port is another flow, with its own host port.
    h.input(udp_frame(kGuestIp, kGatewayIp, 40002, a.port, bytes("3")));
    sockaddr_in fc = echo_once(a);
    EXPECT_NE(fc.sin_port, fa.sin_port);
    EXPECT_EQ(h.nat->udp().flow_count(), 2u);
    // Both replies of the first flow reach the guest from their own ports.
    ASSERT_TRUE(h.run_until([&] { return h.ip_frames().size() >= 3; }));
    std::set<uint16_t> sports;
    for (auto& f : h.ip_frames()) sports.insert(wire::UdpView::parse(f.l4)->src_port());
    EXPECT_EQ(sports, (std::set<uint16_t>{a.port, b.port}));
}

TEST(UdpNat, UdpNat_ClosedHostPortBecomesIcmpPortUnreachableQuotingTheDatagram) {
    NatHarness h;
    const uint16_t closed = free_port(SOCK_DGRAM);
    h.input(udp_frame(kGuestIp, kGatewayIp, 40003, closed, bytes("anyone?")));
    ASSERT_TRUE(h.run_until([&] { return h.got(wire::ipproto::icmp); }));
    auto f = *h.first_of(wire::ipproto::icmp);
    EXPECT_EQ(f.src, kGatewayIp);
    EXPECT_EQ(f.dst, kGuestIp);
    auto icmp = wire::Icmp4View::parse(f.l4);
    ASSERT_TRUE(icmp);
    EXPECT_TRUE(icmp->checksum_ok());
    EXPECT_EQ(icmp->type(), wire::icmptype::dest_unreach);
    EXPECT_EQ(icmp->code(), wire::icmpcode::port_unreach);
    // The quote: the guest's IP header and UDP header, as the guest sent them.
    wire::Bytes q = icmp->payload();
    ASSERT_GE(q.size(), 28u);
    EXPECT_EQ(q[9], wire::ipproto::udp);
    EXPECT_EQ(wire::load32(&q[12]), kGuestIp);
    EXPECT_EQ(wire::load32(&q[16]), kGatewayIp);
    EXPECT_EQ(wire::load16(&q[20]), 40003);
    EXPECT_EQ(wire::load16(&q[22]), closed);
    EXPECT_EQ(h.nat->udp().stats().icmp_errors, 1u);
    // The pending socket error does not eat the next datagram.
    Server srv;
    h.input(udp_frame(kGuestIp, kGatewayIp, 40003, srv.port, bytes("again")));
    std::string got;
    echo_once(srv, &got);
    EXPECT_EQ(got, "again");
}

TEST(UdpNat, UdpNat_BadChecksumIsDroppedAndCounted) {
    NatHarness h;
    Server srv;
    auto f = udp_frame(kGuestIp, kGatewayIp, 40004, srv.port, bytes("x"));
    f[34 + 6] ^= 0x5a;
    h.input(f);
    char buf[16];
    EXPECT_LT(recv_wait(srv.fd, buf, sizeof buf, nullptr, 100), 0);
    EXPECT_EQ(h.nat->udp().stats().dropped_checksum, 1u);
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);
    // A zero checksum means "none" over IPv4.
    auto g = udp_frame(kGuestIp, kGatewayIp, 40004, srv.port, bytes("y"));
    g[34 + 6] = g[34 + 7] = 0;
    h.input(g);
    EXPECT_GT(recv_wait(srv.fd, buf, sizeof buf, nullptr), 0);
}

// The packet the gateway would hand the NAT for frame f (an IPv4 frame).
gw::GuestPacket guest_packet(const std::vector<uint8_t>& f) {
    auto ip = *wire::Ipv4View::parse(wire::Bytes(f).subspan(14));
    gw::GuestPacket p;
    p.src = ip.src_addr();
    p.dst = ip.dst_addr();
    p.proto = ip.protocol();
    p.ttl = ip.ttl();
    p.ip_packet = ip.packet();
    p.l4 = ip.payload();
    p.src_mac = kGuestMac;
    return p;
}

TEST(UdpNat, UdpNat_BroadcastAndMulticastAreDroppedWithoutAnError) {
    NatHarness h;
    // (The gateway does not route these; the NAT refuses them all the same.)
    for (auto f : {udp_frame(kGuestIp, 0xffffffff, 40005, 9999, bytes("b")),
                   udp_frame(kGuestIp, 0x0a0002ff, 40005, 9999, bytes("b")),
                   udp_frame(kGuestIp, 0xe00000fb, 5353, 5353, bytes("m"))})
        h.nat->udp().from_guest(guest_packet(f));
    EXPECT_EQ(h.nat->udp().stats().dropped_broadcast, 3u);
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);
    EXPECT_FALSE(h.got(wire::ipproto::icmp));
}

TEST(UdpNat, UdpNat_UnmappedDestinationGetsHostUnreachableFromTheGateway) {
    NatHarness h;
    h.input(udp_frame(kGuestIp, 0x0a000263, 40006, 9999, bytes("u")));  // 10.0.2.99
    auto f = h.first_of(wire::ipproto::icmp);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->src, kGatewayIp);
    auto icmp = wire::Icmp4View::parse(f->l4);
    EXPECT_EQ(icmp->type(), wire::icmptype::dest_unreach);
    EXPECT_EQ(icmp->code(), wire::icmpcode::host_unreach);
    EXPECT_EQ(h.nat->udp().stats().dropped_unreachable, 1u);
}

TEST(UdpNat, UdpNat_ServiceAddressGetsPortUnreachableFromItself) {
    // A guest forward's or the SMB share's address exists (the gateway
    // answers ARP for it); a datagram to it finds no port there.
    const wire::Ipv4 svc = 0x0a000264;  // 10.0.2.100
    NatHarness h({}, true, [&](gw::NetConfig& c) { c.service_addrs.push_back(wire::IpAddr::v4(svc)); });
    h.input(udp_frame(kGuestIp, svc, 40006, 9999, bytes("u")));
    auto f = h.first_of(wire::ipproto::icmp);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->src, svc);
    auto icmp = wire::Icmp4View::parse(f->l4);
    EXPECT_EQ(icmp->type(), wire::icmptype::dest_unreach);
    EXPECT_EQ(icmp->code(), wire::icmpcode::port_unreach);
}

TEST(UdpNat, UdpNat_PerGuestLimitEvictsTheLeastRecentlyUsedFlow) {
    nat::NatLimits lim;
    lim.udp_flows_per_guest = 2;
    NatHarness h(lim);
    Server srv;
    for (uint16_t p : {41000, 41001, 41002}) {
        h.input(udp_frame(kGuestIp, kGatewayIp, p, srv.port, bytes("x")));
        echo_once(srv);
    }
    EXPECT_EQ(h.nat->udp().flow_count(), 2u);
    EXPECT_EQ(h.nat->udp().stats().flows_evicted, 1u);
    EXPECT_EQ(h.nat->udp().stats().flows_created, 3u);
}

TEST(UdpNat, UdpNat_IdleFlowsExpireAndDnsFlowsSooner) {
    nat::NatLimits lim;
    lim.udp_idle_ms = 300;
    lim.udp_dns_idle_ms = 60;
    NatHarness h(lim);
    Server srv;
    h.input(udp_frame(kGuestIp, kGatewayIp, 42000, srv.port, bytes("x")));
    h.input(udp_frame(kGuestIp, kGatewayIp, 42001, 53, bytes("dns")));
    EXPECT_EQ(h.nat->udp().flow_count(), 2u);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    h.loop.run_once(0);
    h.nat->udp().expire_idle();
    EXPECT_EQ(h.nat->udp().flow_count(), 1u);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    h.loop.run_once(0);
    h.nat->udp().expire_idle();
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);
    EXPECT_EQ(h.nat->udp().stats().flows_expired, 2u);
}

// --- forwards ----------------------------------------------------------------

ForwardSpec fwd(char proto, uint16_t host_port, uint16_t guest_port, bool with_guest = true) {
    ForwardSpec s;
    s.proto = proto;
    s.bind_addr = wire::IpAddr::v4(kLoopback);
    s.host_first = s.host_last = host_port;
    s.guest_first = s.guest_last = guest_port;
    if (with_guest) s.guest_addr = wire::IpAddr::v4(kGuestIp);
    return s;
}

TEST(UdpForward, UdpForward_DatagramReachesTheGuestAndTheReplyLeavesThroughTheListener) {
    NatHarness h;
    const uint16_t port = free_port(SOCK_DGRAM);
    h.nat->add_forward(fwd('u', port, 5353));
    int client = udp_socket_on_loopback();
    const uint16_t cport = local_port(client);
    sockaddr_in to = loopback_addr(port);
    sendto(client, "query", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    ASSERT_TRUE(h.run_until([&] { return h.got(wire::ipproto::udp); }));
    auto f = *h.first_of(wire::ipproto::udp);
    EXPECT_EQ(f.src, kGatewayIp);  // a loopback client appears as the gateway
    EXPECT_EQ(f.dst, kGuestIp);
    auto udp = wire::UdpView::parse(f.l4);
    EXPECT_EQ(udp->src_port(), cport);
    EXPECT_EQ(udp->dst_port(), 5353);
    EXPECT_EQ(h.nat->udp().forward_peer_count(), 1u);

    h.input(udp_frame(kGuestIp, kGatewayIp, 5353, cport, bytes("answer")));
    char buf[64];
    sockaddr_in from{};
    ssize_t n = recv_wait(client, buf, sizeof buf, &from);
    ASSERT_EQ(n, 6);
    EXPECT_EQ(std::string(buf, 6), "answer");
    EXPECT_EQ(ntohs(from.sin_port), port);  // from the port the client sent to
    EXPECT_EQ(h.nat->udp().stats().fwd_to_host, 1u);
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);  // no NAT flow was needed
    close(client);
}

TEST(UdpForward, UdpForward_AnIpv6GuestMayAnswerFromAnotherOfItsAddresses) {
    NatHarness h;
    const auto a1 = *wire::IpAddr::parse("fec0::f");
    const auto a2 = *wire::IpAddr::parse("fec0::5054:ff:fe12:3456");
    h.input(dad_probe_frame(kGuestMac, a1));
    h.input(dad_probe_frame(kGuestMac, a2));
    const uint16_t port = free_port(SOCK_DGRAM);
    ForwardSpec s = fwd('u', port, 5353);
    s.bind_addr = *wire::IpAddr::parse("::1");
    s.guest_addr = a1;
    h.nat->add_forward(s);
    int client = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_addr = in6addr_loopback;
    to.sin6_port = htons(port);
    ASSERT_EQ(sendto(client, "query", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 5);
    auto sent = [&] {
        for (const auto& f : h.guest.frames)
            if (f.size() > 54 + 8 && f[12] == 0x86 && f[13] == 0xdd && f[20] == wire::ipproto::udp)
                return true;
        return false;
    };
    ASSERT_TRUE(h.run_until(sent));
    sockaddr_in6 me{};
    socklen_t len = sizeof me;
    getsockname(client, reinterpret_cast<sockaddr*>(&me), &len);
    // The guest's server answers from its other address.
    h.input(udp6_frame(a2, *wire::IpAddr::parse("fec0::2"), 5353, ntohs(me.sin6_port),
                       bytes("answer")));
    char buf[64];
    sockaddr_in6 from{};
    socklen_t flen = sizeof from;
    pollfd pfd{client, POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 2000), 1);
    ASSERT_EQ(recvfrom(client, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen), 6);
    EXPECT_EQ(ntohs(from.sin6_port), port);  // through the forward's socket
    EXPECT_EQ(h.nat->udp().stats().fwd_to_host, 1u);
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);  // no NAT flow was needed
    close(client);
}

// An ARP request for ip among the frames sent toward the guest port.
bool arp_asked_for(const NatHarness& h, wire::Ipv4 ip) {
    for (const auto& f : h.guest.frames) {
        auto eth = wire::EthernetView::parse(f);
        if (eth && eth->ethertype() == wire::ethertype::arp && f.size() >= 42 &&
            wire::load32(&f[38]) == ip)
            return true;
    }
    return false;
}

TEST(UdpForward, UdpForward_WithNoGuestHeardFromItGoesToTheFirstDhcpAddress) {
    NatHarness h({}, /*learn_guest=*/false);
    const uint16_t port = free_port(SOCK_DGRAM);
    h.nat->add_forward(fwd('u', port, 5353, /*with_guest=*/false));
    int client = udp_socket_on_loopback();
    sockaddr_in to = loopback_addr(port);
    sendto(client, "q", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    // 10.0.2.15 (QEMU's hostfwd default) is asked for; this datagram is lost.
    ASSERT_TRUE(h.run_until([&] { return arp_asked_for(h, kGuestIp); }));
    EXPECT_EQ(h.nat->udp().stats().dropped_no_guest, 0u);
    close(client);
}

TEST(UdpForward, UdpForward_WithNoDhcpRangeAndNoGuestTheDatagramIsDropped) {
    NatHarness h({}, /*learn_guest=*/false);
    h.nat.reset();
    h.gw.reset();
    h.cfg.dhcp_count = 0;
    h.gw = std::make_unique<gw::Gateway>(h.loop, h.sw, h.cfg);
    h.nat.emplace(h.loop, *h.gw, nat::NatLimits{});
    h.gw->set_ip_sink(&*h.nat);
    const uint16_t port = free_port(SOCK_DGRAM);
    h.nat->add_forward(fwd('u', port, 5353, /*with_guest=*/false));
    int client = udp_socket_on_loopback();
    sockaddr_in to = loopback_addr(port);
    sendto(client, "q", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    ASSERT_TRUE(h.run_until([&] { return h.nat->udp().stats().dropped_no_guest == 1; }));
    close(client);
}

TEST(Forwarder, Forwarder_PeerAddressTheGuestSees) {
    NatHarness h;
    const auto guest = wire::IpAddr::v4(kGuestIp);
    const auto gw = wire::IpAddr::v4(kGatewayIp);
    auto p = [&](const char* a) {
        return nat::forward_peer_for_guest(*h.nat, *wire::IpAddr::parse(a), guest);
    };
    EXPECT_EQ(p("127.0.0.1"), gw);
    EXPECT_EQ(p("127.1.2.3"), gw);
    EXPECT_EQ(p("::1"), gw);
    EXPECT_EQ(p("192.0.2.7"), wire::IpAddr::v4(0xc0000207));  // keeps its own address
    EXPECT_EQ(p("::ffff:192.0.2.7"), wire::IpAddr::v4(0xc0000207));
    EXPECT_EQ(p("2001:db8::1"), gw);  // an IPv4 guest cannot answer IPv6
    EXPECT_EQ(p("10.0.2.99"), gw);    // the guest would look for it on its link
}

TEST(Forwarder, Forwarder_PeerAddressAnIpv6GuestSees) {
    NatHarness h;
    const auto guest = *wire::IpAddr::parse("fec0::15");
    const auto gw6 = *wire::IpAddr::parse("fec0::2");
    auto p = [&](const char* a) {
        return nat::forward_peer_for_guest(*h.nat, *wire::IpAddr::parse(a), guest);
    };
    EXPECT_EQ(p("::1"), gw6);
    EXPECT_EQ(p("127.0.0.1"), gw6);
    EXPECT_EQ(p("192.0.2.7"), gw6);  // an IPv6 guest cannot answer IPv4
    EXPECT_EQ(p("2001:db8::7"), *wire::IpAddr::parse("2001:db8::7"));
    EXPECT_EQ(p("fe80::1"), gw6);    // link-local: the host's link, not the guest's
    EXPECT_EQ(p("fec0::99"), gw6);   // the guest would look for it on its link
}

TEST(Forwarder, Forwarder_ATargetInTheClientsFamily) {
    NatHarness h;  // the guest has 10.0.2.15 at kGuestMac
    const auto v4 = wire::IpAddr::v4(kGuestIp);
    const auto c4 = *wire::IpAddr::parse("127.0.0.1");
    const auto c6 = *wire::IpAddr::parse("::1");
    // No IPv6 address known: IPv6 clients go to the IPv4 address.
    EXPECT_EQ(nat::forward_target_guest(*h.nat, std::nullopt, c6), v4);
    // Its duplicate address detection names the address it is about to use.
    const auto mine = *wire::IpAddr::parse("fec0::5054:ff:fe12:3456");
    h.input(dad_probe_frame(kGuestMac, mine));
    EXPECT_EQ(nat::forward_target_guest(*h.nat, std::nullopt, c6), mine);
    EXPECT_EQ(nat::forward_target_guest(*h.nat, std::nullopt, c4), v4);
    EXPECT_EQ(nat::forward_target_guest(*h.nat, v4, c6), mine);
    // Another guest's address is not this guest's.
    const wire::MacAddr other{{0x52, 0x54, 0, 0, 0, 0x77}};
    h.input(dad_probe_frame(other, *wire::IpAddr::parse("fec0::77")));
    EXPECT_EQ(nat::forward_target_guest(*h.nat, v4, c6), mine);
    // ... nor can it take one: a probe for a held address claims nothing.
    h.input(dad_probe_frame(other, mine));
    EXPECT_EQ(nat::forward_target_guest(*h.nat, v4, c6), mine);
}

TEST(Forwarder, Forwarder_AnIpv6OnlyGuestGetsIpv4ClientsToo) {
    NatHarness h(nat::NatLimits{}, /*learn_guest=*/false);
    const auto mine = *wire::IpAddr::parse("fec0::5054:ff:fe12:3456");
    h.input(dad_probe_frame(kGuestMac, mine));
    EXPECT_EQ(nat::forward_target_guest(*h.nat, std::nullopt, *wire::IpAddr::parse("127.0.0.1")),
              mine);
}

TEST(Forwarder, Forwarder_BindFailureNamesTheAddressAndTheReason) {
    NatHarness h;
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback_addr(0);
    ASSERT_EQ(bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(busy, 1), 0);
    const uint16_t port = local_port(busy);
    try {
        h.nat->add_forward(fwd('t', port, 80));
        ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "cannot listen on 127.0.0.1:" + std::to_string(port) +
                                             "/tcp: Address already in use");
    }
    close(busy);
}

TEST(Forwarder, Forwarder_RangeIsBoundAllOrNothing) {
    NatHarness h;
    // Find two adjacent free ports, then occupy the second.
    uint16_t base = 0;
    int busy = -1;
    for (int tries = 0; tries < 50 && busy < 0; tries++) {
        base = free_port(SOCK_DGRAM);
        if (base == 65535) continue;
        busy = udp_socket_on_loopback(static_cast<uint16_t>(base + 1));
    }
    ASSERT_GE(busy, 0);
    ForwardSpec s = fwd('u', base, 7000);
    s.host_last = static_cast<uint16_t>(base + 1);
    s.guest_last = 7001;
    EXPECT_THROW(h.nat->add_forward(s), std::runtime_error);
    // The first port was released again.
    int again = udp_socket_on_loopback(base);
    EXPECT_GE(again, 0);
    close(again);
    close(busy);
}

TEST(Forwarder, Forwarder_AllAddressesListensOnIpv4AndIpv6) {
    NatHarness h;
    nat::Forwarder fw(*h.nat);
    ForwardSpec s = fwd('t', free_port(SOCK_STREAM), 80);
    s.bind_addr.reset();
    fw.add(s);
    int v6 = socket(AF_INET6, SOCK_STREAM, 0);
    const size_t expect = v6 >= 0 ? 2 : 1;
    if (v6 >= 0) close(v6);
    EXPECT_GE(fw.listener_count(), 1u);
    EXPECT_LE(fw.listener_count(), expect);
}

// An explicit "::": both families (QEMU's hostfwd [::]), or IPv6 only when
// the spec says so (-t/-u's "::", as passt's), leaving IPv4's port free.
TEST(Forwarder, Forwarder_ExplicitAnyIpv6TakesIpv4UnlessIpv6Only) {
    for (bool v6only : {false, true}) {
        SCOPED_TRACE(v6only);
        NatHarness h;
        nat::Forwarder fw(*h.nat);
        const uint16_t port = free_port(SOCK_STREAM);
        ForwardSpec s = fwd('t', port, 80);
        s.bind_addr = *wire::IpAddr::parse("::");
        s.v6only = v6only;
        fw.add(s);
        int v4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        EXPECT_EQ(bind(v4, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, v6only);
        close(v4);
    }
}

TEST(Forwarder, Forwarder_TcpConnectionWithNoGuestHeardFromWaitsForTheFirstDhcpAddress) {
    NatHarness h({}, /*learn_guest=*/false);
    const uint16_t port = free_port(SOCK_STREAM);
    h.nat->add_forward(fwd('t', port, 80, /*with_guest=*/false));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in to = loopback_addr(port);
    ASSERT_EQ(connect(c, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    ASSERT_TRUE(h.run_until([&] { return arp_asked_for(h, kGuestIp); }));
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);  // the SYN will be retried
    // Once the guest is known, the retried SYN reaches it.
    h.gw->learn_neighbor(kGuestIp, kGuestMac, 1500);
    EXPECT_TRUE(h.run_until([&] { return h.got(wire::ipproto::tcp); }, 4000));
    close(c);
}

// A host client of a TCP forward to the guest's port 8080, once the
// forward's SYN has reached the guest; returns its socket.
int forwarded_client(NatHarness& h) {
    const uint16_t port = free_port(SOCK_STREAM);
    h.nat->add_forward(fwd('t', port, 8080));
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in to = loopback_addr(port);
    connect(c, reinterpret_cast<sockaddr*>(&to), sizeof to);
    return h.run_until([&] { return h.got(wire::ipproto::tcp); }) ? c : -1;
}

TEST(Forwarder, Forwarder_TcpConnectionBecomesASynFromTheGatewayToTheGuest) {
    NatHarness h;
    int c = forwarded_client(h);
    ASSERT_GE(c, 0);
    auto f = *h.first_of(wire::ipproto::tcp);
    EXPECT_EQ(f.src, kGatewayIp);
    EXPECT_EQ(f.dst, kGuestIp);
    auto tcp = wire::TcpView::parse(f.l4);
    ASSERT_TRUE(tcp);
    EXPECT_EQ(tcp->dst_port(), 8080);
    sockaddr_in me{};
    socklen_t len = sizeof me;
    getsockname(c, reinterpret_cast<sockaddr*>(&me), &len);
    EXPECT_EQ(tcp->src_port(), ntohs(me.sin_port));
    EXPECT_TRUE(tcp->flags() & wire::tcpflag::syn);
    close(c);
}

// The accepted socket a flow gets is set up by the listener: TCP_NODELAY and
// SO_OOBINLINE are copied from it by the kernel (TcpNat::open_inbound sets
// neither), and accept4 makes it non-blocking.
TEST(Forwarder, Forwarder_AcceptedSocketsAreNonBlockingWithNodelayAndOobInline) {
    NatHarness h;
    int c = forwarded_client(h);
    ASSERT_GE(c, 0);
    sockaddr_in me{};
    socklen_t len = sizeof me;
    ASSERT_EQ(getsockname(c, reinterpret_cast<sockaddr*>(&me), &len), 0);
    int accepted = -1;
    for (int fd = 3; fd < 4096 && accepted < 0; fd++) {
        sockaddr_in peer{};
        socklen_t pl = sizeof peer;
        if (fd != c && getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) == 0 &&
            peer.sin_family == AF_INET && peer.sin_port == me.sin_port &&
            peer.sin_addr.s_addr == me.sin_addr.s_addr)
            accepted = fd;
    }
    ASSERT_GE(accepted, 0);
    int v = 0;
    socklen_t vl = sizeof v;
    ASSERT_EQ(getsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    EXPECT_EQ(v, 1);
    v = 0;
    ASSERT_EQ(getsockopt(accepted, SOL_SOCKET, SO_OOBINLINE, &v, &vl), 0);
    EXPECT_EQ(v, 1);
    EXPECT_TRUE(fcntl(accepted, F_GETFL) & O_NONBLOCK);
    close(c);
}

}  // namespace
}  // namespace usernet::testing
