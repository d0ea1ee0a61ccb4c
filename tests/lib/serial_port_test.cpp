// The serial port on a real switch and gateway, with the peer's side of the
// line played by the test over a unix socket: the lease taken through the
// switch, LCP and IPCP by hand-built messages, an ICMP echo to the gateway
// through the port's ARP and back over PPP, ARP answered for the peer,
// spoofed sources dropped, a second peer refused; the room the port offers
// the TCP translator. (Real pppd and slattach
// peers are tests/qemu/test_serial.py.)
#include "ports/serial_port.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "gateway/gateway.hpp"
#include "wire/arp.hpp"
#include "wire/checksum.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"

namespace usernet::ports {
namespace {

using Vec = std::vector<uint8_t>;
constexpr wire::Ipv4 kGw = 0x0a000202, kLease = 0x0a00020f;

struct EthGuest : sw::Port {
    void deliver(wire::Bytes f, const sw::FrameMeta&) override { frames.emplace_back(f.begin(), f.end()); }
    uint32_t mtu() const override { return 1500; }
    std::string describe() const override { return "eth guest"; }
    std::vector<Vec> frames;
};

Vec ctl(uint8_t code, uint8_t id, const Vec& data) {
    Vec p(4 + data.size());
    p[0] = code;
    p[1] = id;
    wire::store16(&p[2], static_cast<uint16_t>(p.size()));
    std::copy(data.begin(), data.end(), p.begin() + 4);
    return p;
}
Vec opt32(uint8_t type, uint32_t v) {
    Vec o = {type, 6, 0, 0, 0, 0};
    wire::store32(&o[2], v);
    return o;
}

Vec icmp_echo(wire::Ipv4 src, wire::Ipv4 dst, size_t data = 0) {
    Vec p(28 + data, 0x5a);
    wire::build_ipv4(p.data(), src, dst, wire::ipproto::icmp, 8 + data);
    uint8_t* m = p.data() + 20;
    m[0] = 8;
    m[1] = 0;
    wire::store16(m + 2, 0);
    wire::store16(m + 4, 0x1234);
    wire::store16(m + 6, 1);
    wire::store16(m + 2, wire::csum_fold(wire::csum_partial(wire::Bytes(m, 8 + data))));
    return p;
}

struct SerialPortTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    std::unique_ptr<gw::Gateway> gw;
    std::unique_ptr<SerialPort> port;
    EthGuest eth;
    std::string path;
    int peer = -1;
    ppp::HdlcDecoder dec{70000};
    struct Got {
        uint16_t protocol;
        Vec info;
    };
    std::vector<Got> got;

    void SetUp() override {
        if (getenv("SERIAL_DEBUG")) spdlog::set_level(spdlog::level::debug);
        gw = std::make_unique<gw::Gateway>(loop, sw, gw::NetConfig{});
        sw.attach(eth);
        path = "/tmp/usernet-serial-test-" + std::to_string(getpid()) + ".sock";
        SerialConfig c;
        ASSERT_EQ(parse_serial_transport("unix:" + path, c), "");
        port = std::make_unique<SerialPort>(loop, sw, c);
        dec.set_rx_accm(0);
    }
    void TearDown() override {
        if (peer >= 0) close(peer);
        port.reset();
        gw.reset();
    }
    void spin(int rounds = 10) {
        for (int i = 0; i < rounds; ++i) loop.run_once(2);
    }
    int connect_peer() {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.c_str(), path.size());
        EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        return fd;
    }
    void send(uint16_t protocol, const Vec& info) {
        Vec out(ppp::hdlc_max_encoded(info.size()));
        out.resize(ppp::hdlc_encode(out, protocol, info, {}));
        ASSERT_EQ(write(peer, out.data(), out.size()), static_cast<ssize_t>(out.size()));
        spin();
    }
    void read_line() {
        uint8_t buf[4096];
        ssize_t n;
        while ((n = recv(peer, buf, sizeof buf, MSG_DONTWAIT)) > 0)
            dec.feed(wire::Bytes(buf, static_cast<size_t>(n)), [&](wire::Bytes f) {
                auto pf = ppp::parse_frame(f);
                ASSERT_TRUE(pf);
                got.push_back({pf->protocol, Vec(pf->info.begin(), pf->info.end())});
            });
    }
    // Connects a peer and runs LCP and IPCP by hand until the link is up;
    // lcp_extra: more options of the peer's LCP request (an MRU).
    void bring_link_up(const Vec& lcp_extra = {}) {
        peer = connect_peer();
        spin();
        ASSERT_TRUE(port->peer_connected());
        const Got* cr = last(ppp::proto::lcp, ppp::code::configure_request);
        ASSERT_TRUE(cr);
        Vec cr_info = cr->info;
        Vec opts{2, 6, 0, 0, 0, 0, 5, 6, 1, 2, 3, 4};
        opts.insert(opts.end(), lcp_extra.begin(), lcp_extra.end());
        send(ppp::proto::lcp, ctl(ppp::code::configure_request, 1, opts));
        ASSERT_TRUE(last(ppp::proto::lcp, ppp::code::configure_ack));
        send(ppp::proto::lcp, ctl(ppp::code::configure_ack, cr_info[1], Vec(cr_info.begin() + 4, cr_info.end())));
        ASSERT_EQ(port->ppp_link()->lcp_state(), ppp::FsmState::opened);

        const Got* ipcp = last(ppp::proto::ipcp, ppp::code::configure_request);
        ASSERT_TRUE(ipcp);
        Vec ipcp_cr = ipcp->info;
        EXPECT_EQ(Vec(ipcp_cr.begin() + 4, ipcp_cr.end()), opt32(3, kGw));
        send(ppp::proto::ipcp, ctl(1, 1, Vec(opt32(3, 0))));
        const Got* nak = last(ppp::proto::ipcp, ppp::code::configure_nak);
        ASSERT_TRUE(nak);
        EXPECT_EQ(Vec(nak->info.begin() + 4, nak->info.end()), opt32(3, kLease));
        send(ppp::proto::ipcp, ctl(1, 2, opt32(3, kLease)));
        ASSERT_TRUE(last(ppp::proto::ipcp, ppp::code::configure_ack));
        send(ppp::proto::ipcp, ctl(ppp::code::configure_ack, ipcp_cr[1], Vec(ipcp_cr.begin() + 4, ipcp_cr.end())));
        ASSERT_TRUE(port->link_up());
    }
    const Got* last(uint16_t protocol, uint8_t code) {
        read_line();
        for (auto it = got.rbegin(); it != got.rend(); ++it)
            if (it->protocol == protocol && (code == 0 || (!it->info.empty() && it->info[0] == code)))
                return &*it;
        return nullptr;
    }
};

TEST_F(SerialPortTest, PeerGetsTheLeaseByIpcpAndReachesTheGateway) {
    spin(20);
    // No lease while nobody is on the line: the address stays in the pool.
    EXPECT_EQ(port->peer_addr(), 0u);
    EXPECT_EQ(port->serial_stats().dhcp_leases, 0u);

    bring_link_up();
    if (HasFatalFailure()) return;
    // The lease, taken through the switch from the gateway's DHCP server
    // when the peer came.
    ASSERT_EQ(port->peer_addr(), kLease);
    EXPECT_EQ(port->serial_stats().dhcp_leases, 1u);
    EXPECT_EQ(port->mac().b[0], 0x02);

    // Ping the gateway: the reply comes back over PPP.
    send(ppp::proto::ip, icmp_echo(kLease, kGw));
    const Got* reply = last(ppp::proto::ip, 0);
    ASSERT_TRUE(reply);
    auto ip = wire::Ipv4View::parse(reply->info);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->src(), kGw);
    EXPECT_EQ(ip->dst(), kLease);
    EXPECT_EQ(ip->payload()[0], 0);  // echo reply
    EXPECT_EQ(port->serial_stats().tx_packets, 1u);

    // Another address as the source: dropped at the port.
    send(ppp::proto::ip, icmp_echo(0x0a000263, kGw));
    EXPECT_EQ(port->serial_stats().dropped_spoofed, 1u);
    EXPECT_EQ(port->stats().rx_dropped, 1u);
    // A frame with a bad FCS: the line's decoder drops it, counted there too.
    {
        Vec f(ppp::hdlc_max_encoded(4));
        f.resize(ppp::hdlc_encode(f, ppp::proto::ip, Vec{0x45, 0, 0, 4}, {}));
        f[f.size() - 2] ^= 0x01;  // in the FCS (never an escape there: 0x7d/0x7e stay)
        if (f[f.size() - 2] == 0x7d || f[f.size() - 2] == 0x7e) f[f.size() - 2] ^= 0x02;
        ASSERT_EQ(write(peer, f.data(), f.size()), static_cast<ssize_t>(f.size()));
        spin();
    }
    EXPECT_EQ(port->serial_stats().dropped_line, 1u);
    EXPECT_EQ(port->stats().rx_dropped, 2u);

    // A guest on the LAN asks who has the peer's address: the port answers.
    const wire::MacAddr guest_mac{{0x52, 0x54, 0, 0, 0, 9}};
    uint8_t req[60] = {};
    wire::build_ethernet(req, wire::MacAddr::broadcast(), guest_mac, wire::ethertype::arp);
    wire::build_arp(req + 14, wire::arpop::request, guest_mac, 0x0a000220, wire::MacAddr{}, kLease);
    sw.input(eth.id(), wire::Bytes(req, sizeof req));
    spin();
    bool answered = false;
    for (const Vec& f : eth.frames) {
        auto e = wire::EthernetView::parse(f);
        if (!e || e->ethertype() != wire::ethertype::arp) continue;
        auto a = wire::ArpView::parse(e->payload());
        if (a && a->op() == wire::arpop::reply && a->sender_ip() == kLease) {
            EXPECT_EQ(a->sender_mac(), port->mac());
            EXPECT_EQ(e->dst(), guest_mac);
            answered = true;
        }
    }
    EXPECT_TRUE(answered);

    // The line has its peer: a second one is refused.
    int second = connect_peer();
    spin();
    EXPECT_EQ(port->serial_stats().refused, 1u);
    char b;
    EXPECT_EQ(recv(second, &b, 1, 0), 0);
    close(second);

    // The peer hangs up; the next connection starts a new link.
    close(peer);
    peer = -1;
    spin();
    EXPECT_FALSE(port->peer_connected());
    peer = connect_peer();
    spin();
    EXPECT_TRUE(port->peer_connected());
    EXPECT_EQ(port->ppp_link()->lcp_state(), ppp::FsmState::req_sent);
}

// The peer's MRU bounds what the line carries (pppd mru 296): the port's
// MTU follows it once LCP is open, so the gateway fragments a larger echo
// reply to it instead of the line dropping it.
TEST_F(SerialPortTest, ThePeersMruBoundsWhatItIsSent) {
    EXPECT_EQ(port->mtu(), 1500u);
    bring_link_up(Vec{1, 4, 0x01, 0x28});  // MRU 296
    if (HasFatalFailure()) return;
    EXPECT_EQ(port->mtu(), 296u);
    got.clear();
    send(ppp::proto::ip, icmp_echo(kLease, kGw, 1000));
    read_line();
    size_t pieces = 0, bytes = 0;
    for (const Got& g : got) {
        if (g.protocol != ppp::proto::ip) continue;
        auto ip = wire::Ipv4View::parse(g.info);
        ASSERT_TRUE(ip);
        EXPECT_LE(g.info.size(), 296u);
        EXPECT_EQ(ip->src(), kGw);
        pieces++;
        bytes += g.info.size() - 20;
    }
    EXPECT_GE(pieces, 4u);
    EXPECT_EQ(bytes, 1008u);  // the whole echo reply, in fragments
    // The peer hangs up and a new one dials at once, before usernet has
    // read the first one's end: it is taken, not refused as a second peer.
    close(peer);
    peer = connect_peer();
    spin();
    EXPECT_EQ(port->serial_stats().refused, 0u);
    EXPECT_TRUE(port->peer_connected());
    EXPECT_EQ(port->mtu(), 1500u);  // a new link: no MRU known yet
}

// pty:LINK: a link naming a live pty is another usernet's and is refused;
// one left by a crash (its pty gone) is replaced, even when it names the
// pty the new instance gets; at exit the link goes only if it still names
// this instance's pty.
TEST(SerialPty, ALinkInUseIsRefusedAStaleOneReplacedAndOnlyOursRemoved) {
    core::EventLoop loop;
    sw::Switch sw{loop};
    const std::string link = "/tmp/usernet-pty-test-" + std::to_string(getpid());
    unlink(link.c_str());
    SerialConfig c;
    ASSERT_EQ(parse_serial_transport("pty:" + link, c), "");
    auto first = std::make_unique<SerialPort>(loop, sw, c);
    char target[256] = {};
    ASSERT_GT(readlink(link.c_str(), target, sizeof target - 1), 0);
    EXPECT_THROW(SerialPort(loop, sw, c), std::runtime_error);
    // The other usernet took the name over meanwhile: ours leaves it alone.
    unlink(link.c_str());
    ASSERT_EQ(symlink("/dev/pts/999999", link.c_str()), 0);  // stale: no such pty
    first.reset();
    struct stat st {};
    EXPECT_EQ(lstat(link.c_str(), &st), 0) << "another instance's link was removed";
    auto second = std::make_unique<SerialPort>(loop, sw, c);  // replaces the stale one
    char now[256] = {};
    ASSERT_GT(readlink(link.c_str(), now, sizeof now - 1), 0);
    EXPECT_STRNE(now, "/dev/pts/999999");
    second.reset();
    EXPECT_NE(lstat(link.c_str(), &st), 0) << "our own link stays behind";
    // A usernet killed with its link in place: the kernel hands the next
    // one the pty number the stale link names. The link is checked before
    // the pty is opened, so it is replaced, not taken for a live one.
    second = std::make_unique<SerialPort>(loop, sw, c);
    char killed[256] = {};
    ASSERT_GT(readlink(link.c_str(), killed, sizeof killed - 1), 0);
    second.reset();
    ASSERT_EQ(symlink(killed, link.c_str()), 0);  // what a SIGKILL leaves behind
    ASSERT_NO_THROW(second = std::make_unique<SerialPort>(loop, sw, c));
    char again[256] = {};
    ASSERT_GT(readlink(link.c_str(), again, sizeof again - 1), 0);
    EXPECT_EQ(second->location(), again);
    second.reset();
}

// The emulator lines the banner prints for a TCP line: QEMU's -serial tcp:
// cannot take an IPv6 address (it splits at the first ':') and Bochs's
// socket client resolves IPv4 only; a wildcard is reached on loopback.
TEST(SerialUsage, TcpLinesFitTheAddressFamily) {
    core::EventLoop loop;
    sw::Switch sw{loop};
    auto lines = [&](const std::string& spec) {
        SerialConfig c;
        EXPECT_EQ(parse_serial_transport(spec, c), "");
        SerialPort p(loop, sw, c);
        std::string all;
        for (const std::string& l : p.usage()) all += l + "\n";
        return all;
    };
    const std::string v6 = lines("tcp:[::1]:0");
    EXPECT_NE(v6.find("QEMU: -chardev socket,id=s0,host=::1,port="), std::string::npos) << v6;
    EXPECT_NE(v6.find(" -serial chardev:s0"), std::string::npos) << v6;
    EXPECT_EQ(v6.find("QEMU: -serial tcp:"), std::string::npos) << v6;
    EXPECT_EQ(v6.find("dev=["), std::string::npos) << v6;
    EXPECT_NE(v6.find("IPv4 only"), std::string::npos) << v6;
    const std::string v4 = lines("tcp:127.0.0.1:0");
    EXPECT_NE(v4.find("QEMU: -serial tcp:127.0.0.1:"), std::string::npos) << v4;
    EXPECT_NE(v4.find("mode=socket-client, dev=127.0.0.1:"), std::string::npos) << v4;
    const std::string any = lines("tcp:0.0.0.0:0");
    EXPECT_NE(any.find("QEMU: -serial tcp:127.0.0.1:"), std::string::npos) << any;
}

// A unix socket path with a space comes out quoted for the shell, so the
// printed QEMU options can be pasted as they are.
TEST(SerialUsage, UnixLinesQuoteAPathWithASpace) {
    core::EventLoop loop;
    sw::Switch sw{loop};
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("usernet serial " + std::to_string(getpid())))
            .string();
    std::filesystem::create_directories(dir);
    {
        SerialConfig c;
        ASSERT_EQ(parse_serial_transport("unix:" + dir + "/s.sock", c), "");
        SerialPort p(loop, sw, c);
        std::string all;
        for (const std::string& l : p.usage()) all += l + "\n";
        EXPECT_NE(all.find("QEMU: -serial 'unix:" + dir + "/s.sock' (or -chardev 'socket,id=s0,path=" +
                           dir + "/s.sock' -serial chardev:s0)"),
                  std::string::npos)
            << all;
    }
    std::filesystem::remove_all(dir);
}

// The TCP translator sends a slow line only what tx_room() offers: however
// the packets escape (all 0x7e doubles each on the line), what fits in it
// is queued whole, never dropped. Beyond it the ring is bounded: it drops.
TEST_F(SerialPortTest, WhatTxRoomOffersIsQueuedHoweverItEscapes) {
    bring_link_up();
    if (HasFatalFailure()) return;
    ASSERT_EQ(port->peer_addr(), kLease);
    // The peer reads nothing and the loop does not run: the ring only fills.
    const size_t room0 = port->tx_room();
    EXPECT_GE(room0, 100'000u);
    EXPECT_LE(room0, SerialPort::kTxRing / 2);

    Vec frame(14 + 1500);
    wire::build_ethernet(frame.data(), port->mac(), wire::MacAddr{{0x52, 0x54, 0, 0, 0, 9}},
                         wire::ethertype::ipv4);
    wire::build_ipv4(frame.data() + 14, kGw, kLease, wire::ipproto::udp, 1480);
    std::fill(frame.begin() + 14 + 20, frame.end(), 0x7e);  // every byte escaped
    const uint64_t before = port->serial_stats().tx_packets;
    size_t sent = 0;
    while (port->tx_room() >= frame.size() && sent < 1000) {
        port->deliver(frame, sw::FrameMeta{});
        ++sent;
        ASSERT_EQ(port->serial_stats().dropped_ring_full, 0u) << "after " << sent << " frames";
    }
    EXPECT_EQ(port->serial_stats().tx_packets - before, sent);
    EXPECT_GE(sent, room0 / frame.size());
    EXPECT_LT(port->tx_room(), room0);
    // Past the room the ring fills and drops whole packets, counted (as
    // the port's tx_dropped too); IP never takes the last kTxReserve bytes.
    for (int i = 0; i < 10 && port->serial_stats().dropped_ring_full == 0; ++i)
        port->deliver(frame, sw::FrameMeta{});
    EXPECT_GT(port->serial_stats().dropped_ring_full, 0u);
    EXPECT_EQ(port->stats().tx_dropped, port->serial_stats().dropped_ring_full);
    EXPECT_LT(port->tx_room(), frame.size());
    EXPECT_LE(port->queued_bytes(), SerialPort::kTxRing - SerialPort::kTxReserve);
    // The link's own frames still fit: an LCP echo request is answered
    // (pppd hangs up after lcp-echo-failure unanswered ones).
    const uint64_t dropped = port->serial_stats().dropped_ring_full;
    send(ppp::proto::lcp, ctl(ppp::code::echo_request, 77, {0, 0, 0, 0}));
    EXPECT_EQ(port->serial_stats().dropped_ring_full, dropped);
    const Got* reply = nullptr;
    for (int i = 0; i < 200 && !reply; i++) {
        spin(1);
        reply = last(ppp::proto::lcp, ppp::code::echo_reply);
    }
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->info[1], 77);
}

}  // namespace
}  // namespace usernet::ports
