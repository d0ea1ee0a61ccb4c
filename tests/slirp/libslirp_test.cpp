// usernet's libslirp.so.0 through the system's <slirp/libslirp.h>, as QEMU
// and slirp4netns call it: configuration checks, the poll contract, DHCP,
// forwards added and removed, the listings, and the version-4 migration
// stream (its exact size, and leases that move from one instance to
// another).
#include <slirp/libslirp.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Frame = std::vector<uint8_t>;

struct Guest {
    std::vector<Frame> out;  // frames usernet sent to the guest
};

ssize_t send_packet(const void* buf, size_t len, void* opaque) {
    auto* g = static_cast<Guest*>(opaque);
    const auto* p = static_cast<const uint8_t*>(buf);
    g->out.emplace_back(p, p + len);
    return static_cast<ssize_t>(len);
}
void guest_error(const char*, void*) {}
int64_t clock_ns(void*) { return 0; }
void* timer_new(SlirpTimerCb, void*, void*) { return nullptr; }
void timer_free(void*, void*) {}
void timer_mod(void*, int64_t, void*) {}
void reg(int, void*) {}
void notify(void*) {}

SlirpCb callbacks() {
    SlirpCb cb{};
    cb.send_packet = send_packet;
    cb.guest_error = guest_error;
    cb.clock_get_ns = clock_ns;
    cb.timer_new = timer_new;
    cb.timer_free = timer_free;
    cb.timer_mod = timer_mod;
    cb.register_poll_fd = reg;
    cb.unregister_poll_fd = reg;
    cb.notify = notify;
    return cb;
}

in_addr a4(const char* s) {
    in_addr a{};
    inet_pton(AF_INET, s, &a);
    return a;
}

// QEMU's defaults, as net/slirp.c fills them.
SlirpConfig qemu_config(uint32_t version = 4) {
    SlirpConfig c{};
    c.version = version;
    c.in_enabled = true;
    c.vnetwork = a4("10.0.2.0");
    c.vnetmask = a4("255.255.255.0");
    c.vhost = a4("10.0.2.2");
    c.vdhcp_start = a4("10.0.2.15");
    c.vnameserver = a4("10.0.2.3");
    c.in6_enabled = true;
    inet_pton(AF_INET6, "fec0::", &c.vprefix_addr6);
    c.vprefix_len = 64;
    inet_pton(AF_INET6, "fec0::2", &c.vhost6);
    inet_pton(AF_INET6, "fec0::3", &c.vnameserver6);
    return c;
}

uint16_t csum(const uint8_t* p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (n & 1) s += static_cast<uint32_t>(p[n - 1] << 8);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(~s);
}

// A DHCP DISCOVER (type 1) or REQUEST (type 3, for `want` from 10.0.2.2).
Frame dhcp(uint8_t type, const uint8_t mac[6], uint32_t xid, const char* want = nullptr) {
    std::vector<uint8_t> bootp(240, 0);
    bootp[0] = 1;
    bootp[1] = 1;
    bootp[2] = 6;
    bootp[4] = static_cast<uint8_t>(xid >> 24);
    bootp[5] = static_cast<uint8_t>(xid >> 16);
    bootp[6] = static_cast<uint8_t>(xid >> 8);
    bootp[7] = static_cast<uint8_t>(xid);
    std::memcpy(&bootp[28], mac, 6);
    const uint8_t cookie[4] = {99, 130, 83, 99};
    std::memcpy(&bootp[236], cookie, 4);
    bootp.insert(bootp.end(), {53, 1, type});
    if (want) {
        in_addr w = a4(want), srv = a4("10.0.2.2");
        bootp.insert(bootp.end(), {50, 4});
        bootp.insert(bootp.end(), reinterpret_cast<uint8_t*>(&w), reinterpret_cast<uint8_t*>(&w) + 4);
        bootp.insert(bootp.end(), {54, 4});
        bootp.insert(bootp.end(), reinterpret_cast<uint8_t*>(&srv), reinterpret_cast<uint8_t*>(&srv) + 4);
    }
    bootp.push_back(255);
    Frame f(14 + 20 + 8 + bootp.size(), 0);
    std::memcpy(&f[42], bootp.data(), bootp.size());
    std::memset(&f[0], 0xff, 6);
    std::memcpy(&f[6], mac, 6);
    f[12] = 0x08;
    const size_t udp_len = 8 + bootp.size(), ip_len = 20 + udp_len;
    uint8_t* ip = &f[14];
    ip[0] = 0x45;
    ip[2] = static_cast<uint8_t>(ip_len >> 8);
    ip[3] = static_cast<uint8_t>(ip_len);
    ip[8] = 64;
    ip[9] = 17;
    std::memset(ip + 16, 0xff, 4);
    const uint16_t c = csum(ip, 20);
    ip[10] = static_cast<uint8_t>(c >> 8);
    ip[11] = static_cast<uint8_t>(c);
    uint8_t* udp = ip + 20;
    udp[1] = 68;
    udp[3] = 67;
    udp[4] = static_cast<uint8_t>(udp_len >> 8);
    udp[5] = static_cast<uint8_t>(udp_len);
    return f;
}

// The yiaddr and message type of the last DHCP reply, if any.
bool last_dhcp_reply(const Guest& g, std::string* yiaddr, int* type) {
    for (auto it = g.out.rbegin(); it != g.out.rend(); ++it) {
        const Frame& f = *it;
        if (f.size() < 14 + 20 + 8 + 240 || f[12] != 0x08 || f[13] != 0x00 || f[14 + 9] != 17) continue;
        const size_t ihl = (f[14] & 0x0f) * 4u;
        const uint8_t* udp = &f[14 + ihl];
        if (udp[1] != 67 || udp[3] != 68) continue;
        const uint8_t* b = udp + 8;
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, b + 16, text, sizeof text);
        *yiaddr = text;
        *type = 0;
        for (size_t i = 240; 8 + i + 2 < f.size() - 14 - ihl && b[i] != 255;) {
            if (b[i] == 0) {
                i++;
                continue;
            }
            if (b[i] == 53) *type = b[i + 2];
            i += 2u + b[i + 1];
        }
        return true;
    }
    return false;
}

std::string lease(Slirp* s, Guest& g, const uint8_t mac[6], uint32_t xid) {
    Frame d = dhcp(1, mac, xid);
    slirp_input(s, d.data(), static_cast<int>(d.size()));
    std::string ip;
    int type = 0;
    if (!last_dhcp_reply(g, &ip, &type) || type != 2) return "no offer";
    Frame r = dhcp(3, mac, xid + 1, ip.c_str());
    slirp_input(s, r.data(), static_cast<int>(r.size()));
    if (!last_dhcp_reply(g, &ip, &type) || type != 5) return "no ack";
    return ip;
}

int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    close(fd);
    return ntohs(sa.sin_port);
}

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
    EXPECT_EQ(slirp_add_exec(s, "cat", &pool, 80), -1);
    EXPECT_EQ(slirp_add_exec(s, "cat", &outside, 80), -1);
    in_addr ok = a4("10.0.2.100");
    EXPECT_EQ(slirp_add_exec(s, "cat", &ok, 80), 0);
    EXPECT_EQ(slirp_remove_guestfwd(s, ok, 80), 0);
    EXPECT_EQ(slirp_remove_guestfwd(s, ok, 80), -1);
    EXPECT_EQ(slirp_remove_guestfwd(s, addr, 4321), 0);
    slirp_cleanup(s);
}

}  // namespace
