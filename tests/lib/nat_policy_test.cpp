// What a guest may reach on the host (Nat::host_target): the host's
// loopback only through the gateway address, never by a crafted 127/8 or
// 0/8 destination; link-local (cloud metadata) only when allowed. And what
// happens to a guest's flows when its attachment goes away.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>

#include "gateway/dns_tcp.hpp"
#include "nat/tcp_nat.hpp"
#include "nat/udp_nat.hpp"
#include "nat_harness.hpp"
#include "wire/tcp.hpp"

namespace usernet::testing {
namespace {

constexpr uint16_t kGuestPort = 40000;

// A TCP listener on 127.0.0.1, non-blocking.
struct Listener {
    int fd = -1;
    uint16_t port = 0;
    Listener() {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_in a = loopback_addr(0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        listen(fd, 16);
        port = local_port(fd);
    }
    ~Listener() { close(fd); }
    // A connection arrived within ms.
    bool got_connection(int ms) const {
        pollfd p{fd, POLLIN, 0};
        return poll(&p, 1, ms) > 0;
    }
};

std::vector<uint8_t> syn_frame(wire::Ipv4 dst, uint16_t dport, const wire::MacAddr& mac = kGuestMac,
                               wire::Ipv4 src = kGuestIp) {
    std::vector<uint8_t> seg(wire::kTcpMaxHeaderLen);
    size_t hl = wire::build_tcp(seg.data(), kGuestPort, dport, 1000, 0, wire::tcpflag::syn, 65535,
                                nullptr);
    seg.resize(hl);
    wire::finish_tcp_checksum(seg.data(), seg.size(), wire::IpAddr::v4(src),
                              wire::IpAddr::v4(dst));
    return ipv4_frame(src, dst, wire::ipproto::tcp, seg, 64, mac);
}

// The first TCP segment toward the guest.
std::optional<wire::TcpView> tcp_reply(const NatHarness& h, std::vector<uint8_t>& keep) {
    auto f = h.first_of(wire::ipproto::tcp);
    if (!f) return std::nullopt;
    keep = f->l4;
    return wire::TcpView::parse(keep);
}

// The ICMP destination unreachable code sent to the guest, or -1.
int unreachable_code(const NatHarness& h) {
    for (auto& f : h.ip_frames()) {
        if (f.proto != wire::ipproto::icmp) continue;
        auto icmp = wire::Icmp4View::parse(f.l4);
        if (icmp && icmp->type() == wire::icmptype::dest_unreach) return icmp->code();
    }
    return -1;
}

TEST(NatPolicy, NatPolicy_TcpToTheHostsLoopbackRangeIsResetAndNeverConnects) {
    for (wire::Ipv4 dst : {0x7f000001u, 0x7f000035u, 0x7f010203u, 0x00000001u}) {
        NatHarness h;
        Listener l;
        h.input(syn_frame(dst, l.port));
        std::vector<uint8_t> keep;
        auto rst = tcp_reply(h, keep);
        ASSERT_TRUE(rst) << wire::ipv4_to_string(dst);
        EXPECT_TRUE(rst->flags() & wire::tcpflag::rst);
        EXPECT_EQ(h.nat->stats().dropped_forbidden, 1u);
        EXPECT_EQ(h.nat->tcp().flow_count(), 0u);
        h.loop.run_once(50);
        EXPECT_FALSE(l.got_connection(100)) << wire::ipv4_to_string(dst);
    }
}

TEST(NatPolicy, NatPolicy_TheGatewayAddressStillReachesTheHostsLoopback) {
    NatHarness h;
    Listener l;
    h.input(syn_frame(kGatewayIp, l.port));
    EXPECT_TRUE(h.run_until([&] { return l.got_connection(0); }));
    EXPECT_EQ(h.nat->stats().dropped_forbidden, 0u);
}

TEST(NatPolicy, NatPolicy_NoMapGwClosesTheGatewayToo) {
    NatHarness h({}, true, [](gw::NetConfig& c) { c.map_gateway_to_loopback = false; });
    Listener l;
    h.input(syn_frame(kGatewayIp, l.port));
    h.input(syn_frame(0x7f000001, l.port));
    h.loop.run_once(50);
    EXPECT_FALSE(l.got_connection(100));
    EXPECT_EQ(h.nat->stats().dropped_unreachable, 1u);
    EXPECT_EQ(h.nat->stats().dropped_forbidden, 1u);
}

TEST(NatPolicy, NatPolicy_UdpToLoopbackGetsAdministrativelyProhibited) {
    NatHarness h;
    int fd = udp_socket_on_loopback();
    ASSERT_GE(fd, 0);
    h.input(udp_frame(kGuestIp, 0x7f000035, 5000, local_port(fd), bytes("query")));
    EXPECT_EQ(unreachable_code(h), wire::icmpcode::admin_prohibited);
    char buf[64];
    EXPECT_LT(recv_wait(fd, buf, sizeof buf, nullptr, 100), 0);
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);
    EXPECT_EQ(h.nat->stats().dropped_forbidden, 1u);
    close(fd);
}

TEST(NatPolicy, NatPolicy_PingToLoopbackGetsAdministrativelyProhibited) {
    NatHarness h;
    h.input(echo_frame(kGuestIp, 0x7f000001, 1, 1, 8));
    EXPECT_EQ(unreachable_code(h), wire::icmpcode::admin_prohibited);
    EXPECT_EQ(h.nat->stats().dropped_forbidden, 1u);
}

TEST(NatPolicy, NatPolicy_LinkLocalIsRefusedUnlessAllowed) {
    NatHarness h;
    const auto metadata = wire::IpAddr::v4(0xa9fea9fe);  // 169.254.169.254
    EXPECT_TRUE(h.nat->host_target(metadata, 80, wire::ipproto::tcp).forbidden());
    h.input(udp_frame(kGuestIp, 0xa9fea9fe, 5000, 80, bytes("x")));
    EXPECT_EQ(unreachable_code(h), wire::icmpcode::admin_prohibited);

    NatHarness allowed({}, true, [](gw::NetConfig& c) { c.allow_link_local = true; });
    EXPECT_TRUE(allowed.nat->host_target(metadata, 80, wire::ipproto::tcp).ok());
    // The loopback range stays closed whatever is allowed.
    EXPECT_TRUE(allowed.nat->host_target(wire::IpAddr::v4(0x7f000001), 80, wire::ipproto::tcp)
                    .forbidden());
}

TEST(NatPolicy, NatPolicy_Ipv6ReachesTheHostsLoopbackOnlyThroughTheGateway) {
    NatHarness h({}, true, [](gw::NetConfig& c) {
        c.dns_upstreams.push_back(gw::HostPort{*wire::IpAddr::parse("::1"), 5353});
    });
    auto v6 = [](const char* a) { return *wire::IpAddr::parse(a); };
    auto target = [&](const char* a, uint16_t port = 80, uint8_t proto = wire::ipproto::tcp) {
        return h.nat->host_target(v6(a), port, proto);
    };
    auto gw6 = target("fec0::2");
    ASSERT_TRUE(gw6.ok());
    EXPECT_EQ(nat::from_sockaddr(gw6.addr), std::make_pair(v6("::1"), uint16_t{80}));
    // DNS over TCP is the gateway's service (dns_tcp.hpp); UDP that reaches
    // the NAT (the gateway's forwarder takes it first) goes upstream.
    auto dns6 = target("fec0::3", 53, wire::ipproto::tcp);
    ASSERT_TRUE(dns6.ok());
    EXPECT_EQ(dns6.dns_tcp, &h.gw->dns_tcp());
    auto dns6u = target("fec0::3", 53, wire::ipproto::udp);
    ASSERT_TRUE(dns6u.ok());
    EXPECT_EQ(dns6u.dns_tcp, nullptr);
    EXPECT_EQ(nat::from_sockaddr(dns6u.addr), std::make_pair(v6("::1"), uint16_t{5353}));
    EXPECT_FALSE(target("fec0::3", 80).ok());  // the DNS address is DNS only
    EXPECT_TRUE(target("::1").forbidden());
    EXPECT_TRUE(target("::").forbidden());
    EXPECT_TRUE(target("fe80::1").forbidden());  // the host's link-local scope
    EXPECT_FALSE(target("ff02::1").ok());
    EXPECT_FALSE(target("fec0::15").ok());  // a guest of the LAN, not through the NAT
    EXPECT_TRUE(target("2001:db8::1").ok());
    EXPECT_EQ(h.nat->guest_visible(v6("::1")), v6("fec0::2"));
    EXPECT_EQ(h.nat->gateway_for(v6("fec0::15")), v6("fec0::2"));

    NatHarness unmapped({}, true, [](gw::NetConfig& c) { c.map_gateway_to_loopback = false; });
    EXPECT_FALSE(unmapped.nat->host_target(v6("fec0::2"), 80, wire::ipproto::tcp).ok());
    EXPECT_FALSE(unmapped.nat->host_target(v6("fec0::2"), 80, wire::ipproto::tcp).forbidden());
}

// A guest's connection through the gateway, then its attachment goes: the
// host side sees a reset at once.
// --restrict, --no-tcp/udp/icmp, --allow and --deny (NetConfig::policy_allows).
TEST(NatPolicy, NatPolicy_UserPolicyDecidesEachNewFlow) {
    auto v = [](const char* a) { return *wire::IpAddr::parse(a); };
    using R = gw::NetConfig::PolicyRule;
    gw::NetConfig c;
    EXPECT_TRUE(c.policy_allows(v("192.0.2.1"), 80, wire::ipproto::tcp));
    c.no_udp = true;
    EXPECT_FALSE(c.policy_allows(v("192.0.2.1"), 53, wire::ipproto::udp));
    EXPECT_TRUE(c.policy_allows(v("192.0.2.1"), 53, wire::ipproto::tcp));
    c.no_udp = false;
    c.no_icmp = true;
    EXPECT_FALSE(c.policy_allows(v("192.0.2.1"), 0, wire::ipproto::icmp));
    EXPECT_FALSE(c.policy_allows(v("2001:db8::1"), 0, wire::ipproto::icmpv6));
    c.no_icmp = false;
    // Deny rules alone: all but those.
    c.policy = {R{false, wire::IpAddr::v4(0xc0000200), 24, true, 0, 65535},
                R{false, v("2001:db8::"), 32, false, 25, 25}};
    EXPECT_FALSE(c.policy_allows(v("192.0.2.77"), 80, wire::ipproto::tcp));
    EXPECT_FALSE(c.policy_allows(v("192.0.2.77"), 0, wire::ipproto::icmp));
    EXPECT_TRUE(c.policy_allows(v("192.0.3.1"), 80, wire::ipproto::tcp));
    EXPECT_FALSE(c.policy_allows(v("2001:db8:5::1"), 25, wire::ipproto::tcp));
    EXPECT_TRUE(c.policy_allows(v("2001:db8:5::1"), 26, wire::ipproto::tcp));
    EXPECT_TRUE(c.policy_allows(v("2001:db8:5::1"), 0, wire::ipproto::icmpv6));  // ports: TCP/UDP only
    EXPECT_TRUE(c.policy_allows(v("2001:db9::1"), 25, wire::ipproto::tcp));
    // An allow rule makes it an allow list; a deny still wins inside it.
    c.policy.push_back(R{true, wire::IpAddr::v4(0xc0000000), 16, false, 443, 443});
    EXPECT_TRUE(c.policy_allows(v("192.0.3.1"), 443, wire::ipproto::tcp));
    EXPECT_FALSE(c.policy_allows(v("192.0.3.1"), 80, wire::ipproto::tcp));
    EXPECT_FALSE(c.policy_allows(v("192.0.2.1"), 443, wire::ipproto::tcp));   // denied /24
    EXPECT_FALSE(c.policy_allows(v("198.51.100.1"), 443, wire::ipproto::tcp));
    EXPECT_FALSE(c.policy_allows(v("2001:db9::1"), 443, wire::ipproto::tcp));  // no IPv6 allow
    c.restrict = true;
    EXPECT_FALSE(c.policy_allows(v("192.0.3.1"), 443, wire::ipproto::tcp));
}

TEST(NatPolicy, NatPolicy_RestrictRefusesEverythingButTheDnsAddress) {
    NatHarness h({}, true, [](gw::NetConfig& c) {
        c.restrict = true;
        c.dns_upstreams.push_back(gw::HostPort{wire::IpAddr::v4(0x7f000001), 5353});
    });
    auto target = [&](wire::Ipv4 a, uint16_t port, uint8_t proto) {
        return h.nat->host_target(wire::IpAddr::v4(a), port, proto);
    };
    EXPECT_TRUE(target(kGatewayIp, 80, wire::ipproto::tcp).forbidden());
    EXPECT_TRUE(target(0xc0000201, 80, wire::ipproto::tcp).forbidden());
    EXPECT_TRUE(target(0xc0000201, 0, wire::ipproto::icmp).forbidden());
    EXPECT_TRUE(target(0x0a000203, 53, wire::ipproto::tcp).ok());  // DNS over TCP: a gateway service
    EXPECT_EQ(h.nat->stats().dropped_policy, 3u);
    // A TCP connect is reset at once.
    h.input(syn_frame(0xc0000201, 80));
    std::vector<uint8_t> keep;
    auto tcp = tcp_reply(h, keep);
    ASSERT_TRUE(tcp);
    EXPECT_TRUE(tcp->flags() & wire::tcpflag::rst);
    // A datagram gets ICMP administratively prohibited.
    h.guest.frames.clear();
    h.input(udp_frame(kGuestIp, 0xc0000201, 40000, 7, bytes("x")));
    EXPECT_EQ(unreachable_code(h), wire::icmpcode::admin_prohibited);
}

TEST(NatPolicy, NatPolicy_FlowsOfADetachedPortAreResetTowardTheHost) {
    NatHarness h;
    Listener l;
    h.input(syn_frame(kGatewayIp, l.port));
    ASSERT_TRUE(h.run_until([&] { return l.got_connection(0); }));
    int conn = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(conn, 0);
    // Also a UDP flow of the same guest.
    int ufd = udp_socket_on_loopback();
    h.input(udp_frame(kGuestIp, kGatewayIp, 5000, local_port(ufd), bytes("x")));
    ASSERT_EQ(h.nat->udp().flow_count(), 1u);
    ASSERT_EQ(h.nat->tcp().flow_count(), 1u);
    h.sw.detach(h.guest);
    EXPECT_EQ(h.nat->udp().flow_count(), 0u);
    h.loop.run_once(0);
    EXPECT_EQ(h.nat->tcp().flow_count(), 0u);
    pollfd p{conn, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1);
    char c;
    EXPECT_EQ(recv(conn, &c, 1, 0), -1);
    EXPECT_EQ(errno, ECONNRESET);
    close(conn);
    close(ufd);
}

}  // namespace
}  // namespace usernet::testing
