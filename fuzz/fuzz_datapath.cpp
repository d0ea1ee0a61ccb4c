// Fuzzes the whole data path with state: frames from several guests on
// several switch ports, time passing, and the host side answering, through
// switch + gateway (ARP, DHCPv4, DNS forwarder, ICMP) + NAT (TCP, UDP,
// ICMP, port forwards) together, as the daemon wires them (world.hpp).
//
// The input is a sequence of operations (see datapath_ops.hpp, which the
// seed generator shares): a frame from port i (checksums fixed up on
// request, so mutations reach the state machines instead of dying at a
// checksum; with a virtio-net header on the offload port), time advancing,
// event-loop rounds so host sockets are served, a guest's TCP answer to the
// last segment it got (right sequence numbers: the NAT's are not
// guessable), and the host side: accept, write, close and reset TCP
// connections, connect to a port forward, echo UDP, answer the upstream
// resolver's queries with fuzzed bytes.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "datapath_ops.hpp"
#include "world.hpp"

using namespace usernet;
using namespace usernet::fuzz;

namespace {

constexpr size_t kMaxOps = 256;
constexpr size_t kMaxFrame = 16384;

// A guest's answer to the last TCP segment the gateway sent to port p.
void tcp_reply(World& w, Reader& r) {
    uint8_t b = r.u8();
    GuestPort& port = *w.ports[b % kPorts];
    uint8_t flags = r.u8();
    uint16_t window = r.u16();
    int8_t seq_delta = static_cast<int8_t>(r.u8());
    Bytes payload = r.bytes(r.u8());
    if (port.last_tcp.empty()) return;
    auto eth = EthernetView::parse(port.last_tcp);
    auto ip = Ipv4View::parse(eth->payload());
    auto t = TcpView::parse(ip->payload());
    std::vector<uint8_t> f(kEthHeaderLen + kIpv4HeaderLen + 20 + payload.size());
    build_ethernet(f.data(), eth->src(), eth->dst(), ethertype::ipv4);
    build_ipv4(&f[kEthHeaderLen], ip->dst(), ip->src(), ipproto::tcp, 20 + payload.size(), 64, 1);
    uint8_t* tcp = &f[kEthHeaderLen + kIpv4HeaderLen];
    build_tcp(tcp, t->dst_port(), t->src_port(), t->ack() + static_cast<uint32_t>(seq_delta),
              t->seq() + t->seg_len(), flags, window);
    if (!payload.empty()) std::memcpy(tcp + 20, payload.data(), payload.size());
    fix_checksums(f);
    w.input(b % kPorts, f);
}

void frame(World& w, Reader& r) {
    uint8_t b = r.u8();
    size_t port = b & op::port_mask;
    size_t len = r.u16() % kMaxFrame;
    Offload off;
    if ((b & op::frame_vnet) && port == op::kOffloadPort) {
        Bytes hdr = r.bytes(kVnetHdrLen);
        if (hdr.size() < kVnetHdrLen) return;
        len = std::min(len, r.n);
        if (!parse_vnet_hdr(hdr.data(), len, off)) {
            r.bytes(len);
            return;
        }
    }
    Bytes in = r.bytes(len);
    // Exactly the frame's length, so ASan sees an overread.
    std::vector<uint8_t> f(in.begin(), in.end());
    if (b & op::frame_fix_csum) fix_checksums(f);
    w.input(port, f, off);
}

void host_tcp(Reader& r) {
    HostPeers& h = peers();
    uint8_t sub = r.u8();
    h.accept_all();
    if (h.conns.empty()) return;
    size_t i = (sub >> 2) % h.conns.size();
    int c = h.conns[i];
    switch (sub & 3) {
    case op::tcp_write: {
        Bytes data = r.bytes(r.u16() % 8192);
        (void)!send(c, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    }
    case op::tcp_read: {
        uint8_t buf[4096];
        (void)!recv(c, buf, sizeof buf, MSG_DONTWAIT);
        break;
    }
    case op::tcp_shutdown:
        shutdown(c, SHUT_WR);
        break;
    case op::tcp_reset: {
        linger l{1, 0};  // close with RST
        setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(c);
        h.conns.erase(h.conns.begin() + static_cast<ptrdiff_t>(i));
        break;
    }
    }
}

void host_forward(Reader& r) {
    HostPeers& h = peers();
    uint8_t sub = r.u8();
    if (sub & 1) {
        // A datagram from the host to the UDP forward.
        Bytes data = r.bytes(r.u8());
        sockaddr_in a = loopback(kUdpForwardPort);
        sendto(h.udp_echo, data.data(), data.size(), MSG_DONTWAIT,
               reinterpret_cast<sockaddr*>(&a), sizeof a);
        return;
    }
    if (h.conns.size() >= 32) return;
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c < 0) return;
    sockaddr_in a = loopback(kTcpForwardPort);
    connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
    h.conns.push_back(c);
}

// The UDP peer answers every datagram waiting for it (with its own bytes,
// or with fuzzed ones).
void host_udp(Reader& r) {
    HostPeers& h = peers();
    uint8_t sub = r.u8();
    Bytes alt = r.bytes(sub & op::udp_fuzzed ? r.u8() : 0);
    for (int i = 0; i < 16; i++) {
        uint8_t buf[2048];
        sockaddr_in from{};
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(h.udp_echo, buf, sizeof buf, MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 0) break;
        const uint8_t* out = (sub & op::udp_fuzzed) ? alt.data() : buf;
        size_t len = (sub & op::udp_fuzzed) ? alt.size() : size_t(n);
        sendto(h.udp_echo, out, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), fl);
    }
}

// What the upstream resolver last received: where from, which id. Reset
// per input, so that an input does not depend on the ones before it.
struct Upstream {
    sockaddr_in from{};
    uint16_t last_id = 0;
};
Upstream g_upstream;

// The upstream resolver reads the queries it got and answers the last one
// with fuzzed bytes, its id patched in on request.
void upstream_dns(Reader& r) {
    HostPeers& h = peers();
    uint8_t flags = r.u8();
    Bytes reply = r.bytes(r.u16() % 2048);
    sockaddr_in& from = g_upstream.from;
    uint16_t& last_id = g_upstream.last_id;
    for (int i = 0; i < 64; i++) {
        uint8_t buf[600];
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(h.dns, buf, sizeof buf, MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 0) break;
        if (n >= 2) last_id = load16(buf);
    }
    if (from.sin_port == 0) return;
    std::vector<uint8_t> msg(reply.begin(), reply.end());
    if ((flags & op::dns_patch_id) && msg.size() >= 2) store16(msg.data(), last_id);
    sendto(h.dns, msg.data(), msg.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
           sizeof from);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    init_process();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    peers().reset();
    g_upstream = Upstream{};
    World w;
    Reader r{data, size};
    for (size_t i = 0; i < kMaxOps && !r.empty(); i++) {
        switch (r.u8() % op::kCount) {
        case op::frame:
            frame(w, r);
            break;
        case op::advance: {
            uint16_t v = r.u16();
            w.advance(v & 0x8000 ? core::Millis(v & 0x7fff) * 1000 : v);
            break;
        }
        case op::poll:
            w.poll(r.u8() % 8 + 1);
            break;
        case op::tcp_reply:
            tcp_reply(w, r);
            break;
        case op::host_tcp:
            host_tcp(r);
            break;
        case op::host_forward:
            host_forward(r);
            break;
        case op::host_udp:
            host_udp(r);
            break;
        case op::upstream_dns:
            upstream_dns(r);
            break;
        }
    }
    w.poll(2);
    return 0;
}
