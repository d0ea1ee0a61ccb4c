// The TCP translator against a pretend guest: segments built here go in
// through the real switch and gateway, host sockets are real (127.0.0.1),
// and what the guest receives is decoded and checked against RFC 9293,
// RFC 5961 and the translator's own rules (ACK only what the kernel took,
// one coalesced ACK per batch, retransmission from the kernel's queue).
#include "nat/tcp_nat.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <cstring>
#include <string>
#include <vector>

#include "nat/nat.hpp"
#include "nat_harness.hpp"
#include "wire/checksum.hpp"
#include "wire/icmp4.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"

namespace usernet::testing {
namespace {

namespace flag = wire::tcpflag;
constexpr uint16_t kGuestPort = 40000;
constexpr uint32_t kGuestIsn = 1000000;

// A segment the guest received, decoded.
struct Seg {
    uint16_t sport = 0, dport = 0;
    uint32_t seq = 0, ack = 0;
    uint8_t flags = 0;
    uint16_t window = 0;
    wire::TcpOptions opts;
    std::vector<uint8_t> payload;
    bool has(uint8_t f) const { return (flags & f) != 0; }
    std::string str() const {
        return "seq " + std::to_string(seq) + " ack " + std::to_string(ack) + " flags " +
               std::to_string(flags) + " len " + std::to_string(payload.size());
    }
};

// A listening socket on 127.0.0.1.
struct Listener {
    int fd = -1;
    uint16_t port = 0;
    explicit Listener(int rcvbuf = 0) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        sockaddr_in a = loopback_addr(0);
        bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        listen(fd, 16);
        port = local_port(fd);
    }
    ~Listener() { close(fd); }
    // Accepts within ms, or -1.
    int accept_wait(int ms = 2000) const {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0) return -1;
        return accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    }
};

// Reads exactly n bytes from a blocking socket (with a timeout), or fewer on EOF/error.
std::string read_n(int fd, size_t n, int ms = 2000) {
    std::string out;
    while (out.size() < n) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0) break;
        char buf[65536];
        ssize_t r = recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
        if (r <= 0) break;
        out.append(buf, static_cast<size_t>(r));
    }
    return out;
}

// The guest end of one connection.
class TcpGuest {
public:
    TcpGuest(NatHarness& h, wire::Ipv4 dst, uint16_t dport, uint16_t sport = kGuestPort)
        : h_(h), dst_(dst), dport_(dport), sport_(sport) {}

    void send(uint8_t flags, uint32_t seq, uint32_t ack, const std::string& payload = {},
              uint16_t window = 65535, bool syn_opts = false) {
        std::vector<uint8_t> seg(wire::kTcpMaxHeaderLen + payload.size());
        wire::TcpOptionsOut o;
        o.mss = 1460;
        o.wscale = 7;
        o.sack_permitted = sack;
        size_t hl = wire::build_tcp(seg.data(), sport_, dport_, seq, ack, flags, window,
                                    syn_opts ? &o : nullptr);
        std::memcpy(seg.data() + hl, payload.data(), payload.size());
        seg.resize(hl + payload.size());
        wire::finish_tcp_checksum(seg.data(), seg.size(), wire::IpAddr::v4(kGuestIp),
                                  wire::IpAddr::v4(dst_));
        h_.input(ipv4_frame(kGuestIp, dst_, wire::ipproto::tcp, seg));
    }

    // A segment with exactly these option bytes (a multiple of 4 long).
    void send_raw_opts(uint8_t flags, uint32_t seq, uint32_t ack, const std::vector<uint8_t>& opts,
                       uint16_t window = 65535) {
        std::vector<uint8_t> seg(wire::kTcpHeaderLen + opts.size());
        wire::build_tcp(seg.data(), sport_, dport_, seq, ack, flags, window);
        seg[12] = static_cast<uint8_t>((seg.size() / 4) << 4);
        std::memcpy(seg.data() + wire::kTcpHeaderLen, opts.data(), opts.size());
        wire::finish_tcp_checksum(seg.data(), seg.size(), wire::IpAddr::v4(kGuestIp),
                                  wire::IpAddr::v4(dst_));
        h_.input(ipv4_frame(kGuestIp, dst_, wire::ipproto::tcp, seg));
    }

    // Segments received since the last call.
    std::vector<Seg> take() {
        std::vector<Seg> out;
        for (auto& f : h_.ip_frames()) {
            if (f.proto != wire::ipproto::tcp) continue;
            auto v = wire::TcpView::parse(f.l4);
            if (!v) continue;
            EXPECT_TRUE(v->checksum_ok(wire::IpAddr::v4(f.src), wire::IpAddr::v4(f.dst)));
            Seg s;
            s.sport = v->src_port();
            s.dport = v->dst_port();
            s.seq = v->seq();
            s.ack = v->ack();
            s.flags = v->flags();
            s.window = v->window();
            s.opts = v->parse_options();
            s.payload.assign(v->payload().begin(), v->payload().end());
            out.push_back(std::move(s));
        }
        h_.guest.frames.clear();
        return out;
    }

    // Runs the loop until at least n segments arrived; returns them.
    std::vector<Seg> wait(size_t n, int ms = 2000) {
        std::vector<Seg> got;
        h_.run_until(
            [&] {
                for (auto& s : take()) got.push_back(std::move(s));
                return got.size() >= n;
            },
            ms);
        return got;
    }
    // Runs the loop for ms and returns whatever arrived.
    std::vector<Seg> settle(int ms = 50) {
        h_.run_until([] { return false; }, ms);
        return take();
    }

    // Three-way handshake with a listener; returns the accepted host socket.
    int connect(const Listener& l) {
        send(flag::syn, kGuestIsn, 0, {}, 65535, true);
        auto synack = wait(1);
        if (synack.size() != 1 || synack[0].flags != (flag::syn | flag::ack)) return -1;
        last_synack = synack[0];
        peer_isn = synack[0].seq;
        rcv_nxt = peer_isn + 1;
        snd_nxt = kGuestIsn + 1;
        send(flag::ack, snd_nxt, rcv_nxt, {}, 1024);  // window 1024 << 7
        int fd = l.accept_wait();
        settle(20);
        return fd;
    }

    bool sack = false;     // offer SACK in the SYN
    Seg last_synack;       // what connect() got
    uint32_t peer_isn = 0;
    uint32_t rcv_nxt = 0;  // next byte expected from usernet
    uint32_t snd_nxt = 0;  // next byte the guest sends

private:
    NatHarness& h_;
    wire::Ipv4 dst_;
    uint16_t dport_;
    uint16_t sport_;
};

std::string pattern(size_t n, int salt = 0) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>('a' + (i * 7 + salt) % 26);
    return s;
}

// --- opening ---------------------------------------------------------------------

TEST(TcpNat, TcpNat_SynIsAnsweredWithSynAckOnlyAfterTheHostConnects) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    const Seg& sa = segs[0];
    EXPECT_EQ(sa.flags, flag::syn | flag::ack);
    EXPECT_EQ(sa.ack, kGuestIsn + 1);
    EXPECT_EQ(sa.sport, l.port);
    EXPECT_EQ(sa.dport, kGuestPort);
    ASSERT_TRUE(sa.opts.mss.has_value());
    EXPECT_EQ(*sa.opts.mss, 1460);  // 1500-byte attachment
    ASSERT_TRUE(sa.opts.wscale.has_value());
    EXPECT_EQ(*sa.opts.wscale, nat::tcp::kOurWindowScale);
    EXPECT_FALSE(sa.opts.sack_permitted);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
}

TEST(TcpNat, TcpNat_RetransmittedSynWhileConnectingIsIgnored) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g.wait(1);
    segs = g.settle();
    EXPECT_LE(segs.size(), 1u);  // at most the SYN-ACK again for the retransmission
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    EXPECT_EQ(h.nat->tcp().stats().flows_outbound, 1u);
}

TEST(TcpNat, TcpNat_RefusedConnectSendsRstAck) {
    NatHarness h;
    uint16_t closed = free_port(SOCK_STREAM);
    TcpGuest g(h, kGatewayIp, closed);
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::rst | flag::ack);
    EXPECT_EQ(segs[0].ack, kGuestIsn + 1);
    EXPECT_TRUE(h.run_until([&] { return h.nat->tcp().flow_count() == 0; }));
    EXPECT_EQ(h.nat->tcp().stats().connect_refused, 1u);
}

TEST(TcpNat, TcpNat_PerGuestFlowLimitAnswersRst) {
    nat::NatLimits lim;
    lim.tcp_flows_per_guest = 1;
    NatHarness h(lim);
    Listener l;
    TcpGuest g1(h, kGatewayIp, l.port, 40001);
    TcpGuest g2(h, kGatewayIp, l.port, 40002);
    g1.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    g2.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g1.wait(2);
    ASSERT_EQ(segs.size(), 2u);
    int rst = 0, synack = 0;
    for (auto& s : segs) {
        if (s.dport == 40002 && s.flags == (flag::rst | flag::ack)) rst++;
        if (s.dport == 40001 && s.flags == (flag::syn | flag::ack)) synack++;
    }
    EXPECT_EQ(rst, 1);
    EXPECT_EQ(synack, 1);
    EXPECT_EQ(h.nat->tcp().stats().refused_limit, 1u);
}

TEST(TcpNat, TcpNat_SegmentForNoFlowGetsTheRfc9293Reset) {
    NatHarness h;
    TcpGuest g(h, kGatewayIp, 9);
    g.send(flag::ack, 5000, 777);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::rst);
    EXPECT_EQ(segs[0].seq, 777u);
    g.send(flag::fin, 6000, 0, "abc");
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::rst | flag::ack);
    EXPECT_EQ(segs[0].ack, 6000u + 3 + 1);
    g.send(flag::rst, 7000, 0);
    EXPECT_TRUE(g.settle().empty());  // never answer a RST
}

TEST(TcpNat, TcpNat_BadChecksumIsDropped) {
    NatHarness h;
    Listener l;
    std::vector<uint8_t> seg(20);
    wire::build_tcp(seg.data(), kGuestPort, l.port, kGuestIsn, 0, flag::syn, 65535);
    wire::finish_tcp_checksum(seg.data(), seg.size(), wire::IpAddr::v4(kGuestIp),
                              wire::IpAddr::v4(kGatewayIp));
    seg[16] ^= 0x55;
    h.input(ipv4_frame(kGuestIp, kGatewayIp, wire::ipproto::tcp, seg));
    h.run_until([] { return false; }, 50);
    EXPECT_EQ(h.nat->tcp().stats().dropped_malformed, 1u);
    EXPECT_EQ(h.nat->tcp().flow_count(), 0u);
}

// --- guest to host ---------------------------------------------------------------

TEST(TcpNat, TcpNat_GuestDataReachesTheHostAndABatchGetsOneAck) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    std::string data = pattern(3000);
    // Three segments in one event-loop batch.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, data.substr(0, 1000), 1024);
    g.send(flag::ack, g.snd_nxt + 1000, g.rcv_nxt, data.substr(1000, 1000), 1024);
    g.send(flag::ack | flag::psh, g.snd_nxt + 2000, g.rcv_nxt, data.substr(2000), 1024);
    h.loop.run_once(0);  // the end of the batch writes what was staged
    EXPECT_EQ(read_n(fd, 3000), data);
    auto segs = g.wait(1);
    for (auto& s : g.settle()) segs.push_back(s);
    ASSERT_EQ(segs.size(), 1u);  // one ACK for the batch
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 3000);
    EXPECT_EQ(h.nat->tcp().stats().acks_coalesced, 1u);
    close(fd);
}

// To a NIC that loses a frame right behind another (sw::Port::small_ring,
// QEMU's NE2000), a short segment (a request) is not acknowledged at once:
// its ACK rides on the host's answer when that comes within
// TcpNat::kDelAckMs; when it does not, a pure ACK follows alone. A segment
// or more is acknowledged at the end of its batch (the test above), and
// other NICs get the ACK at once (the next test).
TEST(TcpNat, TcpNat_AShortSegmentsAckRidesOnTheAnswerOrFollowsAlone) {
    NatHarness h;
    h.guest.small = true;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::ack | flag::psh, g.snd_nxt, g.rcv_nxt, "ping", 1024);
    h.loop.run_once(0);
    EXPECT_EQ(read_n(fd, 4), "ping");
    EXPECT_TRUE(g.take().empty());  // no pure ACK at the end of the batch
    ASSERT_EQ(send(fd, "pong", 4, 0), 4);
    auto segs = g.wait(1);
    for (auto& x : g.settle(20)) segs.push_back(x);  // past the wait: nothing more
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(std::string(segs[0].payload.begin(), segs[0].payload.end()), "pong");
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 4);
    EXPECT_EQ(h.nat->tcp().stats().acks_delayed, 1u);
    EXPECT_EQ(h.nat->tcp().stats().acks_piggybacked, 1u);
    g.snd_nxt += 4;
    g.rcv_nxt += 4;
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, {}, 1024);
    // No answer this time: the ACK goes alone once the wait is over.
    g.send(flag::ack | flag::psh, g.snd_nxt, g.rcv_nxt, "ping", 1024);
    segs = g.wait(1, 500);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_TRUE(segs[0].payload.empty());
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 4);
    EXPECT_EQ(h.nat->tcp().stats().acks_delayed, 2u);
    EXPECT_EQ(h.nat->tcp().stats().acks_piggybacked, 1u);
    EXPECT_EQ(read_n(fd, 4), "ping");
    close(fd);
}

TEST(TcpNat, TcpNat_OtherNicsGetTheAckOfAShortSegmentAtOnce) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::ack | flag::psh, g.snd_nxt, g.rcv_nxt, "ping", 1024);
    h.loop.run_once(0);
    auto segs = g.take();
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_TRUE(segs[0].payload.empty());
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 4);
    EXPECT_EQ(h.nat->tcp().stats().acks_delayed, 0u);
    EXPECT_EQ(read_n(fd, 4), "ping");
    close(fd);
}

// A TSO guest's large segment is written at once, after what the flow has
// staged and in the same sendmsg(); small segments after it stage again.
TEST(TcpNat, TcpNat_LargeGuestSegmentsGoStraightToTheSocketInOrderWithTheStaged) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    std::string data = pattern(1000 + 20000 + 1000 + 30000, 5);
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, data.substr(0, 1000), 1024);
    g.send(flag::ack, g.snd_nxt + 1000, g.rcv_nxt, data.substr(1000, 20000), 1024);
    g.send(flag::ack, g.snd_nxt + 21000, g.rcv_nxt, data.substr(21000, 1000), 1024);
    // The last one also carries the FIN: the shutdown() follows its bytes.
    g.send(flag::ack | flag::fin, g.snd_nxt + 22000, g.rcv_nxt, data.substr(22000), 1024);
    h.loop.run_once(0);
    EXPECT_EQ(read_n(fd, data.size()), data);
    char c;
    EXPECT_EQ(recv(fd, &c, 1, 0), 0);  // the guest's FIN arrived after the data
    auto segs = g.wait(1);
    for (auto& s : g.settle()) segs.push_back(s);
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, g.snd_nxt + data.size() + 1);
    EXPECT_EQ(h.nat->tcp().stats().bytes_to_host, data.size());
    EXPECT_EQ(h.nat->tcp().stats().partial_writes, 0u);
    close(fd);
}

TEST(TcpNat, TcpNat_OnlyInOrderBytesAreAcknowledgedAndAHoleGetsDuplicateAcks) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    uint32_t base = g.snd_nxt;
    // Skip the first 100 bytes: each out-of-order segment gets an immediate duplicate ACK.
    for (int i = 1; i <= 3; i++) g.send(flag::ack, base + 100 * i, g.rcv_nxt, pattern(100), 1024);
    auto segs = g.wait(3);
    ASSERT_EQ(segs.size(), 3u);
    for (auto& s : segs) {
        EXPECT_EQ(s.ack, base) << s.str();
        EXPECT_TRUE(s.payload.empty());
    }
    EXPECT_EQ(h.nat->tcp().stats().out_of_order, 3u);
    // The retransmission of everything, overlapping what was never taken.
    std::string data = pattern(400, 3);
    g.send(flag::ack, base, g.rcv_nxt, data, 1024);
    h.loop.run_once(0);  // the end of the batch writes what was staged
    EXPECT_EQ(read_n(fd, 400), data);
    segs = g.wait(1);
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 400);
    // An old duplicate is trimmed away, a partial overlap is trimmed to its new part.
    g.send(flag::ack, base + 300, g.rcv_nxt, data.substr(300) + "XYZ", 1024);
    h.loop.run_once(0);  // the end of the batch writes what was staged
    EXPECT_EQ(read_n(fd, 3), "XYZ");
    close(fd);
}

TEST(TcpNat, TcpNat_SegmentsBeyondAHoleAreHeldAndWrittenWhenItFills) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    uint32_t base = g.snd_nxt;
    std::string data = pattern(4000, 9);
    // 0..999 is lost; 1000..3999 arrive (the last two swapped): each gets
    // a duplicate ACK, nothing reaches the host yet.
    g.send(flag::ack, base + 1000, g.rcv_nxt, data.substr(1000, 1000), 1024);
    g.send(flag::ack, base + 3000, g.rcv_nxt, data.substr(3000, 1000), 1024);
    g.send(flag::ack, base + 2000, g.rcv_nxt, data.substr(2000, 1000), 1024);
    auto segs = g.wait(3);
    ASSERT_EQ(segs.size(), 3u);
    for (auto& s : segs) EXPECT_EQ(s.ack, base) << s.str();
    char c;
    EXPECT_EQ(recv(fd, &c, 1, MSG_DONTWAIT), -1);
    EXPECT_EQ(h.nat->tcp().stats().out_of_order, 3u);
    EXPECT_EQ(h.nat->tcp().stats().out_of_order_dropped, 0u);
    // The retransmission of the hole: all 4000 bytes go to the host, in
    // order, and one ACK covers them.
    g.send(flag::ack, base, g.rcv_nxt, data.substr(0, 1000), 1024);
    EXPECT_EQ(read_n(fd, data.size()), data);
    segs = g.wait(1);
    for (auto& s : g.settle()) segs.push_back(s);
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 4000);
    EXPECT_EQ(h.nat->tcp().stats().reassembled_bytes, 3000u);
    EXPECT_EQ(h.nat->tcp().stats().bytes_to_host, 4000u);
    // The queue went back to the pool: a later hole is held again.
    g.send(flag::ack, base + 4100, g.rcv_nxt, "xyz", 1024);
    g.send(flag::ack, base + 4000, g.rcv_nxt, std::string(100, 'w'), 1024);
    EXPECT_EQ(read_n(fd, 103), std::string(100, 'w') + "xyz");
    close(fd);
}

TEST(TcpNat, TcpNat_AFinBeyondAHoleClosesTheHostSideOnceTheHoleFills) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    uint32_t base = g.snd_nxt;
    std::string data = pattern(600, 4);
    g.send(flag::ack | flag::fin, base + 200, g.rcv_nxt, data.substr(200), 1024);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].ack, base);
    g.send(flag::ack, base, g.rcv_nxt, data.substr(0, 200), 1024);
    EXPECT_EQ(read_n(fd, data.size()), data);
    char c;
    EXPECT_EQ(recv(fd, &c, 1, 0), 0);  // the FIN followed the data
    segs = g.settle();
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 601);  // the FIN is acknowledged too
    close(fd);
}

TEST(TcpNat, TcpNat_WithSackTheDuplicateAcksNameTheHeldBytesLatestFirst) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    g.sack = true;
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(g.last_synack.opts.sack_permitted);
    uint32_t base = g.snd_nxt;
    std::string data = pattern(5000, 2);
    g.send(flag::ack, base + 3000, g.rcv_nxt, data.substr(3000, 1000), 1024);
    g.send(flag::ack, base + 1000, g.rcv_nxt, data.substr(1000, 1000), 1024);
    auto segs = g.wait(2);
    ASSERT_EQ(segs.size(), 2u);
    ASSERT_EQ(segs[0].opts.sack_blocks, 1);
    EXPECT_EQ(segs[0].opts.sack[0].left, base + 3000);
    EXPECT_EQ(segs[0].opts.sack[0].right, base + 4000);
    // The second names the range its segment went to first (RFC 2018 4).
    ASSERT_EQ(segs[1].opts.sack_blocks, 2);
    EXPECT_EQ(segs[1].opts.sack[0].left, base + 1000);
    EXPECT_EQ(segs[1].opts.sack[0].right, base + 2000);
    EXPECT_EQ(segs[1].opts.sack[1].left, base + 3000);
    EXPECT_EQ(segs[1].ack, base);
    // The first hole fills: the ACK moves to the second, which is still listed.
    g.send(flag::ack, base, g.rcv_nxt, data.substr(0, 1000), 1024);
    segs = g.wait(1);
    for (auto& s : g.settle()) segs.push_back(s);
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 2000);
    ASSERT_EQ(segs.back().opts.sack_blocks, 1);
    EXPECT_EQ(segs.back().opts.sack[0].left, base + 3000);
    // The last hole fills: no SACK option once nothing is held.
    g.send(flag::ack, base + 2000, g.rcv_nxt, data.substr(2000, 1000), 1024);
    segs = g.wait(1);
    for (auto& s : g.settle()) segs.push_back(s);
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 4000);
    EXPECT_EQ(segs.back().opts.sack_blocks, 0);
    EXPECT_EQ(read_n(fd, 4000), data.substr(0, 4000));
    close(fd);
}

TEST(TcpNat, TcpNat_WithoutTheGuestsSackPermittedNoSackOptionIsSent) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    EXPECT_FALSE(g.last_synack.opts.sack_permitted);
    g.send(flag::ack, g.snd_nxt + 100, g.rcv_nxt, "held", 1024);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].opts.sack_blocks, 0);
    EXPECT_EQ(h.nat->tcp().stats().out_of_order_dropped, 0u);
    close(fd);
}

TEST(TcpNat, TcpNat_NoBytesPastTheGuestsFinAreWrittenWhateverWasHeld) {
    NatHarness h;
    Listener l;
    // Held bytes beyond a segment that carries the FIN stay unwritten ...
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    uint32_t base = g.snd_nxt;
    std::string data = pattern(400, 8);
    g.send(flag::ack, base + 100, g.rcv_nxt, data.substr(100), 1024);
    g.send(flag::ack | flag::fin, base, g.rcv_nxt, data.substr(0, 200), 1024);
    EXPECT_EQ(read_n(fd, 400, 300), data.substr(0, 200));
    char c;
    EXPECT_EQ(recv(fd, &c, 1, 0), 0);
    auto segs = g.settle();
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 201);
    close(fd);
    // ... and a held FIN bounds an in-order segment that runs past it.
    NatHarness h2;
    TcpGuest g2(h2, kGatewayIp, l.port, kGuestPort + 1);
    fd = g2.connect(l);
    ASSERT_GE(fd, 0);
    base = g2.snd_nxt;
    g2.send(flag::ack | flag::fin, base + 100, g2.rcv_nxt, data.substr(100, 200), 1024);
    g2.send(flag::ack, base, g2.rcv_nxt, data, 1024);
    EXPECT_EQ(read_n(fd, 400, 300), data.substr(0, 300));
    EXPECT_EQ(recv(fd, &c, 1, 0), 0);
    segs = g2.settle();
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs.back().ack, base + 301);
    close(fd);
}

TEST(TcpNat, TcpNat_AGuestHoldsAtMostEightOutOfOrderQueues) {
    NatHarness h;
    Listener l;
    std::vector<std::unique_ptr<TcpGuest>> guests;
    std::vector<int> fds;
    for (uint16_t i = 0; i < 9; i++) {
        guests.push_back(std::make_unique<TcpGuest>(h, kGatewayIp, l.port, kGuestPort + i));
        int fd = guests.back()->connect(l);
        ASSERT_GE(fd, 0);
        fds.push_back(fd);
    }
    for (auto& g : guests) g->send(flag::ack, g->snd_nxt + 10, g->rcv_nxt, "later", 1024);
    guests[0]->settle();
    EXPECT_EQ(h.nat->tcp().stats().out_of_order, 9u);
    EXPECT_EQ(h.nat->tcp().stats().out_of_order_dropped, 1u);
    // The ninth flow still works the old way: the guest sends it all again.
    TcpGuest& last = *guests.back();
    last.send(flag::ack, last.snd_nxt, last.rcv_nxt, "0123456789later", 1024);
    last.settle();  // the end of the batch writes what was staged
    EXPECT_EQ(read_n(fds.back(), 15), "0123456789later");
    // A flow whose hole fills gives its queue back; the ninth can then hold.
    TcpGuest& first = *guests.front();
    first.send(flag::ack, first.snd_nxt, first.rcv_nxt, "0123456789", 1024);
    EXPECT_EQ(read_n(fds.front(), 15), "0123456789later");
    last.send(flag::ack, last.snd_nxt + 25, last.rcv_nxt, "!", 1024);
    last.send(flag::ack, last.snd_nxt + 15, last.rcv_nxt, "abcdefghij", 1024);
    EXPECT_EQ(read_n(fds.back(), 11), "abcdefghij!");
    EXPECT_EQ(h.nat->tcp().stats().out_of_order_dropped, 1u);
    for (int fd : fds) close(fd);
}

TEST(TcpNat, TcpNat_AdvertisedWindowIsScaledAndNonZero) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::ack | flag::psh, g.snd_nxt, g.rcv_nxt, "hello", 1024);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 5);
    // Several KiB of room at least, in units of 128 bytes.
    EXPECT_GT(uint32_t{segs[0].window} << nat::tcp::kOurWindowScale, 16384u);
    close(fd);
}

// --- RFC 5961 --------------------------------------------------------------------

TEST(TcpNat, TcpNat_RstInWindowButNotAtRcvNxtGetsAChallengeAck) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::rst, g.snd_nxt + 10, 0);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack);
    EXPECT_EQ(segs[0].ack, g.snd_nxt);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    // Far outside the window: silently dropped.
    g.send(flag::rst, g.snd_nxt + 0x40000000, 0);
    EXPECT_TRUE(g.settle().empty());
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    EXPECT_EQ(h.nat->tcp().stats().challenge_acks, 1u);
    close(fd);
}

TEST(TcpNat, TcpNat_RstAtRcvNxtResetsTheHostConnection) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::rst, g.snd_nxt, 0);
    g.settle();
    EXPECT_EQ(h.nat->tcp().flow_count(), 0u);
    char c;
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1);
    errno = 0;
    EXPECT_EQ(recv(fd, &c, 1, 0), -1);
    EXPECT_EQ(errno, ECONNRESET);
    close(fd);
}

TEST(TcpNat, TcpNat_SynOnAnEstablishedFlowGetsAChallengeAck) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::syn, kGuestIsn + 5000, 0, {}, 65535, true);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack);
    EXPECT_EQ(segs[0].ack, g.snd_nxt);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    close(fd);
}

TEST(TcpNat, TcpNat_OutOfWindowDataIsAnsweredWithAnAck) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::ack, g.snd_nxt + 0x20000000, g.rcv_nxt, "junk", 1024);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack);
    EXPECT_EQ(segs[0].ack, g.snd_nxt);
    EXPECT_EQ(h.nat->tcp().stats().dropped_out_of_window, 1u);
    // An ACK for bytes never sent is answered and dropped, too.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt + 5000, {}, 1024);
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].ack, g.snd_nxt);
    close(fd);
}

// --- host to guest ----------------------------------------------------------------

TEST(TcpNat, TcpNat_HostDataIsSegmentedToTheGuestMssAndDiscardedWhenAcked) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    std::string data = pattern(5000, 1);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), 5000);
    auto segs = g.wait(4);
    ASSERT_EQ(segs.size(), 4u);
    std::string got;
    uint32_t seq = g.rcv_nxt;
    for (auto& s : segs) {
        EXPECT_EQ(s.seq, seq);
        EXPECT_LE(s.payload.size(), 1460u);
        got.append(s.payload.begin(), s.payload.end());
        seq += static_cast<uint32_t>(s.payload.size());
    }
    EXPECT_EQ(got, data);
    g.send(flag::ack, g.snd_nxt, seq, {}, 1024);
    EXPECT_TRUE(g.settle(100).empty());  // acknowledged: nothing is sent again
    EXPECT_EQ(h.nat->tcp().stats().retransmits_rto, 0u);
    close(fd);
}

// Host data toward a guest whose attachment queues: with room for nothing,
// one segment goes (nothing is in flight) and then none; with room for n
// segments, exactly n follow the next ACK (the queue does not drain here);
// unbounded, the rest follows in order with no retransmission (nothing was
// dropped). set_room(port, segs) gives the port room for segs segments,
// SIZE_MAX for no bound.
void expect_only_what_the_attachment_can_queue(void (*set_room)(CapturePort&, size_t), size_t n,
                                               int salt) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    std::string data = pattern(40000, salt);
    set_room(h.guest, 0);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), 40000);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_TRUE(g.settle(100).empty());
    std::string got(segs[0].payload.begin(), segs[0].payload.end());
    uint32_t seq = segs[0].seq + static_cast<uint32_t>(segs[0].payload.size());
    set_room(h.guest, n);
    g.send(flag::ack, g.snd_nxt, seq, {}, 1024);
    segs = g.settle(100);
    ASSERT_EQ(segs.size(), n);
    for (auto& sg : segs) {
        EXPECT_EQ(sg.seq, seq);
        got.append(sg.payload.begin(), sg.payload.end());
        seq += static_cast<uint32_t>(sg.payload.size());
    }
    set_room(h.guest, SIZE_MAX);
    for (int i = 0; i < 100 && got.size() < data.size(); i++) {
        g.send(flag::ack, g.snd_nxt, seq, {}, 1024);
        for (auto& sg : g.settle(20)) {
            if (sg.payload.empty()) continue;
            EXPECT_EQ(sg.seq, seq);
            got.append(sg.payload.begin(), sg.payload.end());
            seq += static_cast<uint32_t>(sg.payload.size());
        }
    }
    EXPECT_EQ(got, data);
    EXPECT_EQ(h.nat->tcp().stats().retransmits_rto, 0u);
    close(fd);
}

TEST(TcpNat, TcpNat_AnAttachmentThatCannotQueueMoreLeavesTheDataInTheHostSocket) {
    // A byte queue (a stream socket): room counted with each segment's
    // headers and framing.
    expect_only_what_the_attachment_can_queue(
        [](CapturePort& p, size_t segs) {
            p.room = segs == SIZE_MAX ? CapturePort::kUnlimited : segs * (1460 + 40 + 28);
        },
        3, 3);
}

TEST(TcpNat, TcpNat_ARingOfWholeFramesBoundsTheSegmentsSentIntoIt) {
    // A ring of whole frames (a datagram attachment): however many bytes,
    // only so many frames; a full ring would drop the rest of a window.
    expect_only_what_the_attachment_can_queue(
        [](CapturePort& p, size_t segs) {
            p.frame_room = segs == SIZE_MAX ? CapturePort::kUnlimited : segs;
        },
        4, 5);
}

TEST(TcpNat, TcpNat_UnacknowledgedDataIsRetransmittedFromTheKernelByProbeOrRto) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    std::string data = pattern(2000, 2);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), 2000);
    auto first = g.wait(2);
    ASSERT_EQ(first.size(), 2u);
    // Lost: no ACK. The tail loss probe (2 SRTT + 10 ms, the handshake
    // gave an RTT sample) or else the RTO (200 ms at least) sends the
    // first unacknowledged segment again, peeked again from the kernel.
    auto again = g.wait(1, 3000);
    ASSERT_FALSE(again.empty());
    EXPECT_EQ(again[0].seq, g.rcv_nxt);
    std::string got(again[0].payload.begin(), again[0].payload.end());
    EXPECT_EQ(got, data.substr(0, got.size()));
    EXPECT_GE(h.nat->tcp().stats().retransmits_rto + h.nat->tcp().stats().tail_loss_probes, 1u);
    // Still nothing acknowledged: the RTO goes back to snd_una and resends
    // everything (go-back-N).
    auto rto = g.wait(2, 3000);
    ASSERT_GE(rto.size(), 2u);
    EXPECT_EQ(rto[0].seq, g.rcv_nxt);
    EXPECT_GE(h.nat->tcp().stats().retransmits_rto, 1u);
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt + 2000, {}, 1024);
    EXPECT_TRUE(g.settle(300).empty());
    close(fd);
}

TEST(TcpNat, TcpNat_ThreeDuplicateAcksRetransmitTheFirstUnacknowledgedSegment) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    std::string data = pattern(1460 * 5, 4);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    auto segs = g.wait(5);
    ASSERT_EQ(segs.size(), 5u);
    // The guest got segment 0 but not 1; 2, 3, 4 produce duplicate ACKs.
    uint32_t hole = g.rcv_nxt + 1460;
    for (int i = 0; i < 4; i++) g.send(flag::ack, g.snd_nxt, hole, {}, 1024);
    auto re = g.wait(1, 150);  // well before any RTO
    ASSERT_EQ(re.size(), 1u);
    EXPECT_EQ(re[0].seq, hole);
    EXPECT_EQ(std::string(re[0].payload.begin(), re[0].payload.end()), data.substr(1460, 1460));
    EXPECT_EQ(h.nat->tcp().stats().retransmits_fast, 1u);
    // Everything acknowledged: recovery ends, nothing more is resent.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt + static_cast<uint32_t>(data.size()), {}, 1024);
    EXPECT_TRUE(g.settle(100).empty());
    close(fd);
}

// A guest's ACK option area naming these SACK blocks ([left, right) pairs).
std::vector<uint8_t> sack_option(std::initializer_list<std::pair<uint32_t, uint32_t>> blocks) {
    std::vector<uint8_t> o = {1, 1, 5, static_cast<uint8_t>(2 + 8 * blocks.size())};
    for (auto [left, right] : blocks)
        for (uint32_t v : {left, right})
            for (int shift = 24; shift >= 0; shift -= 8)
                o.push_back(static_cast<uint8_t>(v >> shift));
    return o;
}

TEST(TcpNat, TcpNat_WithSackEachHoleIsSentAgainOnceAsThePipeAllows) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    g.sack = true;
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    constexpr uint32_t kSeg = 1460;
    std::string data = pattern(kSeg * 10, 6);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    auto segs = g.wait(10);
    ASSERT_EQ(segs.size(), 10u);
    ASSERT_EQ(segs[1].payload.size(), kSeg);
    // Segments 1, 4 and 7 are lost; each later arrival is a duplicate ACK
    // naming what the guest holds, its latest block first (as Linux does).
    const uint32_t b = g.rcv_nxt;
    auto at = [&](uint32_t i) { return b + i * kSeg; };
    auto dup = [&](std::initializer_list<std::pair<uint32_t, uint32_t>> blocks) {
        g.send_raw_opts(flag::ack, g.snd_nxt, at(1), sack_option(blocks), 1024);
    };
    auto payload = [](const Seg& sg) { return std::string(sg.payload.begin(), sg.payload.end()); };
    dup({{at(2), at(3)}});
    dup({{at(2), at(4)}});
    // The third: recovery, the window halved to 4.5 segments of the 9 out,
    // and segment 1 again (RFC 6675 4.3: the first goes regardless).
    dup({{at(5), at(6)}, {at(2), at(4)}});
    auto re = g.wait(1, 150);
    ASSERT_EQ(re.size(), 1u);
    EXPECT_EQ(re[0].seq, at(1));
    // In the pipe: segments 6-9 and the copy of 1. With 6 held too, four:
    // less than a segment of room, nothing goes.
    dup({{at(5), at(7)}, {at(2), at(4)}});
    EXPECT_TRUE(g.settle(30).empty());
    // With 8 held, two are in the pipe: room for the holes 4 and 7, lowest
    // first, neither of them before (no partial ACK is needed).
    dup({{at(8), at(9)}, {at(5), at(7)}, {at(2), at(4)}});
    re = g.wait(2, 150);
    ASSERT_EQ(re.size(), 2u);
    EXPECT_EQ(re[0].seq, at(4));
    EXPECT_EQ(payload(re[0]), data.substr(4 * kSeg, kSeg));
    EXPECT_EQ(re[1].seq, at(7));
    EXPECT_EQ(payload(re[1]), data.substr(7 * kSeg, kSeg));
    dup({{at(8), at(10)}, {at(5), at(7)}, {at(2), at(4)}});  // no hole left: nothing
    EXPECT_TRUE(g.settle(30).empty());
    // (The first may have gone by the tail loss probe's timer and the
    // probe's ACK instead, on a slow run.)
    EXPECT_GE(h.nat->tcp().stats().retransmits_fast, 1u);
    EXPECT_EQ(h.nat->tcp().stats().retransmits_sack, 3u);
    // The copies arrive: partial ACKs up to holes already sent again bring
    // no second copy of them (NewReno would send each again).
    g.send_raw_opts(flag::ack, g.snd_nxt, at(4), sack_option({{at(5), at(7)}, {at(8), at(10)}}),
                    1024);
    g.send_raw_opts(flag::ack, g.snd_nxt, at(7), sack_option({{at(8), at(10)}}), 1024);
    EXPECT_TRUE(g.settle(30).empty());
    g.send(flag::ack, g.snd_nxt, at(10), {}, 1024);
    EXPECT_TRUE(g.settle(100).empty());
    EXPECT_EQ(h.nat->tcp().stats().retransmits_rto, 0u);
    EXPECT_EQ(h.nat->tcp().stats().retransmits_sack, 3u);
    close(fd);
}

TEST(TcpNat, TcpNat_WithSackALostTailIsProbedByItsLastSegmentAndThenSentWhole) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    g.sack = true;
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    constexpr uint32_t kSeg = 1460;
    std::string data = pattern(kSeg * 6, 8);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(g.wait(6).size(), 6u);
    const uint32_t b = g.rcv_nxt;
    auto at = [&](uint32_t i) { return b + i * kSeg; };
    // Segments 2-5 are lost (a GSO frame dropped in the guest): nothing
    // comes back after the ACK of the first two. The probe (2 SRTT + 2 ms)
    // is the last segment, not the head.
    g.send(flag::ack, g.snd_nxt, at(2), {}, 1024);
    auto probe = g.wait(1, 1000);
    ASSERT_EQ(probe.size(), 1u);
    EXPECT_EQ(probe[0].seq, at(5));
    EXPECT_EQ(h.nat->tcp().stats().tail_loss_probes, 1u);
    // Its ACK names it beyond the hole: recovery, and the hole goes as far
    // as the halved window allows (2 of the 4 segments out), in order.
    g.send_raw_opts(flag::ack, g.snd_nxt, at(2), sack_option({{at(5), at(6)}}), 1024);
    auto re = g.wait(2, 150);
    ASSERT_EQ(re.size(), 2u);
    EXPECT_EQ(re[0].seq, at(2));
    EXPECT_EQ(re[1].seq, at(3));
    EXPECT_EQ(std::string(re[1].payload.begin(), re[1].payload.end()), data.substr(3 * kSeg, kSeg));
    // They arrive: the rest of the hole.
    g.send_raw_opts(flag::ack, g.snd_nxt, at(4), sack_option({{at(5), at(6)}}), 1024);
    re = g.wait(1, 150);
    ASSERT_EQ(re.size(), 1u);
    EXPECT_EQ(re[0].seq, at(4));
    g.send(flag::ack, g.snd_nxt, at(6), {}, 1024);
    EXPECT_TRUE(g.settle(100).empty());
    EXPECT_EQ(h.nat->tcp().stats().retransmits_rto, 0u);
    close(fd);
}

TEST(TcpNat, TcpNat_WithoutSackPermittedTheGuestsSackBlocksAreIgnored) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);  // no SACK-permitted in its SYN
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    constexpr uint32_t kSeg = 1460;
    std::string data = pattern(kSeg * 8, 7);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(g.wait(8).size(), 8u);
    const uint32_t b = g.rcv_nxt;
    auto at = [&](uint32_t i) { return b + i * kSeg; };
    // Segments 1 and 3 lost: with SACK, 3 would follow 1 at once.
    g.send_raw_opts(flag::ack, g.snd_nxt, at(1), sack_option({{at(2), at(3)}}), 1024);
    for (uint32_t i = 5; i <= 7; i++)
        g.send_raw_opts(flag::ack, g.snd_nxt, at(1), sack_option({{at(4), at(i)}, {at(2), at(3)}}),
                        1024);
    // NewReno: the head alone.
    auto re = g.settle(60);
    ASSERT_EQ(re.size(), 1u);
    EXPECT_EQ(re[0].seq, at(1));
    EXPECT_EQ(h.nat->tcp().stats().retransmits_sack, 0u);
    g.send(flag::ack, g.snd_nxt, at(8), {}, 1024);
    close(fd);
}

TEST(TcpNat, TcpNat_SendingStopsAtTheGuestWindowAndAZeroWindowIsProbed) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    // The guest offers 2 * 128 bytes.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, {}, 2);
    g.settle(10);
    std::string data = pattern(1000, 5);
    ASSERT_EQ(send(fd, data.data(), data.size(), 0), 1000);
    auto segs = g.wait(1);
    for (auto& s : g.settle(50)) segs.push_back(s);
    uint32_t sent = 0;
    for (auto& s : segs) sent += static_cast<uint32_t>(s.payload.size());
    EXPECT_EQ(sent, 256u);
    // Acknowledge the 256 bytes with a zero window: no more data, a probe later.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt + 256, {}, 0);
    g.take();
    auto probe = g.wait(1, 3000);
    ASSERT_FALSE(probe.empty());
    EXPECT_TRUE(probe[0].payload.empty());
    EXPECT_EQ(probe[0].seq, g.rcv_nxt + 256 - 1);  // an old ACK that makes the guest answer
    EXPECT_GE(h.nat->tcp().stats().zero_window_probes, 1u);
    // The window opens: the rest follows.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt + 256, {}, 100);
    auto rest = g.wait(1);
    ASSERT_FALSE(rest.empty());
    EXPECT_EQ(rest[0].seq, g.rcv_nxt + 256);
    sent = 0;
    for (auto& s : rest) sent += static_cast<uint32_t>(s.payload.size());
    EXPECT_EQ(sent, 744u);
    close(fd);
}

// --- closing ----------------------------------------------------------------------

TEST(TcpNat, TcpNat_GuestFinHalfClosesAndTheHostCanStillSend) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::fin | flag::ack, g.snd_nxt, g.rcv_nxt, "bye", 1024);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 4);  // data and FIN
    EXPECT_EQ(read_n(fd, 10), "bye");       // then EOF
    // The host answers after the guest's FIN.
    ASSERT_EQ(send(fd, "reply", 5, 0), 5);
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(std::string(segs[0].payload.begin(), segs[0].payload.end()), "reply");
    g.send(flag::ack, g.snd_nxt + 4, g.rcv_nxt + 5, {}, 1024);
    // Host closes: FIN after the data, the guest ACKs it, the flow lingers then goes.
    close(fd);
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_TRUE(segs[0].has(flag::fin));
    EXPECT_EQ(segs[0].seq, g.rcv_nxt + 5);
    g.send(flag::ack, g.snd_nxt + 4, g.rcv_nxt + 6, {}, 1024);
    g.settle(20);
    // A retransmitted FIN during the linger is ACKed, not reset.
    g.send(flag::fin | flag::ack, g.snd_nxt + 3, g.rcv_nxt + 6, {}, 1024);
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack);
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 4);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    EXPECT_TRUE(h.run_until([&] { return h.nat->tcp().flow_count() == 0; }, 6000));
}

// A guest that closes first: the host peer learns of it (shutdown) and
// closes too, and our FIN carries the ACK of the guest's: one frame, not an
// ACK and then a FIN (the half-close above shows the ACK sent alone when
// the host keeps its side open).
TEST(TcpNat, TcpNat_GuestFinsAckRidesOnTheHostsFin) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::fin | flag::ack, g.snd_nxt, g.rcv_nxt, {}, 1024);
    close(fd);  // before the loop runs again: its EOF comes before any timer
    auto segs = g.wait(1);
    for (auto& s : g.settle(20)) segs.push_back(s);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::fin | flag::ack);
    EXPECT_EQ(segs[0].seq, g.rcv_nxt);
    EXPECT_EQ(segs[0].ack, g.snd_nxt + 1);
    EXPECT_EQ(h.nat->tcp().stats().acks_delayed, 1u);
    EXPECT_EQ(h.nat->tcp().stats().acks_piggybacked, 1u);
}

TEST(TcpNat, TcpNat_LingeringFlowsDoNotCountAgainstTheLimits) {
    nat::NatLimits lim;
    lim.tcp_flows_per_guest = 1;
    NatHarness h(lim);
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port, 40001);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    // Full close: guest FIN, host FIN, guest ACK -> the flow lingers.
    g.send(flag::fin | flag::ack, g.snd_nxt, g.rcv_nxt, {}, 1024);
    g.wait(1);
    close(fd);
    auto fin = g.wait(1);
    ASSERT_EQ(fin.size(), 1u);
    ASSERT_TRUE(fin[0].has(flag::fin));
    g.send(flag::ack, g.snd_nxt + 1, g.rcv_nxt + 1, {}, 1024);
    g.settle(20);
    ASSERT_EQ(h.nat->tcp().flow_count(), 1u);  // lingering
    TcpGuest g2(h, kGatewayIp, l.port, 40002);
    g2.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g2.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::syn | flag::ack);
    EXPECT_EQ(h.nat->tcp().stats().refused_limit, 0u);
}

TEST(TcpNat, TcpNat_HostCloseSendsFinAfterTheDataAndTheGuestMayKeepSending) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(send(fd, "last words", 10, 0), 10);
    shutdown(fd, SHUT_WR);
    // The data, then the FIN after it: in one segment when the FIN was
    // seen with the data, else in two.
    std::vector<Seg> segs;
    ASSERT_TRUE(h.run_until([&] {
        for (auto& s : g.take()) segs.push_back(std::move(s));
        return !segs.empty() && segs.back().has(flag::fin);
    }));
    ASSERT_LE(segs.size(), 2u);
    EXPECT_EQ(segs[0].payload.size(), 10u);
    EXPECT_EQ(segs[0].seq, g.rcv_nxt);
    EXPECT_EQ(segs.back().seq + segs.back().payload.size(), g.rcv_nxt + 10);
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt + 11, "more from guest", 1024);
    h.loop.run_once(0);  // the end of the batch writes what was staged
    EXPECT_EQ(read_n(fd, 15), "more from guest");
    close(fd);
}

TEST(TcpNat, TcpNat_HostResetBecomesRstToTheGuest) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_TRUE(segs[0].has(flag::rst));
    EXPECT_EQ(segs[0].seq, g.rcv_nxt);
    EXPECT_TRUE(h.run_until([&] { return h.nat->tcp().flow_count() == 0; }));
}

// --- inbound (port forwards) --------------------------------------------------------

// A host client connected to l whose accepted socket TcpNat takes as a
// port forward's (open_inbound: peer_port -> the guest's guest_port);
// returns the client's socket, or -1.
int inbound_client(NatHarness& h, const Listener& l, uint16_t peer_port, uint16_t guest_port) {
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback_addr(l.port);
    if (connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
    int accepted = l.accept_wait();
    if (accepted < 0) return -1;
    int fl = 1;
    ioctl(accepted, FIONBIO, &fl);  // accept4(SOCK_NONBLOCK), as a forward's
    if (!h.nat->tcp().open_inbound(accepted, wire::IpAddr::v4(kGatewayIp), peer_port,
                                   wire::IpAddr::v4(kGuestIp), guest_port))
        return -1;
    return client;
}

// The host client's connection was reset (within 2 s); closes it.
void expect_reset(int client) {
    char c;
    pollfd p{client, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1);
    errno = 0;
    EXPECT_EQ(recv(client, &c, 1, 0), -1);
    EXPECT_EQ(errno, ECONNRESET);
    close(client);
}

TEST(TcpNat, TcpNat_InboundConnectionSendsSynAndRelaysAfterTheGuestAnswers) {
    NatHarness h;
    Listener l;
    int client = inbound_client(h, l, 33333, 8080);
    ASSERT_GE(client, 0);
    TcpGuest g(h, kGatewayIp, 33333, 8080);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::syn);
    EXPECT_EQ(segs[0].sport, 33333);
    EXPECT_EQ(segs[0].dport, 8080);
    ASSERT_TRUE(segs[0].opts.mss.has_value());
    uint32_t isn = segs[0].seq;
    g.send(flag::syn | flag::ack, 5000, isn + 1, {}, 65535, true);
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack);
    EXPECT_EQ(segs[0].ack, 5001u);
    g.send(flag::ack | flag::psh, 5001, isn + 1, "from guest", 1024);
    h.loop.run_once(0);  // the end of the batch writes what was staged
    EXPECT_EQ(read_n(client, 10), "from guest");
    // The guest resets: the host client sees it.
    g.send(flag::rst, 5011, 0);
    g.settle();
    expect_reset(client);
}

// A host client that writes before the guest answers (a request): the
// handshake's ACK rides on that data, one frame instead of two, with the
// window a pure ACK would have offered.
TEST(TcpNat, TcpNat_InboundRequestWrittenDuringTheHandshakeCarriesItsAck) {
    NatHarness h;
    Listener l;
    int client = inbound_client(h, l, 33335, 8082);
    ASSERT_GE(client, 0);
    TcpGuest g(h, kGatewayIp, 33335, 8082);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    ASSERT_EQ(segs[0].flags, flag::syn);
    const uint32_t isn = segs[0].seq;
    ASSERT_EQ(send(client, "GET /", 5, 0), 5);
    g.settle(20);  // the socket's EPOLLIN is seen before the guest answers
    g.send(flag::syn | flag::ack, 7000, isn + 1, {}, 65535, true);
    segs = g.wait(1);
    for (auto& s : g.settle(20)) segs.push_back(s);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack | flag::psh);
    EXPECT_EQ(segs[0].seq, isn + 1);
    EXPECT_EQ(segs[0].ack, 7001u);
    EXPECT_EQ(std::string(segs[0].payload.begin(), segs[0].payload.end()), "GET /");
    EXPECT_GT(segs[0].window, 0u);
    // The flow goes on as usual: the guest's answer reaches the client.
    g.send(flag::ack | flag::psh, 7001, isn + 6, "200", 1024);
    h.loop.run_once(0);
    EXPECT_EQ(read_n(client, 3), "200");
    close(client);
}

TEST(TcpNat, TcpNat_InboundRefusedByTheGuestResetsTheHostClient) {
    NatHarness h;
    Listener l;
    int client = inbound_client(h, l, 33334, 8081);
    ASSERT_GE(client, 0);
    TcpGuest g(h, kGatewayIp, 33334, 8081);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    g.send(flag::rst | flag::ack, 0, segs[0].seq + 1);
    g.settle();
    EXPECT_EQ(h.nat->tcp().flow_count(), 0u);
    char c;
    pollfd p{client, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1);
    EXPECT_EQ(recv(client, &c, 1, 0), -1);
    close(client);
}


// An ICMPv4 destination unreachable from `from` to the gateway quoting the
// IPv4 header and the first 8 bytes of a TCP segment src:sport -> dst:dport
// with sequence number seq, as a guest's kernel sends one.
std::vector<uint8_t> icmp_unreachable_quoting(wire::Ipv4 from, wire::Ipv4 src, wire::Ipv4 dst,
                                              uint16_t sport, uint16_t dport, uint32_t seq,
                                              uint8_t code = 3) {
    std::vector<uint8_t> msg(wire::kIcmpHeaderLen + wire::kIpv4HeaderLen + 8);
    uint8_t* q = msg.data() + wire::kIcmpHeaderLen;
    std::vector<uint8_t> tcp(wire::kTcpHeaderLen);
    wire::build_tcp(tcp.data(), sport, dport, seq, 0, flag::syn, 65535);
    wire::build_ipv4(q, src, dst, wire::ipproto::tcp, wire::kTcpHeaderLen, 64, 0);
    std::memcpy(q + wire::kIpv4HeaderLen, tcp.data(), 8);
    wire::build_icmp4(msg.data(), wire::icmptype::dest_unreach, code, 0, msg.size());
    return ipv4_frame(from, kGatewayIp, wire::ipproto::icmp, msg);
}

// A guest whose firewall rejects with an ICMP port unreachable (iptables
// REJECT's default) refuses a forwarded connection at once, as a RST does;
// a quote that is not of our SYN, or comes from another address than the
// one the SYN went to, changes nothing.
TEST(TcpNat, TcpNat_InboundRefusedByTheGuestsIcmpUnreachableResetsTheHostClient) {
    NatHarness h;
    Listener l;
    int client = inbound_client(h, l, 33336, 8083);
    ASSERT_GE(client, 0);
    TcpGuest g(h, kGatewayIp, 33336, 8083);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    const uint32_t isn = segs[0].seq;
    h.input(icmp_unreachable_quoting(kGuestIp, kGatewayIp, kGuestIp, 33336, 8083, isn + 1));
    h.input(icmp_unreachable_quoting(kGuestIp + 1, kGatewayIp, kGuestIp, 33336, 8083, isn));
    h.input(icmp_unreachable_quoting(kGuestIp, kGatewayIp, kGuestIp, 33336, 8084, isn));
    h.input(icmp_unreachable_quoting(kGuestIp, kGatewayIp, kGuestIp, 33336, 8083, isn, 4));
    g.settle(50);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    EXPECT_EQ(h.nat->tcp().stats().refused_by_guest_icmp, 0u);
    h.input(icmp_unreachable_quoting(kGuestIp, kGatewayIp, kGuestIp, 33336, 8083, isn));
    g.settle();
    EXPECT_EQ(h.nat->tcp().flow_count(), 0u);
    EXPECT_EQ(h.nat->tcp().stats().refused_by_guest_icmp, 1u);
    expect_reset(client);
}

// Once established, an ICMP error is soft (RFC 1122 4.2.3.9): the
// connection stays.
TEST(TcpNat, TcpNat_AnEstablishedForwardIgnoresTheGuestsIcmpUnreachable) {
    NatHarness h;
    Listener l;
    int client = inbound_client(h, l, 33337, 8085);
    ASSERT_GE(client, 0);
    TcpGuest g(h, kGatewayIp, 33337, 8085);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    const uint32_t isn = segs[0].seq;
    g.send(flag::syn | flag::ack, 9000, isn + 1, {}, 65535, true);
    ASSERT_EQ(g.wait(1).size(), 1u);
    h.input(icmp_unreachable_quoting(kGuestIp, kGatewayIp, kGuestIp, 33337, 8085, isn));
    g.settle(50);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    g.send(flag::ack | flag::psh, 9001, isn + 1, "still here", 1024);
    h.loop.run_once(0);
    EXPECT_EQ(read_n(client, 10), "still here");
    close(client);
}


// --- issue 7: pending connects, keepalives, handshake options, windows ------------

// The socket usernet opened for a flow: the one whose local end is the peer
// of `accepted` (the listener's side of the same connection), or -1.
int flow_socket_for(int accepted) {
    sockaddr_in peer{};
    socklen_t pl = sizeof peer;
    if (getpeername(accepted, reinterpret_cast<sockaddr*>(&peer), &pl) < 0) return -1;
    for (int fd = 3; fd < 4096; fd++) {
        if (fd == accepted) continue;
        sockaddr_in a{};
        socklen_t al = sizeof a;
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &al) < 0 || a.sin_family != AF_INET)
            continue;
        int type = 0;
        socklen_t tl = sizeof type;
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl);
        if (type == SOCK_STREAM && a.sin_port == peer.sin_port &&
            a.sin_addr.s_addr == peer.sin_addr.s_addr)
            return fd;
    }
    return -1;
}

// A listener whose accept queue is full drops SYNs: connects to it stay
// pending (for the kernel's two minutes of SYN retries), as toward a
// silent destination.
struct SilentListener {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint16_t port = 0;
    bool connected = false;
    SilentListener() {
        sockaddr_in la = loopback_addr(0);
        if (bind(fd, reinterpret_cast<sockaddr*>(&la), sizeof la) != 0 || listen(fd, 0) != 0) return;
        port = local_port(fd);
        sockaddr_in fa = loopback_addr(port);
        connected = connect(filler, reinterpret_cast<sockaddr*>(&fa), sizeof fa) == 0;
    }
    ~SilentListener() {
        close(filler);
        close(fd);
    }
    bool ok() const { return connected; }
    // n guest connections toward it, from guest ports first_port.., each
    // having sent its SYN: they stay pending.
    std::vector<std::unique_ptr<TcpGuest>> pending_syns(NatHarness& h, uint16_t n,
                                                        uint16_t first_port) const {
        std::vector<std::unique_ptr<TcpGuest>> out;
        for (uint16_t i = 0; i < n; i++) {
            out.push_back(std::make_unique<TcpGuest>(h, kGatewayIp, port, first_port + i));
            out.back()->send(flag::syn, kGuestIsn, 0, {}, 65535, true);
        }
        return out;
    }
};

TEST(TcpNat, TcpNat_PendingConnectsTheGuestGaveUpOnFreeTheirHalfOpenSlots) {
    nat::NatLimits lim;
    lim.tcp_half_open_per_guest = 4;
    NatHarness h(lim);
    SilentListener silent;
    ASSERT_TRUE(silent.ok());
    auto pending = silent.pending_syns(h, 4, 41000);
    Listener live;
    TcpGuest g(h, kGatewayIp, live.port, 42000);
    EXPECT_TRUE(g.settle(300).empty());  // nothing answers: the connects are pending
    ASSERT_EQ(h.nat->tcp().flow_count(), 4u);
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    EXPECT_TRUE(g.settle(100).empty());  // over the half-open limit: dropped
    EXPECT_EQ(h.nat->tcp().stats().syn_dropped_half_open, 1u);
    // One guest socket keeps retransmitting its SYN (at about 2 s and 5 s);
    // the other three have given up.
    auto t0 = std::chrono::steady_clock::now();
    auto until = [&](int ms) {
        h.run_until([&] { return std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(ms); },
                    ms + 1000);
    };
    until(2000);
    pending[3]->send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    until(5000);
    pending[3]->send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    // The three silent ones are freed, quietly; the one still asking is kept.
    ASSERT_TRUE(h.run_until([&] { return h.nat->tcp().flow_count() == 1; }, 5000))
        << h.nat->tcp().flow_count() << " flows";
    EXPECT_TRUE(g.take().empty());  // no RST for a guest that gave up
    // A new connection (the guest's next SYN retry) gets through.
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::syn | flag::ack);
    EXPECT_EQ(segs[0].dport, 42000);
    EXPECT_EQ(h.nat->tcp().flow_count(), 2u);
}

// A guest at its half-open limit whose connects are all still wanted (its
// SYNs keep coming, as Linux retries one for two minutes): a new SYN is
// dropped while they are young, and once the oldest has waited 3 s it
// takes that one's slot; the old connect fails toward the guest as an
// unreachable host (ICMP), not after two minutes of every new connection
// waiting.
TEST(TcpNat, TcpNat_AConnectPendingFor3sGivesItsSlotToANewSyn) {
    nat::NatLimits lim;
    lim.tcp_half_open_per_guest = 4;
    NatHarness h(lim);
    SilentListener silent;
    ASSERT_TRUE(silent.ok());
    auto pending = silent.pending_syns(h, 4, 44000);
    Listener live;
    TcpGuest g(h, kGatewayIp, live.port, 45000);
    EXPECT_TRUE(g.settle(200).empty());
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    EXPECT_TRUE(g.settle(100).empty());  // young: the new SYN is dropped
    EXPECT_EQ(h.nat->tcp().stats().syn_dropped_half_open, 1u);
    const auto t0 = std::chrono::steady_clock::now();
    h.run_until([&] { return std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(3000); },
                5000);
    for (auto& p : pending) p->send(flag::syn, kGuestIsn, 0, {}, 65535, true);  // still wanted
    g.send(flag::syn, kGuestIsn, 0, {}, 65535, true);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::syn | flag::ack);
    EXPECT_EQ(h.nat->tcp().stats().connect_evicted, 1u);
    EXPECT_EQ(h.nat->tcp().stats().connect_unreachable, 1u);
    EXPECT_EQ(h.nat->tcp().flow_count(), 4u);  // three old, one new
}

TEST(TcpNat, TcpNat_PendingConnectsAreCappedInAllGuestsTogether) {
    nat::NatLimits lim;
    lim.tcp_half_open_per_guest = 100;
    lim.tcp_half_open = 3;
    NatHarness h(lim);
    SilentListener silent;
    ASSERT_TRUE(silent.ok());
    auto pending = silent.pending_syns(h, 4, 43000);
    h.loop.run_once(0);
    // The guest is far below its own limit; the fourth SYN meets the total.
    EXPECT_EQ(h.nat->tcp().flow_count(), 3u);
    EXPECT_EQ(h.nat->tcp().stats().syn_dropped_half_open, 1u);
}

TEST(TcpNat, TcpNat_GuestKeepaliveTurnsOnKeepaliveForTheHostSocketAndIsAcked) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    int hs = flow_socket_for(fd);
    ASSERT_GE(hs, 0);
    int on = -1;
    socklen_t ol = sizeof on;
    ASSERT_EQ(getsockopt(hs, SOL_SOCKET, SO_KEEPALIVE, &on, &ol), 0);
    EXPECT_EQ(on, 0);  // a silent guest's flow probes nothing
    // Linux's probe: no data, one below the sequence number usernet expects.
    g.send(flag::ack, g.snd_nxt - 1, g.rcv_nxt, {}, 1024);
    auto segs = g.wait(1);
    for (auto& s : g.settle(20)) segs.push_back(s);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::ack);
    EXPECT_EQ(segs[0].ack, g.snd_nxt);
    EXPECT_EQ(segs[0].seq, g.rcv_nxt);
    ASSERT_EQ(getsockopt(hs, SOL_SOCKET, SO_KEEPALIVE, &on, &ol), 0);
    EXPECT_EQ(on, 1);
    int idle = 0, intvl = 0, cnt = 0;
    socklen_t il = sizeof idle;
    ASSERT_EQ(getsockopt(hs, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &il), 0);
    ASSERT_EQ(getsockopt(hs, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, &il), 0);
    ASSERT_EQ(getsockopt(hs, IPPROTO_TCP, TCP_KEEPCNT, &cnt, &il), 0);
    EXPECT_GE(idle, 10);
    EXPECT_LE(idle, 7200);
    EXPECT_GE(intvl, 1);
    EXPECT_LE(intvl * cnt, idle);  // a dead remote is found within twice the idle time
    EXPECT_EQ(h.nat->tcp().stats().keepalives_enabled, 1u);
    // A BSD probe (one byte of garbage) is answered the same way.
    g.send(flag::ack, g.snd_nxt - 1, g.rcv_nxt, "x", 1024);
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].ack, g.snd_nxt);
    EXPECT_EQ(h.nat->tcp().flow_count(), 1u);
    close(fd);
}

TEST(TcpNat, TcpNat_SynAckFollowsTheOptionsOfTheLatestSyn) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    // MSS 1460, window scale 7, timestamps.
    const std::vector<uint8_t> all = {2, 4, 0x05, 0xb4, 1, 3, 3, 7, 1, 1, 8, 10,
                                      0, 0, 0, 1, 0, 0, 0, 0};
    g.send_raw_opts(flag::syn, kGuestIsn, 0, all);
    auto segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_TRUE(segs[0].opts.wscale.has_value());
    EXPECT_TRUE(segs[0].opts.ts_val.has_value());
    // The SYN-ACK is lost; the retry carries only the MSS (BSD stacks drop
    // the newer options from later retries).
    g.send_raw_opts(flag::syn, kGuestIsn, 0, {2, 4, 0x05, 0xb4});
    segs = g.wait(1);
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].flags, flag::syn | flag::ack);
    EXPECT_FALSE(segs[0].opts.wscale.has_value());
    EXPECT_FALSE(segs[0].opts.ts_val.has_value());
    uint32_t isn = segs[0].seq;
    g.send(flag::ack, kGuestIsn + 1, isn + 1, {}, 4000);  // unscaled now
    int fd = l.accept_wait();
    ASSERT_GE(fd, 0);
    g.settle(20);
    ASSERT_EQ(send(fd, "hello", 5, 0), 5);
    segs = g.wait(1);
    ASSERT_FALSE(segs.empty());
    EXPECT_EQ(segs[0].payload.size(), 5u);
    EXPECT_FALSE(segs[0].opts.ts_val.has_value());  // no timestamps on data either
    close(fd);
}

TEST(TcpNat, TcpNat_ARefusedWriteSendsNoAckIdenticalToTheLast) {
    NatHarness h;
    Listener l(4096);  // a small receive buffer, and nobody reads
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    int hs = flow_socket_for(fd);
    ASSERT_GE(hs, 0);
    int small = 4096;
    ASSERT_EQ(setsockopt(hs, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    std::string chunk = pattern(1000);
    uint32_t nxt = g.snd_nxt;
    Seg last;
    bool have_last = false;
    // The guest sends (at the point acknowledged, window or not) until the
    // kernel takes less than a segment.
    for (int i = 0; i < 3000 && h.nat->tcp().stats().partial_writes == 0; i++) {
        g.send(flag::ack, nxt, g.rcv_nxt, chunk, 1024);
        for (auto& s : g.settle(2)) {
            last = s;
            have_last = true;
            nxt = s.ack;
        }
    }
    ASSERT_GT(h.nat->tcp().stats().partial_writes, 0u);
    for (auto& s : g.settle(20)) {
        last = s;
        have_last = true;
        nxt = s.ack;
    }
    ASSERT_TRUE(have_last);
    // The window offered is still open (the right edge never moves left):
    // the guest may send, and the kernel refuses.
    ASSERT_NE(last.window, 0);
    // Three more segments the kernel refuses outright: an ACK repeating the
    // last one would be a duplicate ACK; three of them a fast retransmit.
    uint64_t refused_before = h.nat->tcp().stats().partial_writes;
    for (int i = 0; i < 3; i++) {
        g.send(flag::ack, nxt, g.rcv_nxt, chunk, 1024);
        for (auto& s : g.settle(5))
            EXPECT_FALSE(s.payload.empty() && s.ack == last.ack && s.window == last.window &&
                         s.flags == flag::ack)
                << "duplicate of the last ACK: " << s.str();
    }
    EXPECT_EQ(h.nat->tcp().stats().partial_writes, refused_before + 3);
    // The host reads; the guest's retransmission is taken.
    read_n(fd, 1 << 20, 300);
    g.send(flag::ack, nxt, g.rcv_nxt, chunk, 1024);
    bool advanced = false;
    for (auto& s : g.wait(1)) advanced = advanced || wire::seq_gt(s.ack, nxt);
    EXPECT_TRUE(advanced);
    close(fd);
}

TEST(TcpNat, TcpNat_AFinBehindAZeroWindowIsProbedAndSentWhenItOpens) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, {}, 0);  // the guest's window closes
    g.settle(20);
    ASSERT_EQ(shutdown(fd, SHUT_WR), 0);  // host EOF, no data: only a FIN is pending
    auto segs = g.settle(1500);
    bool probed = false;
    for (auto& s : segs) {
        EXPECT_FALSE(s.has(flag::fin)) << "FIN into a zero window: " << s.str();
        if (s.payload.empty() && s.seq == g.rcv_nxt - 1) probed = true;
    }
    EXPECT_TRUE(probed);  // a lost window update cannot stall the close
    EXPECT_GE(h.nat->tcp().stats().zero_window_probes, 1u);
    // The window opens: the FIN follows at once.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, {}, 10);
    auto fin = g.wait(1);
    ASSERT_FALSE(fin.empty());
    EXPECT_TRUE(fin[0].has(flag::fin)) << fin[0].str();
    EXPECT_EQ(fin[0].seq, g.rcv_nxt);
    close(fd);
}

TEST(TcpNat, TcpNat_PureAckAtTheRightWindowEdgeIsProcessed) {
    NatHarness h;
    Listener l;
    TcpGuest g(h, kGatewayIp, l.port);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    // The window usernet offers, from its last ACK.
    g.send(flag::ack, g.snd_nxt, g.rcv_nxt, {}, 1024);
    g.settle(20);
    ASSERT_EQ(send(fd, "abcdef", 6, 0), 6);
    auto segs = g.wait(1);
    ASSERT_FALSE(segs.empty());
    ASSERT_EQ(segs[0].payload.size(), 6u);
    uint32_t edge = segs[0].ack + (uint32_t{segs[0].window} << nat::tcp::kOurWindowScale);
    int hs = flow_socket_for(fd);
    ASSERT_GE(hs, 0);
    int inq = 0;
    ASSERT_EQ(ioctl(hs, SIOCINQ, &inq), 0);
    EXPECT_EQ(inq, 6);  // kept until the guest acknowledges it
    // A guest that has sent up to the right edge ACKs from there (Linux
    // accepts it: tcp_sequence() allows seq == rcv_nxt + rcv_wnd).
    g.send(flag::ack, edge, g.rcv_nxt + 6, {}, 1024);
    g.settle(20);
    ASSERT_EQ(ioctl(hs, SIOCINQ, &inq), 0);
    EXPECT_EQ(inq, 0);  // the ACK counted: the bytes are discarded
    EXPECT_EQ(h.nat->tcp().stats().dropped_out_of_window, 0u);
    close(fd);
}

// Held bytes written after EPOLLOUT (a short write left them) go out
// alone: another flow's bytes staged in the same batch stay that flow's.
TEST(TcpNat, TcpNat_HeldBytesDrainedOnEpolloutNeverCarryAnotherFlowsStage) {
    NatHarness h;
    Listener l1(4096), l2;
    TcpGuest g1(h, kGatewayIp, l1.port, 40001);
    TcpGuest g2(h, kGatewayIp, l2.port, 40002);
    int fd1 = g1.connect(l1);
    ASSERT_GE(fd1, 0);
    int hs1 = flow_socket_for(fd1);
    ASSERT_GE(hs1, 0);
    int small = 16384;
    ASSERT_EQ(setsockopt(hs1, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    int fd2 = g2.connect(l2);
    ASSERT_GE(fd2, 0);
    uint32_t b1 = g1.snd_nxt;
    std::string d1 = pattern(40000, 6);
    for (uint32_t off = 1000; off < 40000; off += 1000)
        g1.send(flag::ack, b1 + off, g1.rcv_nxt, d1.substr(off, 1000), 1024);
    g1.settle(20);
    g1.send(flag::ack, b1, g1.rcv_nxt, d1.substr(0, 1000), 1024);  // fills the hole: a short write
    g1.settle(20);
    ASSERT_GT(h.nat->tcp().stats().partial_writes, 0u);
    // Flow 2 stages a segment (written at the end of the batch) ...
    g2.send(flag::ack, g2.snd_nxt, g2.rcv_nxt, std::string(100, 'Q'), 1024);
    // ... while flow 1's reader makes room: EPOLLOUT in the same batch.
    std::string got1 = read_n(fd1, 1 << 20, 100);
    usleep(20000);
    h.loop.run_once(0);
    for (int i = 0; i < 40 && got1.size() < d1.size(); i++) {
        g1.settle(10);
        got1 += read_n(fd1, d1.size() - got1.size(), 20);
    }
    EXPECT_EQ(got1, d1);
    EXPECT_EQ(read_n(fd2, 100), std::string(100, 'Q'));
    close(fd1);
    close(fd2);
}

// A short write when the stage overflows moves rcv_nxt back: the segment
// that caused the flush is then placed by its own sequence number (held
// beyond the new hole), not written behind the bytes the kernel refused.
TEST(TcpNat, TcpNat_AShortWriteOnAFullStageDoesNotMisplaceTheNextSegment) {
    NatHarness h;
    Listener l(4096);
    TcpGuest g(h, kGatewayIp, l.port, 40003);
    int fd = g.connect(l);
    ASSERT_GE(fd, 0);
    int hs = flow_socket_for(fd);
    ASSERT_GE(hs, 0);
    int small = 65536;
    ASSERT_EQ(setsockopt(hs, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    uint32_t b = g.snd_nxt;
    std::string data = pattern(188 * 1400, 11);
    // One batch of in-order segments: the stage (256 KiB) overflows.
    for (uint32_t i = 0; i < 188; i++)
        g.send(flag::ack, b + i * 1400, g.rcv_nxt, data.substr(i * 1400, 1400), 1024);
    std::string got = read_n(fd, 1 << 22, 100);
    usleep(10000);
    h.loop.run_once(0);
    uint32_t acked = 0;
    for (auto& x : g.settle(50)) acked = x.ack - b;
    got += read_n(fd, 1 << 22, 300);
    ASSERT_GT(h.nat->tcp().stats().partial_writes, 0u);
    ASSERT_LE(got.size(), data.size());
    EXPECT_EQ(got, data.substr(0, got.size()));
    EXPECT_LE(acked, got.size());  // nothing acknowledged that the host did not get
    close(fd);
}

}  // namespace
}  // namespace usernet::testing
