// usernet's libslirp.so.0 through the system's <slirp/libslirp.h>, as QEMU
// and slirp4netns call it: configuration checks, the poll contract (frames
// handed in from another thread than the one that polls, as QEMU's NE2000
// does; a poll straight after each frame, as slirp4netns does), DHCP,
// forwards added and removed, the listings, and the version-4 migration
// stream (its exact size, and leases that move from one instance to
// another).
#include <slirp/libslirp.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "slirp_frames.hpp"

namespace {

using namespace slirptest;

TEST(Libslirp, VersionsAreThoseQemuAsserts) {
    EXPECT_EQ(slirp_state_version(), 4);
    EXPECT_EQ(std::string(slirp_version_string()).rfind("4.7.0", 0), 0u) << slirp_version_string();
}

TEST(Libslirp, NewRefusesWhatLibslirpRefuses) {
    SlirpCb cb = callbacks();
    Guest g;
    EXPECT_EQ(slirp_new(nullptr, &cb, &g), nullptr);
    SlirpConfig c = qemu_config();
    c.version = 0;
    EXPECT_EQ(slirp_new(&c, &cb, &g), nullptr);
    c.version = 5;
    EXPECT_EQ(slirp_new(&c, &cb, &g), nullptr);
    c = qemu_config();
    c.if_mtu = 67;
    EXPECT_EQ(slirp_new(&c, &cb, &g), nullptr);
    c = qemu_config();
    std::string longname(128, 'x');
    c.bootfile = longname.c_str();
    EXPECT_EQ(slirp_new(&c, &cb, &g), nullptr);
    // every version from 1 to 4 works
    for (uint32_t v = 1; v <= 4; v++) {
        c = qemu_config(v);
        Slirp* s = slirp_new(&c, &cb, &g);
        ASSERT_NE(s, nullptr) << v;
        slirp_cleanup(s);
    }
    // A tftp= directory that does not exist (yet) is no reason to refuse:
    // QEMU does not check, and its guest would have no network at all.
    c = qemu_config();
    c.tftp_path = "/nonexistent/usernet-tftp";
    Slirp* s = slirp_new(&c, &cb, &g);
    EXPECT_NE(s, nullptr);
    if (s) slirp_cleanup(s);
}

int g_added = 0, g_added_fd = -1, g_added_events = 0;
int add_poll(int fd, int events, void*) {
    g_added++;
    g_added_fd = fd;
    g_added_events = events;
    return 7;
}
int get_revents(int, void*) { return SLIRP_POLL_IN; }

TEST(Libslirp, PollfdsFillAddsOneDescriptorAndOnlyLowersTheTimeout) {
    SlirpCb cb = callbacks();
    Guest g;
    SlirpConfig c = qemu_config();
    Slirp* s = slirp_new(&c, &cb, &g);
    ASSERT_NE(s, nullptr);
    uint32_t timeout = UINT32_MAX;
    g_added = 0;
    slirp_pollfds_fill(s, &timeout, add_poll, nullptr);
    EXPECT_EQ(g_added, 1);
    EXPECT_EQ(g_added_events, SLIRP_POLL_IN);
    EXPECT_GE(fcntl(g_added_fd, F_GETFD), 0);
    // the router advertisement timer is due within its interval
    EXPECT_LE(timeout, 600'000u);
    uint32_t small = 1;
    slirp_pollfds_fill(s, &small, add_poll, nullptr);
    EXPECT_LE(small, 1u);
    slirp_pollfds_poll(s, 0, get_revents, nullptr);
    slirp_pollfds_poll(s, 1, get_revents, nullptr);  // select_error: still fine
    slirp_cleanup(s);
}

// A TCP segment without data or options from the guest at 10.0.2.15 (MAC
// mac) to the gateway's MAC gw, port 40000 to 10.0.2.2:dport, with only the
// flags given, a 65535-byte window and the sequence and acknowledgment
// numbers given.
Frame tcp_segment(const uint8_t mac[6], const uint8_t gw[6], uint8_t flags, uint16_t dport = 9,
                  uint32_t seq = 1, uint32_t ack = 1) {
    Frame f(14 + 20 + 20, 0);
    std::memcpy(&f[0], gw, 6);
    std::memcpy(&f[6], mac, 6);
    f[12] = 0x08;
    uint8_t* ip = &f[14];
    ip[0] = 0x45;
    ip[3] = 40;
    ip[8] = 64;
    ip[9] = 6;
    in_addr src = a4("10.0.2.15"), dst = a4("10.0.2.2");
    std::memcpy(ip + 12, &src, 4);
    std::memcpy(ip + 16, &dst, 4);
    uint16_t c = csum(ip, 20);
    ip[10] = static_cast<uint8_t>(c >> 8);
    ip[11] = static_cast<uint8_t>(c);
    uint8_t* tcp = ip + 20;
    tcp[0] = 40000 >> 8;
    tcp[1] = 40000 & 0xff;
    tcp[2] = static_cast<uint8_t>(dport >> 8);
    tcp[3] = static_cast<uint8_t>(dport);
    for (int i = 0; i < 4; i++) {
        tcp[4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
        tcp[8 + i] = static_cast<uint8_t>(ack >> (24 - 8 * i));
    }
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14] = 0xff;
    tcp[15] = 0xff;
    uint8_t pseudo[12 + 20];
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = 6;
    pseudo[10] = 0;
    pseudo[11] = 20;
    std::memcpy(pseudo + 12, tcp, 20);
    c = csum(pseudo, sizeof pseudo);
    tcp[16] = static_cast<uint8_t>(c >> 8);
    tcp[17] = static_cast<uint8_t>(c);
    return f;
}

// A new instance with QEMU's configuration (cb and g must outlive it)
// whose guest `mac` has leased 10.0.2.15; gw gets the gateway's MAC, the
// source of the DHCP ACK. NULL if either failed.
Slirp* leased_instance(const SlirpCb& cb, Guest& g, const uint8_t mac[6], uint32_t xid,
                       uint8_t gw[6]) {
    SlirpConfig c = qemu_config();
    Slirp* s = slirp_new(&c, &cb, &g);
    if (!s) return nullptr;
    if (lease(s, g, mac, xid) != "10.0.2.15") {
        slirp_cleanup(s);
        return nullptr;
    }
    std::memcpy(gw, &g.out.back()[6], 6);
    return s;
}

// QEMU's NE2000 transmits on its vCPU thread while the main loop waits
// in poll: frames come in on another thread than the one that polls.
// What needs an answer now (DHCP, a request) gets it before slirp_input
// returns; an ACK's work may wait for the polling thread, whose
// descriptor a timer makes readable soon after, so that it is never left
// waiting. (How much that batching is worth is a benchmark's question:
// bench/qemu_user.py --nic ne2k_pci.)
TEST(Libslirp, FramesFromAnotherThreadAreAnsweredAtOnceOrWakeThePoller) {
    const SlirpCb cb = callbacks();
    Guest g;
    const uint8_t mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x58};
    uint8_t gw[6];
    Slirp* s = leased_instance(cb, g, mac, 500, gw);
    ASSERT_NE(s, nullptr);
    uint32_t timeout = UINT32_MAX;
    slirp_pollfds_fill(s, &timeout, add_poll, nullptr);
    const int fd = g_added_fd;
    slirp_pollfds_poll(s, 0, get_revents, nullptr);  // this thread polls

    // DHCP from another thread: answered before slirp_input returns.
    size_t before = g.out.size(), during = 0;
    std::thread([&] {
        Frame d = dhcp(1, mac, 600);
        slirp_input(s, d.data(), static_cast<int>(d.size()));
        during = g.out.size();
    }).join();
    EXPECT_EQ(during, before + 1);

    // A bare ACK from another thread may wait for the polling thread (an
    // ACK's work, the data it lets out, would); the descriptor becomes
    // readable soon without anything else happening, and the poll then
    // leaves nothing behind: the RFC 9293 reset for a segment of no
    // connection has reached the guest.
    before = g.out.size();
    std::thread([&] {
        Frame a = tcp_segment(mac, gw, 0x10);
        slirp_input(s, a.data(), static_cast<int>(a.size()));
    }).join();
    pollfd p{fd, POLLIN, 0};
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(::poll(&p, 1, 1000), 1) << "the poller was not woken";
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
    timeout = UINT32_MAX;
    slirp_pollfds_fill(s, &timeout, add_poll, nullptr);
    slirp_pollfds_poll(s, 0, get_revents, nullptr);
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "the wakeup was not consumed";
    ASSERT_EQ(g.out.size(), before + 1);
    const Frame& rst = g.out.back();
    ASSERT_GE(rst.size(), 54u);
    EXPECT_EQ(rst[14 + 9], 6);
    EXPECT_TRUE(rst[14 + 20 + 13] & 0x04) << "a reset";
    slirp_cleanup(s);
}

// A TCP segment usernet sent the guest: its sequence number, flags and
// data length, from 10.0.2.2:sport to port 40000.
struct Seg {
    uint32_t seq;
    uint8_t flags;
    size_t len;
};
bool tcp_from(const Frame& f, uint16_t sport, Seg* out) {
    if (f.size() < 54 || f[12] != 0x08 || f[13] != 0x00 || f[14 + 9] != 6) return false;
    const size_t ihl = (f[14] & 0x0f) * 4u, iplen = static_cast<size_t>(f[16] << 8 | f[17]);
    const uint8_t* t = &f[14 + ihl];
    if ((t[0] << 8 | t[1]) != sport || (t[2] << 8 | t[3]) != 40000) return false;
    out->seq = static_cast<uint32_t>(t[4]) << 24 | t[5] << 16 | t[6] << 8 | t[7];
    out->flags = t[13];
    out->len = iplen - ihl - (t[12] >> 4) * 4u;
    return true;
}

// slirp4netns reads one frame per loop and polls straight after each one
// (no slirp_pollfds_fill between). There, the work of a frame that can wait
// (a TCP ACK or bulk segment: what it lets out is more of a transfer) is
// held over the following polls while such frames keep coming, up to 32,
// and runs at the first poll that brings no new frame, which fill's zero
// timeout makes immediate: a download's ACKs let its data out in one
// batch, not two segments per ACK.
TEST(Libslirp, DirectPollerHoldsTheDataAcksLetOutUntilAPollWithoutNewFrames) {
    const SlirpCb cb = callbacks();
    Guest g;
    const uint8_t mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x59};
    uint8_t gw[6];
    Slirp* s = leased_instance(cb, g, mac, 700, gw);
    ASSERT_NE(s, nullptr);
    uint32_t timeout = UINT32_MAX;
    slirp_pollfds_fill(s, &timeout, add_poll, nullptr);
    const int efd = g_added_fd;
    auto input = [&](const Frame& f) { slirp_input(s, f.data(), static_cast<int>(f.size())); };
    auto loop_once = [&](int ms) {  // a loop that waits, as QEMU's does
        uint32_t t = UINT32_MAX;
        slirp_pollfds_fill(s, &t, add_poll, nullptr);
        pollfd p{efd, POLLIN, 0};
        ::poll(&p, 1, ms);
        slirp_pollfds_poll(s, 0, get_revents, nullptr);
    };

    // The guest connects to the host's loopback through 10.0.2.2.
    const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ASSERT_EQ(listen(lfd, 1), 0);
    socklen_t sl = sizeof sa;
    getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &sl);
    const uint16_t port = ntohs(sa.sin_port);
    input(tcp_segment(mac, gw, 0x02, port, 1000, 0));
    Seg seg{};
    bool synack = false;
    for (int i = 0; i < 200 && !synack; i++) {
        loop_once(10);
        for (const Frame& f : g.out) synack = synack || (tcp_from(f, port, &seg) && seg.flags == 0x12);
    }
    ASSERT_TRUE(synack);
    const uint32_t isn = seg.seq;
    input(tcp_segment(mac, gw, 0x10, port, 1001, isn + 1));
    loop_once(0);
    const int afd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(afd, 0);

    // The host sends; the first flight (the initial congestion window of
    // 536-byte segments: the SYN had no MSS option) goes out.
    const std::vector<char> data(64 * 1024, 'x');
    ASSERT_EQ(send(afd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    auto sent_end = [&] {  // bytes sent, counted from the first
        uint32_t end = 0;
        for (const Frame& f : g.out)
            if (tcp_from(f, port, &seg) && seg.len > 0)
                end = std::max(end, seg.seq - (isn + 1) + static_cast<uint32_t>(seg.len));
        return end;
    };
    for (int i = 0; i < 50 && sent_end() == 0; i++) loop_once(10);
    loop_once(0);
    ASSERT_GE(sent_end(), 4 * 536u);
    ASSERT_LT(sent_end(), data.size()) << "the flight is not limited";

    // Now one ACK per poll, no fill between. The first such poll shows the
    // pattern (its frame was answered in slirp_input); from then on the
    // data the ACKs let out waits.
    uint32_t acked = 2 * 536;
    auto ack_and_poll = [&] {
        input(tcp_segment(mac, gw, 0x10, port, 1001, isn + 1 + acked));
        slirp_pollfds_poll(s, 0, get_revents, nullptr);
        acked += 2 * 536;
    };
    ack_and_poll();
    const uint32_t end = sent_end();
    const size_t frames = g.out.size();
    ack_and_poll();
    ack_and_poll();
    ASSERT_LE(acked, end);
    EXPECT_EQ(g.out.size(), frames) << "the data two ACKs let out was not held";
    timeout = UINT32_MAX;
    slirp_pollfds_fill(s, &timeout, add_poll, nullptr);
    EXPECT_EQ(timeout, 0u) << "held work must bring the next poll at once";
    slirp_pollfds_poll(s, 0, get_revents, nullptr);  // no new frame
    EXPECT_GE(sent_end(), end + 4 * 536) << "the held ACKs let out nothing";
    close(afd);
    close(lfd);
    slirp_cleanup(s);
}

TEST(Libslirp, DhcpLeasesMoveWithTheMigrationStream) {
    SlirpCb cb = callbacks();
    Guest g1, g2;
    SlirpConfig c = qemu_config();
    Slirp* a = slirp_new(&c, &cb, &g1);
    Slirp* b = slirp_new(&c, &cb, &g2);
    ASSERT_TRUE(a && b);
    const uint8_t mac1[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    const uint8_t mac2[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x57};
    ASSERT_EQ(lease(a, g1, mac1, 100), "10.0.2.15");

    std::vector<uint8_t> stream;
    slirp_state_save(a, [](const void* buf, size_t len, void* o) -> ssize_t {
        auto* v = static_cast<std::vector<uint8_t>*>(o);
        v->insert(v->end(), static_cast<const uint8_t*>(buf), static_cast<const uint8_t*>(buf) + len);
        return static_cast<ssize_t>(len);
    }, &stream);
    ASSERT_EQ(stream.size(), 131u);  // libslirp's: no sockets, ip_id, 16 leases
    EXPECT_EQ(stream[0], 0);
    EXPECT_EQ(stream[3], 0);
    EXPECT_EQ(stream[4], 1);  // lease 0 allocated ...
    EXPECT_EQ(0, std::memcmp(&stream[5], mac1, 6));  // ... to mac1
    for (size_t i = 1; i < 16; i++) EXPECT_EQ(stream[3 + i * 8 + 1], 0) << i;

    struct Reader {
        const std::vector<uint8_t>* v;
        size_t off = 0;
    } rd{&stream};
    ASSERT_EQ(slirp_state_load(b, 4, [](void* buf, size_t len, void* o) -> ssize_t {
        auto* r = static_cast<Reader*>(o);
        const size_t n = std::min(len, r->v->size() - r->off);
        std::memcpy(buf, r->v->data() + r->off, n);
        r->off += n;
        return static_cast<ssize_t>(n);
    }, &rd), 0);
    EXPECT_EQ(rd.off, stream.size()) << "the loader must consume exactly the stream";
    // On the destination .15 is mac1's: another guest gets .16, mac1 .15.
    EXPECT_EQ(lease(b, g2, mac2, 200), "10.0.2.16");
    EXPECT_EQ(lease(b, g2, mac1, 300), "10.0.2.15");
    slirp_cleanup(a);
    slirp_cleanup(b);
}

TEST(Libslirp, HostForwardsComeAndGoAndAreListed) {
    SlirpCb cb = callbacks();
    Guest g;
    SlirpConfig c = qemu_config();
    Slirp* s = slirp_new(&c, &cb, &g);
    ASSERT_NE(s, nullptr);
    const int port = free_port();
    ASSERT_EQ(slirp_add_hostfwd(s, 0, a4("127.0.0.1"), port, a4("0.0.0.0"), 22), 0);
    EXPECT_EQ(slirp_add_hostfwd(s, 0, a4("127.0.0.1"), port, a4("0.0.0.0"), 22), -1);  // in use
    ASSERT_EQ(slirp_add_hostfwd(s, 1, a4("127.0.0.1"), port, a4("10.0.2.15"), 53), 0);
    char* info = slirp_connection_info(s);
    ASSERT_NE(info, nullptr);
    std::string text = info;
    free(info);
    EXPECT_NE(text.find("Protocol[State]"), std::string::npos) << text;
    EXPECT_NE(text.find("TCP[HOST_FORWARD]"), std::string::npos) << text;
    EXPECT_NE(text.find("UDP[HOST_FORWARD]"), std::string::npos) << text;
    EXPECT_NE(text.find(std::to_string(port)), std::string::npos) << text;
    EXPECT_EQ(slirp_remove_hostfwd(s, 0, a4("127.0.0.1"), port), 0);
    EXPECT_EQ(slirp_remove_hostfwd(s, 0, a4("127.0.0.1"), port), -1);
    EXPECT_EQ(slirp_remove_hostfwd(s, 1, a4("127.0.0.1"), port), 0);
    // the port is free again
    ASSERT_EQ(slirp_add_hostfwd(s, 0, a4("127.0.0.1"), port, a4("0.0.0.0"), 22), 0);
    // Host port 0: the kernel picks one, and the listing says which, with
    // where it goes (the first lease address for guest 0.0.0.0), in
    // libslirp's columns.
    ASSERT_EQ(slirp_add_hostfwd(s, 0, a4("127.0.0.1"), 0, a4("0.0.0.0"), 2222), 0);
    info = slirp_connection_info(s);
    ASSERT_NE(info, nullptr);
    text = info;
    free(info);
    EXPECT_EQ(text.substr(0, text.find('\n')),
              "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ");
    bool found = false;
    size_t at = 0;
    while ((at = text.find("TCP[HOST_FORWARD]", at)) != std::string::npos) {
        const size_t eol = text.find('\n', at);
        const std::string row = text.substr(at - 2, eol - at + 2);
        at = eol;
        char st[32], src[32], dst[32];
        int fd = 0, sport = 0, dport = 0, rq = -1, sq = -1;
        ASSERT_EQ(std::sscanf(row.c_str(), "%31s %d %31s %d %31s %d %d %d", st, &fd, src, &sport,
                              dst, &dport, &rq, &sq), 8) << row;
        EXPECT_EQ(row.size(), 79u) << row;  // the header's width
        EXPECT_STREQ(dst, "10.0.2.15") << row;
        if (dport == 2222) {
            found = true;
            EXPECT_NE(sport, 0) << row;
        } else {
            EXPECT_EQ(dport, 22) << row;
            EXPECT_EQ(sport, port) << row;
        }
    }
    EXPECT_TRUE(found) << text;
    slirp_cleanup(s);
}

ssize_t ignore_write(const void*, size_t len, void*) { return static_cast<ssize_t>(len); }

TEST(Libslirp, GuestForwardsTakeLibslirpsDefaultAddressAndItsRules) {
    SlirpCb cb = callbacks();
    Guest g;
    SlirpConfig c = qemu_config();
    Slirp* s = slirp_new(&c, &cb, &g);
    ASSERT_NE(s, nullptr);
    in_addr addr = a4("0.0.0.0");
    ASSERT_EQ(slirp_add_guestfwd(s, ignore_write, nullptr, &addr, 4321), 0);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr, text, sizeof text);
    EXPECT_STREQ(text, "10.0.2.4");  // written back, as QEMU reads it
    EXPECT_EQ(slirp_socket_can_recv(s, addr, 4321), 0u);  // no connection yet
    in_addr gw = a4("10.0.2.2"), pool = a4("10.0.2.20"), outside = a4("192.168.1.1");
    EXPECT_EQ(slirp_add_exec(s, "cat", &gw, 80), -1);
    EXPECT_EQ(slirp_add_exec(s, "cat", &outside, 80), -1);
    // An address of the DHCP range, as libslirp allows: DHCP no longer
    // leases it.
    EXPECT_EQ(slirp_add_exec(s, "cat", &pool, 80), 0);
    EXPECT_EQ(slirp_add_exec(s, "cat", &pool, 80), -1);  // twice
    EXPECT_EQ(slirp_remove_guestfwd(s, pool, 80), 0);
    in_addr ok = a4("10.0.2.100");
    EXPECT_EQ(slirp_add_exec(s, "cat", &ok, 80), 0);
    EXPECT_EQ(slirp_remove_guestfwd(s, ok, 80), 0);
    EXPECT_EQ(slirp_remove_guestfwd(s, ok, 80), -1);
    EXPECT_EQ(slirp_remove_guestfwd(s, addr, 4321), 0);
    slirp_cleanup(s);
}

}  // namespace
