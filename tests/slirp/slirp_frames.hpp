// What the libslirp tests share: callbacks that collect the frames sent to
// the guest, QEMU's configuration, and DHCP from a made-up guest.
#pragma once

#include <slirp/libslirp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace slirptest {

using Frame = std::vector<uint8_t>;

struct Guest {
    std::vector<Frame> out;  // frames usernet sent to the guest
};

inline ssize_t send_packet(const void* buf, size_t len, void* opaque) {
    auto* g = static_cast<Guest*>(opaque);
    const auto* p = static_cast<const uint8_t*>(buf);
    g->out.emplace_back(p, p + len);
    return static_cast<ssize_t>(len);
}
inline void guest_error(const char*, void*) {}
inline int64_t clock_ns(void*) { return 0; }
inline void* timer_new(SlirpTimerCb, void*, void*) { return nullptr; }
inline void timer_free(void*, void*) {}
inline void timer_mod(void*, int64_t, void*) {}
inline void reg(int, void*) {}
inline void notify(void*) {}

inline SlirpCb callbacks() {
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
inline SlirpConfig qemu_config(uint32_t version = 4) {
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

inline uint16_t csum(const uint8_t* p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (n & 1) s += static_cast<uint32_t>(p[n - 1] << 8);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(~s);
}

// A DHCP DISCOVER (type 1) or REQUEST (type 3, for `want` from 10.0.2.2).
inline Frame dhcp(uint8_t type, const uint8_t mac[6], uint32_t xid, const char* want = nullptr) {
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
inline bool last_dhcp_reply(const Guest& g, std::string* yiaddr, int* type) {
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

inline std::string lease(Slirp* s, Guest& g, const uint8_t mac[6], uint32_t xid) {
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

inline int free_port() {
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


}  // namespace slirptest
