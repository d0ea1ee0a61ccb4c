// tap_relay: a kernel guest behind an emulator's transport, for benchmarks.
//
// Creates a TAP in a network namespace and relays its frames over one of
// the transports emulators speak, so that the same kernel TCP stack can be
// measured behind each of them, against usernet and against the tools that
// speak the same transport (passt on the stream path). The relay is the
// same code for every backend compared on a transport.
//
// It batches, so that it does not hide the backends' differences: a
// wakeup reads every frame the TAP holds (up to kBatch) and sends them in
// one writev() (stream, WebSocket) or sendmmsg() (datagrams); the other
// way it reads up to 1 MiB of stream, or kBatch datagrams with one
// recvmmsg(), and writes each frame to the TAP (a TAP takes one frame per
// write(), the same for every backend). Both descriptors are
// non-blocking; while the socket is full the relay stops reading the TAP
// (the TAP's queue drops, as an emulated NIC's would).
//
//   tap_relay --netns PATH --tap NAME [--mtu N] [--addr A.B.C.D/LEN --gw A.B.C.D]
//             (--stream-unix PATH | --stream-tcp HOST:PORT |
//              --dgram-udp LHOST:LPORT,RHOST:RPORT | --dgram-unix LPATH,RPATH |
//              --websocket HOST:PORT)
//
// The transport is opened first, in the namespace tap_relay starts in (the
// host's), then the TAP is created in --netns, brought up with the MTU and,
// with --addr/--gw, given an address and a default route. Runs until either
// side closes or SIGTERM.
//   stream: QEMU -netdev stream framing, a 4-byte big-endian length and the
//           frame; dgram: one frame per datagram; websocket: v86's
//           network_relay_url, an RFC 6455 client (GET / with Upgrade, then
//           one masked binary message per frame out, unmasked ones in).
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
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
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
                 "          --dgram-udp LHOST:LPORT,RHOST:RPORT | --dgram-unix LPATH,RPATH |\n"
                 "          --websocket HOST:PORT)\n");
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

constexpr int kBatch = 64;
constexpr size_t kHeadroom = 16;  // room before a frame for its stream or WebSocket header
constexpr size_t kSlot = kHeadroom + 65536;

enum class Kind { StreamUnix, StreamTcp, DgramUdp, DgramUnix, WebSocket };

// Writes what is left of a partial send into `pending` (sent later, on POLLOUT).
void keep_rest(const iovec* iov, int cnt, size_t sent, std::vector<uint8_t>& pending) {
    for (int i = 0; i < cnt; i++) {
        const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
        size_t n = iov[i].iov_len;
        if (sent >= n) {
            sent -= n;
            continue;
        }
        pending.insert(pending.end(), p + sent, p + n);
        sent = 0;
    }
}

std::string base64(const uint8_t* p, size_t n) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = uint32_t{p[i]} << 16;
        if (i + 1 < n) v |= uint32_t{p[i + 1]} << 8;
        if (i + 2 < n) v |= p[i + 2];
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += i + 1 < n ? t[(v >> 6) & 63] : '=';
        out += i + 2 < n ? t[v & 63] : '=';
    }
    return out;
}

// The client's side of RFC 6455's opening handshake; returns what arrived
// after the response head (the first frames, if any).
std::vector<uint8_t> ws_handshake(int sock, const std::string& hostport) {
    uint8_t key[16];
    if (getrandom(key, sizeof key, 0) != sizeof key) die("getrandom");
    std::string req = "GET / HTTP/1.1\r\nHost: " + hostport +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: " + base64(key, sizeof key) +
                      "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (write(sock, req.data(), req.size()) != static_cast<ssize_t>(req.size())) die("send handshake");
    std::string head;
    char buf[4096];
    for (;;) {
        ssize_t n = read(sock, buf, sizeof buf);
        if (n <= 0) die("read handshake response");
        head.append(buf, static_cast<size_t>(n));
        auto end = head.find("\r\n\r\n");
        if (end == std::string::npos) {
            if (head.size() > 16384) die("handshake response too long");
            continue;
        }
        if (head.compare(0, 12, "HTTP/1.1 101") != 0) {
            errno = EPROTO;
            die("handshake refused: " + head.substr(0, head.find("\r\n")));
        }
        return {head.begin() + static_cast<std::ptrdiff_t>(end + 4), head.end()};
    }
}

// XOR with the 4-byte masking key, eight bytes at a time.
void mask(uint8_t* p, size_t n, uint32_t key) {
    uint64_t k8 = (uint64_t{key} << 32) | key;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        std::memcpy(&v, p + i, 8);
        v ^= k8;
        std::memcpy(p + i, &v, 8);
    }
    const auto* kb = reinterpret_cast<const uint8_t*>(&key);
    for (; i < n; i++) p[i] ^= kb[i & 3];
}

// Puts the stream or WebSocket header in the headroom before the n-byte
// frame at slot + kHeadroom; returns where the message starts.
uint8_t* frame_header(Kind kind, uint8_t* slot, size_t n, std::mt19937& rng, uint8_t opcode = 2) {
    uint8_t* f = slot + kHeadroom;
    if (kind != Kind::WebSocket) {
        uint32_t be = htonl(static_cast<uint32_t>(n));
        std::memcpy(f - 4, &be, 4);
        return f - 4;
    }
    uint32_t key = static_cast<uint32_t>(rng());
    mask(f, n, key);
    uint8_t* h = f - 4;
    std::memcpy(h, &key, 4);
    if (n < 126) {
        *--h = static_cast<uint8_t>(0x80 | n);
    } else {
        *--h = static_cast<uint8_t>(n);
        *--h = static_cast<uint8_t>(n >> 8);
        *--h = 0x80 | 126;
    }
    *--h = static_cast<uint8_t>(0x80 | opcode);
    return h;
}

}  // namespace

int main(int argc, char** argv) {
    std::string netns, tap = "tap0", cidr, gw, target;
    int mtu = 1500;
    Kind kind{};
    bool have_kind = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) usage();
        std::string v = argv[++i];
        if (a == "--netns") netns = v;
        else if (a == "--tap") tap = v;
        else if (a == "--mtu") mtu = std::stoi(v);
        else if (a == "--addr") cidr = v;
        else if (a == "--gw") gw = v;
        else {
            if (a == "--stream-unix") kind = Kind::StreamUnix;
            else if (a == "--stream-tcp") kind = Kind::StreamTcp;
            else if (a == "--dgram-udp") kind = Kind::DgramUdp;
            else if (a == "--dgram-unix") kind = Kind::DgramUnix;
            else if (a == "--websocket") kind = Kind::WebSocket;
            else usage();
            have_kind = true;
            target = v;
        }
    }
    if (netns.empty() || !have_kind) usage();

    bool dgram = kind == Kind::DgramUdp || kind == Kind::DgramUnix;
    int sock = -1;
    std::vector<uint8_t> rx(1 << 20);
    size_t have = 0;
    if (kind == Kind::StreamUnix) {
        sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa = unix_addr(target);
        if (connect(sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect " + target);
    } else if (kind == Kind::StreamTcp || kind == Kind::WebSocket) {
        sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa = inet(target);
        if (connect(sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect " + target);
        int one = 1;
        setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (kind == Kind::WebSocket) {
            auto early = ws_handshake(sock, target);
            std::memcpy(rx.data(), early.data(), early.size());
            have = early.size();
        }
    } else {
        auto comma = target.find(',');
        if (comma == std::string::npos) usage();
        std::string local = target.substr(0, comma), remote = target.substr(comma + 1);
        if (kind == Kind::DgramUdp) {
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
    }
    int big = 4 << 20;
    setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);

    int ns = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) die("setns " + netns);
    close(ns);
    int tfd = open_tap(tap, mtu, cidr, gw);
    fcntl(tfd, F_SETFL, fcntl(tfd, F_GETFL) | O_NONBLOCK);

    std::vector<uint8_t> slots(kBatch * kSlot);
    auto slot = [&](int i) { return slots.data() + static_cast<size_t>(i) * kSlot; };
    std::vector<uint8_t> pending;  // the unsent rest of a stream write
    std::vector<uint8_t> control;  // WebSocket pongs, sent before the next frames
    std::mt19937 rng(static_cast<uint32_t>(getpid()));
    iovec iov[kBatch + 1];
    mmsghdr mm[kBatch];

    // Stream and WebSocket: the socket's bytes, as frames to the TAP.
    // Returns false when the peer is gone or broke the framing.
    auto drain_stream = [&]() -> bool {
        size_t at = 0;
        for (;;) {
            const uint8_t* p = rx.data() + at;
            size_t left = have - at;
            if (kind != Kind::WebSocket) {
                if (left < 4) break;
                uint32_t len;
                std::memcpy(&len, p, 4);
                len = ntohl(len);
                if (len > 65535) return false;
                if (left - 4 < len) break;
                (void)!write(tfd, p + 4, len);
                at += 4 + len;
                continue;
            }
            if (left < 2) break;
            uint8_t op = p[0] & 0x0f;
            bool masked = p[1] & 0x80;
            uint64_t len = p[1] & 0x7f;
            size_t h = 2;
            if (len == 126) {
                if (left < 4) break;
                len = (uint64_t{p[2]} << 8) | p[3];
                h = 4;
            } else if (len == 127) {
                return false;  // usernet's frames are at most 65535 bytes
            }
            if (masked) h += 4;  // a server does not mask; tolerate it anyway
            if (left < h + len) break;
            auto* payload = const_cast<uint8_t*>(p + h);
            if (masked) {
                uint32_t key;
                std::memcpy(&key, p + h - 4, 4);
                mask(payload, len, key);
            }
            if (op == 2 || op == 0) {
                (void)!write(tfd, payload, len);
            } else if (op == 8) {
                return false;
            } else if (op == 9 && len <= 125) {  // ping: answer with a pong
                uint8_t tmp[kHeadroom + 125];
                std::memcpy(tmp + kHeadroom, payload, len);
                uint8_t* m = frame_header(kind, tmp, len, rng, 0xa);
                control.insert(control.end(), m, tmp + kHeadroom + len);
            }
            at += h + len;
        }
        std::memmove(rx.data(), rx.data() + at, have - at);
        have -= at;
        return true;
    };
    if (have > 0 && !drain_stream()) return 0;

    pollfd pf[2] = {{tfd, POLLIN, 0}, {sock, POLLIN, 0}};
    for (;;) {
        bool blocked = !pending.empty();
        pf[0].events = blocked ? 0 : POLLIN;
        pf[1].events = static_cast<short>(POLLIN | (blocked ? POLLOUT : 0));
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (pf[1].revents & POLLOUT) {
            ssize_t w = send(sock, pending.data(), pending.size(), MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) return 0;
            if (w > 0) pending.erase(pending.begin(), pending.begin() + w);
        }
        if (pf[0].revents & POLLIN) {
            int cnt = 0;
            size_t lens[kBatch];
            while (cnt < kBatch) {
                ssize_t n = read(tfd, slot(cnt) + kHeadroom, 65536);
                if (n <= 0) break;
                lens[cnt++] = static_cast<size_t>(n);
            }
            if (dgram) {
                for (int i = 0; i < cnt; i++) {
                    iov[i] = {slot(i) + kHeadroom, lens[i]};
                    mm[i] = {};
                    mm[i].msg_hdr.msg_iov = &iov[i];
                    mm[i].msg_hdr.msg_iovlen = 1;
                }
                for (int sent = 0; sent < cnt;) {
                    int r = sendmmsg(sock, mm + sent, static_cast<unsigned>(cnt - sent), 0);
                    if (r < 0) {
                        if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) break;
                        if (errno == EINTR) continue;
                        return 0;
                    }
                    sent += r;
                }
            } else if (cnt > 0) {
                int k = 0;
                size_t total = 0;
                if (!control.empty()) {
                    iov[k++] = {control.data(), control.size()};
                    total += control.size();
                }
                for (int i = 0; i < cnt; i++) {
                    uint8_t* m = frame_header(kind, slot(i), lens[i], rng);
                    size_t n = static_cast<size_t>(slot(i) + kHeadroom + lens[i] - m);
                    iov[k++] = {m, n};
                    total += n;
                }
                ssize_t w = writev(sock, iov, k);
                if (w < 0 && errno != EAGAIN && errno != EINTR) return 0;
                size_t done = w > 0 ? static_cast<size_t>(w) : 0;
                if (done < total) keep_rest(iov, k, done, pending);
                control.clear();
            }
        }
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (dgram) {
                for (int i = 0; i < kBatch; i++) {
                    iov[i] = {slot(i), kSlot};
                    mm[i] = {};
                    mm[i].msg_hdr.msg_iov = &iov[i];
                    mm[i].msg_hdr.msg_iovlen = 1;
                }
                int r = recvmmsg(sock, mm, kBatch, 0, nullptr);
                if (r < 0 && errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR) return 0;
                for (int i = 0; i < r; i++) (void)!write(tfd, slot(i), mm[i].msg_len);
            } else {
                ssize_t n = read(sock, rx.data() + have, rx.size() - have);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 0;
                if (n > 0) {
                    have += static_cast<size_t>(n);
                    if (!drain_stream()) return 0;
                }
            }
        }
        if (!control.empty() && pending.empty()) {  // a pong with no frame to ride along
            pending.swap(control);
        }
    }
}
