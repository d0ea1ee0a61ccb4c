// Fuzzes what the DNS forwarder reads from the host side: the upstream
// resolver's replies and the ICMP errors queued on its socket
// (IP_RECVERR), with queries pending from two guests.
//
// The forwarder (gateway/dns_forwarder.hpp) is the real one, in the real
// gateway, with two upstreams: 127.0.0.1:kDnsUpstreamPort, where this
// harness's socket plays the resolver, and 127.0.0.2:kDnsUpstreamPort,
// where nobody listens (the kernel's port unreachable makes it fail over).
// Operations: a guest's query (id, source port, name and type chosen by
// the input); a reply to one of the queries the resolver has received,
// its id and question patched in or not, from the resolver's address or
// from an off-path socket on another port; an ICMP error toward the
// forwarder's socket, sent through a raw socket so that the kernel queues
// it exactly as it would a router's, quoting one of the queries or fuzzed
// bytes; time passing (attempt timeouts, failover, SERVFAIL).
//
// Invariant: every DNS reply a guest receives from the DNS address answers
// a query that guest sent from that port with that id.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "gateway/dns_forwarder.hpp"
#include "wire/arp.hpp"
#include "wire/dns.hpp"
#include "world.hpp"

using namespace usernet;
using namespace usernet::fuzz;

namespace {

constexpr size_t kMaxOps = 256;
constexpr Ipv4 kGuest[2] = {0x0a00020f, 0x0a000210};  // 10.0.2.15 on port 0, .16 on port 2
constexpr size_t kGuestPort[2] = {0, 2};

int raw_icmp() {
    static int fd = [] {
        int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
        if (s < 0) die("raw ICMP socket");
        int small = 4096;  // it also receives every ICMP message: keep that bounded
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        shutdown(s, SHUT_RD);
        return s;
    }();
    return fd;
}

int off_path() {
    static int fd = bound_socket(SOCK_DGRAM, kDnsUpstreamPort + 1);
    return fd;
}

struct Query {
    std::vector<uint8_t> bytes;  // as the resolver received it
};

struct State {
    std::vector<Query> seen;  // the last queries the resolver received
    sockaddr_in fwd{};        // the forwarder's socket
    std::set<std::tuple<Ipv4, uint16_t, uint16_t>> asked;  // guest, port, id
};

void receive_queries(State& st) {
    for (int i = 0; i < 64; i++) {
        uint8_t buf[600];
        sockaddr_in from{};
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(peers().dns, buf, sizeof buf, MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 0) break;
        st.fwd = from;
        if (st.seen.size() >= 8) st.seen.erase(st.seen.begin());
        st.seen.push_back(Query{std::vector<uint8_t>(buf, buf + n)});
    }
}

void query(World& w, State& st, Reader& r) {
    uint8_t g = r.u8() & 1;
    uint16_t id = r.u16();
    uint16_t sport = static_cast<uint16_t>(1024 + r.u8());
    uint8_t sel = r.u8();
    uint8_t msg[128];
    store16(msg, id);
    store16(msg + 2, 0x0100);  // RD
    store16(msg + 4, 1);
    store16(msg + 6, 0);
    store32(msg + 8, 0);
    size_t n = 12;
    static const char* const names[] = {"\7example\3com", "\1a\7example", "\3www\6usernet\4test",
                                        ""};
    const char* name = names[sel & 3];
    size_t len = std::strlen(name);
    std::memcpy(msg + n, name, len);
    n += len;
    msg[n++] = 0;
    store16(msg + n, (sel & 4) ? 28 : 1);  // AAAA or A
    store16(msg + n + 2, 1);
    n += 4;
    std::vector<uint8_t> f(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + n);
    build_ethernet(f.data(), w.cfg.gw_mac, guest_mac(kGuestPort[g]), ethertype::ipv4);
    build_ipv4(&f[kEthHeaderLen], kGuest[g], w.cfg.dns, ipproto::udp, kUdpHeaderLen + n, 64, 1);
    std::memcpy(&f[kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen], msg, n);
    build_udp(&f[kEthHeaderLen + kIpv4HeaderLen], IpAddr::v4(kGuest[g]), IpAddr::v4(w.cfg.dns),
              sport, kDnsPort, n);
    st.asked.insert({kGuest[g], sport, id});
    w.input(kGuestPort[g], f);
    receive_queries(st);
}

void reply(State& st, Reader& r) {
    uint8_t flags = r.u8();
    uint8_t which = r.u8();
    Bytes body = r.bytes(r.u16() % 1500);
    receive_queries(st);
    if (st.seen.empty()) return;
    const Query& q = st.seen[which % st.seen.size()];
    std::vector<uint8_t> msg;
    if (flags & 2) {
        // The query's header and question, then the fuzzed rest.
        msg = q.bytes;
        if (msg.size() >= 12) {
            msg[2] |= 0x80;  // QR
            store16(&msg[6], 1);  // ANCOUNT: the fuzzed rest is an answer
        }
        msg.insert(msg.end(), body.begin(), body.end());
    } else {
        msg.assign(body.begin(), body.end());
        if ((flags & 1) && msg.size() >= 2 && q.bytes.size() >= 2) {
            msg[0] = q.bytes[0];
            msg[1] = q.bytes[1];
        }
    }
    int fd = (flags & 4) ? off_path() : peers().dns;
    sendto(fd, msg.data(), msg.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&st.fwd),
           sizeof st.fwd);
}

// An ICMP error from "the resolver's host" about one of the forwarder's
// datagrams: the kernel matches the quoted UDP header to the forwarder's
// socket and queues it there with the quoted payload.
void icmp_error(State& st, Reader& r) {
    uint8_t type = r.u8();
    uint8_t code = r.u8();
    uint8_t flags = r.u8();
    Bytes body = r.bytes(r.u8());
    receive_queries(st);
    if (st.fwd.sin_port == 0) return;
    std::vector<uint8_t> quoted;
    if ((flags & 1) && !st.seen.empty()) {
        const Query& q = st.seen[(flags >> 1) % st.seen.size()];
        quoted = q.bytes;
    } else {
        quoted.assign(body.begin(), body.end());
    }
    // Types the kernel passes on to a UDP socket's error queue.
    static constexpr uint8_t kTypes[] = {icmptype::dest_unreach, icmptype::time_exceeded, 12, 4};
    uint8_t t = kTypes[type % 4];
    std::vector<uint8_t> m(8 + kIpv4HeaderLen + kUdpHeaderLen + quoted.size());
    Ipv4 upstream = (flags & 0x80) ? 0x7f000002 : kLoopback;
    build_ipv4(&m[8], kLoopback, upstream, ipproto::udp, kUdpHeaderLen + quoted.size(), 64, 1);
    if (!quoted.empty())
        std::memcpy(&m[8 + kIpv4HeaderLen + kUdpHeaderLen], quoted.data(), quoted.size());
    build_udp(&m[8 + kIpv4HeaderLen], IpAddr::v4(kLoopback), IpAddr::v4(upstream),
              ntohs(st.fwd.sin_port), kDnsUpstreamPort, quoted.size());
    build_icmp4(m.data(), t, code % 16, 0, m.size());
    sockaddr_in to = loopback(0);
    sendto(raw_icmp(), m.data(), m.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
           sizeof to);
}

// Replies toward the guests must answer what they asked.
void check_guests(World& w, State& st) {
    for (size_t g = 0; g < 2; g++) {
        GuestPort& p = *w.ports[kGuestPort[g]];
        for (const auto& f : p.kept) {
            auto eth = EthernetView::parse(f);
            if (!eth || eth->ethertype() != ethertype::ipv4) continue;
            auto ip = Ipv4View::parse(eth->payload());
            if (!ip || ip->protocol() != ipproto::udp || ip->src() != w.cfg.dns) continue;
            auto u = UdpView::parse(ip->payload());
            FUZZ_CHECK(u.has_value());
            FUZZ_CHECK(u->src_port() == kDnsPort);
            Bytes d = u->payload();
            FUZZ_CHECK(d.size() >= 12);
            FUZZ_CHECK(st.asked.count({ip->dst(), u->dst_port(), load16(d.data())}) == 1);
            FUZZ_CHECK(ip->dst() == kGuest[g]);
        }
        p.kept.clear();
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    init_process();
    raw_icmp();
    off_path();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    peers().reset();
    HostPeers::drain(off_path());
    WorldOptions o;
    o.nat = false;
    o.second_upstream = true;
    World w(o);
    for (auto& p : w.ports) p->keep = true;
    // The guests are known neighbors, so replies reach them.
    for (size_t g = 0; g < 2; g++) w.gw->learn_neighbor(kGuest[g], guest_mac(kGuestPort[g]), 1500);
    State st;
    Reader r{data, size};
    for (size_t i = 0; i < kMaxOps && !r.empty(); i++) {
        switch (r.u8() % 5) {
        case 0:
            query(w, st, r);
            break;
        case 1:
            reply(st, r);
            w.poll();
            break;
        case 2:
            icmp_error(st, r);
            w.poll();
            break;
        case 3:
            w.advance(r.u16());
            receive_queries(st);
            break;
        case 4:
            w.poll(r.u8() % 4 + 1);
            break;
        }
        check_guests(w, st);
    }
    return 0;
}
