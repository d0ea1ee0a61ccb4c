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
// With --gro, what one read brings is coalesced on its way into the TAP as
// a virtio-net guest's NAPI poll coalesces a ring's worth of frames (GRO):
// consecutive in-order segments of one IPv4 TCP flow with the same ACK,
// flags and options become one frame of up to 64 KiB, written with a
// virtio-net header that marks it GSO (gso_size = the first segment's
// payload) with its checksum left partial. Everything else is written as
// it came. The guest's TCP stack then takes one frame where it took up to
// 44, which is most of the relay's cost host->guest.
//
//   tap_relay --netns PATH --tap NAME [--mtu N] [--addr A.B.C.D/LEN --gw A.B.C.D] [--gro]
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
                 "usage: tap_relay --netns PATH --tap NAME [--mtu N] [--addr A/LEN --gw A] [--gro]\n"
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

int open_tap(const std::string& name, int mtu, const std::string& cidr, const std::string& gw,
             bool vnet) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open /dev/net/tun");
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
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
constexpr size_t kHeadroom = 32;  // room before a frame for a virtio-net, stream or WebSocket header
constexpr size_t kSlot = kHeadroom + 65536;
// The virtio-net header a TAP with IFF_VNET_HDR puts before each frame
// (struct virtio_net_hdr of <linux/virtio_net.h>, which C++ cannot include:
// it has a member called "class"). Native byte order.
struct VnetHdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset;
};
constexpr size_t kVnet = sizeof(VnetHdr);  // 10, the TAP's default
constexpr uint8_t kNeedsCsum = 1;          // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kGsoTcpv4 = 1;           // VIRTIO_NET_HDR_GSO_TCPV4

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t get32(const uint8_t* p) { return uint32_t{get16(p)} << 16 | get16(p + 2); }
void put16(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
uint32_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) acc += get16(p + i);
    if (n & 1) acc += uint32_t{p[n - 1]} << 8;
    return acc;
}
uint16_t fold(uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<uint16_t>(acc);
}

// Coalesces what one read brought into the TAP, as GRO would (see the top
// of the file). Frames go in through add() in order; flush() ends a batch.
// Without --gro every frame is written as it came, with no virtio-net
// header.
class Coalescer {
public:
    Coalescer(int tap, bool gro) : tap_(tap), gro_(gro), buf_(kVnet + 65536) {}

    void add(const uint8_t* f, size_t len) {
        if (!gro_) {
            (void)!write(tap_, f, len);
            return;
        }
        Seg s;
        if (!parse(f, len, s)) {
            flush();
            write_plain(f, len);
            return;
        }
        if (used_ && fits(f, s)) {
            std::memcpy(frame() + used_, f + s.hdr, s.payload);
            used_ += s.payload;
            segs_++;
            last_payload_ = s.payload;
            next_seq_ += static_cast<uint32_t>(s.payload);
            std::memcpy(frame() + 34 + 14, f + 34 + 14, 2);  // the newest window
            uint8_t* th = frame() + 34;
            th[13] = static_cast<uint8_t>(th[13] | (f[34 + 13] & kPsh));
            if (f[34 + 13] & kPsh) flush();
            return;
        }
        flush();
        if (len > 65536) return;
        std::memcpy(frame(), f, len);
        used_ = len;
        hdr_ = s.hdr;
        segs_ = 1;
        mss_ = last_payload_ = s.payload;
        next_seq_ = get32(f + 34 + 4) + static_cast<uint32_t>(s.payload);
        if (f[34 + 13] & kPsh) flush();
    }

    void flush() {
        if (!used_) return;
        uint8_t* f = frame();
        VnetHdr vh{};
        if (segs_ > 1) {
            size_t ip_len = used_ - 14;
            put16(f + 14 + 2, static_cast<uint32_t>(ip_len));
            put16(f + 14 + 10, 0);
            put16(f + 14 + 10, static_cast<uint16_t>(~fold(sum16(f + 14, 20))));
            // A partial checksum holds the pseudo-header's sum; the guest
            // trusts it as it trusts a virtio-net NIC's offload.
            uint32_t ph = sum16(f + 14 + 12, 8) + 6 + static_cast<uint32_t>(ip_len - 20);
            put16(f + 34 + 16, fold(ph));
            vh.flags = kNeedsCsum;
            vh.gso_type = kGsoTcpv4;
            vh.hdr_len = static_cast<uint16_t>(hdr_);
            vh.gso_size = static_cast<uint16_t>(mss_);
            vh.csum_start = 34;
            vh.csum_offset = 16;
        }
        std::memcpy(buf_.data(), &vh, kVnet);
        if (write(tap_, buf_.data(), kVnet + used_) < 0 && failed_++ < 5)
            std::fprintf(stderr, "tap_relay: write of %zu bytes (%zu segments) into the TAP: %s\n",
                         used_, segs_, std::strerror(errno));
        used_ = 0;
    }

private:
    static constexpr uint8_t kPsh = 0x08;
    struct Seg {
        size_t hdr = 0;      // Ethernet + IP + TCP headers
        size_t payload = 0;  // TCP payload bytes
    };

    uint8_t* frame() { return buf_.data() + kVnet; }

    // An IPv4 TCP segment with data, no IP options or fragments, and no
    // flag but ACK and PSH: what GRO would merge.
    static bool parse(const uint8_t* f, size_t len, Seg& s) {
        if (len < 54 || f[12] != 0x08 || f[13] != 0x00) return false;
        const uint8_t* ip = f + 14;
        if (ip[0] != 0x45 || ip[9] != 6 || (get16(ip + 6) & 0x3fff)) return false;
        size_t ip_len = get16(ip + 2);
        if (ip_len < 40 || 14 + ip_len > len) return false;
        const uint8_t* th = ip + 20;
        size_t thl = static_cast<size_t>(th[12] >> 4) * 4;
        if (thl < 20 || 20 + thl > ip_len) return false;
        if ((th[13] & ~kPsh) != 0x10) return false;  // ACK, maybe PSH, nothing else
        s.hdr = 14 + 20 + thl;
        s.payload = ip_len - 20 - thl;
        return s.payload > 0;
    }

    // The same flow, the next bytes, the same ACK and options, and room.
    bool fits(const uint8_t* f, const Seg& s) const {
        const uint8_t* p = buf_.data() + kVnet;
        return s.hdr == hdr_ && last_payload_ == mss_ && s.payload <= mss_ &&
               used_ + s.payload <= 14 + 65535 &&
               std::memcmp(p, f, 14) == 0 &&                    // Ethernet
               p[14 + 1] == f[14 + 1] &&                        // TOS
               std::memcmp(p + 14 + 12, f + 14 + 12, 8) == 0 &&  // addresses
               std::memcmp(p + 34, f + 34, 4) == 0 &&           // ports
               get32(f + 34 + 4) == next_seq_ &&
               std::memcmp(p + 34 + 8, f + 34 + 8, 4) == 0 &&   // ACK
               std::memcmp(p + 34 + 20, f + 34 + 20, hdr_ - 54) == 0;  // options
    }

    void write_plain(const uint8_t* f, size_t len) {
        if (len > 65536) return;
        std::memset(buf_.data(), 0, kVnet);
        std::memcpy(frame(), f, len);
        (void)!write(tap_, buf_.data(), kVnet + len);
    }

    int tap_;
    bool gro_;
    std::vector<uint8_t> buf_;
    size_t used_ = 0, hdr_ = 0, segs_ = 0, mss_ = 0, last_payload_ = 0, failed_ = 0;
    uint32_t next_seq_ = 0;
};

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
    bool have_kind = false, gro = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--gro") {
            gro = true;
            continue;
        }
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
    int tfd = open_tap(tap, mtu, cidr, gw, gro);
    fcntl(tfd, F_SETFL, fcntl(tfd, F_GETFL) | O_NONBLOCK);
    Coalescer to_tap(tfd, gro);
    const size_t vnet = gro ? kVnet : 0;  // the header a frame read from the TAP starts with

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
                to_tap.add(p + 4, len);
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
                to_tap.add(payload, len);
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
        to_tap.flush();
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
                ssize_t n = read(tfd, slot(cnt) + kHeadroom - vnet, 65536 + vnet);
                if (n <= static_cast<ssize_t>(vnet)) break;
                lens[cnt++] = static_cast<size_t>(n) - vnet;
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
                for (int i = 0; i < r; i++) to_tap.add(slot(i), mm[i].msg_len);
                to_tap.flush();
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
