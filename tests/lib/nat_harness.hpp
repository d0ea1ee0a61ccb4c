// A guest on a real switch and gateway, with the NAT behind it, for the
// datagram translators' tests: frames in from a pretend guest, frames out
// captured, host sockets real (on 127.0.0.1).
#pragma once

#include <netinet/in.h>
#include <sched.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "gateway/gateway.hpp"
#include "nat/nat.hpp"
#include "switch/switch.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv6.hpp"
#include "wire/ipv4.hpp"
#include "wire/udp.hpp"

#include "closed_port.hpp"

namespace usernet::testing {

inline const wire::MacAddr kGuestMac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
inline constexpr wire::Ipv4 kGuestIp = 0x0a00020f;  // 10.0.2.15
inline constexpr wire::Ipv4 kGatewayIp = 0x0a000202;
inline constexpr wire::Ipv4 kLoopback = 0x7f000001;

class CapturePort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
        // A queue that never drains: each frame (with a stream's 4-byte
        // length) takes its room for good.
        if (room != kUnlimited) room -= std::min(room, frame.size() + 4);
        if (frame_room != kUnlimited) frame_room -= std::min<size_t>(frame_room, 1);
    }
    uint32_t mtu() const override { return mtu_value; }
    std::string describe() const override { return "test guest"; }
    uint32_t mtu_value = 1500;
    size_t tx_room() const override { return room; }
    size_t tx_frame_room() const override { return frame_room; }
    bool small_ring() const override { return small; }
    bool small = false;  // the NIC loses a frame right behind another (NE2000)
    std::vector<std::vector<uint8_t>> frames;
    static constexpr size_t kUnlimited = std::numeric_limits<size_t>::max();
    size_t room = kUnlimited;  // a port that does not queue, unless a test says
    size_t frame_room = kUnlimited;  // the same in whole frames (a datagram ring)
};

// An IPv4 packet toward the guest, as captured.
struct GuestFrame {
    wire::Ipv4 src;
    wire::Ipv4 dst;
    uint8_t proto;
    std::vector<uint8_t> l4;
};

inline std::vector<uint8_t> ipv4_frame(wire::Ipv4 src, wire::Ipv4 dst, uint8_t proto,
                                       wire::Bytes l4, uint8_t ttl = 64,
                                       const wire::MacAddr& src_mac = kGuestMac) {
    std::vector<uint8_t> f(34 + l4.size());
    wire::build_ethernet(f.data(), wire::MacAddr{{0x52, 0x55, 10, 0, 2, 2}}, src_mac,
                         wire::ethertype::ipv4);
    wire::build_ipv4(f.data() + 14, src, dst, proto, l4.size(), ttl, 7);
    std::memcpy(f.data() + 34, l4.data(), l4.size());
    if (f.size() < 60) f.resize(60);
    return f;
}

inline std::vector<uint8_t> udp_frame(wire::Ipv4 src, wire::Ipv4 dst, uint16_t sport,
                                      uint16_t dport, wire::Bytes payload, uint8_t ttl = 64) {
    std::vector<uint8_t> seg(8 + payload.size());
    std::memcpy(seg.data() + 8, payload.data(), payload.size());
    wire::build_udp(seg.data(), wire::IpAddr::v4(src), wire::IpAddr::v4(dst), sport, dport,
                    payload.size());
    return ipv4_frame(src, dst, wire::ipproto::udp, seg, ttl);
}

inline std::vector<uint8_t> echo_frame(wire::Ipv4 src, wire::Ipv4 dst, uint16_t id, uint16_t seq,
                                       size_t data_len, uint8_t ttl = 64,
                                       const wire::MacAddr& src_mac = kGuestMac) {
    std::vector<uint8_t> m(8 + data_len);
    for (size_t i = 0; i < data_len; i++) m[8 + i] = static_cast<uint8_t>(i * 7);
    wire::build_icmp4(m.data(), wire::icmptype::echo_request, 0, (uint32_t{id} << 16) | seq,
                      m.size());
    return ipv4_frame(src, dst, wire::ipproto::icmp, m, ttl, src_mac);
}

// The duplicate address detection probe (RFC 4862 5.4.2) a guest at mac
// sends before it uses target: a neighbor solicitation from ::.
[[gnu::noinline]] inline std::vector<uint8_t> dad_probe_frame(const wire::MacAddr& mac,
                                                              const wire::IpAddr& target) {
    const wire::IpAddr group = wire::solicited_node(target);
    std::vector<uint8_t> f(14 + 40 + 24, 0);
    uint8_t* m = f.data() + 54;
    m[0] = wire::icmp6type::neighbor_solicit;
    std::memcpy(m + 8, target.b.data(), 16);
    wire::finish_icmp6(m, 24, wire::IpAddr{}, group);
    wire::build_ethernet(f.data(), wire::multicast_mac(group), mac, wire::ethertype::ipv6);
    wire::build_ipv6(f.data() + 14, wire::IpAddr{}, group, wire::ipproto::icmpv6, 24, 255);
    return f;
}

// An Ethernet + IPv6 + UDP frame from kGuestMac to the gateway.
[[gnu::noinline]] inline std::vector<uint8_t> udp6_frame(const wire::IpAddr& src,
                                                         const wire::IpAddr& dst, uint16_t sport,
                                                         uint16_t dport, wire::Bytes payload) {
    std::vector<uint8_t> f(14 + 40 + 8 + payload.size());
    std::memcpy(f.data() + 62, payload.data(), payload.size());
    wire::build_udp(f.data() + 54, src, dst, sport, dport, payload.size());
    wire::build_ethernet(f.data(), wire::MacAddr{{0x52, 0x55, 10, 0, 2, 2}}, kGuestMac,
                         wire::ethertype::ipv6);
    wire::build_ipv6(f.data() + 14, src, dst, wire::ipproto::udp, 8 + payload.size(), 64);
    return f;
}

// 192.0.2.1 (TEST-NET-1): a destination on this machine that is not in the
// loopback range (guests may not reach 127/8, see Nat::host_target). The
// echo tests put it on lo of a network namespace of their own.
inline constexpr wire::Ipv4 kLocalDst = 0xc0000201;

inline wire::Bytes bytes(const char* s) {
    return wire::Bytes(reinterpret_cast<const uint8_t*>(s), std::strlen(s));
}

// A non-blocking UDP socket bound to 127.0.0.1 (port 0: any).
inline int udp_socket_on_loopback(uint16_t port = 0) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(kLoopback);
    a.sin_port = htons(port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

inline uint16_t local_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

// A port that is free on 127.0.0.1 for `type` right now, from below the
// kernel's ephemeral range so that no other test's socket takes it before
// this test binds or probes it (closed_port.hpp says why).
inline uint16_t free_port(int type) { return closed_port(type); }

inline sockaddr_in loopback_addr(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(kLoopback);
    a.sin_port = htons(port);
    return a;
}

struct NatHarness {
    core::EventLoop loop;
    sw::Switch sw{loop};
    CapturePort guest;
    gw::NetConfig cfg;
    std::unique_ptr<gw::Gateway> gw;
    std::optional<nat::Nat> nat;

    explicit NatHarness(nat::NatLimits limits = {}, bool learn_guest = true,
                        const std::function<void(gw::NetConfig&)>& configure = {}) {
        cfg.dhcp_count = 16;
        if (configure) configure(cfg);
        sw.attach(guest);
        gw = std::make_unique<gw::Gateway>(loop, sw, cfg);
        nat.emplace(loop, *gw, limits);
        gw->set_ip_sink(&*nat);
        if (learn_guest) gw->learn_neighbor(kGuestIp, kGuestMac, 1500);
    }
    ~NatHarness() {
        if (gw) gw->set_ip_sink(nullptr);
        nat.reset();
        gw.reset();
    }

    void input(const std::vector<uint8_t>& f) { sw.input(guest.id(), f); }

    // Runs the loop until pred() holds (true) or ms pass (false).
    bool run_until(const std::function<bool()>& pred, int ms = 2000) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (!pred()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            loop.run_once(10);
        }
        return true;
    }

    // IPv4 packets sent to the guest so far (ARP and others skipped).
    std::vector<GuestFrame> ip_frames() const {
        std::vector<GuestFrame> out;
        for (const auto& f : guest.frames) {
            auto eth = wire::EthernetView::parse(f);
            if (!eth || eth->ethertype() != wire::ethertype::ipv4) continue;
            auto ip = wire::Ipv4View::parse(eth->payload());
            if (!ip) continue;
            out.push_back(GuestFrame{ip->src(),
                                     ip->dst(),
                                     ip->protocol(),
                                     {ip->payload().begin(), ip->payload().end()}});
        }
        return out;
    }
    std::optional<GuestFrame> first_of(uint8_t proto) const {
        for (auto& f : ip_frames())
            if (f.proto == proto) return f;
        return std::nullopt;
    }
    bool got(uint8_t proto) const { return first_of(proto).has_value(); }
};

// Waits up to ms for a datagram on fd.
inline ssize_t recv_wait(int fd, void* buf, size_t len, sockaddr_in* from, int ms = 2000) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return -1;
    socklen_t fl = sizeof(sockaddr_in);
    return recvfrom(fd, buf, len, 0, reinterpret_cast<sockaddr*>(from), from ? &fl : nullptr);
}

}  // namespace usernet::testing
