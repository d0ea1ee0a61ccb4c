// The stateful harnesses' test bench: a real event loop, switch, gateway
// (DHCPv4 server, DNS forwarder) and NAT, with kPorts pretend guests on the
// switch and a few host peers of the harness's own on 127.0.0.1.
//
// Theory of operation:
// - Safety first. The NAT opens real host sockets toward whatever address a
//   fuzzed frame names. Before anything else the process moves into a fresh
//   network namespace (unshare(CLONE_NEWNET)) with only `lo` up, so every
//   destination but loopback is unreachable and nothing leaves the machine.
//   If that fails (not root, no user namespaces), the harness aborts: it
//   never fuzzes against the real network.
// - Host peers live for the whole process, on fixed ports in that private
//   namespace (so seeds mean the same thing every run): a TCP listener
//   (kTcpPeerPort), a UDP echo (kUdpPeerPort) and the upstream resolver
//   (kDnsUpstreamPort). The gateway address maps to 127.0.0.1, so a guest
//   reaches them at 10.0.2.2. Each input starts by draining what the last
//   one left behind, and ends by closing the connections it accepted.
// - Each input gets a new World: nothing of usernet's state carries over
//   between inputs, so a crash reproduces from its input alone.
// - Time: EventLoop::advance_clock_for_tests() moves the loop's clock, so a
//   fuzzed "advance N ms" fires timers and ages flows, leases and MACs
//   without sleeping. Host sockets are served by run_once(0).
// - Every frame the switch delivers to a guest is parsed through touch.hpp
//   (ASan sees any overread), must fit the port's MTU unless the port takes
//   offload, and an IPv4 packet the gateway built must carry correct IP and
//   L4 checksums (FUZZ_CHECK).
#pragma once

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <spdlog/spdlog.h>

#include "fuzz_check.hpp"
#include "gateway/gateway.hpp"
#include "nat/forward.hpp"
#include "nat/nat.hpp"
#include "switch/switch.hpp"
#include "touch.hpp"
#include "wire/checksum.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/offload.hpp"
#include "wire/tcp.hpp"
#include "wire/udp.hpp"

namespace usernet::fuzz {

inline constexpr size_t kPorts = 4;
inline constexpr uint16_t kTcpPeerPort = 5000;
inline constexpr uint16_t kUdpPeerPort = 5001;
inline constexpr uint16_t kDnsUpstreamPort = 5353;
inline constexpr uint16_t kTcpForwardPort = 6000;   // host 127.0.0.1:6000 -> guest :80
inline constexpr Ipv4 kGuestFwdAddr = 0x0a000264;  // --guestfwd tcp:10.0.2.100:80-127.0.0.1:6002
inline constexpr uint16_t kGuestFwdTargetPort = 6002;  // where nothing listens
inline constexpr uint16_t kUdpForwardPort = 6001;   // host 127.0.0.1:6001 -> guest :7
inline constexpr Ipv4 kLoopback = 0x7f000001;

// The guests' MAC of port i, variant v (a port may show several).
inline MacAddr guest_mac(size_t port, uint8_t v = 0) {
    return MacAddr{{0x52, 0x54, 0x00, 0x12, static_cast<uint8_t>(0x34 + port), static_cast<uint8_t>(0x56 + v)}};
}

[[noreturn]] inline void die(const char* what) {
    std::fprintf(stderr, "fuzz: %s: %s\n", what, std::strerror(errno));
    std::abort();
}

// Moves the process into a network namespace of its own with lo up.
inline void enter_private_netns() {
    if (unshare(CLONE_NEWNET) != 0)
        die("unshare(CLONE_NEWNET) failed; run as root: this harness must not "
            "reach the real network");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) die("SIOCGIFFLAGS lo");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) die("SIOCSIFFLAGS lo up");
    close(fd);
    // Every address outside the namespace is now unreachable; check it.
    int t = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    a.sin_addr.s_addr = htonl(0x08080808);
    if (connect(t, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
        die("8.8.8.8 is routable inside the private namespace");
    close(t);
}

inline sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(kLoopback);
    a.sin_port = htons(port);
    return a;
}

inline int bound_socket(int type, uint16_t port) {
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = loopback(port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
    if (type == SOCK_STREAM && listen(fd, 64) != 0) die("listen");
    return fd;
}

// The harness's host side, for the process's life.
struct HostPeers {
    int tcp_listener = -1;
    int udp_echo = -1;
    int dns = -1;
    std::vector<int> conns;  // accepted from the listener, or connected to a forward

    void open() {
        tcp_listener = bound_socket(SOCK_STREAM, kTcpPeerPort);
        udp_echo = bound_socket(SOCK_DGRAM, kUdpPeerPort);
        dns = bound_socket(SOCK_DGRAM, kDnsUpstreamPort);
    }
    void accept_all() {
        for (int i = 0; i < 16; i++) {
            int c = accept4(tcp_listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0) break;
            if (conns.size() >= 32) {
                close(c);
                continue;
            }
            conns.push_back(c);
        }
    }
    static void drain(int fd) {
        uint8_t buf[2048];
        for (int i = 0; i < 1024 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0; i++) {
        }
    }
    // Forgets what the previous input left behind.
    void reset() {
        accept_all();
        close_all();
        drain(udp_echo);
        drain(dns);
    }
    void close_all() {
        for (int c : conns) close(c);
        conns.clear();
    }
};

inline HostPeers& peers() {
    static HostPeers p;
    return p;
}

// Calls once from LLVMFuzzerInitialize.
inline void init_process() {
    enter_private_netns();
    // Quiet unless asked (USERNET_FUZZ_LOG=debug to follow one input).
    const char* lvl = std::getenv("USERNET_FUZZ_LOG");
    spdlog::set_level(lvl ? spdlog::level::from_str(lvl) : spdlog::level::off);
    peers().open();
}

// Reads the fuzz input front to back; past the end everything reads 0.
struct Reader {
    const uint8_t* p;
    size_t n;
    bool empty() const { return n == 0; }
    uint8_t u8() {
        if (n == 0) return 0;
        n--;
        return *p++;
    }
    uint16_t u16() { return static_cast<uint16_t>((u8() << 8) | u8()); }
    Bytes bytes(size_t len) {
        if (len > n) len = n;
        Bytes b(p, len);
        p += len;
        n -= len;
        return b;
    }
};

// The transport checksum of l4 (l4len bytes from src to dst), for the
// protocols the data path reads.
inline void fix_l4_checksum(uint8_t proto, uint8_t* l4, size_t l4len, const IpAddr& src,
                            const IpAddr& dst) {
    switch (proto) {
    case ipproto::tcp:
        if (l4len >= 20) finish_tcp_checksum(l4, l4len, src, dst);
        break;
    case ipproto::udp:
        if (l4len >= 8) {
            store16(l4 + 6, 0);
            uint16_t c = csum_l4(src, dst, ipproto::udp, Bytes(l4, l4len));
            store16(l4 + 6, c == 0 ? 0xffff : c);
        }
        break;
    case ipproto::icmp:
        if (l4len >= 8) {
            store16(l4 + 2, 0);
            store16(l4 + 2, csum_fold(csum_partial(Bytes(l4, l4len))));
        }
        break;
    case ipproto::icmpv6:
        if (l4len >= 4) finish_icmp6(l4, l4len, src, dst);
        break;
    default:
        break;
    }
}

// Recomputes the IPv4 header and L4 checksums of an (untagged) frame in
// place (for IPv6 without extension headers, the L4 one), as far as the
// frame holds them, so that mutated frames get past the checksum checks
// and into the state machines behind them.
inline void fix_checksums(std::vector<uint8_t>& f) {
    if (f.size() < kEthHeaderLen) return;
    uint8_t* ip = &f[kEthHeaderLen];
    size_t avail = f.size() - kEthHeaderLen;
    if (load16(&f[12]) == ethertype::ipv6) {
        if (avail < kIpv6HeaderLen || (ip[0] >> 4) != 6) return;
        size_t l4len = load16(ip + 4);
        if (kIpv6HeaderLen + l4len > avail) return;
        fix_l4_checksum(ip[6], ip + kIpv6HeaderLen, l4len, IpAddr::v6_from(ip + 8),
                        IpAddr::v6_from(ip + 24));
        return;
    }
    if (avail < kIpv4HeaderLen || load16(&f[12]) != ethertype::ipv4) return;
    size_t ihl = size_t(ip[0] & 0x0f) * 4;
    if ((ip[0] >> 4) != 4 || ihl < kIpv4HeaderLen || ihl > avail) return;
    store16(ip + 10, 0);
    store16(ip + 10, csum_fold(csum_partial(Bytes(ip, ihl))));
    size_t total = load16(ip + 2);
    if (total < ihl || total > avail) return;
    if ((load16(ip + 6) & 0x3fff) != 0) return;  // a fragment: no L4 header to fix
    fix_l4_checksum(ip[9], ip + ihl, total - ihl, IpAddr::v4(load32(ip + 12)),
                    IpAddr::v4(load32(ip + 16)));
}

// A pretend guest attachment: keeps the last TCP segment toward it (so a
// harness can answer it with the right sequence numbers) and checks every
// frame it is given.
class GuestPort : public sw::Port {
public:
    GuestPort(uint32_t mtu, bool offload, const MacAddr& gw_mac)
        : mtu_(mtu), offload_(offload), gw_mac_(gw_mac) {}

    void deliver(Bytes frame, const sw::FrameMeta& meta) override {
        delivered++;
        if (keep && kept.size() < 1024) kept.emplace_back(frame.begin(), frame.end());
        {
            Sink s;
            touch_ethernet(s, frame);
        }
        FUZZ_CHECK(frame.size() >= kEthHeaderLen);
        if (!offload_) {
            FUZZ_CHECK(!meta.off.any());
            FUZZ_CHECK(frame.size() <= mtu_ + kEthHeaderLen + kVlanTagLen);
        }
        auto eth = EthernetView::parse(frame);
        if (!eth || eth->src() != gw_mac_) return;
        if (eth->ethertype() == ethertype::ipv6) return check6(*eth, meta);
        if (eth->ethertype() != ethertype::ipv4) return;
        // The gateway built this packet: its checksums must be right.
        auto ip = Ipv4View::parse(eth->payload());
        FUZZ_CHECK(ip.has_value());
        FUZZ_CHECK(ip->checksum_ok());
        if (ip->is_fragment()) {
            // Fragments of what exceeded the MTU: put together, as the
            // guest would, the whole must check.
            FUZZ_CHECK(!meta.off.any());
            if (auto whole = reasm_.add(*ip, 0, 0)) {
                auto w = Ipv4View::parse(*whole);
                FUZZ_CHECK(w.has_value());
                check4_l4(*w, false, Bytes{});
            }
            return;
        }
        check4_l4(*ip, meta.off.csum_partial, frame);
    }

    void check4_l4(const Ipv4View& ip4, bool partial, Bytes frame) {
        const Ipv4View* ip = &ip4;
        IpAddr src = ip->src_addr(), dst = ip->dst_addr();
        switch (ip->protocol()) {
        case ipproto::tcp: {
            auto t = TcpView::parse(ip->payload());
            FUZZ_CHECK(t.has_value());
            if (!partial) FUZZ_CHECK(t->checksum_ok(src, dst));
            if (!frame.empty()) last_tcp.assign(frame.begin(), frame.end());
            break;
        }
        case ipproto::udp: {
            auto u = UdpView::parse(ip->payload());
            FUZZ_CHECK(u.has_value());
            if (!partial && u->checksum() != 0) FUZZ_CHECK(u->checksum_ok(src, dst));
            if (!frame.empty()) last_udp.assign(frame.begin(), frame.end());
            break;
        }
        case ipproto::icmp: {
            auto m = Icmp4View::parse(ip->payload());
            FUZZ_CHECK(m.has_value());
            FUZZ_CHECK(m->checksum_ok());
            break;
        }
        default:
            break;
        }
    }

    // An IPv6 packet the gateway built: its checksums must be right.
    void check6(const EthernetView& eth, const sw::FrameMeta& meta) {
        auto ip = Ipv6View::parse(eth.payload());
        FUZZ_CHECK(ip.has_value());
        if (ip->is_fragment()) {
            FUZZ_CHECK(ip->ext_headers() == 1 && !meta.off.any());
            if (auto whole = reasm_.add(*ip, 0, 0)) {
                auto w = Ipv6View::parse(*whole);
                FUZZ_CHECK(w.has_value());
                check6_l4(*w, false);
            }
            return;
        }
        check6_l4(*ip, meta.off.csum_partial);
    }

    void check6_l4(const Ipv6View& ip6, bool partial) {
        const Ipv6View* ip = &ip6;
        FUZZ_CHECK(ip->ext_headers() == 0);
        IpAddr src = ip->src_addr(), dst = ip->dst_addr();
        switch (ip->protocol()) {
        case ipproto::tcp: {
            auto t = TcpView::parse(ip->payload());
            FUZZ_CHECK(t.has_value());
            if (!partial) FUZZ_CHECK(t->checksum_ok(src, dst));
            break;
        }
        case ipproto::udp: {
            auto u = UdpView::parse(ip->payload());
            FUZZ_CHECK(u.has_value());
            if (!partial) FUZZ_CHECK(u->checksum_ok(src, dst));
            break;
        }
        case ipproto::icmpv6: {
            auto m = Icmp6View::parse(ip->payload());
            FUZZ_CHECK(m.has_value());
            FUZZ_CHECK(m->checksum_ok(src, dst));
            break;
        }
        default:
            FUZZ_CHECK(false);  // the gateway sends nothing else
        }
    }
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return "fuzz guest"; }
    bool takes_offload() const override { return offload_; }

    uint64_t delivered = 0;
    gw::Reassembler reasm_;  // the gateway's fragments, put back together
    bool keep = false;  // collect every frame in kept
    std::vector<std::vector<uint8_t>> kept;
    std::vector<uint8_t> last_tcp;  // the last TCP segment the gateway sent here
    std::vector<uint8_t> last_udp;

private:
    uint32_t mtu_;
    bool offload_;
    MacAddr gw_mac_;
};

struct WorldOptions {
    uint32_t dhcp_count = 16;
    uint32_t lease_seconds = 86400;
    bool forwards = true;
    bool nat = true;
    bool second_upstream = false;  // 127.0.0.2, where nobody answers
    std::string tftp_root;         // --tftp, empty: none
};

struct World {
    core::EventLoop loop;
    sw::Switch sw{loop};
    gw::NetConfig cfg;
    std::vector<std::unique_ptr<GuestPort>> ports;
    std::unique_ptr<gw::Gateway> gw;
    std::unique_ptr<nat::Nat> nat;

    explicit World(const WorldOptions& o = {}) {
        cfg.dhcp_count = o.dhcp_count;
        cfg.lease_seconds = o.lease_seconds;
        cfg.tftp_root = o.tftp_root;
        // Local names: the DNS address answers these itself.
        cfg.domain = "lan.test";
        cfg.dns_hosts = {{"db.test", IpAddr::v4(0x0a000264)}, {"db.test", *IpAddr::parse("fec0::64")}};
        cfg.dns_upstreams = {gw::HostPort{IpAddr::v4(kLoopback), kDnsUpstreamPort}};
        // Network boot (DHCP option 67, DHCPv6 boot-file-url) and a guest
        // forward's service address (ARP, NDP and TCP to 10.0.2.100:80
        // lead to a host port where nothing listens).
        cfg.bootfile = "boot.ipxe";
        cfg.service_addrs = {IpAddr::v4(kGuestFwdAddr)};
        if (o.second_upstream)
            cfg.dns_upstreams.push_back(gw::HostPort{IpAddr::v4(kLoopback + 1), kDnsUpstreamPort});
        // Two plain guests, one TAP with offload, one small-MTU QEMU socket.
        static constexpr std::array<std::pair<uint32_t, bool>, kPorts> kind{
            {{1500, false}, {65520, true}, {576, false}, {9000, false}}};
        for (auto [mtu, off] : kind) {
            ports.push_back(std::make_unique<GuestPort>(mtu, off, cfg.gw_mac));
            sw.attach(*ports.back());
        }
        gw = std::make_unique<gw::Gateway>(loop, sw, cfg);
        if (o.nat) {
            nat = std::make_unique<nat::Nat>(loop, *gw);
            gw->set_ip_sink(nat.get());
            nat::GuestForwardSpec g;
            g.addr = IpAddr::v4(kGuestFwdAddr);
            g.port = 80;
            g.host = IpAddr::v4(kLoopback);
            g.host_port = kGuestFwdTargetPort;
            nat->add_guest_forward(g);
            if (o.forwards) {
                for (auto [proto, host, guest] :
                     {std::tuple{'t', kTcpForwardPort, uint16_t{80}},
                      std::tuple{'u', kUdpForwardPort, uint16_t{7}}}) {
                    nat::ForwardSpec f;
                    f.proto = proto;
                    f.bind_addr = IpAddr::v4(kLoopback);
                    f.host_first = f.host_last = host;
                    f.guest_first = f.guest_last = guest;
                    try {
                        nat->add_forward(f);
                    } catch (const std::exception& e) {
                        std::fprintf(stderr, "fuzz: forward: %s\n", e.what());
                        std::abort();
                    }
                }
            }
        }
    }
    ~World() {
        if (gw) gw->set_ip_sink(nullptr);
        nat.reset();
        gw.reset();
        peers().close_all();
    }
    World(const World&) = delete;
    World& operator=(const World&) = delete;

    void input(size_t port, Bytes frame, const Offload& off = {}) {
        sw.input(ports[port % kPorts]->id(), frame, off);
    }
    void poll(int rounds = 1) {
        for (int i = 0; i < rounds; i++) loop.run_once(0);
    }
    void advance(core::Millis ms) {
        loop.advance_clock_for_tests(ms);
        loop.run_once(0);
    }
};

}  // namespace usernet::fuzz
