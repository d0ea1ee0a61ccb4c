// Writes the seed corpora of the stateful harnesses (fuzz_datapath,
// fuzz_stream, fuzz_dhcp_leases, fuzz_dns_upstream) from the real frames
// in tests/unit/captured_frames.hpp, encoded in each harness's input
// format, so that the seeds are reproducible and follow format changes:
//
//   cmake --build build-clang --target fuzz_make_seeds
//   build-clang/fuzz/fuzz_make_seeds fuzz/corpus
//
// Only files named seed-* are written; regression inputs (crash-*, named
// by what they found) are left alone.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "datapath_ops.hpp"
#include "tests/unit/captured_frames.hpp"
#include "tests/unit/captured_dhcp6.hpp"
#include "tests/unit/captured_frames6.hpp"
#include "wire/arp.hpp"
#include "wire/bytes.hpp"
#include "wire/checksum.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/ipv4.hpp"
#include "wire/offload.hpp"
#include "wire/tcp.hpp"
#include "wire/udp.hpp"

using namespace usernet;
using namespace usernet::fuzz;
using Frame = std::vector<uint8_t>;

namespace {

std::string g_dir;

void write(const std::string& harness, const std::string& name, const std::vector<uint8_t>& b) {
    std::string path = g_dir + "/" + harness + "/seed-" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
        std::perror(path.c_str());
        std::exit(1);
    }
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
}

template <size_t N>
Frame frame(const std::array<uint8_t, N>& a) {
    return Frame(a.begin(), a.end());
}

// Field patches; the harness fixes the checksums (op::frame_fix_csum).
void set_ip_dst(Frame& f, wire::Ipv4 a) { wire::store32(&f[30], a); }
void set_dport(Frame& f, uint16_t p) { wire::store16(&f[36], p); }
void set_ttl(Frame& f, uint8_t t) { f[22] = t; }
void set_macs(Frame& f, const wire::MacAddr& dst, const wire::MacAddr& src) {
    dst.store(&f[0]);
    src.store(&f[6]);
}

wire::MacAddr guest_mac(size_t port, uint8_t v = 0) {
    return wire::MacAddr{{0x52, 0x54, 0x00, 0x12, static_cast<uint8_t>(0x34 + port),
                          static_cast<uint8_t>(0x56 + v)}};
}
constexpr wire::Ipv4 kGw = 0x0a000202, kDns = 0x0a000203;
constexpr wire::Ipv4 kGuest0 = 0x0a00020f, kGuest2 = 0x0a000210;

// The captures come from 52:54:00:12:34:56, which is port 0's guest MAC.
struct Ops {
    std::vector<uint8_t> b;
    void u8(uint8_t v) { b.push_back(v); }
    void u16(uint16_t v) {
        u8(static_cast<uint8_t>(v >> 8));
        u8(static_cast<uint8_t>(v));
    }
    void data(const void* p, size_t n) {
        auto* c = static_cast<const uint8_t*>(p);
        b.insert(b.end(), c, c + n);
    }
    void frame(size_t port, const Frame& f, bool fix = true) {
        u8(op::frame);
        u8(static_cast<uint8_t>(port | (fix ? op::frame_fix_csum : 0)));
        u16(static_cast<uint16_t>(f.size()));
        data(f.data(), f.size());
    }
    void vnet_frame(const uint8_t hdr[10], const Frame& f) {
        u8(op::frame);
        u8(static_cast<uint8_t>(op::kOffloadPort | op::frame_vnet));
        u16(static_cast<uint16_t>(f.size()));
        data(hdr, 10);
        data(f.data(), f.size());
    }
    void advance_ms(uint16_t ms) {
        u8(op::advance);
        u16(ms & 0x7fff);
    }
    void advance_s(uint16_t s) {
        u8(op::advance);
        u16(static_cast<uint16_t>(0x8000 | s));
    }
    void poll(uint8_t n = 4) {
        u8(op::poll);
        u8(static_cast<uint8_t>(n - 1));
    }
    void tcp_reply(size_t port, uint8_t flags, const std::string& payload = "") {
        u8(op::tcp_reply);
        u8(static_cast<uint8_t>(port));
        u8(flags);
        u16(64240);
        u8(0);
        u8(static_cast<uint8_t>(payload.size()));
        data(payload.data(), payload.size());
    }
    void host_tcp(uint8_t what, size_t index = 0, const std::string& d = "") {
        u8(op::host_tcp);
        u8(static_cast<uint8_t>((index << 2) | what));
        if (what == op::tcp_write) {
            u16(static_cast<uint16_t>(d.size()));
            data(d.data(), d.size());
        }
    }
    void host_connect_forward() {
        u8(op::host_forward);
        u8(0);
    }
    void host_udp_to_forward(const std::string& d) {
        u8(op::host_forward);
        u8(1);
        u8(static_cast<uint8_t>(d.size()));
        data(d.data(), d.size());
    }
    void host_udp_echo() {
        u8(op::host_udp);
        u8(0);
    }
    void upstream_dns(const Frame& reply, bool patch_id = true) {
        u8(op::upstream_dns);
        u8(patch_id ? op::dns_patch_id : 0);
        u16(static_cast<uint16_t>(reply.size()));
        data(reply.data(), reply.size());
    }
};

void arp_hello(Ops& o) { o.frame(0, frame(testdata::kArpRequest), false); }

void second_guest_hello(Ops& o) {
    Frame f(60, 0);
    size_t n = wire::build_ethernet(f.data(), wire::MacAddr::broadcast(), guest_mac(2),
                                    wire::ethertype::arp);
    wire::build_arp(f.data() + n, wire::arpop::request, guest_mac(2), kGuest2, wire::MacAddr{},
                    kGw);
    o.frame(2, f, false);
}

// A UDP datagram of n bytes from guest 0 to dst:port, cut into IPv4
// fragments of `chunk` bytes as the guest's IP layer would (last first, as
// Linux sends them out of order sometimes), in the Ethernet header of a
// captured frame of that guest.
std::vector<Frame> udp_fragments(wire::Ipv4 dst, uint16_t port, size_t n, size_t chunk) {
    std::vector<uint8_t> d(8 + n);
    for (size_t i = 0; i < n; i++) d[8 + i] = static_cast<uint8_t>(i);
    wire::build_udp(d.data(), wire::IpAddr::v4(kGuest0), wire::IpAddr::v4(dst), 40000, port, n);
    std::vector<Frame> out;
    for (size_t at = 0; at < d.size(); at += chunk) {
        const size_t len = std::min(chunk, d.size() - at);
        Frame f(testdata::kIpv4FirstFragment.begin(), testdata::kIpv4FirstFragment.begin() + 14);
        f.resize(34 + len);
        wire::build_ipv4(&f[14], kGuest0, dst, wire::ipproto::udp, len, 64, 0x77, false);
        wire::store16(&f[20], static_cast<uint16_t>(at / 8 | (at + len < d.size() ? 0x2000 : 0)));
        std::memcpy(&f[34], &d[at], len);
        out.insert(out.begin(), std::move(f));
    }
    return out;
}

Frame tcp_syn_to(wire::Ipv4 dst, uint16_t port) {
    Frame f = frame(testdata::kTcpSyn);
    set_ip_dst(f, dst);
    set_dport(f, port);
    return f;
}

void datapath_seeds() {
    const std::string h = "datapath";
    {
        Ops o;  // a DHCP client's first minutes
        o.frame(0, frame(testdata::kDhcpDiscoverUdhcpc), false);
        o.frame(0, frame(testdata::kDhcpRequestUdhcpc), false);
        o.advance_s(3600);
        o.frame(0, frame(testdata::kDhcpRequestUdhcpc), false);
        write(h, "dhcp", o.b);
    }
    {
        Ops o;  // ARP and ping of the gateway
        arp_hello(o);
        o.frame(0, frame(testdata::kIcmpEchoRequest), false);
        write(h, "arp-ping", o.b);
    }
    {
        Ops o;  // an IPv6 guest starting: MLD, DAD, RS, NS for the gateway, ping
        o.frame(0, frame(testdata::kMld2ReportUnspecified), false);
        o.frame(0, frame(testdata::kNsDad), false);
        o.frame(0, frame(testdata::kRouterSolicit), false);
        o.advance_ms(1500);  // the periodic advertisement
        o.frame(0, frame(testdata::kNsForGateway), false);
        o.frame(0, frame(testdata::kEcho6Request), false);
        write(h, "ipv6-start", o.b);
    }
    {
        Ops o;  // dhclient -6: Solicit, Request, Information-Request, Release
        o.frame(0, frame(testdata::kDhcp6Solicit), false);
        o.frame(0, frame(testdata::kDhcp6Request), false);
        o.advance_ms(1000);
        o.frame(0, frame(testdata::kDhcp6InformationRequest), false);
        o.advance_ms(1000);
        o.frame(0, frame(testdata::kDhcp6Release), false);
        write(h, "dhcp6", o.b);
    }
    {
        Ops o;  // a DNS query forwarded and answered
        arp_hello(o);
        Frame q = frame(testdata::kDnsQueryA);
        set_ip_dst(q, kDns);
        o.frame(0, q);
        o.poll();
        Frame a = frame(testdata::kDnsResponseA);
        o.upstream_dns(Frame(a.begin() + 42, a.end()));
        o.poll();
        Frame q6 = frame(testdata::kDnsQueryAAAA);
        set_ip_dst(q6, kDns);
        o.frame(0, q6);
        o.poll();
        o.advance_ms(2500);  // no answer: SERVFAIL
        write(h, "dns", o.b);
    }
    {
        Ops o;  // a TCP connection to a host peer, both ways, closed
        arp_hello(o);
        o.frame(0, tcp_syn_to(kGw, 5000));
        o.poll(8);
        o.tcp_reply(0, wire::tcpflag::ack);
        o.poll();
        o.host_tcp(op::tcp_write, 0, "hello from the host\n");
        o.poll();
        o.tcp_reply(0, wire::tcpflag::ack | wire::tcpflag::psh, "hello from the guest\n");
        o.poll();
        o.host_tcp(op::tcp_read);
        o.host_tcp(op::tcp_shutdown);
        o.poll();
        o.tcp_reply(0, wire::tcpflag::ack | wire::tcpflag::fin);
        o.poll();
        o.advance_s(120);
        write(h, "tcp", o.b);
    }
    {
        Ops o;  // DNS over TCP to the DNS address: a local name, then a close
        arp_hello(o);
        o.frame(0, tcp_syn_to(kDns, 53));
        o.poll(8);
        o.tcp_reply(0, wire::tcpflag::ack);
        Frame q = frame(testdata::kDnsQueryA);
        std::string msg(q.begin() + 42, q.end());  // the DNS message
        std::string framed = std::string(1, static_cast<char>(msg.size() >> 8)) +
                             std::string(1, static_cast<char>(msg.size() & 0xff)) + msg;
        o.tcp_reply(0, wire::tcpflag::ack | wire::tcpflag::psh, framed);
        o.poll(4);
        o.tcp_reply(0, wire::tcpflag::ack | wire::tcpflag::fin);
        o.poll(4);
        write(h, "dns-tcp", o.b);
    }
    {
        Ops o;  // a guest forward at 10.0.2.100: its port (the target refuses), another port
        arp_hello(o);
        o.frame(0, tcp_syn_to(0x0a000264, 80));
        o.poll(8);
        o.frame(0, tcp_syn_to(0x0a000264, 81));
        o.poll();
        write(h, "guestfwd", o.b);
    }
    {
        Ops o;  // the host resets a connection
        arp_hello(o);
        o.frame(0, tcp_syn_to(kGw, 5000));
        o.poll(8);
        o.tcp_reply(0, wire::tcpflag::ack);
        o.poll();
        o.host_tcp(op::tcp_reset);
        o.poll();
        o.tcp_reply(0, wire::tcpflag::ack | wire::tcpflag::psh, "late");
        write(h, "tcp-reset", o.b);
    }
    {
        Ops o;  // connections that fail: closed port, unreachable network
        arp_hello(o);
        o.frame(0, tcp_syn_to(kGw, 5999));
        o.frame(0, tcp_syn_to(0xc0000201, 80));
        o.poll(8);
        o.advance_s(5);
        write(h, "tcp-refused", o.b);
    }
    {
        Ops o;  // UDP to the echo peer and to a closed port
        arp_hello(o);
        Frame u = frame(testdata::kUdpZeroChecksum);
        set_ip_dst(u, kGw);
        set_dport(u, 5001);
        o.frame(0, u);
        o.poll();
        o.host_udp_echo();
        o.poll();
        set_dport(u, 5999);
        o.frame(0, u);
        o.poll();
        o.advance_s(200);
        write(h, "udp", o.b);
    }
    {
        Ops o;  // the host connects through the port forwards
        arp_hello(o);
        o.host_connect_forward();
        o.poll(8);
        o.tcp_reply(0, wire::tcpflag::syn | wire::tcpflag::ack);
        o.poll();
        o.host_tcp(op::tcp_write, 0, "GET / HTTP/1.0\r\n\r\n");
        o.poll();
        o.tcp_reply(0, wire::tcpflag::ack | wire::tcpflag::psh, "HTTP/1.0 200 OK\r\n\r\n");
        o.poll();
        o.host_udp_to_forward("ping");
        o.poll();
        write(h, "forward", o.b);
    }
    {
        Ops o;  // two guests on two ports ping each other
        arp_hello(o);
        second_guest_hello(o);
        Frame e = frame(testdata::kIcmpEchoRequest);
        set_ip_dst(e, kGuest2);
        set_macs(e, guest_mac(2), guest_mac(0));
        o.frame(0, e);
        Frame bc = frame(testdata::kArpRequest);  // broadcast to every port
        o.frame(3, bc, false);
        write(h, "two-guests", o.b);
    }
    {
        Ops o;  // TTL 1 through the gateway: time exceeded
        arp_hello(o);
        Frame e = frame(testdata::kIcmpEchoRequest);
        set_ip_dst(e, 0xc0000201);
        set_ttl(e, 1);
        o.frame(0, e);
        set_ttl(e, 64);
        o.frame(0, e);  // ICMP NAT toward an unreachable network
        o.poll();
        o.frame(0, frame(testdata::kIpv4FirstFragment), false);
        // A whole datagram in fragments, to the gateway's closed port:
        // reassembled, then port unreachable quoting it.
        for (const Frame& f : udp_fragments(kGw, 9, 3000, 1480)) o.frame(0, f);
        write(h, "icmp-ttl-fragment", o.b);
    }
    {
        Ops o;  // a TAP with offload sends a GSO segment to the guest on port 0
        arp_hello(o);
        wire::MacAddr tap_mac = guest_mac(1);
        Frame f(14 + 20 + 20 + 3000);
        wire::build_ethernet(f.data(), guest_mac(0), tap_mac, wire::ethertype::ipv4);
        wire::build_ipv4(&f[14], 0x0a000211, kGuest0, wire::ipproto::tcp, 20 + 3000, 64, 9);
        wire::build_tcp(&f[34], 40000, 80, 1, 1, wire::tcpflag::ack | wire::tcpflag::psh, 500);
        for (size_t i = 0; i < 3000; i++) f[54 + i] = static_cast<uint8_t>(i);
        wire::store16(&f[50], wire::csum_pseudo_partial(wire::IpAddr::v4(0x0a000211),
                                                        wire::IpAddr::v4(kGuest0), 6, 3020));
        wire::Offload off;
        off.csum_partial = true;
        off.csum_start = 34;
        off.csum_offset = 16;
        off.gso_type = wire::Offload::gso_tcp4;
        off.gso_size = 1448;
        off.hdr_len = 54;
        uint8_t hdr[10];
        wire::write_vnet_hdr(hdr, off);
        o.vnet_frame(hdr, f);
        write(h, "offload-gso", o.b);
    }
}

// fuzz_stream: [buffer bit | socket bit | ctl length][ctl: chunk sizes]
// [records: len32 fill body16].
void stream_seeds() {
    auto rec = [](std::vector<uint8_t>& b, uint32_t len, uint8_t fill, uint16_t body) {
        uint8_t x[7];
        wire::store32(x, len);
        x[4] = fill;
        wire::store16(x + 5, body);
        b.insert(b.end(), x, x + 7);
    };
    {
        std::vector<uint8_t> b{6, 0, 1, 0, 3, 0, 7};  // chunks of 1, 3, 7, then all
        rec(b, 60, 0xaa, 60);
        rec(b, 1514, 0xbb, 1514);
        rec(b, 14, 0xcc, 14);
        write("stream", "small-frames", b);
    }
    {
        std::vector<uint8_t> b{0x80 | 4, 0x10, 0x00, 0x00, 0x01};  // large buffer
        for (int i = 0; i < 6; i++) rec(b, 65535, static_cast<uint8_t>(i), 65535);
        write("stream", "max-frames", b);
    }
    {
        std::vector<uint8_t> b{4, 0x0f, 0xff, 0x00, 0x05};  // the smallest buffer wraps
        for (int i = 0; i < 4; i++) rec(b, 40000, static_cast<uint8_t>(i), 40000);
        rec(b, 65535, 1, 100);  // a partial frame at the end
        write("stream", "wrap", b);
    }
    {
        std::vector<uint8_t> b{1, 0};
        rec(b, 60, 1, 60);
        rec(b, 13, 2, 13);  // below an Ethernet header: the peer is closed
        rec(b, 60, 3, 60);
        write("stream", "too-short", b);
    }
    {
        std::vector<uint8_t> b{1, 0};
        rec(b, 65536, 1, 100);
        write("stream", "too-long", b);
    }
    {
        // Through a real StreamClient on a socketpair (bit 0x40).
        std::vector<uint8_t> b{0x40 | 4, 0, 5, 0x01, 0};
        rec(b, 60, 0xaa, 60);
        rec(b, 1514, 0x52, 1514);
        rec(b, 9000, 0x02, 9000);
        write("stream", "socket", b);
        std::vector<uint8_t> e{0x40 | 2, 0, 3};
        rec(e, 60, 0x02, 60);
        rec(e, 70000, 0x04, 10);
        write("stream", "socket-bad-length", e);
    }
}

// fuzz_dhcp_leases: triplets [op][who = mac | cid variant << 4][arg].
void dhcp_seeds() {
    {
        // One client: discover, select, renew, release.
        std::vector<uint8_t> b{0, 0x10, 0x00, 1, 0x10, 0x02, 5, 0, 60, 2, 0x10, 0xc0,
                               3, 0x10, 0x80};
        write("dhcp_leases", "one-client", b);
    }
    {
        // Sixteen MACs drain the pool of 8, time passes, they come back.
        std::vector<uint8_t> b;
        for (uint8_t m = 0; m < 16; m++) {
            b.insert(b.end(), {0, m, 0});
            b.insert(b.end(), {1, m, static_cast<uint8_t>(2 + m % 8)});
        }
        b.insert(b.end(), {5, 0, 70});
        for (uint8_t m = 0; m < 16; m++) b.insert(b.end(), {0, m, 0x40});
        write("dhcp_leases", "drain", b);
    }
    {
        // Shared client identifiers, declines and ARP claims.
        std::vector<uint8_t> b{0, 0x20, 0, 1, 0x20, 2, 0, 0x21, 0, 1, 0x21, 2, 6, 0x03, 0x43,
                               4,  0x20, 0x80, 0, 0x31, 0x40, 1, 0x31, 3, 3, 0x21, 0x80};
        write("dhcp_leases", "hostile", b);
    }
}

// fuzz_dns_upstream: [op % 5] and its arguments (see the harness).
void dns_seeds() {
    auto query = [](std::vector<uint8_t>& b, uint8_t g, uint16_t id, uint8_t sport, uint8_t sel) {
        b.insert(b.end(), {0, g, static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), sport,
                           sel});
    };
    Frame a = frame(testdata::kDnsResponseA);
    Frame answer(a.begin() + 42 + 12 + 17, a.end());  // the answer record after the question
    {
        std::vector<uint8_t> b;
        query(b, 0, 0x73aa, 1, 0);
        b.insert(b.end(), {1, 2, 0, 0, static_cast<uint8_t>(answer.size())});
        b.insert(b.end(), answer.begin(), answer.end());
        query(b, 1, 0x19e0, 2, 4);
        Frame full(a.begin() + 42, a.end());
        b.insert(b.end(), {1, 1, 1, 0, static_cast<uint8_t>(full.size())});
        b.insert(b.end(), full.begin(), full.end());
        write("dns_upstream", "answers", b);
    }
    {
        std::vector<uint8_t> b;
        query(b, 0, 0x0101, 1, 1);
        b.insert(b.end(), {2, 0, 3, 1, 0});        // port unreachable quoting the query
        query(b, 1, 0x0202, 2, 2);
        b.insert(b.end(), {3, 0x09, 0xc4});        // 2.5 s: next upstream, then SERVFAIL
        b.insert(b.end(), {3, 0x09, 0xc4});
        b.insert(b.end(), {2, 1, 0, 0x80, 4, 1, 2, 3, 4});  // time exceeded, fuzzed quote
        write("dns_upstream", "errors", b);
    }
    {
        std::vector<uint8_t> b;
        query(b, 0, 0x4242, 3, 0);
        // Off-path: the right id and question from another port.
        b.insert(b.end(), {1, 2 | 4, 0, 0, static_cast<uint8_t>(answer.size())});
        b.insert(b.end(), answer.begin(), answer.end());
        b.insert(b.end(), {4, 2});
        write("dns_upstream", "off-path", b);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <fuzz/corpus>\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    datapath_seeds();
    stream_seeds();
    dhcp_seeds();
    dns_seeds();
    return 0;
}
