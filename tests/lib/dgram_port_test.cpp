// The datagram attachment (QEMU -netdev dgram / socket,udp= / mcast=,
// Bochs ethmod=socket) over real sockets on loopback: frames in and out,
// padding to 60, runts, empty and oversized datagrams counted, a foreign
// source dropped, the learned peer, unix paths (stale, live, unlinked),
// multicast with usernet's own echo dropped, and a full peer.
#include "ports/dgram_port.hpp"

#include "app/options.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;

Frame make_frame(size_t len, uint8_t src_last, uint8_t fill, uint8_t dst_last = 0xff) {
    Frame f(len);
    for (size_t i = 0; i < len; i++) f[i] = static_cast<uint8_t>(fill + i * 7);
    if (len >= 14) {
        wire::MacAddr dst = dst_last == 0xff ? wire::MacAddr::broadcast()
                                             : wire::MacAddr{{0x02, 0, 0, 0, 0, dst_last}};
        dst.store(f.data());
        wire::MacAddr{{0x02, 0, 0, 0, 0, src_last}}.store(f.data() + 6);
        f[12] = 0x08;
        f[13] = 0x00;
    }
    return f;
}

class RecordingPort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "recorder"; }
    std::vector<Frame> frames;
};

wire::IpAddr loopback4() { return wire::IpAddr::v4(0x7f000001); }

// A plain UDP or unix datagram socket playing the emulator.
struct Peer {
    int fd = -1;
    SockAddr addr;
    explicit Peer(const SockAddr& bind_to) {
        fd = socket(bind_to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
        EXPECT_GE(fd, 0);
        if (bind_to.family() == AF_UNIX) unlink(bind_to.path().c_str());
        EXPECT_EQ(bind(fd, bind_to.sa(), bind_to.len), 0) << strerror(errno);
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
        addr = bind_to.family() == AF_UNIX ? bind_to
                                           : SockAddr::from(reinterpret_cast<sockaddr*>(&ss), len);
    }
    ~Peer() {
        if (fd >= 0) close(fd);
        if (addr.family() == AF_UNIX) unlink(addr.path().c_str());
    }
    void send_to(const SockAddr& to, const Frame& f) const {
        ssize_t n = sendto(fd, f.data(), f.size(), 0, to.sa(), to.len);
        EXPECT_EQ(n, static_cast<ssize_t>(f.size())) << strerror(errno);
    }
};

// A free UDP port on 127.0.0.1 (bound once, then released).
uint16_t free_udp_port() {
    Peer p(SockAddr::inet(loopback4(), 0));
    return p.addr.port();
}

struct DgramPortTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    RecordingPort rec;
    std::string dir;

    void SetUp() override {
        char tmpl[] = "/tmp/usernet-dgram-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        sw.attach(rec);
    }
    void TearDown() override {
        for (const char* f : {"/u", "/q", "/x"}) unlink((dir + f).c_str());
        rmdir(dir.c_str());
    }

    // A link over unix datagram sockets: usernet at dir/u, QEMU at dir/q.
    DgramConfig unix_link() const {
        DgramConfig c;
        c.kind = DgramKind::unix_dgram;
        c.local = *SockAddr::unix_path(dir + "/u");
        c.remote = *SockAddr::unix_path(dir + "/q");
        return c;
    }

    bool run_until(const std::function<bool()>& pred) {
        for (int i = 0; i < 200 && !pred(); i++) loop.run_once(10);
        return pred();
    }

    // Receives one datagram on fd, running the loop meanwhile.
    bool recv_one(int fd, Frame& out, SockAddr* from = nullptr) {
        for (int i = 0; i < 400; i++) {
            loop.run_once(0);
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 5) <= 0) continue;
            uint8_t buf[70000];
            sockaddr_storage ss{};
            socklen_t len = sizeof(ss);
            ssize_t r = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT,
                                 reinterpret_cast<sockaddr*>(&ss), &len);
            if (r < 0) continue;
            out.assign(buf, buf + r);
            if (from) *from = SockAddr::from(reinterpret_cast<sockaddr*>(&ss), len);
            return true;
        }
        return false;
    }

    DgramConfig udp_config(const Peer& peer) {
        DgramConfig c;
        c.kind = DgramKind::udp;
        c.local = SockAddr::inet(loopback4(), 0);
        c.remote = peer.addr;
        return c;
    }
};

TEST_F(DgramPortTest, DgramPort_UdpFramesReachTheSwitchExactly) {
    Peer qemu(SockAddr::inet(loopback4(), 0));
    DgramPort port(loop, sw, udp_config(qemu));
    EXPECT_NE(port.local_address().port(), 0);
    std::vector<Frame> frames = {make_frame(60, 1, 0), make_frame(1514, 1, 1),
                                 make_frame(14, 1, 2), make_frame(1518, 1, 3)};
    for (const auto& f : frames) qemu.send_to(port.local_address(), f);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == frames.size(); }));
    EXPECT_EQ(rec.frames, frames);
    EXPECT_EQ(port.stats().rx_frames, frames.size());
}

TEST_F(DgramPortTest, DgramPort_FramesOutArriveOnePerDatagramPaddedToSixty) {
    Peer qemu(SockAddr::inet(loopback4(), 0));
    DgramPort port(loop, sw, udp_config(qemu));
    // The guest announces its MAC, so unicast to it goes to its port.
    qemu.send_to(port.local_address(), make_frame(60, 7, 0));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));

    Frame arp = make_frame(42, 9, 5, /*dst*/ 7);
    Frame full = make_frame(1514, 9, 6, 7);
    sw.input(rec.id(), arp);
    sw.input(rec.id(), full);
    Frame got;
    SockAddr from;
    ASSERT_TRUE(recv_one(qemu.fd, got, &from));
    Frame padded = arp;
    padded.resize(60, 0);
    EXPECT_EQ(got, padded);
    EXPECT_TRUE(from == port.local_address());
    ASSERT_TRUE(recv_one(qemu.fd, got));
    EXPECT_EQ(got, full);
}

TEST_F(DgramPortTest, DgramPort_RuntsEmptyAndOversizedDatagramsAreCountedNotForwarded) {
    Peer qemu(SockAddr::inet(loopback4(), 0));
    DgramPort port(loop, sw, udp_config(qemu));  // MTU 1500: frames up to 1518
    qemu.send_to(port.local_address(), Frame{});
    qemu.send_to(port.local_address(), make_frame(13, 1, 0));
    qemu.send_to(port.local_address(), make_frame(1, 1, 0));
    qemu.send_to(port.local_address(), make_frame(1519, 1, 0));
    qemu.send_to(port.local_address(), make_frame(9000, 1, 0));
    Frame good = make_frame(100, 1, 9);
    qemu.send_to(port.local_address(), good);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_EQ(rec.frames[0], good);
    const DgramStats& d = port.dgram_stats();
    EXPECT_EQ(d.empty, 1u);
    EXPECT_EQ(d.too_short, 2u);
    EXPECT_EQ(d.too_long, 2u);
    EXPECT_EQ(port.stats().rx_dropped, 4u);
}

// QEMU's i82559er sends some 1514-byte frames in 2600-byte datagrams: a
// datagram over the buffer that holds a whole IP packet is cut to it (it
// was dropped, and the guest's TCP stalled on retransmissions); one whose
// packet does not fit is still too long.
TEST_F(DgramPortTest, DgramPort_AnIpPacketFollowedByJunkIsCutToThePacket) {
    Peer qemu(SockAddr::inet(loopback4(), 0));
    DgramPort port(loop, sw, udp_config(qemu));  // MTU 1500: frames up to 1518
    auto ip_frame = [](uint16_t ip_len, size_t datagram) {
        Frame f = make_frame(datagram, 1, 0);
        wire::store16(&f[12], 0x0800);  // IPv4
        f[14] = 0x45;
        wire::store16(&f[16], ip_len);
        return f;
    };
    const Frame padded = ip_frame(1500, 2600);
    qemu.send_to(port.local_address(), padded);
    qemu.send_to(port.local_address(), ip_frame(1600, 2600));
    Frame good = make_frame(100, 1, 9);
    qemu.send_to(port.local_address(), good);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    EXPECT_EQ(rec.frames[0], Frame(padded.begin(), padded.begin() + 1514));
    EXPECT_EQ(rec.frames[1], good);
    EXPECT_EQ(port.dgram_stats().trimmed, 1u);
    EXPECT_EQ(port.dgram_stats().too_long, 1u);
}

TEST_F(DgramPortTest, DgramPort_DropsDatagramsFromAnotherSourceThanTheRemote) {
    Peer qemu(SockAddr::inet(loopback4(), 0));
    Peer stranger(SockAddr::inet(loopback4(), 0));
    DgramPort port(loop, sw, udp_config(qemu));
    stranger.send_to(port.local_address(), make_frame(60, 3, 0));
    qemu.send_to(port.local_address(), make_frame(60, 1, 0));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_TRUE(run_until([&] { return port.dgram_stats().foreign == 1; }));
    EXPECT_EQ(rec.frames[0], make_frame(60, 1, 0));
}

TEST_F(DgramPortTest, DgramPort_WithoutRemoteLearnsThePeerAndAnswersIt) {
    DgramConfig c;
    c.local = SockAddr::inet(loopback4(), 0);
    DgramPort port(loop, sw, c);
    EXPECT_FALSE(port.peer());
    // Nowhere to send yet: dropped and counted.
    sw.input(rec.id(), make_frame(60, 9, 0));
    loop.run_once(0);
    EXPECT_EQ(port.dgram_stats().tx_no_peer, 1u);

    Peer a(SockAddr::inet(loopback4(), 0));
    a.send_to(port.local_address(), make_frame(60, 1, 0));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    ASSERT_TRUE(port.peer());
    EXPECT_TRUE(*port.peer() == a.addr);
    sw.input(rec.id(), make_frame(70, 9, 1));
    Frame got;
    ASSERT_TRUE(recv_one(a.fd, got));
    EXPECT_EQ(got, make_frame(70, 9, 1));

    // The emulator restarts on another port: the peer follows it.
    Peer b(SockAddr::inet(loopback4(), 0));
    b.send_to(port.local_address(), make_frame(60, 1, 2));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    EXPECT_TRUE(*port.peer() == b.addr);
    EXPECT_EQ(port.dgram_stats().peer_changes, 2u);
}

TEST_F(DgramPortTest, DgramPort_Ipv6Loopback) {
    wire::IpAddr v6 = *wire::IpAddr::parse("::1");
    int probe = socket(AF_INET6, SOCK_DGRAM, 0);
    SockAddr any6 = SockAddr::inet(v6, 0);
    bool have_v6 = bind(probe, any6.sa(), any6.len) == 0;
    close(probe);
    if (!have_v6) GTEST_SKIP() << "no IPv6 loopback here";
    Peer qemu(SockAddr::inet(v6, 0));
    DgramConfig c;
    c.local = SockAddr::inet(v6, 0);
    c.remote = qemu.addr;
    DgramPort port(loop, sw, c);
    EXPECT_EQ(port.local_address().to_string().rfind("[::1]:", 0), 0u);
    qemu.send_to(port.local_address(), make_frame(80, 1, 0));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    sw.input(rec.id(), make_frame(20, 9, 1));
    Frame got;
    ASSERT_TRUE(recv_one(qemu.fd, got));
    EXPECT_EQ(got.size(), 60u);
}

TEST_F(DgramPortTest, DgramPort_UdpPortInUseIsRefused) {
    Peer other(SockAddr::inet(loopback4(), 0));
    DgramConfig c;
    c.local = other.addr;
    try {
        DgramPort port(loop, sw, c);
        FAIL() << "bound a port in use";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
    }
}

TEST_F(DgramPortTest, DgramPort_UnixBothWaysAndThePathIsRemovedAtExit) {
    SockAddr mine = *SockAddr::unix_path(dir + "/u");
    SockAddr theirs = *SockAddr::unix_path(dir + "/q");
    Peer qemu(theirs);
    {
        DgramConfig c;
        c.kind = DgramKind::unix_dgram;
        c.local = mine;
        c.remote = theirs;
        DgramPort port(loop, sw, c);
        struct stat st {};
        ASSERT_EQ(lstat((dir + "/u").c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 077, 0u) << "the socket is owner only";
        qemu.send_to(mine, make_frame(1514, 1, 0));
        ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
        EXPECT_EQ(rec.frames[0], make_frame(1514, 1, 0));
        sw.input(rec.id(), make_frame(30, 9, 3));
        Frame got;
        SockAddr from;
        ASSERT_TRUE(recv_one(qemu.fd, got, &from));
        Frame padded = make_frame(30, 9, 3);
        padded.resize(60, 0);
        EXPECT_EQ(got, padded);
        EXPECT_EQ(from.path(), dir + "/u");
    }
    struct stat st {};
    EXPECT_NE(lstat((dir + "/u").c_str(), &st), 0) << "the socket file is left behind";
}

// --dgram unix:u,q given relative: usernet binds and sends to the absolute
// paths (those its QEMU hint prints), and takes frames from a peer bound
// at either name of q, the absolute one or the relative one as given.
TEST_F(DgramPortTest, DgramPort_ARelativeUnixRemoteIsTheSamePeerByEitherName) {
    struct Cwd {  // back where it was however the test ends
        std::array<char, 4096> path{};
        ~Cwd() {
            if (path[0] && chdir(path.data()) != 0) std::abort();
        }
    } cwd;
    ASSERT_NE(getcwd(cwd.path.data(), cwd.path.size()), nullptr);
    ASSERT_EQ(chdir(dir.c_str()), 0);
    app::Config cfg = app::parse_options({"--dgram", "unix:u,q"});
    ASSERT_EQ(cfg.attachments.size(), 1u);
    DgramConfig c = *cfg.attachments[0].dgram;
    EXPECT_EQ(c.local.path(), dir + "/u");
    EXPECT_EQ(c.remote->path(), dir + "/q");
    ASSERT_TRUE(c.remote_alias);
    EXPECT_EQ(c.remote_alias->path(), "q");
    {
        DgramPort port(loop, sw, c);
        {
            Peer relative(*SockAddr::unix_path("q"));
            relative.send_to(c.local, make_frame(100, 1, 0));
            ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
        }
        Peer absolute(*SockAddr::unix_path(dir + "/q"));
        absolute.send_to(c.local, make_frame(100, 1, 1));
        ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
        Peer other(*SockAddr::unix_path(dir + "/x"));
        other.send_to(c.local, make_frame(100, 1, 2));
        for (int i = 0; i < 5; i++) loop.run_once(10);
        EXPECT_EQ(rec.frames.size(), 2u);
        EXPECT_EQ(port.dgram_stats().foreign, 1u);
    }
}

TEST_F(DgramPortTest, DgramPort_UnixStalePathReplacedLiveRefusedFileRefused) {
    std::string path = dir + "/u";
    SockAddr mine = *SockAddr::unix_path(path);
    DgramConfig c;
    c.kind = DgramKind::unix_dgram;
    c.local = mine;
    c.remote = *SockAddr::unix_path(dir + "/q");
    {
        // A live socket at the path: refused.
        Peer live(mine);
        try {
            DgramPort port(loop, sw, c);
            FAIL() << "took a live path";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
        }
        // Leave a stale file behind: close without unlinking.
        close(live.fd);
        live.fd = -1;
        live.addr = SockAddr{};
    }
    struct stat st {};
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    { DgramPort port(loop, sw, c); }  // stale: replaced
    EXPECT_NE(lstat(path.c_str(), &st), 0);

    FILE* f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
    EXPECT_THROW(DgramPort(loop, sw, c), std::runtime_error);
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << "a regular file must not be removed";
    unlink(path.c_str());
}

TEST_F(DgramPortTest, DgramPort_UnixPeerAbsentDropsAndCountsThenWorksWhenItComes) {
    DgramConfig c = unix_link();
    DgramPort port(loop, sw, c);
    sw.input(rec.id(), make_frame(60, 9, 0));
    loop.run_once(0);
    EXPECT_GE(port.dgram_stats().tx_errors, 1u);
    EXPECT_EQ(port.queued_frames(), 0u);
    Peer qemu(*c.remote);
    sw.input(rec.id(), make_frame(60, 9, 1));
    Frame got;
    ASSERT_TRUE(recv_one(qemu.fd, got));
    EXPECT_EQ(got, make_frame(60, 9, 1));
}

TEST_F(DgramPortTest, DgramPort_FullUnixPeerKeepsFramesQueuedAndBounded) {
    DgramConfig c = unix_link();
    Peer qemu(*c.remote);
    DgramPort port(loop, sw, c);
    // The peer reads nothing: its queue (net.unix.max_dgram_qlen) fills,
    // the rest waits in usernet's ring, and what does not fit is dropped.
    size_t total = DgramPort::kMaxTxSlots * 2;
    for (size_t i = 0; i < total; i++) sw.input(rec.id(), make_frame(100, 9, uint8_t(i)));
    loop.run_once(0);
    EXPECT_GT(port.dgram_stats().tx_retries, 0u);
    EXPECT_GT(port.dgram_stats().tx_queue_full, 0u);
    EXPECT_LE(port.queued_frames(), DgramPort::kMaxTxSlots);
    // Draining the peer lets the queue go out, in order.
    std::vector<Frame> got;
    Frame f;
    while (recv_one(qemu.fd, f)) {
        got.push_back(f);
        if (port.queued_frames() == 0 && got.size() > 300) break;
    }
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.size() + port.dgram_stats().tx_queue_full, total);
    for (size_t i = 1; i < got.size(); i++)
        EXPECT_EQ(uint8_t(got[i][14] - got[i - 1][14]), 1) << "out of order at " << i;
}

TEST_F(DgramPortTest, DgramPort_FrameRoomIsTheFreeSlotsLessAReserve) {
    DgramConfig c = unix_link();
    Peer qemu(*c.remote);
    DgramPort port(loop, sw, c);
    // deliver() queues at once; the ring goes out at the end of the loop's
    // batch, so before run_once() every frame is still in a slot.
    const size_t room0 = port.tx_frame_room();
    EXPECT_GE(room0, DgramPort::kMinTxSlots - DgramPort::kTxReserveSlots);
    EXPECT_LE(room0, DgramPort::kMaxTxSlots - DgramPort::kTxReserveSlots);
    for (int i = 0; i < 10; i++) sw.input(rec.id(), make_frame(1500, 9, uint8_t(i)));
    EXPECT_EQ(port.queued_frames(), 10u);
    EXPECT_EQ(port.tx_frame_room(), room0 - 10);
    // The reserve still takes frames (an ARP reply, an ACK) after the room
    // a TCP sender keeps within is gone; then the ring is full.
    for (size_t i = 10; i < room0; i++) sw.input(rec.id(), make_frame(1500, 9, uint8_t(i)));
    EXPECT_EQ(port.tx_frame_room(), 0u);
    for (size_t i = 0; i < DgramPort::kTxReserveSlots; i++)
        sw.input(rec.id(), make_frame(60, 9, uint8_t(i)));
    EXPECT_EQ(port.dgram_stats().tx_queue_full, 0u);
    EXPECT_EQ(port.queued_frames(), room0 + DgramPort::kTxReserveSlots);
    sw.input(rec.id(), make_frame(60, 9, 0));
    EXPECT_EQ(port.dgram_stats().tx_queue_full, 1u);
}

struct McastGroup {
    SockAddr group;
    McastGroup() {
        std::random_device rd;
        uint32_t r = rd();
        wire::Ipv4 g = (239u << 24) | (((r >> 8) & 0xff) << 16) | ((r & 0xff) << 8) |
                       (1 + (r >> 16) % 250);
        uint16_t port = static_cast<uint16_t>(20000 + (r >> 20) % 30000);
        group = SockAddr::inet(wire::IpAddr::v4(g), port);
    }
};

// A member of the group, as QEMU's socket,mcast= makes it.
int qemu_mcast_socket(const SockAddr& group) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(bind(fd, group.sa(), group.len), 0) << strerror(errno);
    ip_mreq m{};
    m.imr_multiaddr = reinterpret_cast<const sockaddr_in*>(group.sa())->sin_addr;
    EXPECT_EQ(setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m)), 0) << strerror(errno);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &one, sizeof(one));
    return fd;
}

TEST_F(DgramPortTest, DgramPort_MulticastSharesTheGroupAndDropsItsOwnEcho) {
    McastGroup g;
    int q1 = qemu_mcast_socket(g.group);
    int q2 = qemu_mcast_socket(g.group);
    DgramConfig c;
    c.kind = DgramKind::mcast;
    c.local = g.group;
    DgramPort port(loop, sw, c);
    EXPECT_NE(port.send_address().port(), g.group.port());

    // A frame from the switch reaches both QEMUs, padded; its loopback echo
    // does not come back into the switch.
    sw.input(rec.id(), make_frame(42, 9, 0));
    Frame want = make_frame(42, 9, 0);
    want.resize(60, 0);
    Frame got;
    SockAddr from;
    ASSERT_TRUE(recv_one(q1, got, &from));
    EXPECT_EQ(got, want);
    EXPECT_TRUE(from == port.send_address());
    ASSERT_TRUE(recv_one(q2, got));
    EXPECT_EQ(got, want);
    ASSERT_TRUE(run_until([&] { return port.dgram_stats().own_echo == 1; }));
    EXPECT_TRUE(rec.frames.empty());

    // A QEMU's frame reaches the switch (and the other QEMU, by the group).
    ssize_t n = sendto(q1, make_frame(60, 1, 3).data(), 60, 0, g.group.sa(), g.group.len);
    ASSERT_EQ(n, 60);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    EXPECT_EQ(rec.frames[0], make_frame(60, 1, 3));
    EXPECT_EQ(port.dgram_stats().own_echo, 1u);
    close(q1);
    close(q2);
}

// Past kMaxGroupGuests MACs, a newcomer shares the link's own port until
// some guest has been silent kMemberIdleMs; then it takes that guest's port.
TEST_F(DgramPortTest, DgramPort_ANewMacTakesTheIdlestMembersPortOnceItIsSilentLongEnough) {
    McastGroup g;
    int q = qemu_mcast_socket(g.group);
    DgramConfig c;
    c.kind = DgramKind::mcast;
    c.local = g.group;
    DgramPort port(loop, sw, c);
    auto send = [&](uint8_t mac) {
        Frame f = make_frame(60, mac, 0);
        ASSERT_EQ(sendto(q, f.data(), f.size(), 0, g.group.sa(), g.group.len), 60);
    };
    const uint8_t n = static_cast<uint8_t>(DgramPort::kMaxGroupGuests);
    for (uint8_t m = 1; m <= n; m++) send(m);
    ASSERT_TRUE(run_until([&] { return port.member_count() == n; }));
    auto mac = [](int last) { return wire::MacAddr{{0x02, 0, 0, 0, 0, static_cast<uint8_t>(last)}}; };
    send(static_cast<uint8_t>(n + 1));
    ASSERT_TRUE(run_until([&] { return sw.lookup(mac(n + 1)) == port.id(); }));
    loop.advance_clock_for_tests(DgramPort::kMemberIdleMs);
    for (uint8_t m = 2; m <= n; m++) send(m);  // all but guest 1 speak again
    send(static_cast<uint8_t>(n + 2));
    ASSERT_TRUE(run_until([&] {
        const sw::PortId p = sw.lookup(mac(n + 2));
        return p != sw::kNoPort && p != port.id();
    }));
    EXPECT_EQ(port.member_count(), n);
    EXPECT_EQ(sw.lookup(mac(1)), sw::kNoPort) << "guest 1's port went";
    close(q);
}

TEST_F(DgramPortTest, DgramPort_MulticastGivesEachGuestItsOwnPortAndSendsEachFrameOnce) {
    McastGroup g;
    int q1 = qemu_mcast_socket(g.group);
    int q2 = qemu_mcast_socket(g.group);
    DgramConfig c;
    c.kind = DgramKind::mcast;
    c.local = g.group;
    DgramPort port(loop, sw, c);
    auto send = [&](int fd, const Frame& f) {
        ASSERT_EQ(sendto(fd, f.data(), f.size(), 0, g.group.sa(), g.group.len),
                  static_cast<ssize_t>(f.size()));
    };
    // Two guests (MACs ...:01 and ...:02) announce themselves.
    send(q1, make_frame(60, 1, 0));
    send(q2, make_frame(60, 2, 0));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    ASSERT_EQ(port.member_count(), 2u);
    auto members = port.member_ports();
    EXPECT_NE(members[0], members[1]);
    EXPECT_NE(members[0], port.id());
    EXPECT_EQ(sw.lookup(wire::MacAddr{{0x02, 0, 0, 0, 0, 1}}), members[0]);
    EXPECT_EQ(sw.lookup(wire::MacAddr{{0x02, 0, 0, 0, 0, 2}}), members[1]);
    // A member's frames share the link's ring: a TCP sender toward that
    // guest keeps within the ring's room.
    for (sw::PortId m : members) EXPECT_EQ(sw.port(m)->tx_frame_room(), port.tx_frame_room());
    // Each QEMU socket also got both frames from the group itself.
    Frame f;
    for (int i = 0; i < 4; i++) ASSERT_TRUE(recv_one(i < 2 ? q1 : q2, f));

    // The announcements were flooded to the DgramPort and to the other
    // member port once it existed (1 + 2 copies): none went back to the group.
    EXPECT_EQ(port.dgram_stats().group_local, 3u);
    // Guest 1 to guest 2 over the group: usernet does not repeat it.
    send(q1, make_frame(100, 1, 5, /*dst*/ 2));
    ASSERT_TRUE(run_until([&] { return port.dgram_stats().group_local == 4; }));
    // A broadcast from elsewhere reaches the member ports and the DgramPort
    // (three copies from the switch) and goes out once.
    sw.input(rec.id(), make_frame(42, 9, 7));
    loop.run_once(0);
    EXPECT_EQ(port.dgram_stats().flood_copies, 2u);
    ASSERT_TRUE(recv_one(q1, f));  // guest 1's frame to guest 2, from the group
    EXPECT_EQ(f, make_frame(100, 1, 5, 2));
    ASSERT_TRUE(recv_one(q1, f));
    EXPECT_EQ(f.size(), 60u);
    EXPECT_EQ(f[6 + 5], 9);
    pollfd p{q1, POLLIN, 0};
    for (int i = 0; i < 20; i++) loop.run_once(5);
    EXPECT_EQ(poll(&p, 1, 50), 0) << "a flooded frame went out more than once";
    // A unicast to guest 2 from elsewhere goes out once too.
    sw.input(rec.id(), make_frame(70, 9, 8, /*dst*/ 2));
    ASSERT_TRUE(recv_one(q2, f));  // guest 1's frame
    ASSERT_TRUE(recv_one(q2, f));  // the broadcast
    ASSERT_TRUE(recv_one(q2, f));
    EXPECT_EQ(f, make_frame(70, 9, 8, 2));
    // Two frames with the same bytes in one batch (a TAP's reads, the
    // gateway's replies, come from one buffer) are two frames: both go.
    const uint64_t copies = port.dgram_stats().flood_copies;
    sw.input(rec.id(), make_frame(70, 9, 8, 2));
    sw.input(rec.id(), make_frame(70, 9, 8, 2));
    loop.run_once(0);
    EXPECT_EQ(port.dgram_stats().flood_copies, copies);
    ASSERT_TRUE(recv_one(q2, f));
    EXPECT_EQ(f, make_frame(70, 9, 8, 2));
    ASSERT_TRUE(recv_one(q2, f));
    EXPECT_EQ(f, make_frame(70, 9, 8, 2));
    close(q1);
    close(q2);
}

TEST_F(DgramPortTest, DgramPort_MulticastRefusesAUnicastGroup) {
    DgramConfig c;
    c.kind = DgramKind::mcast;
    c.local = SockAddr::inet(loopback4(), free_udp_port());
    EXPECT_THROW(DgramPort(loop, sw, c), std::runtime_error);
}

TEST(SockAddr, SockAddr_TextAndComparison) {
    SockAddr a = SockAddr::inet(wire::IpAddr::v4(0x7f000001), 5555);
    EXPECT_EQ(a.to_string(), "127.0.0.1:5555");
    SockAddr b = SockAddr::inet(*wire::IpAddr::parse("::1"), 7);
    EXPECT_EQ(b.to_string(), "[::1]:7");
    EXPECT_FALSE(a == b);
    EXPECT_TRUE(a == SockAddr::inet(wire::IpAddr::v4(0x7f000001), 5555));
    EXPECT_FALSE(a == SockAddr::inet(wire::IpAddr::v4(0x7f000001), 5556));
    auto u = SockAddr::unix_path("/tmp/x.sock");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->to_string(), "/tmp/x.sock");
    EXPECT_TRUE(*u == *SockAddr::unix_path("/tmp/x.sock"));
    EXPECT_FALSE(*u == *SockAddr::unix_path("/tmp/y.sock"));
    EXPECT_FALSE(SockAddr::unix_path(""));
    EXPECT_FALSE(SockAddr::unix_path(std::string(200, 'a')));
}

}  // namespace
}  // namespace usernet::ports
