// IcmpNat: echo through ping sockets and through the raw fallback, and the
// ICMP errors every translator sends to guests.
//
// The echo tests run once per mode. Each builds the mode it needs in a
// fresh network namespace of its own (lo up; net.ipv4.ping_group_range
// opened to every group for ping sockets, or left at a new namespace's
// "1 0", which refuses ping sockets even to root, for the raw fallback),
// so as root both modes are always tested, whatever the host's settings.
// The destination pinged is 192.0.2.1 (kLocalDst), or 2001:db8:ffff::1
// over IPv6, on that namespace's lo: an address of this machine outside the
// loopback range, which guests may not reach. Without the privilege to make a namespace the echo tests skip
// -- except under CI (CI=true), where the tests run as root and a skip is
// a failure. A reply that does not come is always a failure, never a skip.
//
// An IPv6 address is reachable only once the kernel's address work has run
// (it adds the local route, even on lo, which does no DAD; the work waits for
// the RTNL lock, which other tests' namespaces hold as they come and go), so
// the namespace waits for that route. Sending at once found no route on a
// loaded CI machine, and the guest got "destination unreachable" back.
#include "nat/icmp_nat.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "nat_harness.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv6.hpp"

namespace usernet::nat {
// For GoogleTest's names of the parameterised tests (found by ADL).
inline void PrintTo(IcmpNat::Mode m, std::ostream* os) {
    *os << (m == IcmpNat::Mode::ping_socket  ? "ping_socket"
            : m == IcmpNat::Mode::raw_socket ? "raw_socket"
                                             : "other");
}
}  // namespace usernet::nat

namespace usernet::testing {
namespace {

using Mode = nat::IcmpNat::Mode;

bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci && (std::string(ci) == "true" || std::string(ci) == "1" || std::string(ci) == "yes");
}

const char* mode_name(Mode m) {
    switch (m) {
    case Mode::undecided: return "undecided";
    case Mode::ping_socket: return "ping_socket";
    case Mode::raw_socket: return "raw_socket";
    case Mode::unavailable: return "unavailable";
    }
    return "?";
}

// Whether the calling thread's namespace gives IcmpNat this mode (it tries
// a ping socket first, then a raw one).
bool namespace_gives(Mode m) {
    int p = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (p >= 0) close(p);
    if (m == Mode::ping_socket) return p >= 0;
    int r = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (r >= 0) close(r);
    return p < 0 && r >= 0;
}

// Puts the calling thread, for its lifetime, in a fresh network namespace
// set up for one echo mode (see the top of the file). Declare it before the
// harness, so that the harness's sockets are closed before we leave.
class ModeNetns {
public:
    explicit ModeNetns(Mode m) {
        own_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (own_ >= 0 && unshare(CLONE_NEWNET) == 0) {
            entered_ = true;
            if (!lo_up()) {
                why_ = std::string("cannot bring lo up: ") + std::strerror(errno);
                return;
            }
            if (std::system("ip addr add 192.0.2.1/32 dev lo") != 0 ||
                std::system("ip -6 addr add 2001:db8:ffff::1/128 dev lo") != 0) {
                why_ = "cannot add 192.0.2.1 and 2001:db8:ffff::1 to lo (ip addr add)";
                return;
            }
            if (!ipv6_settled()) {
                why_ = "2001:db8:ffff::1 on lo has no local route after 10 s";
                return;
            }
            std::ofstream f("/proc/sys/net/ipv4/ping_group_range");
            f << (m == Mode::ping_socket ? "0 2147483647" : "1 0") << "\n";
            f.close();
            if (!f) {
                why_ = "cannot write net.ipv4.ping_group_range";
                return;
            }
        } else {
            // Not in the host's namespace: there 192.0.2.1 would leave the
            // machine.
            why_ = std::string("cannot make a network namespace (") + std::strerror(errno) + ")";
            return;
        }
        ok_ = namespace_gives(m);
        if (!ok_ && entered_) why_ = std::string("a fresh namespace does not give ") + mode_name(m);
    }
    ~ModeNetns() {
        if (entered_ && setns(own_, CLONE_NEWNET) != 0) std::abort();
        if (own_ >= 0) close(own_);
    }
    bool ok() const { return ok_; }
    const std::string& why() const { return why_; }

private:
    // Whether the kernel has installed the local route to 2001:db8:ffff::1,
    // polled for up to 10 s.
    static bool ipv6_settled() {
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        do {
            FILE* p = popen("ip -6 route show table local 2001:db8:ffff::1", "r");
            if (!p) return false;
            char line[256];
            bool routed = std::fgets(line, sizeof line, p) != nullptr;
            if (pclose(p) != 0) return false;
            if (routed) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        } while (std::chrono::steady_clock::now() < until);
        return false;
    }
    static bool lo_up() {
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) return false;
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
        ifr.ifr_flags |= IFF_UP;
        ok = ok && ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
        close(s);
        return ok;
    }
    int own_ = -1;
    bool entered_ = false;
    bool ok_ = false;
    std::string why_;
};

// Skips when the mode cannot be had here, and fails instead under CI.
#define ENTER_ECHO_MODE(ns)                                                              \
    ModeNetns ns(GetParam());                                                            \
    if (!ns.ok()) {                                                                      \
        if (in_ci()) FAIL() << "CI=true: " << ns.why() << " (run the tests as root)";  \
        GTEST_SKIP() << ns.why();                                                        \
    }

// Sends an echo request and runs the loop until a reply arrives: false
// when none came (a lost reply; the caller fails).
bool ping(NatHarness& h, wire::Ipv4 src, wire::Ipv4 dst, uint16_t id, uint16_t seq,
          size_t len = 32, const wire::MacAddr& mac = kGuestMac) {
    size_t before = h.ip_frames().size();
    h.input(echo_frame(src, dst, id, seq, len, 64, mac));
    return h.run_until([&] { return h.ip_frames().size() > before; });
}

class IcmpEcho : public ::testing::TestWithParam<Mode> {};

INSTANTIATE_TEST_SUITE_P(Modes, IcmpEcho, ::testing::Values(Mode::ping_socket, Mode::raw_socket),
                         [](const auto& info) { return std::string(mode_name(info.param)); });

TEST_P(IcmpEcho, IcmpNat_EchoIsAnsweredWithTheGuestsIdentifierAndSequence) {
    ENTER_ECHO_MODE(ns);
    NatHarness h;
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 0x1234, 7)) << "echo reply lost";
    EXPECT_EQ(h.nat->icmp().mode(), GetParam());
    auto f = *h.first_of(wire::ipproto::icmp);
    EXPECT_EQ(f.src, kLocalDst);  // from the address the guest pinged
    EXPECT_EQ(f.dst, kGuestIp);
    auto icmp = wire::Icmp4View::parse(f.l4);
    ASSERT_TRUE(icmp);
    EXPECT_TRUE(icmp->checksum_ok());
    EXPECT_EQ(icmp->type(), wire::icmptype::echo_reply);
    EXPECT_EQ(icmp->echo_id(), 0x1234);
    EXPECT_EQ(icmp->echo_seq(), 7);
    ASSERT_EQ(icmp->payload().size(), 32u);
    for (size_t i = 0; i < 32; i++) EXPECT_EQ(icmp->payload()[i], static_cast<uint8_t>(i * 7));
    EXPECT_EQ(h.nat->icmp().flow_count(), 1u);
    // The next request of the same session uses the same flow.
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 0x1234, 8)) << "echo reply lost";
    EXPECT_EQ(h.nat->icmp().flow_count(), 1u);
    EXPECT_EQ(h.nat->icmp().stats().echo_replies, 2u);
}

// Bursts of 100 requests in flight (ping -l, ping -f over a long path),
// then their replies: each one reaches the guest, whatever the sequence
// numbers do (the raw fallback kept 16 and dropped the rest).
TEST_P(IcmpEcho, IcmpNat_EveryRequestInFlightGetsItsReply) {
    ENTER_ECHO_MODE(ns);
    NatHarness h;
    auto run = [](uint16_t from, uint16_t n) {
        std::vector<uint16_t> v;
        for (uint16_t i = 0; i < n; i++) v.push_back(static_cast<uint16_t>(from + i));
        return v;
    };
    std::vector<std::vector<uint16_t>> bursts{
        run(0, 100), run(150, 100),
        run(65480, 100),  // a jump, and across the wrap
    };
    std::vector<uint16_t> last{40000, 39999};  // a jump, one behind it, then ahead
    for (uint16_t s : run(40001, 98)) last.push_back(s);
    bursts.push_back(last);
    size_t want = 0;
    for (const std::vector<uint16_t>& burst : bursts) {
        const size_t before = h.ip_frames().size();
        for (uint16_t s : burst) h.input(echo_frame(kGuestIp, kLocalDst, 0x4242, s, 16));
        want += burst.size();
        ASSERT_TRUE(h.run_until([&] { return h.ip_frames().size() >= want; }))
            << h.ip_frames().size() - before << " of " << burst.size() << " replies from "
            << burst.front();
        std::vector<uint16_t> got;
        const auto frames = h.ip_frames();
        for (size_t i = before; i < frames.size(); i++) {
            auto icmp = wire::Icmp4View::parse(frames[i].l4);
            ASSERT_TRUE(icmp);
            EXPECT_EQ(icmp->type(), wire::icmptype::echo_reply);
            got.push_back(icmp->echo_seq());
        }
        std::vector<uint16_t> sent = burst;
        std::sort(got.begin(), got.end());
        std::sort(sent.begin(), sent.end());
        EXPECT_EQ(got, sent);
    }
    EXPECT_EQ(h.nat->icmp().stats().echo_replies, want);
}

TEST_P(IcmpEcho, IcmpNat_TwoGuestsWithTheSameIdentifierGetTheirOwnReplies) {
    ENTER_ECHO_MODE(ns);
    NatHarness h;
    const wire::Ipv4 other = kGuestIp + 1;
    const wire::MacAddr other_mac{{0x52, 0x54, 0, 0, 0, 0x16}};
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 1, 1)) << "echo reply lost";
    ASSERT_TRUE(ping(h, other, kLocalDst, 1, 1, 32, other_mac)) << "echo reply lost";
    EXPECT_EQ(h.nat->icmp().mode(), GetParam());
    EXPECT_EQ(h.nat->icmp().flow_count(), 2u);
    auto frames = h.ip_frames();
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].dst, kGuestIp);
    EXPECT_EQ(frames[1].dst, other);
    for (auto& f : frames) EXPECT_EQ(wire::Icmp4View::parse(f.l4)->echo_id(), 1);
}

// --- ICMPv6 echo, through an ICMPv6 echo socket or the raw fallback ---

const wire::IpAddr kGuest6 = *wire::IpAddr::parse("fec0::5054:ff:fe12:3456");
const wire::IpAddr kLocalDst6 = *wire::IpAddr::parse("2001:db8:ffff::1");

[[gnu::noinline]] std::vector<uint8_t> echo6_frame(const wire::IpAddr& src,
                                                   const wire::IpAddr& dst, uint16_t id,
                                                   uint16_t seq, size_t len,
                                                   uint8_t hop_limit = 64) {
    std::vector<uint8_t> f(14 + 40 + 8 + len);
    wire::build_ethernet(f.data(), wire::MacAddr{{0x52, 0x55, 10, 0, 2, 2}}, kGuestMac,
                         wire::ethertype::ipv6);
    uint8_t* m = f.data() + 54;
    m[0] = wire::icmp6type::echo_request;
    wire::store32(m + 4, (uint32_t{id} << 16) | seq);
    for (size_t i = 0; i < len; i++) m[8 + i] = static_cast<uint8_t>(i * 5);
    wire::finish_icmp6(m, 8 + len, src, dst);
    wire::build_ipv6(f.data() + 14, src, dst, wire::ipproto::icmpv6, 8 + len, hop_limit);
    return f;
}

// The ICMPv6 messages sent to guest so far, with their source.
std::vector<std::pair<wire::IpAddr, std::vector<uint8_t>>> icmp6_to(const NatHarness& h,
                                                                    const wire::IpAddr& guest) {
    std::vector<std::pair<wire::IpAddr, std::vector<uint8_t>>> out;
    for (const auto& f : h.guest.frames) {
        auto eth = wire::EthernetView::parse(f);
        if (!eth || eth->ethertype() != wire::ethertype::ipv6) continue;
        auto ip = wire::Ipv6View::parse(eth->payload());
        if (!ip || ip->protocol() != wire::ipproto::icmpv6 || ip->dst_addr() != guest) continue;
        auto icmp = wire::Icmp6View::parse(ip->payload());
        if (!icmp || !icmp->checksum_ok(ip->src_addr(), guest) ||
            icmp->type() == wire::icmp6type::router_advert)
            continue;
        out.emplace_back(ip->src_addr(),
                         std::vector<uint8_t>(ip->payload().begin(), ip->payload().end()));
    }
    return out;
}

TEST_P(IcmpEcho, IcmpNat_Ipv6EchoIsAnsweredWithTheGuestsIdentifierAndSequence) {
    ENTER_ECHO_MODE(ns);
    NatHarness h;
    for (uint16_t seq = 1; seq <= 2; seq++) {
        h.guest.frames.clear();
        h.input(echo6_frame(kGuest6, kLocalDst6, 0x4321, seq, 48));
        ASSERT_TRUE(h.run_until([&] { return !icmp6_to(h, kGuest6).empty(); }))
            << "echo reply lost";
        auto got = icmp6_to(h, kGuest6);
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0].first, kLocalDst6);  // from the address the guest pinged
        auto icmp = wire::Icmp6View::parse(got[0].second);
        EXPECT_EQ(icmp->type(), wire::icmp6type::echo_reply) << "code " << int(icmp->code());
        EXPECT_EQ(icmp->echo_id(), 0x4321);
        EXPECT_EQ(icmp->echo_seq(), seq);
        ASSERT_EQ(icmp->body().size(), 48u);
        for (size_t i = 0; i < 48; i++) EXPECT_EQ(icmp->body()[i], static_cast<uint8_t>(i * 5));
    }
    EXPECT_EQ(h.nat->icmp().mode(), GetParam());
    EXPECT_EQ(h.nat->icmp().flow_count(), 1u);
    EXPECT_EQ(h.nat->icmp().stats().echo_replies, 2u);
    EXPECT_EQ(h.nat->icmp().stats().dropped_unavailable, 0u);
}

// IPv4 and IPv6 echo flows share the host-side identifiers of the raw
// fallback: each gets its own reply.
TEST_P(IcmpEcho, IcmpNat_Ipv4AndIpv6EchoSideBySide) {
    ENTER_ECHO_MODE(ns);
    NatHarness h;
    for (uint16_t seq = 1; seq <= 3; seq++) {
        ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 7, seq)) << "IPv4 echo reply lost";
        h.input(echo6_frame(kGuest6, kLocalDst6, 7, seq, 8));
        ASSERT_TRUE(h.run_until([&] { return icmp6_to(h, kGuest6).size() == seq; }))
            << "IPv6 echo reply lost";
    }
    EXPECT_EQ(h.nat->icmp().flow_count(), 2u);
    EXPECT_EQ(h.nat->icmp().stats().echo_replies, 6u);
    EXPECT_EQ(h.nat->icmp().stats().raw_ignored, 0u);
}

TEST(IcmpNat, IcmpNat_BadChecksumAndOtherTypesAreDropped) {
    NatHarness h;
    auto f = echo_frame(kGuestIp, kLocalDst, 1, 1, 8);
    f[34 + 2] ^= 1;
    h.input(f);
    EXPECT_EQ(h.nat->icmp().stats().dropped_checksum, 1u);
    std::vector<uint8_t> ts(20);
    wire::build_icmp4(ts.data(), 13, 0, 0, ts.size());  // timestamp request
    h.input(ipv4_frame(kGuestIp, kLocalDst, wire::ipproto::icmp, ts));
    EXPECT_EQ(h.nat->icmp().stats().dropped_unsupported, 1u);
    EXPECT_EQ(h.nat->icmp().flow_count(), 0u);
    EXPECT_EQ(h.nat->icmp().mode(), Mode::undecided);  // nothing probed yet
}

TEST_P(IcmpEcho, IcmpNat_FlowCapEvictsTheLeastRecentlyUsed) {
    ENTER_ECHO_MODE(ns);
    nat::NatLimits lim;
    lim.icmp_flows = 2;
    NatHarness h(lim);
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 1, 1)) << "echo reply lost";
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 2, 1)) << "echo reply lost";
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 3, 1)) << "echo reply lost";
    EXPECT_EQ(h.nat->icmp().flow_count(), 2u);
    EXPECT_EQ(h.nat->icmp().stats().flows_evicted, 1u);
}

TEST_P(IcmpEcho, IcmpNat_IdleFlowsExpire) {
    ENTER_ECHO_MODE(ns);
    nat::NatLimits lim;
    lim.icmp_idle_ms = 50;
    NatHarness h(lim);
    ASSERT_TRUE(ping(h, kGuestIp, kLocalDst, 1, 1)) << "echo reply lost";
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    h.loop.run_once(0);
    h.nat->icmp().expire_idle();
    EXPECT_EQ(h.nat->icmp().flow_count(), 0u);
    EXPECT_EQ(h.nat->icmp().stats().flows_expired, 1u);
}

TEST(IcmpNat, IcmpNat_UnmappedDestinationGetsHostUnreachable) {
    NatHarness h;
    h.input(echo_frame(kGuestIp, 0x0a000263, 1, 1, 8));  // 10.0.2.99
    auto f = h.first_of(wire::ipproto::icmp);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->src, kGatewayIp);
    EXPECT_EQ(wire::Icmp4View::parse(f->l4)->type(), wire::icmptype::dest_unreach);
}

// --- errors toward guests ----------------------------------------------------

std::vector<uint8_t> udp_packet() {
    auto f = udp_frame(kGuestIp, 0xc0000201, 1000, 2000, bytes("data"));
    return std::vector<uint8_t>(f.begin() + 14, f.begin() + 14 + 20 + 8 + 4);
}

TEST(IcmpErrors, IcmpErrors_AreRateLimited) {
    NatHarness h;
    auto q = udp_packet();
    int sent = 0;
    for (int i = 0; i < 200; i++)
        sent += h.nat->icmp().send_error(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                          3, 1, 0, q);
    EXPECT_GE(sent, 40);
    EXPECT_LE(sent, 60);
    EXPECT_EQ(h.nat->icmp().stats().errors_rate_limited, static_cast<uint64_t>(200 - sent));
}

TEST(IcmpErrors, IcmpErrors_NeverAboutAnIcmpErrorOrToABroadcast) {
    NatHarness h;
    std::vector<uint8_t> err(28);
    wire::build_ipv4(err.data(), kGuestIp, 0xc0000201, wire::ipproto::icmp, 8);
    wire::build_icmp4(err.data() + 20, 3, 3, 0, 8);
    EXPECT_FALSE(h.nat->icmp().send_error(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                           3, 1, 0, err));
    EXPECT_FALSE(h.nat->icmp().send_error(wire::IpAddr::v4(kGatewayIp),
                                           wire::IpAddr::v4(0x0a0002ff), 3, 1, 0, udp_packet()));
    EXPECT_TRUE(h.nat->icmp().send_error(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                          3, 1, 0, udp_packet()));
}

TEST(IcmpErrors, IcmpErrors_QuoteIsCutToKeepTheErrorWithin576Bytes) {
    NatHarness h;
    auto f = udp_frame(kGuestIp, 0xc0000201, 1000, 2000, std::vector<uint8_t>(1200, 0xab));
    std::vector<uint8_t> pkt(f.begin() + 14, f.end());
    ASSERT_TRUE(h.nat->icmp().send_error(wire::IpAddr::v4(kGatewayIp), wire::IpAddr::v4(kGuestIp),
                                          3, 1, 0, pkt));
    auto e = h.first_of(wire::ipproto::icmp);
    ASSERT_TRUE(e);
    EXPECT_EQ(20 + e->l4.size(), 576u);
    EXPECT_TRUE(wire::Icmp4View::parse(e->l4)->checksum_ok());
}

// An IPv6 guest gets the ICMPv6 message for the ICMPv4 one (RFC 7915 4.2).
TEST(IcmpErrors, IcmpErrors_GoToAnIpv6GuestAsIcmpv6) {
    NatHarness h;
    const auto guest = *wire::IpAddr::parse("fec0::15");
    const auto gw6 = *wire::IpAddr::parse("fec0::2");
    const auto remote = *wire::IpAddr::parse("2001:db8::1");
    // The guest makes itself known (the IPv6 source guard learns it).
    std::vector<uint8_t> hello(14 + 40 + 8, 0);
    wire::build_ethernet(hello.data(), h.cfg.gw_mac, kGuestMac, wire::ethertype::ipv6);
    wire::build_ipv6(hello.data() + 14, guest, gw6, wire::ipproto::icmpv6, 8);
    hello[54] = wire::icmp6type::echo_request;
    wire::finish_icmp6(&hello[54], 8, guest, gw6);
    h.input(hello);
    h.guest.frames.clear();
    // What the guest sent: UDP to a remote address.
    std::vector<uint8_t> pkt(40 + 8 + 4, 0);
    wire::build_ipv6(pkt.data(), guest, remote, wire::ipproto::udp, 12);
    wire::build_udp(pkt.data() + 40, guest, remote, 1000, 2000, 4);
    struct Case {
        uint8_t type, code;
        uint32_t rest;
        uint8_t t6, c6;
        uint32_t r6;
    };
    for (Case c : {Case{3, 3, 0, 1, 4, 0},                 // port unreachable
                   Case{3, 1, 0, 1, 3, 0},                 // host: address unreachable
                   Case{3, 0, 0, 1, 0, 0},                 // net: no route
                   Case{3, 13, 0, 1, 1, 0},                // administratively prohibited
                   Case{3, 4, 1400, 2, 0, 1400},           // fragmentation needed: too big
                   Case{3, 4, 576, 2, 0, 1280},            // ... never below IPv6's minimum
                   Case{11, 0, 0, 3, 0, 0}}) {             // time exceeded
        h.guest.frames.clear();
        ASSERT_TRUE(h.nat->icmp().send_error(gw6, guest, c.type, c.code, c.rest, pkt))
            << int(c.type) << "/" << int(c.code);
        ASSERT_EQ(h.guest.frames.size(), 1u);
        auto eth = wire::EthernetView::parse(h.guest.frames[0]);
        auto ip = wire::Ipv6View::parse(eth->payload());
        ASSERT_TRUE(ip);
        auto m = wire::Icmp6View::parse(ip->payload());
        ASSERT_TRUE(m);
        EXPECT_TRUE(m->checksum_ok(gw6, guest));
        EXPECT_EQ(m->type(), c.t6);
        EXPECT_EQ(m->code(), c.c6);
        EXPECT_EQ(wire::load32(&m->message()[4]), c.r6);
        EXPECT_EQ(0, std::memcmp(m->message().data() + 8, pkt.data(), pkt.size()));  // the quote
        h.loop.advance_clock_for_tests(100);  // refill the error bucket
    }
    // Never about an ICMPv6 error.
    std::vector<uint8_t> err(40 + 8, 0);
    wire::build_ipv6(err.data(), guest, remote, wire::ipproto::icmpv6, 8);
    err[40] = wire::icmp6type::dest_unreach;
    EXPECT_FALSE(h.nat->icmp().send_error(gw6, guest, 3, 1, 0, err));
}

TEST(IcmpErrors, IcmpErrors_LocalSendFailuresMapToUnreachableCodes) {
    EXPECT_EQ(nat::unreach_code_for_errno(ENETUNREACH), wire::icmpcode::net_unreach);
    EXPECT_EQ(nat::unreach_code_for_errno(EHOSTUNREACH), wire::icmpcode::host_unreach);
    EXPECT_EQ(nat::unreach_code_for_errno(EPERM), wire::icmpcode::admin_prohibited);
    EXPECT_FALSE(nat::unreach_code_for_errno(EAGAIN));
}

}  // namespace
}  // namespace usernet::testing
