// The DNS forwarder against real UDP sockets on the loopback standing in
// for upstream resolvers: id remapping, failover on silence and on ICMP
// errors, SERVFAIL when every upstream fails, spoofed replies, truncation.
#include "gateway/dns_forwarder.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "closed_port.hpp"
#include "gateway/dhcp4_server.hpp"
#include "gateway/dns_tcp.hpp"
#include "gateway/gateway.hpp"
#include "wire/dns.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/ipv6.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {
namespace {

using wire::Bytes;
using wire::Ipv4;
using wire::MacAddr;

Ipv4 ip(const char* s) { return *wire::ipv4_parse(s); }
const MacAddr kGuestMac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const MacAddr kGwMac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
const Ipv4 kGuest = 0x0a00020f;

class GuestPort : public sw::Port {
public:
    explicit GuestPort(uint32_t mtu) : mtu_(mtu) {}
    void deliver(Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return "guest"; }
    std::vector<std::vector<uint8_t>> frames;
    uint32_t mtu_;
};

// A resolver stand-in: a UDP socket on 127.0.0.1.
struct Upstream {
    int fd = -1;
    uint16_t port = 0;
    Upstream() {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        socklen_t len = sizeof sa;
        getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
        port = ntohs(sa.sin_port);
    }
    ~Upstream() { close(fd); }
    HostPort host_port() const { return HostPort{wire::IpAddr::v4(0x7f000001), port}; }
    // Waits up to ms for a datagram; returns it and where it came from.
    std::optional<std::vector<uint8_t>> recv(int ms, sockaddr_in* from = nullptr) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, ms) != 1) return std::nullopt;
        std::vector<uint8_t> buf(65536);
        sockaddr_in f{};
        socklen_t fl = sizeof f;
        ssize_t n = recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&f), &fl);
        if (n < 0) return std::nullopt;
        buf.resize(static_cast<size_t>(n));
        if (from) *from = f;
        return buf;
    }
    void send_to(const std::vector<uint8_t>& msg, const sockaddr_in& to) {
        sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    }
};

// A port on 127.0.0.1 where nothing listens.
uint16_t closed_port() { return testing::closed_port(SOCK_DGRAM); }

std::vector<uint8_t> make_query(uint16_t id, const char* name) {
    std::vector<uint8_t> q(12 + 256 + 4);
    wire::store16(&q[0], id);
    wire::store16(&q[2], wire::dnsflag::rd);
    wire::store16(&q[4], 1);
    size_t n = wire::dns_encode_name(name, &q[12], 256);
    wire::store16(&q[12 + n], wire::dnstype::a);
    wire::store16(&q[12 + n + 2], wire::dnsclass::in);
    q.resize(12 + n + 4);
    return q;
}

// An answer to query with `count` A records.
std::vector<uint8_t> make_answer(const std::vector<uint8_t>& query, int count) {
    std::vector<uint8_t> out(65535);
    auto v = wire::DnsView::parse(query);
    auto q = v->question();
    wire::DnsResponseBuilder b(out, *v, *q);
    for (int i = 0; i < count; i++)
        b.add_address(wire::IpAddr::v4(0xc6336400u + static_cast<uint32_t>(i)), 60);
    out.resize(b.finish());
    return out;
}

std::vector<uint8_t> udp_frame(Ipv4 src, Ipv4 dst, uint16_t sport, uint16_t dport,
                               const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> f(42 + payload.size());
    wire::build_ethernet(f.data(), kGwMac, kGuestMac, wire::ethertype::ipv4);
    std::memcpy(&f[42], payload.data(), payload.size());
    wire::build_udp(&f[34], wire::IpAddr::v4(src), wire::IpAddr::v4(dst), sport, dport,
                    payload.size());
    wire::build_ipv4(&f[14], src, dst, wire::ipproto::udp, 8 + payload.size());
    if (f.size() < 60) f.resize(60);
    return f;
}

// The same over IPv6.
std::vector<uint8_t> udp6_frame(const wire::IpAddr& src, const wire::IpAddr& dst, uint16_t sport,
                                uint16_t dport, const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> f(62 + payload.size());
    wire::build_ethernet(f.data(), kGwMac, kGuestMac, wire::ethertype::ipv6);
    std::memcpy(&f[62], payload.data(), payload.size());
    wire::build_udp(&f[54], src, dst, sport, dport, payload.size());
    wire::build_ipv6(&f[14], src, dst, wire::ipproto::udp, 8 + payload.size(), 64);
    return f;
}

// The DNS payload of an IPv6 frame to guest from [fec0::3]:53, if f is one.
std::optional<std::vector<uint8_t>> dns6_to_guest(const std::vector<uint8_t>& f,
                                                  const wire::IpAddr& guest) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv6 || eth->dst() != kGuestMac)
        return std::nullopt;
    auto iph = wire::Ipv6View::parse(eth->payload());
    if (!iph || iph->protocol() != wire::ipproto::udp ||
        iph->src_addr() != *wire::IpAddr::parse("fec0::3") || iph->dst_addr() != guest)
        return std::nullopt;
    auto udp = wire::UdpView::parse(iph->payload());
    if (!udp || udp->src_port() != 53 || !udp->checksum_ok(iph->src_addr(), iph->dst_addr()))
        return std::nullopt;
    return std::vector<uint8_t>(udp->payload().begin(), udp->payload().end());
}

// The DNS payload of a frame sent to the guest from 10.0.2.3:53.
std::optional<std::vector<uint8_t>> dns_to_guest(const std::vector<uint8_t>& f,
                                                 uint16_t* dport = nullptr) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv4) return std::nullopt;
    auto iph = wire::Ipv4View::parse(eth->payload());
    if (!iph || !iph->checksum_ok() || iph->src() != ip("10.0.2.3") || iph->dst() != kGuest)
        return std::nullopt;
    auto udp = wire::UdpView::parse(iph->payload());
    if (!udp || udp->src_port() != 53 || !udp->checksum_ok(iph->src_addr(), iph->dst_addr()))
        return std::nullopt;
    if (dport) *dport = udp->dst_port();
    return std::vector<uint8_t>(udp->payload().begin(), udp->payload().end());
}

struct DnsForwarderTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    GuestPort guest{1500};
    std::unique_ptr<Gateway> gw;

    void start(std::vector<HostPort> upstreams, uint32_t mtu = 1500, bool ipv6 = false) {
        guest.mtu_ = mtu;
        sw.attach(guest);
        NetConfig cfg;
        cfg.dns_upstreams = std::move(upstreams);
        // Unless a test asks for IPv6, the guest's frames are DNS replies
        // only: no router advertisements a second in.
        cfg.ipv6 = ipv6;
        gw = std::make_unique<Gateway>(loop, sw, cfg);
        // The guest's MAC and address become known (ARP for the gateway).
        gw->learn_neighbor(kGuest, kGuestMac, mtu);
    }
    void query(const std::vector<uint8_t>& q, uint16_t sport = 40000) {
        sw.input(guest.id(), udp_frame(kGuest, ip("10.0.2.3"), sport, 53, q));
    }
    // Runs the loop until the guest has `n` frames or ms pass.
    void run_until_frames(size_t n, int ms) {
        core::Millis end = core::monotonic_ms() + static_cast<core::Millis>(ms);
        while (guest.frames.size() < n && core::monotonic_ms() < end) loop.run_once(20);
    }
    void run_for(int ms) {
        core::Millis end = core::monotonic_ms() + static_cast<core::Millis>(ms);
        while (core::monotonic_ms() < end) loop.run_once(20);
    }
};

TEST_F(DnsForwarderTest, DnsForwarder_RelaysQueryAndReplyRestoringTheGuestsId) {
    Upstream up;
    start({up.host_port()});
    auto q = make_query(0x1234, "example.test");
    query(q, 41234);
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    ASSERT_EQ(sent->size(), q.size());
    // Same query but for the id, which the forwarder chose.
    EXPECT_EQ(0, std::memcmp(sent->data() + 2, q.data() + 2, q.size() - 2));
    EXPECT_EQ(gw->dns().pending(), 1u);

    up.send_to(make_answer(*sent, 1), from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    uint16_t dport = 0;
    auto r = dns_to_guest(guest.frames[0], &dport);
    ASSERT_TRUE(r);
    EXPECT_EQ(dport, 41234);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 0x1234);
    EXPECT_EQ(v->ancount(), 1);
    EXPECT_EQ(gw->dns().stats().replies, 1u);
    EXPECT_EQ(gw->dns().pending(), 0u);
}

// An IPv6 guest asks fec0::3, and the forwarder (not the NAT) takes the
// query to an IPv4 upstream and the answer back over IPv6, cut with TC when
// it exceeds the guest's MTU less 48 bytes of IPv6 and UDP headers.
TEST_F(DnsForwarderTest, DnsForwarder_AnIpv6GuestAsksTheIpv6DnsAddress) {
    Upstream up;
    start({up.host_port()}, 1280, true);
    const wire::IpAddr me = *wire::IpAddr::parse("fec0::5054:ff:fe12:3456");
    const wire::IpAddr dns6 = *wire::IpAddr::parse("fec0::3");
    auto run_until_dns6 = [&](int ms) -> std::optional<std::vector<uint8_t>> {
        core::Millis end = core::monotonic_ms() + static_cast<core::Millis>(ms);
        while (core::monotonic_ms() < end) {
            loop.run_once(20);
            for (auto& f : guest.frames)
                if (auto r = dns6_to_guest(f, me)) {
                    guest.frames.clear();
                    return r;
                }
        }
        return std::nullopt;
    };
    auto q = make_query(0x6666, "example.test");
    sw.input(guest.id(), udp6_frame(me, dns6, 41666, 53, q));
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    EXPECT_EQ(0, std::memcmp(sent->data() + 2, q.data() + 2, q.size() - 2));
    EXPECT_NE(wire::load16(sent->data()), 0x6666) << "the guest's id went upstream";
    up.send_to(make_answer(*sent, 2), from);
    auto r = run_until_dns6(1000);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 0x6666);
    EXPECT_EQ(v->ancount(), 2);
    EXPECT_FALSE(v->tc());

    // 80 A records (~1.3 KB) do not fit 1280 - 48: header and question, TC.
    auto q2 = make_query(0x6667, "big.example.test");
    sw.input(guest.id(), udp6_frame(me, dns6, 41667, 53, q2));
    auto sent2 = up.recv(1000, &from);
    ASSERT_TRUE(sent2);
    auto big = make_answer(*sent2, 80);
    ASSERT_GT(big.size(), 1280u - 48u);
    up.send_to(big, from);
    r = run_until_dns6(1000);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), q2.size());
    v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 0x6667);
    EXPECT_TRUE(v->tc());
    EXPECT_EQ(gw->dns().stats().replies, 2u);
    EXPECT_EQ(gw->dns().stats().truncated, 1u);
    // Another port of fec0::3 is not DNS: nothing reaches the upstream.
    sw.input(guest.id(), udp6_frame(me, dns6, 41668, 5353, q));
    EXPECT_FALSE(up.recv(100));
}

// With no upstream, an IPv6 guest gets REFUSED at once, from fec0::3.
TEST_F(DnsForwarderTest, DnsForwarder_AnIpv6GuestWithoutUpstreamsGetsRefused) {
    start({}, 1500, true);
    const wire::IpAddr me = *wire::IpAddr::parse("fec0::5054:ff:fe12:3456");
    sw.input(guest.id(), udp6_frame(me, *wire::IpAddr::parse("fec0::3"), 41666, 53,
                                    make_query(0x5151, "example.test")));
    std::optional<std::vector<uint8_t>> r;
    for (auto& f : guest.frames)
        if (!r) r = dns6_to_guest(f, me);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 0x5151);
    EXPECT_EQ(v->rcode(), wire::dnsrcode::refused);
}

TEST_F(DnsForwarderTest, DnsForwarder_SilentUpstreamFailsOverToTheNextAfterTimeout) {
    Upstream silent, live;
    start({silent.host_port(), live.host_port()});
    EXPECT_EQ(gw->dns().active_upstream()->port, silent.port);
    auto q = make_query(7, "example.test");
    query(q);
    ASSERT_TRUE(silent.recv(1000));
    EXPECT_FALSE(live.recv(0));
    sockaddr_in from{};
    std::optional<std::vector<uint8_t>> sent;
    core::Millis end = core::monotonic_ms() + 3500;
    while (!sent && core::monotonic_ms() < end) {
        loop.run_once(20);
        sent = live.recv(0, &from);
    }
    ASSERT_TRUE(sent);
    EXPECT_EQ(gw->dns().stats().timeouts, 1u);
    live.send_to(make_answer(*sent, 1), from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(wire::DnsView::parse(*dns_to_guest(guest.frames[0]))->id(), 7);
    EXPECT_EQ(gw->dns().active_upstream()->port, live.port);
    // The next query goes to the upstream that answered.
    query(make_query(8, "example.test"));
    EXPECT_TRUE(live.recv(1000));
    EXPECT_FALSE(silent.recv(0));
}

TEST_F(DnsForwarderTest, DnsForwarder_UnreachableUpstreamFailsOverWithoutWaiting) {
    Upstream live;
    start({HostPort{wire::IpAddr::v4(0x7f000001), closed_port()}, live.host_port()});
    query(make_query(9, "example.test"));
    std::optional<std::vector<uint8_t>> sent;
    core::Millis t0 = core::monotonic_ms();
    while (!sent && core::monotonic_ms() < t0 + 1500) {
        loop.run_once(20);
        sent = live.recv(0);
    }
    ASSERT_TRUE(sent);
    EXPECT_LT(core::monotonic_ms() - t0, 1000u);  // well before the 2 s timeout
    EXPECT_GE(gw->dns().stats().upstream_errors, 1u);
    EXPECT_EQ(gw->dns().stats().timeouts, 0u);
}

TEST_F(DnsForwarderTest, DnsForwarder_EveryUpstreamFailingAnswersServfail) {
    start({HostPort{wire::IpAddr::v4(0x7f000001), closed_port()}});
    query(make_query(0xbeef, "example.test"));
    run_until_frames(1, 1500);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 0xbeef);
    EXPECT_TRUE(v->qr());
    EXPECT_EQ(v->rcode(), wire::dnsrcode::servfail);
    EXPECT_EQ(gw->dns().stats().servfail, 1u);
    EXPECT_EQ(gw->dns().pending(), 0u);
}

// A query with an OPT record carrying `pad` bytes of EDNS padding (RFC
// 7830), offering a UDP payload of `size`.
std::vector<uint8_t> make_edns_query(uint16_t id, const char* name, size_t pad,
                                     uint16_t size = 1232) {
    auto q = make_query(id, name);
    const uint8_t opt[] = {0, 0, 41, static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size),
                           0, 0, 0, 0, static_cast<uint8_t>((pad + 4) >> 8),
                           static_cast<uint8_t>(pad + 4), 0, 12,
                           static_cast<uint8_t>(pad >> 8), static_cast<uint8_t>(pad)};
    q.insert(q.end(), std::begin(opt), std::end(opt));
    q.resize(q.size() + pad, 0);
    wire::store16(&q[10], 1);
    return q;
}

// A query longer than the table keeps gets FORMERR, not silence.
TEST_F(DnsForwarderTest, DnsForwarder_AnOverlongQueryGetsFormerr) {
    Upstream up;
    start({up.host_port()}, 9000);
    auto q = make_edns_query(31, "big.test", DnsForwarder::kMaxQueryLen);
    ASSERT_GT(q.size(), DnsForwarder::kMaxQueryLen);
    query(q);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 31);
    EXPECT_EQ(v->rcode(), wire::dnsrcode::formerr);
    EXPECT_FALSE(up.recv(50));
    EXPECT_EQ(gw->dns().stats().formerr, 1u);
}

// EDNS lets a query pass 512 bytes (RFC 6891 limits only answers): padded
// to 600 and to 1400 bytes, each goes upstream whole and its answer back.
TEST_F(DnsForwarderTest, DnsForwarder_AnEdnsQueryOver512BytesIsRelayed) {
    Upstream up;
    start({up.host_port()});
    uint16_t id = 40;
    for (size_t pad : {600u, 1400u}) {
        guest.frames.clear();
        auto q = make_edns_query(id, "padded.test", pad);
        ASSERT_GT(q.size(), 512u);
        query(q);
        sockaddr_in from{};
        auto sent = up.recv(1000, &from);
        ASSERT_TRUE(sent) << pad;
        ASSERT_EQ(sent->size(), q.size());
        EXPECT_EQ(0, std::memcmp(sent->data() + 2, q.data() + 2, q.size() - 2));
        up.send_to(make_answer(*sent, 1), from);
        run_until_frames(1, 1000);
        ASSERT_EQ(guest.frames.size(), 1u) << pad;
        auto r = dns_to_guest(guest.frames[0]);
        ASSERT_TRUE(r);
        EXPECT_EQ(wire::DnsView::parse(*r)->id(), id);
        EXPECT_EQ(wire::DnsView::parse(*r)->ancount(), 1);
        id++;
    }
    EXPECT_EQ(gw->dns().stats().formerr, 0u);
    EXPECT_EQ(gw->dns().stats().replies, 2u);
}

// A question that does not parse, or two in a standard query, gets FORMERR
// at once and never goes upstream, where its answer could not be matched
// to it. A query with no question (a DNS cookie's, RFC 7873 5.4) goes on.
TEST_F(DnsForwarderTest, DnsForwarder_AnUnreadableQuestionGetsFormerrAtOnce) {
    Upstream up;
    start({up.host_port()});
    auto header_only = make_query(50, "x.test");
    header_only.resize(12);  // qdcount 1, no question
    auto looped = make_query(51, "x.test");
    looped[12] = 0xc0;  // a compression pointer to itself
    looped[13] = 12;
    auto two = make_query(52, "x.test");
    wire::store16(&two[4], 2);
    auto obsolete = make_query(53, "x.test");
    obsolete[12] = 0x41;  // label type 01 (RFC 6891 5, obsolete)
    uint16_t want = 50;
    for (const auto& q : {header_only, looped, two, obsolete}) {
        guest.frames.clear();
        query(q);
        ASSERT_EQ(guest.frames.size(), 1u) << want;  // answered without a loop turn
        auto r = dns_to_guest(guest.frames[0]);
        ASSERT_TRUE(r);
        auto v = wire::DnsView::parse(*r);
        EXPECT_EQ(v->id(), want);
        EXPECT_TRUE(v->qr());
        EXPECT_EQ(v->rcode(), wire::dnsrcode::formerr);
        want++;
    }
    EXPECT_FALSE(up.recv(50));
    EXPECT_EQ(gw->dns().stats().formerr, 4u);
    EXPECT_EQ(gw->dns().pending(), 0u);

    auto cookie = make_edns_query(54, "x.test", 0);
    cookie.erase(cookie.begin() + 12, cookie.begin() + 12 + 8);  // drop the question
    wire::store16(&cookie[4], 0);
    query(cookie);
    auto sent = up.recv(1000);
    ASSERT_TRUE(sent);
    EXPECT_EQ(sent->size(), cookie.size());
}

// An upstream that answers more than the guest can take (512 bytes without
// EDNS, RFC 1035 4.2.1; the OPT's size with it) has its answer cut to the
// question with TC, as the MTU would; within the offer it passes whole.
TEST_F(DnsForwarderTest, DnsForwarder_AnAnswerLargerThanTheQueryOffersIsTruncated) {
    Upstream up;
    start({up.host_port()});
    auto plain = make_query(60, "big.test");
    query(plain);
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    auto ans = make_answer(*sent, 40);  // 40 A records: 670 bytes
    ASSERT_GT(ans.size(), 512u);
    up.send_to(ans, from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    EXPECT_TRUE(wire::DnsView::parse(*r)->tc());
    EXPECT_EQ(r->size(), plain.size());

    guest.frames.clear();
    auto edns = make_edns_query(61, "big.test", 0, 1232);
    query(edns);
    sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    ans = make_answer(*sent, 40);
    up.send_to(ans, from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    EXPECT_FALSE(wire::DnsView::parse(*r)->tc());
    EXPECT_EQ(r->size(), ans.size());
    EXPECT_EQ(gw->dns().stats().truncated, 1u);
}

// A lone upstream slower than the attempt timeout still answers the guest;
// one that never answers gets the guest SERVFAIL once kAnswerWaitMs passed.
TEST_F(DnsForwarderTest, DnsForwarder_ASlowUpstreamsLateAnswerIsRelayedThenServfail) {
    Upstream slow;
    start({slow.host_port()});
    query(make_query(21, "slow.test"));
    sockaddr_in from{};
    auto sent = slow.recv(1000, &from);
    ASSERT_TRUE(sent);
    loop.advance_clock_for_tests(DnsForwarder::kAttemptTimeoutMs + 500);
    loop.run_once(0);
    loop.run_once(0);
    EXPECT_TRUE(guest.frames.empty());  // no SERVFAIL yet
    slow.send_to(make_answer(*sent, 1), from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 21);
    EXPECT_EQ(v->rcode(), 0);

    guest.frames.clear();
    query(make_query(22, "never.test"));
    ASSERT_TRUE(slow.recv(1000));
    loop.advance_clock_for_tests(DnsForwarder::kAttemptTimeoutMs + 1);
    loop.run_once(0);
    loop.run_once(0);
    EXPECT_TRUE(guest.frames.empty());
    loop.advance_clock_for_tests(DnsForwarder::kAnswerWaitMs);
    loop.run_once(0);
    loop.run_once(0);
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(wire::DnsView::parse(*dns_to_guest(guest.frames[0]))->rcode(),
              wire::dnsrcode::servfail);
    EXPECT_EQ(gw->dns().pending(), 0u);
}

TEST_F(DnsForwarderTest, DnsForwarder_ReplyFromAnotherAddressIsDropped) {
    Upstream up, spoofer;
    start({up.host_port()});
    query(make_query(5, "example.test"));
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    auto ans = make_answer(*sent, 1);
    spoofer.send_to(ans, from);  // right id, wrong source port
    run_for(200);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->dns().stats().dropped_unmatched, 1u);
    // A reply with an id nobody asked for.
    auto bad = ans;
    wire::store16(bad.data(), static_cast<uint16_t>(wire::load16(bad.data()) + 1));
    up.send_to(bad, from);
    run_for(100);
    EXPECT_TRUE(guest.frames.empty());
    up.send_to(ans, from);
    run_until_frames(1, 1000);
    EXPECT_EQ(guest.frames.size(), 1u);
}

TEST_F(DnsForwarderTest, DnsForwarder_ReplyLargerThanTheGuestMtuIsTruncatedWithTc) {
    Upstream up;
    start({up.host_port()}, 576);
    auto q = make_query(77, "big.example.test");
    query(q);
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    auto ans = make_answer(*sent, 60);  // 60 A records: ~1 KB
    ASSERT_GT(ans.size(), 576u - 28u);
    up.send_to(ans, from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), q.size());  // header and question only
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 77);
    EXPECT_TRUE(v->qr());
    EXPECT_TRUE(v->tc());
    EXPECT_EQ(v->qdcount(), 1);
    EXPECT_EQ(v->ancount(), 0);
    EXPECT_TRUE(v->question()->name.equals("big.example.test"));
    EXPECT_EQ(gw->dns().stats().truncated, 1u);
}

// The same with EDNS: the truncated answer keeps an OPT record (RFC 6891 7).
TEST_F(DnsForwarderTest, DnsForwarder_ATruncatedAnswerToAnEdnsQueryKeepsAnOptRecord) {
    Upstream up;
    start({up.host_port()}, 576);
    auto q = make_query(78, "big.example.test");
    const uint8_t opt[] = {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0};
    q.insert(q.end(), std::begin(opt), std::end(opt));
    wire::store16(&q[10], 1);
    query(q);
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    auto ans = make_answer(*sent, 60);
    up.send_to(ans, from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_TRUE(v->tc());
    EXPECT_EQ(v->ancount(), 0);
    EXPECT_EQ(v->arcount(), 1);
    EXPECT_EQ(wire::dns_edns_version(*v), std::optional<uint8_t>(0));
}

TEST_F(DnsForwarderTest, DnsForwarder_DropsResponsesAndRuntsFromGuests) {
    Upstream up;
    start({up.host_port()});
    auto q = make_query(1, "example.test");
    wire::store16(&q[2], wire::dnsflag::qr);
    query(q);
    query(std::vector<uint8_t>{1, 2, 3});
    EXPECT_FALSE(up.recv(100));
    EXPECT_EQ(gw->dns().stats().dropped_malformed, 2u);
    EXPECT_EQ(gw->dns().stats().queries, 0u);
}

TEST_F(DnsForwarderTest, DnsForwarder_PendingTableIsBoundedOldestEvicted) {
    Upstream up;
    start({up.host_port()});
    // Enough guests, each at its quota, to more than fill the table.
    const size_t per = DnsForwarder::kMaxPendingPerGuest;
    const size_t guests = DnsForwarder::kMaxPending / per + 1;
    for (size_t g = 0; g < guests; g++)
        for (size_t i = 0; i < per; i++)
            gw->dns().from_guest(static_cast<Ipv4>(0x0a000210 + g), 40000,
                                 make_query(static_cast<uint16_t>(i), "example.test"));
    EXPECT_EQ(gw->dns().pending(), DnsForwarder::kMaxPending);
    EXPECT_EQ(gw->dns().stats().dropped_evicted, guests * per - DnsForwarder::kMaxPending);
    EXPECT_EQ(gw->dns().stats().queries, guests * per);
    EXPECT_EQ(gw->dns().stats().dropped_quota, 0u);
}

TEST_F(DnsForwarderTest, DnsForwarder_OneGuestCannotPushOutAnothersPendingQuery) {
    Upstream up;
    start({up.host_port()});
    query(make_query(0x4242, "victim.test"));
    sockaddr_in from{};
    auto victim = up.recv(1000, &from);
    ASSERT_TRUE(victim);
    // The victim's query came in through its port, which is its quota key.
    const DnsGuestKey victim_key = guest.id();
    // Another guest floods twice the whole table.
    const Ipv4 hostile = ip("10.0.2.16");
    for (size_t i = 0; i < 2 * DnsForwarder::kMaxPending; i++)
        gw->dns().from_guest(hostile, 40000, make_query(static_cast<uint16_t>(i), "flood.test"));
    EXPECT_EQ(gw->dns().pending_of(hostile), DnsForwarder::kMaxPendingPerGuest);
    EXPECT_EQ(gw->dns().pending_of(victim_key), 1u);
    EXPECT_EQ(gw->dns().stats().dropped_quota,
              2 * DnsForwarder::kMaxPending - DnsForwarder::kMaxPendingPerGuest);
    EXPECT_EQ(gw->dns().stats().dropped_evicted, 0u);
    // The victim's query is still pending: its answer reaches it.
    up.send_to(make_answer(*victim, 1), from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    EXPECT_EQ(wire::DnsView::parse(*r)->id(), 0x4242);
    EXPECT_EQ(gw->dns().pending_of(victim_key), 0u);
}

TEST_F(DnsForwarderTest, DnsForwarder_ReplyToAnotherQuestionIsIgnored) {
    Upstream up;
    start({up.host_port()});
    query(make_query(0x77, "bank.example.test"));
    sockaddr_in from{};
    auto sent = up.recv(1000, &from);
    ASSERT_TRUE(sent);
    uint16_t id = wire::load16(sent->data());
    // Right id, right upstream address and port, to the right port: but the
    // question is another name, or another type.
    auto forged = make_answer(make_query(id, "evil.test"), 1);
    up.send_to(forged, from);
    auto other_type = make_answer(*sent, 1);
    size_t qtype_at = 12 + 19;  // past "\4bank\7example\4test\0"
    ASSERT_EQ(wire::load16(&other_type[qtype_at]), wire::dnstype::a);
    wire::store16(&other_type[qtype_at], wire::dnstype::aaaa);
    up.send_to(other_type, from);
    run_for(200);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->dns().stats().dropped_unmatched, 2u);
    // The real answer, its name in another case (RFC 4343), still gets there.
    auto real = make_answer(*sent, 1);
    for (size_t i = 12; i < 12 + 18; i++)
        if (real[i] >= 'a' && real[i] <= 'z') real[i] = static_cast<uint8_t>(real[i] - 32);
    up.send_to(real, from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    auto r = dns_to_guest(guest.frames[0]);
    ASSERT_TRUE(r);
    auto v = wire::DnsView::parse(*r);
    EXPECT_EQ(v->id(), 0x77);
    EXPECT_EQ(v->ancount(), 1);
}

TEST_F(DnsForwarderTest, DnsForwarder_QueriesLeaveFromSeveralSourcePortsAndEachMustMatch) {
    Upstream up;
    start({up.host_port()});
    std::vector<std::pair<std::vector<uint8_t>, sockaddr_in>> sent;
    for (uint16_t i = 0; i < 40; i++) {
        query(make_query(static_cast<uint16_t>(100 + i), "example.test"),
              static_cast<uint16_t>(41000 + i));
        sockaddr_in from{};
        auto d = up.recv(1000, &from);
        ASSERT_TRUE(d);
        sent.emplace_back(*d, from);
    }
    std::vector<uint16_t> ports;
    for (auto& [d, from] : sent)
        if (std::find(ports.begin(), ports.end(), from.sin_port) == ports.end())
            ports.push_back(from.sin_port);
    EXPECT_GE(ports.size(), 2u) << "every query left from one source port";
    ASSERT_GE(ports.size(), 2u);
    // An answer with the right id from the right upstream, but sent to
    // another of our ports than the query left from, is dropped.
    auto& [first, first_from] = sent[0];
    sockaddr_in wrong = first_from;
    for (auto& [d, from] : sent)
        if (from.sin_port != first_from.sin_port) wrong = from;
    up.send_to(make_answer(first, 1), wrong);
    run_for(200);
    EXPECT_TRUE(guest.frames.empty());
    EXPECT_EQ(gw->dns().stats().dropped_unmatched, 1u);
    up.send_to(make_answer(first, 1), first_from);
    run_until_frames(1, 1000);
    ASSERT_EQ(guest.frames.size(), 1u);
    EXPECT_EQ(wire::DnsView::parse(*dns_to_guest(guest.frames[0]))->id(), 100);
}

// --- local names ---------------------------------------------------------

std::vector<uint8_t> make_query_type(uint16_t id, const char* name, uint16_t type) {
    auto q = make_query(id, name);
    wire::store16(&q[q.size() - 4], type);
    return q;
}

struct LocalNamesTest : DnsForwarderTest {
    Upstream up;
    void start_local(std::vector<HostPort> upstreams, bool ipv6 = false) {
        guest.mtu_ = 1500;
        sw.attach(guest);
        NetConfig cfg;
        cfg.dns_upstreams = std::move(upstreams);
        cfg.ipv6 = ipv6;
        cfg.domain = "example.test";
        cfg.dns_hosts = {{"db.test", wire::IpAddr::v4(ip("10.0.2.100"))},
                         {"db.test", *wire::IpAddr::parse("fec0::64")},
                         {"v6only.test", *wire::IpAddr::parse("2001:db8::6")}};
        gw = std::make_unique<Gateway>(loop, sw, cfg);
        gw->learn_neighbor(kGuest, kGuestMac, 1500);
    }
    // The answer's records (type, rdata as an address) for a query sent now.
    std::optional<wire::DnsView> ask(const std::vector<uint8_t>& q, std::vector<uint8_t>& keep) {
        guest.frames.clear();
        query(q);
        for (auto& f : guest.frames)
            if (auto r = dns_to_guest(f)) {
                keep = *r;
                return wire::DnsView::parse(keep);
            }
        return std::nullopt;
    }
    std::vector<std::string> addresses(const wire::DnsView& v) {
        std::vector<std::string> out;
        wire::DnsRecordIter it(v);
        wire::DnsRecord rec;
        while (it.next(rec)) {
            if (rec.type == wire::dnstype::a && rec.rdata.size() == 4)
                out.push_back(wire::IpAddr::v4_from(rec.rdata.data()).to_string());
            else if (rec.type == wire::dnstype::aaaa && rec.rdata.size() == 16)
                out.push_back(wire::IpAddr::v6_from(rec.rdata.data()).to_string());
        }
        return out;
    }
};

TEST_F(LocalNamesTest, Dns_LocalNamesAreAnsweredWithoutAskingUpstream) {
    start_local({up.host_port()}, true);
    std::vector<uint8_t> keep;
    using V = std::vector<std::string>;
    auto v = ask(make_query_type(1, "HOST.usernet.internal", wire::dnstype::a), keep);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->id(), 1);
    EXPECT_TRUE(v->qr());
    EXPECT_EQ(v->rcode(), wire::dnsrcode::noerror);
    EXPECT_EQ(addresses(*v), V{"10.0.2.2"});
    v = ask(make_query_type(2, "host.usernet.internal.", wire::dnstype::aaaa), keep);
    EXPECT_EQ(addresses(*v), V{"fec0::2"});
    v = ask(make_query_type(3, "db.test", wire::dnstype::a), keep);
    EXPECT_EQ(addresses(*v), V{"10.0.2.100"});
    v = ask(make_query_type(4, "db.test", wire::dnstype::any), keep);
    EXPECT_EQ(addresses(*v), (V{"10.0.2.100", "fec0::64"}));
    // Ours, but no IPv4 address: an empty answer, not a trip upstream.
    v = ask(make_query_type(5, "v6only.test", wire::dnstype::a), keep);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->rcode(), wire::dnsrcode::noerror);
    EXPECT_EQ(v->ancount(), 0);
    EXPECT_EQ(gw->dns().stats().local_answers, 5u);
    EXPECT_FALSE(up.recv(50)) << "a local name went upstream";
    // Anything else does.
    query(make_query(6, "example.org"));
    EXPECT_TRUE(up.recv(1000));
}

TEST_F(LocalNamesTest, Dns_LocalNamesWithoutAnyUpstream) {
    start_local({});
    std::vector<uint8_t> keep;
    auto v = ask(make_query_type(1, "db.test", wire::dnstype::a), keep);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->rcode(), wire::dnsrcode::noerror);
    EXPECT_EQ(addresses(*v), std::vector<std::string>{"10.0.2.100"});
    v = ask(make_query(2, "example.org"), keep);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->rcode(), wire::dnsrcode::refused);
}

TEST_F(LocalNamesTest, Dns_AGuestsDhcpHostNameIsAnsweredBareAndUnderTheDomain) {
    start_local({up.host_port()});
    auto& leases = gw->dhcp().leases();
    const Dhcp4ClientKey key = Dhcp4ClientKey::from_mac(kGuestMac);
    ASSERT_TRUE(leases.bind(key, kGuestMac, ip("10.0.2.15"), loop.now()));
    leases.set_hostname(ip("10.0.2.15"), "MyGuest.lan");  // the first label, lower case
    std::vector<uint8_t> keep;
    for (const char* name : {"myguest", "myguest.example.test", "MYGUEST.Example.Test"}) {
        auto v = ask(make_query(1, name), keep);
        ASSERT_TRUE(v) << name;
        EXPECT_EQ(addresses(*v), std::vector<std::string>{"10.0.2.15"}) << name;
    }
    // Not a label: not recorded.
    leases.set_hostname(ip("10.0.2.15"), "bad_name");
    query(make_query(2, "bad_name"));
    EXPECT_TRUE(up.recv(1000));
    // Released: gone.
    leases.set_hostname(ip("10.0.2.15"), "myguest");
    ASSERT_TRUE(leases.release(key, ip("10.0.2.15"), loop.now(), kGuestMac));
    query(make_query(3, "myguest"));
    EXPECT_TRUE(up.recv(1000));
}

// Reverse lookups of local addresses are answered with their names (as
// dnsmasq answers for its hosts and leases): a --dns-host name, the host's
// alias for the gateway, a guest's DHCP name under the domain; another
// address of the LAN gets NXDOMAIN. Any other address goes upstream.
TEST_F(LocalNamesTest, Dns_ReverseLookupsOfLocalAddressesAreAnswered) {
    start_local({up.host_port()}, true);
    auto& leases = gw->dhcp().leases();
    ASSERT_TRUE(leases.bind(Dhcp4ClientKey::from_mac(kGuestMac), kGuestMac, ip("10.0.2.15"),
                            loop.now()));
    leases.set_hostname(ip("10.0.2.15"), "myguest");
    auto ptr_of = [&](uint16_t id, const char* name) -> std::string {
        std::vector<uint8_t> keep;
        auto v = ask(make_query_type(id, name, wire::dnstype::ptr), keep);
        if (!v) return "(none)";
        wire::DnsRecordIter it(*v);
        wire::DnsRecord rec;
        while (it.next(rec)) {
            if (rec.type != wire::dnstype::ptr) continue;
            wire::DnsName target;
            if (!wire::dns_read_name(v->message(), rec.rdata_offset, target)) return "(bad)";
            return target.to_string();
        }
        return "(empty)";
    };
    EXPECT_EQ(ptr_of(1, "100.2.0.10.in-addr.arpa"), "db.test");
    EXPECT_EQ(ptr_of(2, "2.2.0.10.in-addr.arpa"), "host.usernet.internal");
    EXPECT_EQ(ptr_of(3, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.e.f.ip6.arpa"),
              "host.usernet.internal");
    EXPECT_EQ(ptr_of(4, "15.2.0.10.in-addr.arpa"), "myguest.example.test");
    EXPECT_EQ(ptr_of(5, "4.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.e.f.ip6.arpa"), "db.test");
    EXPECT_EQ(gw->dns().stats().local_answers, 5u);
    // An address of the LAN without a name: NXDOMAIN, from here.
    std::vector<uint8_t> keep;
    auto v = ask(make_query_type(6, "16.2.0.10.in-addr.arpa", wire::dnstype::ptr), keep);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->rcode(), wire::dnsrcode::nxdomain);
    EXPECT_TRUE(v->aa());
    EXPECT_FALSE(up.recv(50)) << "a local reverse name went upstream";
    // Any other address's goes upstream.
    query(make_query_type(7, "1.100.51.198.in-addr.arpa", wire::dnstype::ptr));
    EXPECT_TRUE(up.recv(1000));
}

TEST_F(LocalNamesTest, Dns_LocalhostIsTheLoopbackAndNoGuestsName) {
    // RFC 6761 6.3: an unconfigured image that sends "localhost" as its DHCP
    // name does not take the name over for every guest.
    start_local({up.host_port()}, true);
    auto& leases = gw->dhcp().leases();
    ASSERT_TRUE(leases.bind(Dhcp4ClientKey::from_mac(kGuestMac), kGuestMac, ip("10.0.2.15"),
                            loop.now()));
    leases.set_hostname(ip("10.0.2.15"), "LocalHost");
    std::vector<uint8_t> keep;
    using V = std::vector<std::string>;
    for (const char* name : {"localhost", "LocalHost.", "db.localhost"}) {
        auto v = ask(make_query_type(1, name, wire::dnstype::any), keep);
        ASSERT_TRUE(v) << name;
        EXPECT_EQ(addresses(*v), (V{"127.0.0.1", "::1"})) << name;
    }
    EXPECT_FALSE(up.recv(50)) << "a localhost name went upstream";
}

TEST_F(LocalNamesTest, Dns_ADomainGivenInCapitalsOrWithADotStillMatches) {
    guest.mtu_ = 1500;
    sw.attach(guest);
    NetConfig cfg;
    cfg.dns_upstreams = {up.host_port()};
    cfg.domain = "Lab.Test.";
    gw = std::make_unique<Gateway>(loop, sw, cfg);
    gw->learn_neighbor(kGuest, kGuestMac, 1500);
    auto& leases = gw->dhcp().leases();
    ASSERT_TRUE(leases.bind(Dhcp4ClientKey::from_mac(kGuestMac), kGuestMac, ip("10.0.2.15"),
                            loop.now()));
    leases.set_hostname(ip("10.0.2.15"), "vm1");
    std::vector<uint8_t> keep;
    for (const char* name : {"vm1.lab.test", "VM1.Lab.Test."}) {
        auto v = ask(make_query(1, name), keep);
        ASSERT_TRUE(v) << name;
        EXPECT_EQ(addresses(*v), std::vector<std::string>{"10.0.2.15"}) << name;
    }
    EXPECT_EQ(gw->config().domain, "lab.test");
}

// --- DNS over TCP (DnsTcpService) ---------------------------------------------

// A TCP resolver stand-in on 127.0.0.1: answers each framed query with
// `count` A records, in reverse order of arrival when it has two at once.
struct TcpUpstream {
    int lfd = -1;
    int cfd = -1;
    uint16_t port = 0;
    int accepted = 0;
    TcpUpstream() {
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        listen(lfd, 8);
        socklen_t len = sizeof sa;
        getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
        port = ntohs(sa.sin_port);
    }
    ~TcpUpstream() {
        if (cfd >= 0) close(cfd);
        close(lfd);
    }
    HostPort host_port() const { return HostPort{wire::IpAddr::v4(0x7f000001), port}; }
    // Accepts and reads whatever queries have arrived; answers them.
    void serve(std::vector<uint8_t>& in) {
        if (cfd < 0) {
            cfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (cfd < 0) return;
            accepted++;
        }
        uint8_t buf[4096];
        ssize_t n;
        while ((n = recv(cfd, buf, sizeof buf, 0)) > 0) in.insert(in.end(), buf, buf + n);
        std::vector<std::vector<uint8_t>> queries;
        while (in.size() >= 2 && in.size() >= 2u + (in[0] << 8 | in[1])) {
            size_t len = in[0] << 8 | in[1];
            queries.emplace_back(in.begin() + 2, in.begin() + 2 + static_cast<long>(len));
            in.erase(in.begin(), in.begin() + 2 + static_cast<long>(len));
        }
        for (auto it = queries.rbegin(); it != queries.rend(); ++it) {
            std::vector<uint8_t> a = make_answer(*it, 2);
            uint8_t hdr[2] = {static_cast<uint8_t>(a.size() >> 8), static_cast<uint8_t>(a.size())};
            send(cfd, hdr, 2, 0);
            send(cfd, a.data(), a.size(), 0);
        }
    }
};

struct DnsTcpTest : LocalNamesTest {
    // Framed messages read from fd, waiting up to ms for `want` of them,
    // serving `upstream` meanwhile; eof set when the session closed.
    std::vector<std::vector<uint8_t>> read_answers(int fd, size_t want, int ms,
                                                   TcpUpstream* upstream = nullptr,
                                                   bool* eof = nullptr) {
        std::vector<std::vector<uint8_t>> out;
        std::vector<uint8_t> buf, up_in;
        const core::Millis end = core::monotonic_ms() + static_cast<core::Millis>(ms);
        while (out.size() < want && core::monotonic_ms() < end) {
            loop.run_once(10);
            if (upstream) upstream->serve(up_in);
            uint8_t tmp[4096];
            ssize_t n;
            while ((n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT)) > 0) buf.insert(buf.end(), tmp, tmp + n);
            if (n == 0 && eof) *eof = true;
            while (buf.size() >= 2 && buf.size() >= 2u + (buf[0] << 8 | buf[1])) {
                size_t len = buf[0] << 8 | buf[1];
                out.emplace_back(buf.begin() + 2, buf.begin() + 2 + static_cast<long>(len));
                buf.erase(buf.begin(), buf.begin() + 2 + static_cast<long>(len));
            }
            if (n == 0) break;
        }
        return out;
    }
    static void send_framed(int fd, const std::vector<uint8_t>& q) {
        uint8_t hdr[2] = {static_cast<uint8_t>(q.size() >> 8), static_cast<uint8_t>(q.size())};
        ASSERT_EQ(send(fd, hdr, 2, MSG_NOSIGNAL), 2);
        ASSERT_EQ(send(fd, q.data(), q.size(), MSG_NOSIGNAL), static_cast<ssize_t>(q.size()));
    }
    static uint16_t id_of(const std::vector<uint8_t>& m) { return static_cast<uint16_t>(m[0] << 8 | m[1]); }
    static int rcode_of(const std::vector<uint8_t>& m) { return m[3] & 0xf; }
};

TEST_F(DnsTcpTest, DnsTcp_LocalNamesAnsweredAndOthersRelayedPipelined) {
    TcpUpstream tcp;
    start_local({tcp.host_port()});
    int fd = gw->dns_tcp().open_session(1);
    ASSERT_GE(fd, 0);
    // Local, upstream, local, upstream: back to back on one connection.
    send_framed(fd, make_query(1, "db.test"));
    send_framed(fd, make_query(2, "example.org"));
    send_framed(fd, make_query(3, "DB.TEST"));
    send_framed(fd, make_query(4, "example.net"));
    auto answers = read_answers(fd, 4, 3000, &tcp);
    ASSERT_EQ(answers.size(), 4u);
    std::vector<uint16_t> ids;
    for (auto& a : answers) {
        ids.push_back(id_of(a));
        EXPECT_EQ(rcode_of(a), 0);
        auto v = wire::DnsView::parse(a);
        ASSERT_TRUE(v);
        EXPECT_EQ(v->ancount(), id_of(a) % 2 ? 1 : 2);  // local: one A; upstream: two
    }
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<uint16_t>{1, 2, 3, 4}));
    EXPECT_EQ(tcp.accepted, 1);  // one upstream connection per session
    EXPECT_EQ(gw->dns_tcp().stats().local_answers, 2u);
    EXPECT_EQ(gw->dns_tcp().stats().forwarded, 2u);
    // The guest's close ends the session.
    shutdown(fd, SHUT_WR);
    bool eof = false;
    read_answers(fd, 1, 2000, nullptr, &eof);
    EXPECT_TRUE(eof);
    close(fd);
    loop.run_once(0);
    EXPECT_EQ(gw->dns_tcp().sessions(), 0u);
}

TEST_F(DnsTcpTest, DnsTcp_DeadUpstreamsGetServfailAtOnceAndNoUpstreamRefused) {
    start_local({HostPort{wire::IpAddr::v4(0x7f000001), closed_port()},
                 HostPort{wire::IpAddr::v4(0x7f000001), closed_port()}});
    int fd = gw->dns_tcp().open_session(1);
    ASSERT_GE(fd, 0);
    const core::Millis t0 = core::monotonic_ms();
    send_framed(fd, make_query(7, "example.org"));
    send_framed(fd, make_query(8, "db.test"));
    auto answers = read_answers(fd, 2, 3000);
    ASSERT_EQ(answers.size(), 2u);
    EXPECT_LT(core::monotonic_ms() - t0, 1000u);
    for (auto& a : answers) EXPECT_EQ(rcode_of(a), id_of(a) == 7 ? 2 : 0) << id_of(a);
    EXPECT_EQ(gw->dns_tcp().stats().servfail, 1u);
    close(fd);

    gw.reset();
    start_local({});
    fd = gw->dns_tcp().open_session(1);
    send_framed(fd, make_query(9, "example.org"));
    answers = read_answers(fd, 1, 2000);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(rcode_of(answers[0]), 5);  // REFUSED
    close(fd);
}

TEST_F(DnsTcpTest, DnsTcp_SilentUpstreamGetsServfailAfterTheWait) {
    TcpUpstream tcp;  // accepts (in the kernel) and never answers
    start_local({tcp.host_port()});
    int fd = gw->dns_tcp().open_session(1);
    ASSERT_GE(fd, 0);
    send_framed(fd, make_query(5, "example.org"));
    EXPECT_TRUE(read_answers(fd, 1, 300).empty());
    loop.advance_clock_for_tests(DnsTcpService::kUpstreamWaitMs + 1);
    auto answers = read_answers(fd, 1, 2000);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(id_of(answers[0]), 5);
    EXPECT_EQ(rcode_of(answers[0]), 2);  // SERVFAIL
    EXPECT_EQ(gw->dns_tcp().stats().upstream_timeouts, 1u);
    close(fd);
}

TEST_F(DnsTcpTest, DnsTcp_UpstreamThatClosesGetsTheQueriesAgainOnce) {
    TcpUpstream tcp;
    start_local({tcp.host_port()});
    int fd = gw->dns_tcp().open_session(1);
    ASSERT_GE(fd, 0);
    send_framed(fd, make_query(6, "example.org"));
    // The upstream reads the query and closes without an answer.
    for (int i = 0; i < 100 && tcp.cfd < 0; i++) {
        loop.run_once(10);
        tcp.cfd = accept4(tcp.lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    }
    ASSERT_GE(tcp.cfd, 0);
    for (int i = 0; i < 20; i++) loop.run_once(5);
    close(tcp.cfd);
    tcp.cfd = -1;
    // The query comes again on a new connection, and its answer gets through.
    auto answers = read_answers(fd, 1, 3000, &tcp);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(id_of(answers[0]), 6);
    EXPECT_EQ(rcode_of(answers[0]), 0);
    EXPECT_EQ(tcp.accepted, 1);  // the second connection (the first was taken by hand)
    close(fd);
}

// A query over kMaxQueryLen, or one whose question does not parse, gets
// FORMERR with its id; the session goes on, and answers the next query.
TEST_F(DnsTcpTest, DnsTcp_OverlongAndUnreadableQueriesGetFormerrAndTheSessionGoesOn) {
    TcpUpstream tcp;
    start_local({tcp.host_port()});
    int fd = gw->dns_tcp().open_session(1);
    ASSERT_GE(fd, 0);
    auto big = make_query(7, "big.test");
    big.resize(8192, 0);  // 8192 > kMaxQueryLen
    send_framed(fd, big);
    auto looped = make_query(8, "x.test");
    looped[12] = 0xc0;  // a compression pointer to itself
    looped[13] = 12;
    send_framed(fd, looped);
    send_framed(fd, make_query(9, "example.org"));
    auto answers = read_answers(fd, 3, 3000, &tcp);
    ASSERT_EQ(answers.size(), 3u);
    EXPECT_EQ(id_of(answers[0]), 7);
    EXPECT_EQ(rcode_of(answers[0]), wire::dnsrcode::formerr);
    EXPECT_EQ(id_of(answers[1]), 8);
    EXPECT_EQ(rcode_of(answers[1]), wire::dnsrcode::formerr);
    EXPECT_EQ(id_of(answers[2]), 9);
    EXPECT_EQ(rcode_of(answers[2]), 0);
    EXPECT_EQ(gw->dns_tcp().stats().formerr, 2u);
    EXPECT_EQ(gw->dns_tcp().stats().forwarded, 1u);
    EXPECT_EQ(gw->dns_tcp().stats().bad_queries, 0u);
    close(fd);
}

TEST_F(DnsTcpTest, DnsTcp_BadMessagesEndTheSessionAndSessionsAreBounded) {
    start_local({});
    // A length under a DNS header, an over-long response, a response.
    for (int k = 0; k < 3; k++) {
        int fd = gw->dns_tcp().open_session(1);
        ASSERT_GE(fd, 0);
        if (k == 0) {
            uint8_t runt[5] = {0, 3, 1, 2, 3};
            send(fd, runt, sizeof runt, MSG_NOSIGNAL);
        } else if (k == 1) {
            std::vector<uint8_t> r = make_query(1, "db.test");
            r[2] |= 0x80;  // QR: a response
            r.resize(8192, 0);  // 8192 > kMaxQueryLen
            send_framed(fd, r);
        } else {
            std::vector<uint8_t> r = make_query(1, "db.test");
            r[2] |= 0x80;  // QR: a response
            send_framed(fd, r);
        }
        bool eof = false;
        EXPECT_TRUE(read_answers(fd, 1, 2000, nullptr, &eof).empty()) << k;
        EXPECT_TRUE(eof) << k;
        close(fd);
    }
    EXPECT_EQ(gw->dns_tcp().stats().bad_queries, 3u);
    loop.run_once(0);
    // kMaxSessionsPerGuest for one attachment, kMaxSessions in all.
    std::vector<int> fds;
    for (size_t i = 0; i < DnsTcpService::kMaxSessionsPerGuest; i++) {
        int fd = gw->dns_tcp().open_session(1);
        ASSERT_GE(fd, 0);
        fds.push_back(fd);
    }
    EXPECT_EQ(gw->dns_tcp().open_session(1), -EAGAIN);
    for (uint32_t owner = 2; fds.size() < DnsTcpService::kMaxSessions; owner++) {
        for (size_t i = 0; i < DnsTcpService::kMaxSessionsPerGuest &&
                           fds.size() < DnsTcpService::kMaxSessions; i++) {
            int fd = gw->dns_tcp().open_session(owner);
            ASSERT_GE(fd, 0);
            fds.push_back(fd);
        }
    }
    EXPECT_EQ(gw->dns_tcp().open_session(999), -EAGAIN);
    // Idle sessions are closed after kIdleMs.
    loop.advance_clock_for_tests(DnsTcpService::kIdleMs + 1);
    loop.run_once(0);
    loop.run_once(0);
    EXPECT_EQ(gw->dns_tcp().sessions(), 0u);
    EXPECT_EQ(gw->dns_tcp().stats().idle_closed, DnsTcpService::kMaxSessions);
    for (int fd : fds) close(fd);
}

}  // namespace
}  // namespace usernet::gw
