// tap_relay: a kernel guest behind an emulator's transport, for benchmarks.
//
// Creates a TAP in a network namespace and relays its frames over one of
// the transports emulators speak, so that the same kernel TCP stack can be
// measured behind each of them, against usernet and against the tools that
// speak the same transport (passt on the stream path). The relay is the
// same code for every backend compared on a transport; it is a simple
// poll() loop, which is part of what every row measures.
//
//   tap_relay --netns PATH --tap NAME [--mtu N] [--addr A.B.C.D/LEN --gw A.B.C.D]
//             (--stream-unix PATH | --stream-tcp HOST:PORT |
//              --dgram-udp LHOST:LPORT,RHOST:RPORT | --dgram-unix LPATH,RPATH)
//
// The transport is opened first, in the namespace tap_relay starts in (the
// host's), then the TAP is created in --netns, brought up with the MTU and,
// with --addr/--gw, given an address and a default route. Runs until either
// side closes or SIGTERM.
//   stream: QEMU -netdev stream framing, a 4-byte big-endian length and the
//           frame; dgram: one frame per datagram.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/route.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "tap_relay: %s: %s\n", what.c_str(), std::strerror(errno));
    std::exit(1);
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: tap_relay --netns PATH --tap NAME [--mtu N] [--addr A/LEN --gw A]\n"
                 "         (--stream-unix PATH | --stream-tcp HOST:PORT |\n"
                 "          --dgram-udp LHOST:LPORT,RHOST:RPORT | --dgram-unix LPATH,RPATH)\n");
    std::exit(2);
}

sockaddr_in inet(const std::string& hp) {
    auto colon = hp.rfind(':');
    if (colon == std::string::npos) usage();
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::stoi(hp.substr(colon + 1))));
    if (inet_pton(AF_INET, hp.substr(0, colon).c_str(), &sa.sin_addr) != 1) usage();
    return sa;
}

sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) usage();
    std::memcpy(sa.sun_path, path.c_str(), path.size());
    return sa;
}

void set_in_addr(ifreq& ifr, uint32_t a) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = a;
    std::memcpy(&ifr.ifr_addr, &sin, sizeof sin);
}

int open_tap(const std::string& name, int mtu, const std::string& cidr, const std::string& gw) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open /dev/net/tun");
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF " + name);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq r{};
    std::snprintf(r.ifr_name, IFNAMSIZ, "%s", name.c_str());
    r.ifr_mtu = mtu;
    if (ioctl(s, SIOCSIFMTU, &r) < 0) die("SIOCSIFMTU");
    if (!cidr.empty()) {
        auto slash = cidr.find('/');
        in_addr a{};
        if (slash == std::string::npos || inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1)
            usage();
        int len = std::stoi(cidr.substr(slash + 1));
        set_in_addr(r, a.s_addr);
        if (ioctl(s, SIOCSIFADDR, &r) < 0) die("SIOCSIFADDR");
        set_in_addr(r, len ? htonl(~uint32_t{0} << (32 - len)) : 0);
        if (ioctl(s, SIOCSIFNETMASK, &r) < 0) die("SIOCSIFNETMASK");
    }
    if (ioctl(s, SIOCGIFFLAGS, &r) < 0) die("SIOCGIFFLAGS");
    r.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &r) < 0) die("SIOCSIFFLAGS");
    if (!gw.empty()) {
        rtentry rt{};
        sockaddr_in any{};
        any.sin_family = AF_INET;
        std::memcpy(&rt.rt_dst, &any, sizeof any);
        std::memcpy(&rt.rt_genmask, &any, sizeof any);
        sockaddr_in g{};
        g.sin_family = AF_INET;
        if (inet_pton(AF_INET, gw.c_str(), &g.sin_addr) != 1) usage();
        std::memcpy(&rt.rt_gateway, &g, sizeof g);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(s, SIOCADDRT, &rt) < 0) die("SIOCADDRT default via " + gw);
    }
    close(s);
    return fd;
}

bool write_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                pollfd pf{fd, POLLOUT, 0};
                poll(&pf, 1, -1);
                continue;
            }
            return false;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string netns, tap = "tap0", cidr, gw, kind, target;
    int mtu = 1500;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) usage();
        std::string v = argv[++i];
        if (a == "--netns") netns = v;
        else if (a == "--tap") tap = v;
        else if (a == "--mtu") mtu = std::stoi(v);
        else if (a == "--addr") cidr = v;
        else if (a == "--gw") gw = v;
        else if (a == "--stream-unix" || a == "--stream-tcp" || a == "--dgram-udp" ||
                 a == "--dgram-unix") {
            kind = a.substr(2);
            target = v;
        } else {
            usage();
        }
    }
    if (netns.empty() || kind.empty()) usage();

    bool stream = kind.starts_with("stream");
    int sock = -1;
    if (kind == "stream-unix") {
        sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa = unix_addr(target);
        if (connect(sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect " + target);
    } else if (kind == "stream-tcp") {
        sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa = inet(target);
        if (connect(sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect " + target);
        int one = 1;
        setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
        auto comma = target.find(',');
        if (comma == std::string::npos) usage();
        std::string local = target.substr(0, comma), remote = target.substr(comma + 1);
        if (kind == "dgram-udp") {
            sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            sockaddr_in l = inet(local), r = inet(remote);
            if (bind(sock, reinterpret_cast<sockaddr*>(&l), sizeof l) < 0) die("bind " + local);
            if (connect(sock, reinterpret_cast<sockaddr*>(&r), sizeof r) < 0) die("connect " + remote);
        } else {
            sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            sockaddr_un l = unix_addr(local), r = unix_addr(remote);
            unlink(local.c_str());
            if (bind(sock, reinterpret_cast<sockaddr*>(&l), sizeof l) < 0) die("bind " + local);
            if (connect(sock, reinterpret_cast<sockaddr*>(&r), sizeof r) < 0) die("connect " + remote);
        }
        int big = 4 << 20;
        setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    }

    int ns = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) die("setns " + netns);
    close(ns);
    int tfd = open_tap(tap, mtu, cidr, gw);

    std::vector<uint8_t> in(4 + 65536), rx(1 << 20);
    size_t have = 0;
    pollfd pf[2] = {{tfd, POLLIN, 0}, {sock, POLLIN, 0}};
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (pf[0].revents & POLLIN) {
            ssize_t n = read(tfd, in.data() + 4, 65536);
            if (n > 0) {
                if (stream) {
                    uint32_t be = htonl(static_cast<uint32_t>(n));
                    std::memcpy(in.data(), &be, 4);
                    if (!write_all(sock, in.data(), static_cast<size_t>(n) + 4)) return 0;
                } else if (send(sock, in.data() + 4, static_cast<size_t>(n), 0) < 0 &&
                           errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
                    return 0;
                }
            }
        }
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (stream) {
                ssize_t n = read(sock, rx.data() + have, rx.size() - have);
                if (n <= 0) return 0;
                have += static_cast<size_t>(n);
                size_t at = 0;
                while (have - at >= 4) {
                    uint32_t len;
                    std::memcpy(&len, rx.data() + at, 4);
                    len = ntohl(len);
                    if (len > 65535) return 1;
                    if (have - at - 4 < len) break;
                    (void)!write(tfd, rx.data() + at + 4, len);
                    at += 4 + len;
                }
                std::memmove(rx.data(), rx.data() + at, have - at);
                have -= at;
            } else {
                ssize_t n = recv(sock, rx.data(), rx.size(), 0);
                if (n > 0) (void)!write(tfd, rx.data(), static_cast<size_t>(n));
                else if (n < 0 && errno != ECONNREFUSED && errno != EINTR) return 0;
            }
        }
    }
}
