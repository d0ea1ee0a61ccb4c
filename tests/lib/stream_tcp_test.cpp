// The stream attachment over TCP: the listener (frames both ways, several
// clients, TCP_NODELAY, the client cap, reconnects as new ports) and the
// connector (connects out, retries with backoff while nobody listens,
// reconnects after a drop) over real loopback sockets; the backoff and the
// QEMU option lines.
#include "ports/stream_tcp.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;

Frame make_frame(size_t len, uint8_t src_last, uint8_t fill) {
    Frame f(len);
    for (size_t i = 0; i < len; i++) f[i] = static_cast<uint8_t>(fill + i * 3);
    wire::MacAddr::broadcast().store(f.data());
    wire::MacAddr{{0x02, 0, 0, 0, 0, src_last}}.store(f.data() + 6);
    f[12] = 0x08;
    f[13] = 0x00;
    return f;
}

std::vector<uint8_t> framed(const Frame& f) {
    std::vector<uint8_t> out(4 + f.size());
    wire::store32(out.data(), static_cast<uint32_t>(f.size()));
    std::copy(f.begin(), f.end(), out.begin() + 4);
    return out;
}

class RecordingPort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override {
        frames.emplace_back(frame.begin(), frame.end());
        from.push_back(meta.ingress);
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "recorder"; }
    std::vector<Frame> frames;
    std::vector<sw::PortId> from;
};

TcpEndpoint loopback(uint16_t port) { return TcpEndpoint{wire::IpAddr::v4(0x7f000001), port}; }

sockaddr_in sin_of(const TcpEndpoint& ep) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(ep.port);
    a.sin_addr.s_addr = htonl(ep.addr.as_v4());
    return a;
}

struct StreamTcpTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    RecordingPort rec;

    void SetUp() override { sw.attach(rec); }

    bool run_until(const std::function<bool()>& pred, int rounds = 300) {
        for (int i = 0; i < rounds && !pred(); i++) loop.run_once(10);
        return pred();
    }

    static int connect_to(const TcpEndpoint& ep) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = sin_of(ep);
        EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
        return fd;
    }

    static void write_all(int fd, const std::vector<uint8_t>& b) {
        size_t off = 0;
        while (off < b.size()) {
            ssize_t n = write(fd, b.data() + off, b.size() - off);
            ASSERT_GT(n, 0) << strerror(errno);
            off += static_cast<size_t>(n);
        }
    }

    bool read_exact(int fd, std::vector<uint8_t>& out, size_t n) {
        out.clear();
        for (int i = 0; i < 2000 && out.size() < n; i++) {
            loop.run_once(0);
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 5) <= 0) continue;
            uint8_t buf[65536];
            ssize_t r = read(fd, buf, std::min(sizeof(buf), n - out.size()));
            if (r <= 0) return false;
            out.insert(out.end(), buf, buf + r);
        }
        return out.size() == n;
    }

    bool peer_closed(int fd) {
        return run_until([&] {
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 0) <= 0) return false;
            uint8_t b[4096];
            return read(fd, b, sizeof(b)) <= 0;
        });
    }

    // A plain listening socket on a free loopback port, standing in for a
    // QEMU with -netdev socket,listen= (it is the same TCP socket).
    static int listen_any(TcpEndpoint& ep) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in a = sin_of(loopback(ep.port));
        EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
        EXPECT_EQ(listen(fd, 8), 0);
        socklen_t len = sizeof(a);
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        ep = loopback(ntohs(a.sin_port));
        return fd;
    }

    // Accepts one connection on lfd while running the loop; -1 on timeout.
    int accept_one(int lfd) {
        int got = -1;
        run_until([&] {
            pollfd p{lfd, POLLIN, 0};
            if (poll(&p, 1, 0) <= 0) return false;
            got = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            return got >= 0;
        });
        return got;
    }
};

TEST(Backoff, Backoff_DoublesFromTheFirstDelayUpToTheCapAndResets) {
    Backoff b(100, 5000);
    std::vector<core::Millis> got;
    for (int i = 0; i < 9; i++) got.push_back(b.next());
    EXPECT_EQ(got, (std::vector<core::Millis>{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}));
    b.reset();
    EXPECT_EQ(b.next(), 100u);
}

TEST(StreamTcpText, StreamTcpText_QemuOptionLinesForBothFormsAndBothFamilies) {
    TcpEndpoint v4 = loopback(5555);
    EXPECT_EQ(to_string(v4), "127.0.0.1:5555");
    EXPECT_EQ(qemu_stream_client_options(v4),
              "-netdev stream,id=net0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=5555");
    EXPECT_EQ(qemu_socket_client_options(v4), "-netdev socket,id=net0,connect=127.0.0.1:5555");
    EXPECT_EQ(qemu_stream_server_options(v4),
              "-netdev stream,id=net0,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port=5555");
    EXPECT_EQ(qemu_socket_server_options(v4), "-netdev socket,id=net0,listen=127.0.0.1:5555");
    // A wildcard listener: QEMU connects to this host's loopback.
    TcpEndpoint any{wire::IpAddr::v4(0), 7000};
    EXPECT_EQ(qemu_socket_client_options(any), "-netdev socket,id=net0,connect=127.0.0.1:7000");
    // IPv6: brackets in usernet's text, none in QEMU's addr.host, and no
    // -netdev socket form (it takes IPv4 only).
    TcpEndpoint v6{*wire::IpAddr::parse("::1"), 5556};
    EXPECT_EQ(to_string(v6), "[::1]:5556");
    EXPECT_EQ(qemu_stream_client_options(v6),
              "-netdev stream,id=net0,server=off,addr.type=inet,addr.host=::1,addr.port=5556");
    EXPECT_EQ(qemu_socket_client_options(v6), "");
    EXPECT_EQ(qemu_socket_server_options(v6), "");
}

TEST_F(StreamTcpTest, TcpStreamListener_FramesBothWaysAndNoDelay) {
    TcpStreamListener l(loop, sw, loopback(0), 1500);
    ASSERT_NE(l.endpoint().port, 0);
    int c = connect_to(l.endpoint());
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    StreamClient& sc = *l.clients().front();

    Frame f1 = make_frame(1514, 7, 1), f2 = make_frame(14, 7, 2);
    std::vector<uint8_t> s = framed(f1);
    auto s2 = framed(f2);
    s.insert(s.end(), s2.begin(), s2.end());
    write_all(c, s);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    EXPECT_EQ(rec.frames[0], f1);
    EXPECT_EQ(rec.frames[1], f2);
    EXPECT_EQ(rec.from[0], sc.id());
    ASSERT_TRUE(sc.mac().has_value());
    EXPECT_EQ(sc.mac()->to_string(), "02:00:00:00:00:07");

    // Toward the client: framed, padded to 60.
    Frame back = make_frame(42, 9, 3);
    sw.input(rec.id(), back);
    loop.run_once(0);
    std::vector<uint8_t> got;
    ASSERT_TRUE(read_exact(c, got, 4 + 60));
    EXPECT_EQ(wire::load32(got.data()), 60u);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), got.begin() + 4));

    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    ASSERT_EQ(getsockopt(sc.descriptor(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    EXPECT_NE(nodelay, 0);
    close(c);
    ASSERT_TRUE(run_until([&] { return l.client_count() == 0; }));
    EXPECT_EQ(l.stats().accepted, 1u);
}

// ,mac=LANMAC on --listen: the LAN sees only lan; the guest gets frames for
// its own MAC back.
TEST_F(StreamTcpTest, TcpStreamListener_MacSuffixShowsTheLanItsMacBothWays) {
    const wire::MacAddr lan{{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02}};
    const wire::MacAddr guest{{0x02, 0, 0, 0, 0, 7}};
    TcpStreamListener l(loop, sw, loopback(0), 1500);
    l.set_client_mac(lan);
    int c = connect_to(l.endpoint());
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    ASSERT_NE(l.clients().front()->mac_translator(), nullptr);
    write_all(c, framed(make_frame(100, 7, 1)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_EQ(wire::MacAddr::from(&rec.frames[0][6]), lan);
    EXPECT_NE(sw.lookup(lan), sw::kNoPort);
    EXPECT_EQ(sw.lookup(guest), sw::kNoPort);

    Frame back = make_frame(80, 9, 2);
    lan.store(back.data());
    sw.input(rec.id(), back);
    std::vector<uint8_t> got;
    ASSERT_TRUE(read_exact(c, got, 4 + 80));
    EXPECT_EQ(wire::MacAddr::from(got.data() + 4), guest);
    EXPECT_TRUE(std::equal(back.begin() + 6, back.end(), got.begin() + 4 + 6));
    close(c);
}

// ,mac=LANMAC on --connect, set after the connector started (as the daemon
// does): the first connection and the one after a reconnect both translate.
TEST_F(StreamTcpTest, TcpStreamConnector_MacSuffixHoldsAcrossReconnects) {
    const wire::MacAddr lan{{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x03}};
    TcpEndpoint ep = loopback(0);
    int lfd = listen_any(ep);
    TcpStreamConnector conn(loop, sw, ep, 1500, Backoff(10, 40));
    conn.set_client_mac(lan);
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    write_all(peer, framed(make_frame(60, 4, 0)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_EQ(wire::MacAddr::from(&rec.frames[0][6]), lan);

    close(peer);
    ASSERT_TRUE(run_until([&] { return conn.stats().drops == 1; }));
    int peer2 = accept_one(lfd);
    ASSERT_GE(peer2, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    write_all(peer2, framed(make_frame(60, 5, 1)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    EXPECT_EQ(wire::MacAddr::from(&rec.frames[1][6]), lan);
    close(peer2);
    close(lfd);
}

TEST_F(StreamTcpTest, TcpStreamListener_SeveralClientsEachTheirOwnPortAndReconnectsGetANewOne) {
    TcpStreamListener l(loop, sw, loopback(0), 1500);
    int a = connect_to(l.endpoint());
    int b = connect_to(l.endpoint());
    ASSERT_TRUE(run_until([&] { return l.client_count() == 2; }));
    sw::PortId pa = l.clients()[0]->id(), pb = l.clients()[1]->id();
    EXPECT_NE(pa, pb);
    write_all(a, framed(make_frame(60, 1, 0)));
    write_all(b, framed(make_frame(60, 2, 0)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    // A bad length closes only that client.
    write_all(a, std::vector<uint8_t>{0, 0, 0, 3, 1, 2, 3});
    EXPECT_TRUE(peer_closed(a));
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    EXPECT_EQ(l.stats().protocol_errors, 1u);
    EXPECT_EQ(l.clients()[0]->id(), pb);
    // The same "QEMU" again: a new connection, a port of its own.
    close(a);
    int a2 = connect_to(l.endpoint());
    ASSERT_TRUE(run_until([&] { return l.client_count() == 2; }));
    EXPECT_NE(l.clients()[1]->id(), pb);
    write_all(a2, framed(make_frame(60, 1, 5)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 3; }));
    EXPECT_EQ(rec.from[2], l.clients()[1]->id());
    close(a2);
    close(b);
}

TEST_F(StreamTcpTest, TcpStreamListener_RefusesClientsBeyondTheCapAndCountsThem) {
    TcpStreamListener l(loop, sw, loopback(0), 1500, 2);
    int a = connect_to(l.endpoint());
    int b = connect_to(l.endpoint());
    ASSERT_TRUE(run_until([&] { return l.client_count() == 2; }));
    int c = connect_to(l.endpoint());  // the kernel accepts; usernet closes it
    EXPECT_TRUE(peer_closed(c));
    EXPECT_EQ(l.stats().refused, 1u);
    EXPECT_EQ(l.client_count(), 2u);
    close(c);
    // A place frees up: the next one is taken.
    close(a);
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    int d = connect_to(l.endpoint());
    ASSERT_TRUE(run_until([&] { return l.client_count() == 2; }));
    EXPECT_EQ(l.stats().accepted, 3u);
    close(b);
    close(d);
}

TEST_F(StreamTcpTest, TcpStreamListener_AnAddressInUseIsRefusedWithItsName) {
    TcpStreamListener l(loop, sw, loopback(0), 1500);
    try {
        TcpStreamListener again(loop, sw, l.endpoint(), 1500);
        FAIL() << "a second listener bound the same port";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(to_string(l.endpoint()) + " is in use"),
                  std::string::npos)
            << e.what();
    }
}

TEST_F(StreamTcpTest, TcpStreamListener_DestroyedWithClientsConnected) {
    auto l = std::make_unique<TcpStreamListener>(loop, sw, loopback(0), 1500);
    int a = connect_to(l->endpoint());
    ASSERT_TRUE(run_until([&] { return l->client_count() == 1; }));
    write_all(a, framed(make_frame(60, 1, 0)));
    sw.input(rec.id(), make_frame(60, 9, 0));  // queues deferred output
    l.reset();
    EXPECT_TRUE(peer_closed(a));
    loop.run_once(0);
    close(a);
}

TEST_F(StreamTcpTest, TcpStreamListenerAndConnector_OverIpv6Loopback) {
    TcpEndpoint v6{*wire::IpAddr::parse("::1"), 0};
    std::unique_ptr<TcpStreamListener> l;
    try {
        l = std::make_unique<TcpStreamListener>(loop, sw, v6, 1500);
    } catch (const std::runtime_error& e) {
        GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
    }
    EXPECT_NE(l->endpoint().port, 0);
    EXPECT_EQ(to_string(l->endpoint()).rfind("[::1]:", 0), 0u);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(l->endpoint().port);
    a.sin6_addr = in6addr_loopback;
    int c = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    write_all(c, framed(make_frame(60, 3, 0)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_EQ(rec.from[0], l->clients().front()->id());

    // The connector toward an IPv6 listener (a plain socket standing in
    // for QEMU).
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin6_port = 0;
    ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(listen(lfd, 4), 0);
    socklen_t len = sizeof(a);
    getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
    TcpStreamConnector conn(loop, sw, TcpEndpoint{v6.addr, ntohs(a.sin6_port)}, 1500);
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    write_all(peer, framed(make_frame(60, 4, 0)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    EXPECT_EQ(rec.from[1], conn.client()->id());
    close(peer);
    close(lfd);
    close(c);
}

TEST_F(StreamTcpTest, TcpStreamConnector_ConnectsOutWithNoDelayAndCarriesFrames) {
    TcpEndpoint ep = loopback(0);
    int lfd = listen_any(ep);
    TcpStreamConnector conn(loop, sw, ep, 1500);
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    ASSERT_NE(conn.client(), nullptr);

    write_all(peer, framed(make_frame(100, 4, 1)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_EQ(rec.from[0], conn.client()->id());
    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    ASSERT_EQ(getsockopt(conn.client()->descriptor(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len),
              0);
    EXPECT_NE(nodelay, 0);
    sw.input(rec.id(), make_frame(80, 9, 2));
    std::vector<uint8_t> got;
    ASSERT_TRUE(read_exact(peer, got, 4 + 80));
    EXPECT_EQ(wire::load32(got.data()), 80u);
    EXPECT_EQ(conn.stats().connects, 1u);
    close(peer);
    close(lfd);
}

TEST_F(StreamTcpTest, TcpStreamConnector_RetriesWhileNobodyListensThenConnects) {
    // A port nobody listens on (taken, then released).
    TcpEndpoint ep = loopback(0);
    close(listen_any(ep));
    TcpStreamConnector conn(loop, sw, ep, 1500, Backoff(10, 40));
    ASSERT_TRUE(run_until([&] { return conn.stats().attempts >= 4; }));
    EXPECT_NE(conn.state(), TcpStreamConnector::State::connected);
    EXPECT_EQ(conn.client(), nullptr);
    EXPECT_EQ(conn.stats().connects, 0u);

    // QEMU starts listening: the next attempt connects.
    int lfd = listen_any(ep);
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    EXPECT_EQ(conn.stats().connects, 1u);
    close(peer);
    close(lfd);
}

TEST_F(StreamTcpTest, TcpStreamConnector_ReconnectsAfterTheConnectionDropsAsANewPort) {
    TcpEndpoint ep = loopback(0);
    int lfd = listen_any(ep);
    TcpStreamConnector conn(loop, sw, ep, 1500, Backoff(10, 40));
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    sw::PortId first = conn.client()->id();
    write_all(peer, framed(make_frame(60, 1, 0)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));

    // QEMU goes away (its end closes) and comes back on the same port.
    close(peer);
    ASSERT_TRUE(run_until([&] { return conn.stats().drops == 1; }));
    int peer2 = accept_one(lfd);
    ASSERT_GE(peer2, 0);
    ASSERT_TRUE(run_until([&] { return conn.state() == TcpStreamConnector::State::connected; }));
    EXPECT_EQ(conn.stats().connects, 2u);
    write_all(peer2, framed(make_frame(60, 1, 1)));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    EXPECT_EQ(rec.from[1], conn.client()->id());
    (void)first;  // port ids may be reused once free; the connection is new
    // A framing error is a drop like any other: closed, counted, retried.
    write_all(peer2, std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff});
    ASSERT_TRUE(run_until([&] { return conn.stats().drops == 2; }));
    EXPECT_EQ(conn.stats().protocol_errors, 1u);
    int peer3 = accept_one(lfd);
    ASSERT_GE(peer3, 0);
    ASSERT_TRUE(run_until([&] { return conn.stats().connects == 3; }));
    close(peer2);
    close(peer3);
    close(lfd);
}

// A peer that accepts and closes at once (another service on that port) is
// retried ever more slowly; a connection that held restarts the wait from
// its shortest.
TEST_F(StreamTcpTest, TcpStreamConnector_QuickDropsBackOffAndAConnectionThatHeldResetsTheWait) {
    TcpEndpoint ep = loopback(0);
    int lfd = listen_any(ep);
    TcpStreamConnector conn(loop, sw, ep, 1500, Backoff(10, 80));
    for (uint64_t i = 1; i <= 4; i++) {
        int peer = accept_one(lfd);
        ASSERT_GE(peer, 0);
        ASSERT_TRUE(run_until([&] { return conn.stats().connects == i; }));
        close(peer);
        ASSERT_TRUE(run_until([&] { return conn.stats().drops == i; }));
    }
    EXPECT_EQ(conn.next_wait(), 80) << "four quick drops: 10, 20, 40, 80";
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn.stats().connects == 5; }));
    loop.advance_clock_for_tests(TcpStreamConnector::kStableMs);
    close(peer);
    ASSERT_TRUE(run_until([&] { return conn.stats().drops == 5; }));
    EXPECT_EQ(conn.next_wait(), 20) << "reset to 10 ms, which the retry now armed took";
    close(lfd);
}

TEST_F(StreamTcpTest, TcpStreamConnector_DestroyedWhileConnectingOrConnected) {
    TcpEndpoint ep = loopback(0);
    int lfd = listen_any(ep);
    {
        TcpStreamConnector conn(loop, sw, ep, 1500);
        loop.run_once(0);
    }
    int stale = accept_one(lfd);  // the first one's connection, closed
    ASSERT_GE(stale, 0);
    EXPECT_TRUE(peer_closed(stale));
    close(stale);
    auto conn = std::make_unique<TcpStreamConnector>(loop, sw, ep, 1500);
    int peer = accept_one(lfd);
    ASSERT_GE(peer, 0);
    ASSERT_TRUE(run_until([&] { return conn->state() == TcpStreamConnector::State::connected; }));
    sw.input(rec.id(), make_frame(60, 9, 0));  // queues deferred output
    conn.reset();
    EXPECT_TRUE(peer_closed(peer));
    loop.run_once(0);
    close(peer);
    close(lfd);
}

}  // namespace
}  // namespace usernet::ports
