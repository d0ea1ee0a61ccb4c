// The C API (include/usernet.h, libusernet.so) as an embedder sees it:
// raw Ethernet frames in through usernet_nic_input(), frames out through
// the send callback, host sockets through usernet_fd()/usernet_poll(),
// forwards added and removed at run time, bad configurations refused with
// a message, log messages through the callback. Everything goes through
// the shared library; wire/ only builds and parses the frames.
#include "usernet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "wire/arp.hpp"
#include "wire/dhcp4.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"
#include "wire/udp.hpp"

namespace {

using usernet::wire::Bytes;
using usernet::wire::Ipv4;
using usernet::wire::MacAddr;
namespace wire = usernet::wire;

Ipv4 ip(const char* s) { return *wire::ipv4_parse(s); }

// A UDP socket bound to 127.0.0.1 on a port of the kernel's choice
// (stored in *port); -1 on failure.
int udp_on_loopback(uint16_t* port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &alen) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

const MacAddr kGwMac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};  // the gateway's (QEMU's)
const MacAddr kMacA{{0x02, 0x00, 0x5e, 0x10, 0x20, 0x31}};   // made up, locally administered
const MacAddr kMacB{{0x02, 0x00, 0x5e, 0x10, 0x20, 0x32}};

using Frame = std::vector<uint8_t>;

// --- frames a guest sends ---------------------------------------------------

Frame arp_request(const MacAddr& mac, Ipv4 sender, Ipv4 target) {
    Frame f(60, 0);
    size_t n = wire::build_ethernet(f.data(), MacAddr::broadcast(), mac, wire::ethertype::arp);
    wire::build_arp(f.data() + n, wire::arpop::request, mac, sender, MacAddr{}, target);
    return f;
}

Frame udp_frame(const MacAddr& dst_mac, const MacAddr& src_mac, Ipv4 src, Ipv4 dst,
                uint16_t sport, uint16_t dport, Bytes payload) {
    Frame f(14 + 20 + 8 + payload.size());
    wire::build_ethernet(f.data(), dst_mac, src_mac, wire::ethertype::ipv4);
    wire::build_ipv4(f.data() + 14, src, dst, wire::ipproto::udp, 8 + payload.size());
    std::memcpy(f.data() + 14 + 20 + 8, payload.data(), payload.size());
    wire::build_udp(f.data() + 14 + 20, wire::IpAddr::v4(src), wire::IpAddr::v4(dst), sport, dport,
                    payload.size());
    if (f.size() < 60) f.resize(60);
    return f;
}

Frame dhcp_frame(const MacAddr& mac, uint8_t type, uint32_t xid,
                 std::optional<Ipv4> requested = {}, std::optional<Ipv4> server = {}) {
    Frame msg(548);
    wire::Dhcp4Builder b(msg);
    b.set_op(wire::dhcp4op::boot_request);
    b.set_xid(xid);
    b.set_chaddr(mac);
    b.add_u8(wire::dhcp4opt::message_type, type);
    if (requested) b.add_ipv4(wire::dhcp4opt::requested_ip, *requested);
    if (server) b.add_ipv4(wire::dhcp4opt::server_id, *server);
    msg.resize(b.finish());
    return udp_frame(MacAddr::broadcast(), mac, 0, 0xffffffff, 68, 67, msg);
}

// --- frames the guest gets ----------------------------------------------------

std::optional<wire::ArpView> arp_of(const Frame& f) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::arp) return std::nullopt;
    return wire::ArpView::parse(eth->payload());
}

std::optional<wire::Ipv4View> ipv4_of(const Frame& f) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv4) return std::nullopt;
    return wire::Ipv4View::parse(eth->payload());
}

// A DHCP message from the server port with a good checksum.
std::optional<wire::Dhcp4View> dhcp_of(const Frame& f) {
    auto p = ipv4_of(f);
    if (!p || p->protocol() != wire::ipproto::udp) return std::nullopt;
    auto udp = wire::UdpView::parse(p->payload());
    if (!udp || udp->src_port() != 67 || udp->dst_port() != 68) return std::nullopt;
    if (!udp->checksum_ok(p->src_addr(), p->dst_addr())) return std::nullopt;
    return wire::Dhcp4View::parse(udp->payload());
}

// --- an emulated NIC: what the send callback got --------------------------------

struct Guest {
    usernet_nic_t* nic = nullptr;
    MacAddr mac;
    std::vector<Frame> frames;  // tests clear it
    std::vector<std::thread::id> callers;
    uint64_t sent_frames = 0, sent_bytes = 0;  // every call, never cleared
    // A NIC that transmits as it receives (QEMU's pcnet): each send callback
    // hands in up to per_call of these, from inside the callback.
    std::vector<Frame> from_callback;
    size_t per_call = 0;
    int depth = 0, max_depth = 0;  // send callbacks on the stack

    static void on_send(void* opaque, const void* frame, size_t len) {
        auto* g = static_cast<Guest*>(opaque);
        const auto* p = static_cast<const uint8_t*>(frame);
        g->frames.emplace_back(p, p + len);
        g->sent_frames++;
        g->sent_bytes += len;
        g->callers.push_back(std::this_thread::get_id());
        g->max_depth = std::max(g->max_depth, ++g->depth);
        for (size_t i = 0; i < g->per_call && !g->from_callback.empty(); i++) {
            const Frame f = g->from_callback.front();
            g->from_callback.erase(g->from_callback.begin());
            usernet_nic_input(g->nic, f.data(), f.size());
        }
        g->depth--;
    }
    void input(const Frame& f) const { usernet_nic_input(nic, f.data(), f.size()); }

    // The first frame (from index `from` on) that pred accepts.
    const Frame* find(const std::function<bool(const Frame&)>& pred, size_t from = 0) const {
        for (size_t i = from; i < frames.size(); i++)
            if (pred(frames[i])) return &frames[i];
        return nullptr;
    }
    const Frame* find_dhcp(uint8_t type, uint32_t xid) const {
        return find([&](const Frame& f) {
            auto d = dhcp_of(f);
            return d && d->message_type() == type && d->xid() == xid;
        });
    }
    const Frame* find_arp_reply(Ipv4 sender) const {
        return find([&](const Frame& f) {
            auto a = arp_of(f);
            return a && a->op() == wire::arpop::reply && a->sender_ip() == sender;
        });
    }
};

// Runs the embedder's loop (poll on usernet_fd() for at most usernet_timeout(),
// then usernet_poll()) until done() or ms have passed; returns done().
bool pump(usernet_t* net, const std::function<bool()>& done, int ms = 3000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done()) {
        if (std::chrono::steady_clock::now() >= end) return false;
        int t = usernet_timeout(net);
        if (t < 0 || t > 20) t = 20;
        pollfd p{usernet_fd(net), POLLIN, 0};
        poll(&p, 1, t);
        usernet_poll(net);
    }
    return true;
}

// A port on 127.0.0.1 that nothing listens on (for `type`) right now.
uint16_t free_loopback_port(int type) {
    int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (s >= 0) close(s);
        return 0;
    }
    close(s);
    return ntohs(a.sin_port);
}

// Whether a fresh socket (no SO_REUSEADDR) can bind addr:port; errno_out
// gets bind's errno when it cannot.
bool can_bind(int type, const char* addr, uint16_t port, int* errno_out = nullptr) {
    int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, addr, &a.sin_addr);
    const bool ok = bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (!ok && errno_out) *errno_out = errno;
    close(s);
    return ok;
}

struct LogLine {
    usernet_log_level level;
    std::string msg;
};

void collect_log(void* opaque, usernet_log_level level, const char* msg) {
    static_cast<std::vector<LogLine>*>(opaque)->push_back({level, msg});
}

class CapiTest : public ::testing::Test {
protected:
    void TearDown() override {
        for (Guest* g : guests_) usernet_nic_free(g->nic);
        for (usernet_t* n : nets_) usernet_free(n);
    }
    // A LAN with the defaults, or with what edit changes.
    usernet_t* make(const std::function<void(usernet_config&)>& edit = {}) {
        usernet_config cfg;
        usernet_config_init(&cfg);
        // Upstream resolvers given, so that nothing depends on the host's
        // /etc/resolv.conf (nothing here asks them).
        static const char* const kUpstreams[] = {"127.0.0.1:53", nullptr};
        cfg.dns_upstreams = kUpstreams;
        if (edit) edit(cfg);
        usernet_t* n = usernet_new(&cfg);
        EXPECT_NE(n, nullptr) << usernet_last_error();
        if (n) nets_.push_back(n);
        return n;
    }
    Guest& attach(usernet_t* net, const MacAddr& mac, uint32_t mtu = 0) {
        auto* g = new Guest;
        owned_.emplace_back(g);
        g->mac = mac;
        g->nic = usernet_nic_new(net, &Guest::on_send, g, mtu);
        EXPECT_NE(g->nic, nullptr) << usernet_last_error();
        if (g->nic) guests_.push_back(g);
        return *g;
    }
    // DISCOVER, OFFER, REQUEST, ACK; returns the leased address (0: none).
    Ipv4 lease(Guest& g, uint32_t xid = 0x1234) {
        g.input(dhcp_frame(g.mac, wire::dhcp4msg::discover, xid));
        const Frame* offer = g.find_dhcp(wire::dhcp4msg::offer, xid);
        if (!offer) return 0;
        auto o = dhcp_of(*offer);
        const Ipv4 a = o->yiaddr();
        const Ipv4 server = o->server_id().value_or(0);
        g.input(dhcp_frame(g.mac, wire::dhcp4msg::request, xid, a, server));
        return g.find_dhcp(wire::dhcp4msg::ack, xid) ? a : 0;
    }
    void forget(usernet_t* net) { std::erase(nets_, net); }
    void forget(Guest& g) { std::erase(guests_, &g); }

    // Log sinks: they must outlive the instances, which log until
    // usernet_free() returns.
    std::vector<LogLine> log_a_, log_b_;

private:
    std::vector<usernet_t*> nets_;
    std::vector<Guest*> guests_;
    std::vector<std::unique_ptr<Guest>> owned_;
};

// --- the basics -----------------------------------------------------------------

TEST_F(CapiTest, Capi_ConfigInitSetsTheDefaultsAndTheVersion) {
    usernet_config cfg;
    std::memset(&cfg, 0xa5, sizeof cfg);
    usernet_config_init(&cfg);
    EXPECT_EQ(cfg.size, sizeof cfg);
    EXPECT_EQ(cfg.version, static_cast<uint32_t>(USERNET_API_VERSION));
    EXPECT_EQ(cfg.network, nullptr);
    EXPECT_EQ(cfg.gateway, nullptr);
    EXPECT_EQ(cfg.dns_upstreams, nullptr);
    EXPECT_EQ(cfg.log, nullptr);
    EXPECT_EQ(cfg.ipv6, 1);
    EXPECT_EQ(cfg.map_gateway_to_loopback, 1);
    EXPECT_EQ(cfg.restrict_guest, 0);
    EXPECT_EQ(cfg.log_level, USERNET_LOG_WARN);
    EXPECT_EQ(cfg.outbound_addr, nullptr);
    EXPECT_EQ(cfg.outbound_addr6, nullptr);
    EXPECT_EQ(cfg.dhcp_enabled, 1);
    EXPECT_EQ(cfg.dns_enabled, 1);
    EXPECT_EQ(std::string(usernet_version()).rfind("usernet ", 0), 0u) << usernet_version();

    // A program built against version 1 of the header: its structure ends
    // before outbound_addr, and the library must not write past it, through
    // the sized call or the version-1 entry point alike.
    const size_t v1 = offsetof(usernet_config, outbound_addr);
    for (int entry = 0; entry < 2; entry++) {
        std::vector<unsigned char> mem(sizeof(usernet_config) + 32, 0xa5);
        auto* old = reinterpret_cast<usernet_config*>(mem.data());
        if (entry == 0) usernet_config_init_sized(old, v1);
        else (usernet_config_init)(old);
        EXPECT_EQ(old->size, v1);
        EXPECT_EQ(old->version, 1u);
        EXPECT_EQ(old->ipv6, 1);
        for (size_t i = v1; i < mem.size(); i++) ASSERT_EQ(mem[i], 0xa5) << "byte " << i << " written";
        old->log_level = static_cast<usernet_log_level>(42);  // out of range: clamped, not UB
        usernet_t* n = usernet_new(old);
        ASSERT_NE(n, nullptr) << usernet_last_error();
        usernet_free(n);
    }
}

// Version 2: the NAT's sockets leave from outbound_addr; dhcp_enabled = 0
// silences the DHCPv4 server; dns_enabled = 0 makes the DNS address refuse
// queries (ICMP port unreachable). A version-1 caller's shorter struct keeps the
// defaults.
TEST_F(CapiTest, Capi_OutboundAddrDhcpAndDnsSwitches) {
    usernet_t* net = make([](usernet_config& c) {
        c.outbound_addr = "127.0.0.2";
        c.dhcp_enabled = 0;
        c.dns_enabled = 0;
    });
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    EXPECT_EQ(lease(g), 0u);  // no offer

    uint16_t port = 0;
    const int hs = udp_on_loopback(&port);
    ASSERT_GE(hs, 0);
    const std::string msg = "from the guest";
    const Bytes payload(reinterpret_cast<const uint8_t*>(msg.data()), msg.size());
    g.input(udp_frame(kGwMac, kMacA, ip("10.0.2.15"), ip("10.0.2.2"), 40000, port, payload));
    sockaddr_in from{};
    ASSERT_TRUE(pump(net, [&] {
        pollfd p{hs, POLLIN, 0};
        if (poll(&p, 1, 0) != 1) return false;
        char buf[64];
        socklen_t flen = sizeof from;
        return recvfrom(hs, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen) > 0;
    })) << "the datagram did not reach the host socket";
    EXPECT_EQ(ntohl(from.sin_addr.s_addr), 0x7f000002u);  // 127.0.0.2
    close(hs);

    g.frames.clear();
    g.input(udp_frame(kGwMac, kMacA, ip("10.0.2.15"), ip("10.0.2.3"), 40001, 53, payload));
    auto unreachable = [&](const Frame& f) {
        auto ipv = ipv4_of(f);
        return ipv && ipv->protocol() == wire::ipproto::icmp && ipv->src() == ip("10.0.2.3") &&
               ipv->payload().size() >= 2 && ipv->payload()[0] == 3 && ipv->payload()[1] == 3;
    };
    EXPECT_TRUE(pump(net, [&] { return g.find(unreachable) != nullptr; }))
        << "no port unreachable from the DNS address";

    // A version-1 struct (no v2 fields): DHCP answers.
    usernet_t* v1 = make([](usernet_config& c) {
        c.version = 1;
        c.size = offsetof(usernet_config, outbound_addr);
        c.dhcp_enabled = 0;  // beyond the caller's struct: not read
    });
    ASSERT_TRUE(v1);
    Guest& g1 = attach(v1, kMacB);
    EXPECT_EQ(lease(g1), ip("10.0.2.15"));
}

TEST_F(CapiTest, Capi_FdIsAnOpenDescriptorAndTimeoutIsAtLeastMinusOne) {
    usernet_t* a = make();
    usernet_t* b = make();
    ASSERT_TRUE(a && b);
    for (usernet_t* n : {a, b}) {
        const int fd = usernet_fd(n);
        ASSERT_GE(fd, 0);
        const int flags = fcntl(fd, F_GETFD);
        ASSERT_NE(flags, -1) << std::strerror(errno);
        EXPECT_TRUE(flags & FD_CLOEXEC);  // an emulator's children must not inherit it
        EXPECT_GE(usernet_timeout(n), -1);
        EXPECT_LE(usernet_timeout(n), 60000);
    }
    EXPECT_NE(usernet_fd(a), usernet_fd(b));
    // With nothing to do, usernet_poll() returns at once.
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 100; i++) usernet_poll(a);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
    // Freed, its descriptor is closed.
    const int fd = usernet_fd(a);
    usernet_free(a);
    forget(a);
    EXPECT_EQ(fcntl(fd, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST_F(CapiTest, Capi_DhcpDiscoverGetsAnOfferFor10_0_2_15) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    g.input(dhcp_frame(kMacA, wire::dhcp4msg::discover, 0xfeed));
    const Frame* f = g.find_dhcp(wire::dhcp4msg::offer, 0xfeed);
    ASSERT_NE(f, nullptr) << g.frames.size() << " frames, none an offer";
    auto eth = wire::EthernetView::parse(*f);
    EXPECT_EQ(eth->src(), kGwMac);
    auto d = dhcp_of(*f);
    EXPECT_EQ(d->yiaddr(), ip("10.0.2.15"));
    EXPECT_EQ(d->chaddr(), kMacA);
    EXPECT_EQ(d->server_id(), ip("10.0.2.2"));
    auto router = d->find(wire::dhcp4opt::router);
    ASSERT_TRUE(router && router->size() == 4);
    EXPECT_EQ(wire::load32(router->data()), ip("10.0.2.2"));
    auto dns = d->find(wire::dhcp4opt::dns_server);
    ASSERT_TRUE(dns && dns->size() == 4);
    EXPECT_EQ(wire::load32(dns->data()), ip("10.0.2.3"));
    auto mtu = d->find(wire::dhcp4opt::mtu);  // mtu 0: 1500
    ASSERT_TRUE(mtu && mtu->size() == 2);
    EXPECT_EQ(wire::load16(mtu->data()), 1500);
    // The callback came from inside usernet_nic_input(), on this thread.
    for (auto id : g.callers) EXPECT_EQ(id, std::this_thread::get_id());
    // The REQUEST is acknowledged.
    g.frames.clear();
    g.input(dhcp_frame(kMacA, wire::dhcp4msg::request, 0xfeed, ip("10.0.2.15"), ip("10.0.2.2")));
    EXPECT_NE(g.find_dhcp(wire::dhcp4msg::ack, 0xfeed), nullptr);
}

TEST_F(CapiTest, Capi_NicMtuReachesTheDhcpOfferAndABadMtuIsRefused) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA, 1400);
    g.input(dhcp_frame(kMacA, wire::dhcp4msg::discover, 1));
    const Frame* f = g.find_dhcp(wire::dhcp4msg::offer, 1);
    ASSERT_NE(f, nullptr);
    auto mtu = dhcp_of(*f)->find(wire::dhcp4opt::mtu);
    ASSERT_TRUE(mtu && mtu->size() == 2);
    EXPECT_EQ(wire::load16(mtu->data()), 1400);

    Guest dummy;
    EXPECT_EQ(usernet_nic_new(net, &Guest::on_send, &dummy, 20), nullptr);
    EXPECT_NE(std::string(usernet_last_error()).find("MTU"), std::string::npos)
        << usernet_last_error();
    EXPECT_EQ(usernet_nic_new(net, nullptr, &dummy, 1500), nullptr);
    EXPECT_STRNE(usernet_last_error(), "");
}

TEST_F(CapiTest, Capi_ArpForTheGatewayIsAnswered) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.2")));
    const Frame* f = g.find_arp_reply(ip("10.0.2.2"));
    ASSERT_NE(f, nullptr);
    auto eth = wire::EthernetView::parse(*f);
    EXPECT_EQ(eth->dst(), kMacA);
    auto a = arp_of(*f);
    EXPECT_EQ(a->sender_mac(), kGwMac);
    EXPECT_EQ(a->target_mac(), kMacA);
    EXPECT_EQ(a->target_ip(), ip("10.0.2.15"));
    // An address nobody has goes unanswered.
    g.frames.clear();
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.77")));
    EXPECT_EQ(g.find_arp_reply(ip("10.0.2.77")), nullptr);

    usernet_stats st;
    std::memset(&st, 0xff, sizeof st);
    usernet_get_stats(net, &st);
    EXPECT_EQ(st.rx_frames, 2u);
    EXPECT_EQ(st.rx_bytes, 120u);
    // tx: what the send callback got (the ARP reply, and whatever the
    // gateway sends unasked, e.g. a router advertisement).
    EXPECT_GE(g.sent_frames, 1u);
    EXPECT_EQ(st.tx_frames, g.sent_frames);
    EXPECT_EQ(st.tx_bytes, g.sent_bytes);
    EXPECT_EQ(st.dropped, 0u);
    EXPECT_EQ(st.tcp_flows, 0u);
}

// Frames handed in from inside the send callback wait until the call that
// made it returns: no callback runs inside another (a TCP translator's send
// loop did, and sent data under stale sequence numbers), every frame is
// answered in order, and beyond kMaxDeferred waiting ones they are dropped
// and counted.
TEST_F(CapiTest, Capi_FramesFromInsideTheSendCallbackWaitForTheOuterCall) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    auto replies = [&] {
        size_t n = 0;
        for (const Frame& f : g.frames) {
            auto a = arp_of(f);
            n += a && a->op() == wire::arpop::reply && a->sender_ip() == ip("10.0.2.2");
        }
        return n;
    };
    // One at a time: each reply brings the next request.
    g.from_callback.assign(300, arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.2")));
    g.per_call = 1;
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.2")));
    EXPECT_EQ(replies(), 301u);
    EXPECT_TRUE(g.from_callback.empty());
    EXPECT_EQ(g.max_depth, 1);
    usernet_stats st;
    usernet_get_stats(net, &st);
    EXPECT_EQ(st.dropped, 0u);
    // 300 at once from one callback: 256 wait, 44 are dropped.
    g.frames.clear();
    g.from_callback.assign(300, arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.2")));
    g.per_call = 300;
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.2")));
    EXPECT_EQ(replies(), 257u);
    EXPECT_EQ(g.max_depth, 1);
    usernet_get_stats(net, &st);
    EXPECT_EQ(st.dropped, 44u);
}

TEST_F(CapiTest, Capi_BadFramesAreDroppedAndCounted) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    usernet_stats before;
    usernet_get_stats(net, &before);
    const uint8_t runt[5] = {1, 2, 3, 4, 5};
    usernet_nic_input(g.nic, runt, sizeof runt);
    usernet_nic_input(g.nic, runt, 0);
    usernet_stats after;
    usernet_get_stats(net, &after);
    // Too short for Ethernet: counted as dropped (once), not as received.
    EXPECT_EQ(after.rx_frames, before.rx_frames);
    EXPECT_EQ(after.dropped, before.dropped + 2);
    // It still answers.
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.3")));
    EXPECT_NE(g.find_arp_reply(ip("10.0.2.3")), nullptr);
}

TEST_F(CapiTest, Capi_TwoNicsOnOneLanSeeEachOthersBroadcasts) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& a = attach(net, kMacA);
    Guest& b = attach(net, kMacB);
    a.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.16")));
    const Frame* seen = b.find([](const Frame& f) {
        auto arp = arp_of(f);
        return arp && arp->op() == wire::arpop::request && arp->target_ip() == ip("10.0.2.16");
    });
    ASSERT_NE(seen, nullptr);
    EXPECT_EQ(wire::EthernetView::parse(*seen)->src(), kMacA);
    // Not back to its sender.
    EXPECT_EQ(a.find([](const Frame& f) { return arp_of(f).has_value(); }), nullptr);
    // Freeing one NIC leaves the other working.
    usernet_nic_free(a.nic);
    forget(a);
    b.input(arp_request(kMacB, ip("10.0.2.16"), ip("10.0.2.2")));
    EXPECT_NE(b.find_arp_reply(ip("10.0.2.2")), nullptr);
}

// --- independent instances --------------------------------------------------------

TEST_F(CapiTest, Capi_TwoInstancesEachAnswerForTheirOwnNetwork) {
    usernet_t* def = make();
    usernet_t* other = make([](usernet_config& c) { c.network = "10.0.3.0/24"; });
    ASSERT_TRUE(def && other);
    Guest& g1 = attach(def, kMacA);
    Guest& g2 = attach(other, kMacA);  // the same MAC: separate LANs

    g1.input(dhcp_frame(kMacA, wire::dhcp4msg::discover, 7));
    g2.input(dhcp_frame(kMacA, wire::dhcp4msg::discover, 7));
    const Frame* o1 = g1.find_dhcp(wire::dhcp4msg::offer, 7);
    const Frame* o2 = g2.find_dhcp(wire::dhcp4msg::offer, 7);
    ASSERT_TRUE(o1 && o2);
    EXPECT_EQ(dhcp_of(*o1)->yiaddr(), ip("10.0.2.15"));
    EXPECT_EQ(dhcp_of(*o1)->server_id(), ip("10.0.2.2"));
    // The other network's gateway, DNS and pool are .2, .3 and .15 of it.
    EXPECT_EQ(dhcp_of(*o2)->yiaddr(), ip("10.0.3.15"));
    EXPECT_EQ(dhcp_of(*o2)->server_id(), ip("10.0.3.2"));
    auto dns2 = dhcp_of(*o2)->find(wire::dhcp4opt::dns_server);
    ASSERT_TRUE(dns2 && dns2->size() == 4);
    EXPECT_EQ(wire::load32(dns2->data()), ip("10.0.3.3"));

    // Each answers ARP for its own gateway only, on its own NIC only.
    g1.frames.clear();
    g2.frames.clear();
    g1.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.3.2")));
    EXPECT_EQ(g1.find_arp_reply(ip("10.0.3.2")), nullptr);
    g2.input(arp_request(kMacA, ip("10.0.3.15"), ip("10.0.3.2")));
    EXPECT_NE(g2.find_arp_reply(ip("10.0.3.2")), nullptr);
    EXPECT_EQ(g1.find_arp_reply(ip("10.0.3.2")), nullptr);
    g2.frames.clear();
    g1.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.2")));
    EXPECT_NE(g1.find_arp_reply(ip("10.0.2.2")), nullptr);
    EXPECT_TRUE(g2.frames.empty());

    // Counters are per instance.
    usernet_stats s1, s2;
    usernet_get_stats(def, &s1);
    usernet_get_stats(other, &s2);
    EXPECT_EQ(s1.rx_frames, 3u);
    EXPECT_EQ(s2.rx_frames, 2u);

    // Freeing one leaves the other working.
    usernet_nic_free(g1.nic);
    forget(g1);
    usernet_free(def);
    forget(def);
    g2.frames.clear();
    g2.input(arp_request(kMacA, ip("10.0.3.15"), ip("10.0.3.3")));
    EXPECT_NE(g2.find_arp_reply(ip("10.0.3.3")), nullptr);
}

// --- host sockets through usernet_fd() and usernet_poll() ------------------------

TEST_F(CapiTest, Capi_UdpToTheGatewayReachesTheHostLoopbackAndTheReplyComesBack) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    ASSERT_EQ(lease(g), ip("10.0.2.15"));

    uint16_t port = 0;
    const int hs = udp_on_loopback(&port);
    ASSERT_GE(hs, 0);

    const std::string ping = "ping from the guest";
    g.input(udp_frame(kGwMac, kMacA, ip("10.0.2.15"), ip("10.0.2.2"), 40000, port,
                      Bytes(reinterpret_cast<const uint8_t*>(ping.data()), ping.size())));
    char buf[256];
    sockaddr_in from{};
    ssize_t n = -1;
    ASSERT_TRUE(pump(net, [&] {
        pollfd p{hs, POLLIN, 0};
        if (poll(&p, 1, 0) != 1) return false;
        socklen_t flen = sizeof from;
        n = recvfrom(hs, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
        return true;
    })) << "the datagram did not reach the host socket";
    ASSERT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), ping);
    EXPECT_EQ(ntohl(from.sin_addr.s_addr), INADDR_LOOPBACK);
    usernet_stats st;
    usernet_get_stats(net, &st);
    EXPECT_EQ(st.udp_flows, 1u);

    // The reply is for usernet_fd(): readable, then usernet_poll() hands it
    // to the guest.
    const std::string pong = "pong from the host";
    ASSERT_EQ(sendto(hs, pong.data(), pong.size(), 0, reinterpret_cast<sockaddr*>(&from), sizeof from),
              static_cast<ssize_t>(pong.size()));
    pollfd p{usernet_fd(net), POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 2000), 1) << "usernet_fd() did not become readable";
    auto is_pong = [&](const Frame& f) {
        auto ipv = ipv4_of(f);
        if (!ipv || ipv->protocol() != wire::ipproto::udp) return false;
        auto u = wire::UdpView::parse(ipv->payload());
        return u && ipv->src() == ip("10.0.2.2") && ipv->dst() == ip("10.0.2.15") &&
               u->src_port() == port && u->dst_port() == 40000 &&
               u->checksum_ok(ipv->src_addr(), ipv->dst_addr()) &&
               std::string(u->payload().begin(), u->payload().end()) == pong;
    };
    ASSERT_TRUE(pump(net, [&] { return g.find(is_pong) != nullptr; }))
        << "no reply frame among " << g.frames.size();
    EXPECT_EQ(wire::EthernetView::parse(*g.find(is_pong))->dst(), kMacA);
    for (auto id : g.callers) EXPECT_EQ(id, std::this_thread::get_id());
    close(hs);
}

TEST_F(CapiTest, Capi_TcpHostForwardOpensAConnectionToTheGuest) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    ASSERT_EQ(lease(g), ip("10.0.2.15"));
    const uint16_t port = free_loopback_port(SOCK_STREAM);
    ASSERT_NE(port, 0);
    ASSERT_EQ(usernet_add_hostfwd(net, 't', "127.0.0.1", port, nullptr, 8080), 0)
        << usernet_last_error();

    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(c, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int r = connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << std::strerror(errno);
    auto is_syn = [](const Frame& f) {
        auto ipv = ipv4_of(f);
        if (!ipv || ipv->protocol() != wire::ipproto::tcp) return false;
        auto t = wire::TcpView::parse(ipv->payload());
        return t && ipv->dst() == ip("10.0.2.15") && t->dst_port() == 8080 &&
               t->has(wire::tcpflag::syn) && !t->has(wire::tcpflag::ack);
    };
    EXPECT_TRUE(pump(net, [&] { return g.find(is_syn) != nullptr; }))
        << "no SYN to the guest's port 8080 among " << g.frames.size() << " frames";
    close(c);
}

// --- forwards added and removed at run time -------------------------------------

TEST_F(CapiTest, Capi_HostForwardAddedThenRemovedFreesItsPort) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
        const char proto = type == SOCK_STREAM ? 't' : 'u';
        SCOPED_TRACE(proto);
        const uint16_t port = free_loopback_port(type);
        ASSERT_NE(port, 0);
        ASSERT_EQ(usernet_add_hostfwd(net, proto, "127.0.0.1", port, nullptr, 22), 0)
            << usernet_last_error();
        int err = 0;
        EXPECT_FALSE(can_bind(type, "127.0.0.1", port, &err)) << "usernet is not listening";
        EXPECT_EQ(err, EADDRINUSE);
        // Twice on one port: the host refuses.
        EXPECT_EQ(usernet_add_hostfwd(net, proto, "127.0.0.1", port, nullptr, 23), -1);
        EXPECT_NE(std::string(usernet_last_error()).find("in use"), std::string::npos)
            << usernet_last_error();
        // Another address or protocol is another forward.
        EXPECT_EQ(usernet_remove_hostfwd(net, proto, nullptr, port), -1);
        EXPECT_EQ(usernet_remove_hostfwd(net, proto == 't' ? 'u' : 't', "127.0.0.1", port), -1);
        EXPECT_FALSE(can_bind(type, "127.0.0.1", port));

        ASSERT_EQ(usernet_remove_hostfwd(net, proto, "127.0.0.1", port), 0) << usernet_last_error();
        EXPECT_TRUE(can_bind(type, "127.0.0.1", port, &err)) << std::strerror(err);
        // Gone: a second remove fails, and the port can be forwarded again.
        EXPECT_EQ(usernet_remove_hostfwd(net, proto, "127.0.0.1", port), -1);
        ASSERT_EQ(usernet_add_hostfwd(net, proto, "127.0.0.1", port, nullptr, 22), 0)
            << usernet_last_error();
        EXPECT_FALSE(can_bind(type, "127.0.0.1", port));
        EXPECT_EQ(usernet_remove_hostfwd(net, proto, "127.0.0.1", port), 0);
        EXPECT_TRUE(can_bind(type, "127.0.0.1", port));
    }
}

TEST_F(CapiTest, Capi_HostForwardOnEveryAddressIsRemovedWhole) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    const uint16_t port = free_loopback_port(SOCK_STREAM);
    ASSERT_NE(port, 0);
    ASSERT_EQ(usernet_add_hostfwd(net, 't', nullptr, port, nullptr, 80), 0) << usernet_last_error();
    EXPECT_FALSE(can_bind(SOCK_STREAM, "0.0.0.0", port));
    EXPECT_FALSE(can_bind(SOCK_STREAM, "127.0.0.1", port));
    EXPECT_EQ(usernet_remove_hostfwd(net, 't', "127.0.0.1", port), -1);
    EXPECT_EQ(usernet_remove_hostfwd(net, 't', nullptr, port), 0) << usernet_last_error();
    EXPECT_TRUE(can_bind(SOCK_STREAM, "0.0.0.0", port));
}

TEST_F(CapiTest, Capi_RemovingAForwardThatDoesNotExistFailsWithAMessage) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    EXPECT_EQ(usernet_remove_hostfwd(net, 't', "127.0.0.1", 1), -1);
    EXPECT_STRNE(usernet_last_error(), "");
    EXPECT_EQ(usernet_remove_hostfwd(net, 'u', nullptr, 65535), -1);
    EXPECT_STRNE(usernet_last_error(), "");
    EXPECT_EQ(usernet_remove_guestfwd(net, "10.0.2.100", 80), -1);
    EXPECT_STRNE(usernet_last_error(), "");
}

TEST_F(CapiTest, Capi_BadHostForwardsAreRefused) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    const uint16_t port = free_loopback_port(SOCK_STREAM);
    ASSERT_NE(port, 0);
    EXPECT_EQ(usernet_add_hostfwd(net, 'x', "127.0.0.1", port, nullptr, 22), -1);
    EXPECT_NE(std::string(usernet_last_error()).find("proto"), std::string::npos)
        << usernet_last_error();
    EXPECT_EQ(usernet_add_hostfwd(net, 't', "127.0.0.1", 0, nullptr, 22), -1);
    EXPECT_EQ(usernet_add_hostfwd(net, 't', "127.0.0.1", port, nullptr, 0), -1);
    EXPECT_EQ(usernet_add_hostfwd(net, 't', "localhost!", port, nullptr, 22), -1);
    EXPECT_NE(std::string(usernet_last_error()).find("host_addr"), std::string::npos)
        << usernet_last_error();
    // Not an address, or not a guest's: outside the network, its network
    // and broadcast addresses, the gateway and DNS.
    for (const char* bad : {"10.0.2.x", "10.0.3.15", "192.0.2.1", "10.0.2.0", "10.0.2.255",
                            "10.0.2.2", "10.0.2.3", "fec0::2", "fd00::15"}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(usernet_add_hostfwd(net, 't', "127.0.0.1", port, bad, 22), -1);
        EXPECT_NE(std::string(usernet_last_error()).find("guest_addr"), std::string::npos)
            << usernet_last_error();
    }
    // A guest's address, IPv4 or IPv6, is taken whether or not it is leased.
    ASSERT_EQ(usernet_add_hostfwd(net, 't', "127.0.0.1", port, "10.0.2.99", 22), 0)
        << usernet_last_error();
    ASSERT_EQ(usernet_remove_hostfwd(net, 't', "127.0.0.1", port), 0) << usernet_last_error();
    ASSERT_EQ(usernet_add_hostfwd(net, 't', "127.0.0.1", port, "fec0::15", 22), 0)
        << usernet_last_error();
    ASSERT_EQ(usernet_remove_hostfwd(net, 't', "127.0.0.1", port), 0) << usernet_last_error();
    // None of them left a listener behind.
    EXPECT_TRUE(can_bind(SOCK_STREAM, "127.0.0.1", port));
}

TEST_F(CapiTest, Capi_GuestForwardOnAFreeAddressIsAnsweredAndBadOnesAreRefused) {
    usernet_t* net = make();
    ASSERT_TRUE(net);
    Guest& g = attach(net, kMacA);
    // A DHCP lease, the gateway, the DNS address, outside the network, the
    // network and broadcast addresses: refused, with a message.
    for (const char* bad : {"10.0.2.15", "10.0.2.20", "10.0.2.2", "10.0.2.3", "10.0.3.100",
                            "10.0.2.0", "10.0.2.255", "not-an-address"}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(usernet_add_guestfwd(net, bad, 80, "127.0.0.1:8080"), -1);
        EXPECT_STRNE(usernet_last_error(), "");
    }
    EXPECT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 0, "127.0.0.1:8080"), -1);
    EXPECT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 80, "nowhere"), -1);
    EXPECT_STRNE(usernet_last_error(), "");
    EXPECT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 80, nullptr), -1);
    // The gateway does not answer for an address nothing is forwarded on.
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.100")));
    EXPECT_EQ(g.find_arp_reply(ip("10.0.2.100")), nullptr);

    ASSERT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 80, "127.0.0.1:8080"), 0)
        << usernet_last_error();
    EXPECT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 80, "127.0.0.1:8081"), -1);
    EXPECT_NE(std::string(usernet_last_error()).find("already"), std::string::npos)
        << usernet_last_error();
    // Now the address is the gateway's: ARP is answered with its MAC.
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.100")));
    const Frame* f = g.find_arp_reply(ip("10.0.2.100"));
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(arp_of(*f)->sender_mac(), kGwMac);
    // And DHCP never hands it out (it is outside the pool anyway), while a
    // second port on it is fine.
    EXPECT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 81, "cmd:cat"), 0) << usernet_last_error();
    EXPECT_EQ(usernet_remove_guestfwd(net, "10.0.2.100", 80), 0) << usernet_last_error();
    EXPECT_EQ(usernet_remove_guestfwd(net, "10.0.2.100", 80), -1);
    // Port 81 still holds the address.
    g.frames.clear();
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.100")));
    EXPECT_NE(g.find_arp_reply(ip("10.0.2.100")), nullptr);
    // With the last forward on it gone, the address is nobody's again.
    EXPECT_EQ(usernet_remove_guestfwd(net, "10.0.2.100", 81), 0) << usernet_last_error();
    g.frames.clear();
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.100")));
    EXPECT_EQ(g.find_arp_reply(ip("10.0.2.100")), nullptr);
    EXPECT_EQ(usernet_add_guestfwd(net, "10.0.2.100", 80, "127.0.0.1:8082"), 0)
        << usernet_last_error();
    g.frames.clear();
    g.input(arp_request(kMacA, ip("10.0.2.15"), ip("10.0.2.100")));
    EXPECT_NE(g.find_arp_reply(ip("10.0.2.100")), nullptr);
}

// --- bad configurations -------------------------------------------------------------

struct BadConfig {
    const char* what;
    std::function<void(usernet_config&)> edit;
    const char* field;  // in the message
};

TEST_F(CapiTest, Capi_BadConfigurationsGiveNullAndSayWhichField) {
    const std::vector<BadConfig> cases = {
        {"gateway outside the network", [](usernet_config& c) { c.gateway = "10.0.3.2"; }, "gateway"},
        {"dns outside the network", [](usernet_config& c) { c.dns = "192.168.1.1"; }, "dns"},
        {"dhcp_start outside", [](usernet_config& c) { c.dhcp_start = "10.1.2.15"; }, "dhcp_start"},
        {"moved network, old gateway",
         [](usernet_config& c) {
             c.network = "10.0.3.0/24";
             c.gateway = "10.0.2.2";
         },
         "gateway"},
        {"network without a prefix", [](usernet_config& c) { c.network = "10.0.2.0"; }, "network"},
        {"network /31", [](usernet_config& c) { c.network = "10.0.2.0/31"; }, "network"},
        {"network not an address", [](usernet_config& c) { c.network = "ten/24"; }, "network"},
        {"prefix6 /48", [](usernet_config& c) { c.prefix6 = "fd00::/48"; }, "prefix6"},
        {"prefix6 /128", [](usernet_config& c) { c.prefix6 = "fd00::/128"; }, "prefix6"},
        {"prefix6 IPv4", [](usernet_config& c) { c.prefix6 = "10.0.0.0/64"; }, "prefix6"},
        {"prefix6 in ::/8", [](usernet_config& c) { c.prefix6 = "::/64"; }, "prefix6"},
        {"prefix6 multicast", [](usernet_config& c) { c.prefix6 = "ff02::/64"; }, "prefix6"},
        {"prefix6 link-local", [](usernet_config& c) { c.prefix6 = "fe80::/64"; }, "prefix6"},
        {"gateway6 outside prefix6", [](usernet_config& c) { c.gateway6 = "fd00::2"; }, "gateway6"},
        {"dns not an address", [](usernet_config& c) { c.dns = "10.0.2.300"; }, "dns"},
        {"upstream without a port", [](usernet_config& c) {
             static const char* const u[] = {"127.0.0.1:", nullptr};
             c.dns_upstreams = u;
         }, "dns_upstreams"},
        {"gateway is the network address", [](usernet_config& c) { c.gateway = "10.0.2.0"; }, "gateway"},
        {"gateway is the broadcast", [](usernet_config& c) { c.gateway = "10.0.2.255"; }, "gateway"},
        {"dns is the gateway", [](usernet_config& c) { c.dns = "10.0.2.2"; }, "dns"},
        {"dhcp_start is the gateway", [](usernet_config& c) { c.dhcp_start = "10.0.2.2"; }, "dhcp_start"},
        {"dns6 is gateway6", [](usernet_config& c) { c.dns6 = "fec0::2"; }, "dns6"},
        {"tftp_root missing", [](usernet_config& c) { c.tftp_root = "/nonexistent/usernet-tftp"; },
         "tftp_root"},
        {"tftp_root a file", [](usernet_config& c) { c.tftp_root = "/proc/version"; }, "tftp_root"},
        {"a newer version", [](usernet_config& c) { c.version = USERNET_API_VERSION + 1; }, "newer"},
        {"not initialized", [](usernet_config& c) { c.version = 0; }, "usernet_config_init"},
        {"too small", [](usernet_config& c) { c.size = 8; }, "usernet_config_init"},
    };
    for (const BadConfig& bc : cases) {
        SCOPED_TRACE(bc.what);
        usernet_config cfg;
        usernet_config_init(&cfg);
        bc.edit(cfg);
        usernet_t* n = usernet_new(&cfg);
        EXPECT_EQ(n, nullptr);
        if (n) usernet_free(n);
        EXPECT_NE(std::string(usernet_last_error()).find(bc.field), std::string::npos)
            << "message: " << usernet_last_error();
    }
    EXPECT_EQ(usernet_new(nullptr), nullptr);
    EXPECT_STRNE(usernet_last_error(), "");
}

TEST_F(CapiTest, Capi_GoodNonDefaultConfigurationsAreAccepted) {
    // The counterparts of the bad ones: each field set to something valid.
    EXPECT_TRUE(make([](usernet_config& c) {
        c.network = "192.168.77.0/24";
        c.gateway = "192.168.77.1";
        c.dns = "192.168.77.53";
        c.dhcp_start = "192.168.77.100";
        c.prefix6 = "fd00:77::/64";
        c.gateway6 = "fd00:77::1";
        c.dns6 = "fd00:77::53";
        c.domain = "lan.test";
        c.hostname = "guest";
    }));
    EXPECT_TRUE(make([](usernet_config& c) {
        c.ipv6 = 0;
        c.gateway6 = "2001:db8::1";  // ignored without IPv6
        c.restrict_guest = 1;
        c.map_gateway_to_loopback = 0;
    }));
    EXPECT_TRUE(make([](usernet_config& c) {
        static const char* const u[] = {"127.0.0.53", "[::1]:5353", "192.0.2.1:53", nullptr};
        static const char* const s[] = {"a.test", "b.test", nullptr};
        c.dns_upstreams = u;
        c.dns_search = s;
    }));
}

// --- logging -------------------------------------------------------------------------

TEST_F(CapiTest, Capi_LogCallbackGetsMessagesAtTheConfiguredLevelAndAbove) {
    std::vector<LogLine>& dbg = log_a_;
    std::vector<LogLine>& info = log_b_;
    usernet_t* a = make([&](usernet_config& c) {
        c.log = collect_log;
        c.log_opaque = &dbg;
        c.log_level = USERNET_LOG_DEBUG;
    });
    usernet_t* b = make([&](usernet_config& c) {
        c.log = collect_log;
        c.log_opaque = &info;
        c.log_level = USERNET_LOG_INFO;
    });
    ASSERT_TRUE(a && b);
    dbg.clear();
    info.clear();
    // A new forward is logged at debug level.
    const uint16_t pa = free_loopback_port(SOCK_STREAM);
    ASSERT_EQ(usernet_add_hostfwd(a, 't', "127.0.0.1", pa, nullptr, 22), 0);
    auto mentions_forward = [](const std::vector<LogLine>& v) {
        return std::any_of(v.begin(), v.end(), [](const LogLine& l) {
            return l.level == USERNET_LOG_DEBUG && l.msg.find("forward") != std::string::npos;
        });
    };
    EXPECT_TRUE(mentions_forward(dbg)) << dbg.size() << " messages";
    // Only to its own instance's callback.
    EXPECT_TRUE(info.empty());
    // b logs at info and above: its forward's debug message is not passed on.
    const uint16_t pb = free_loopback_port(SOCK_STREAM);
    const size_t before = dbg.size();
    ASSERT_EQ(usernet_add_hostfwd(b, 't', "127.0.0.1", pb, nullptr, 22), 0);
    EXPECT_FALSE(mentions_forward(info));
    EXPECT_EQ(dbg.size(), before);
    for (const LogLine& l : info) EXPECT_GE(l.level, USERNET_LOG_INFO) << l.msg;
    for (const auto* v : {&dbg, &info})
        for (const LogLine& l : *v) {
            EXPECT_FALSE(l.msg.empty());
            EXPECT_EQ(l.msg.find('\n'), std::string::npos) << l.msg;
        }
}

TEST_F(CapiTest, Capi_WarningsReachAWarnLevelCallbackButNotAnErrorLevelOne) {
    // A search list longer than DHCP option 119 holds: a warning while the
    // LAN is built.
    static const std::string kLong(60, 'x');
    static const std::vector<std::string> kNames = [] {
        std::vector<std::string> v;
        for (char c = 'a'; c < 'k'; c++) v.push_back(std::string(1, c) + kLong + ".example" + c);
        return v;
    }();
    static const std::vector<const char*> kSearch = [] {
        std::vector<const char*> v;
        for (const std::string& n : kNames) v.push_back(n.c_str());
        v.push_back(nullptr);
        return v;
    }();
    std::vector<LogLine>& warn = log_a_;
    std::vector<LogLine>& error = log_b_;
    ASSERT_TRUE(make([&](usernet_config& c) {
        c.dns_search = kSearch.data();
        c.log = collect_log;
        c.log_opaque = &warn;  // the default level: warnings
    }));
    ASSERT_TRUE(make([&](usernet_config& c) {
        c.dns_search = kSearch.data();
        c.log = collect_log;
        c.log_opaque = &error;
        c.log_level = USERNET_LOG_ERROR;
    }));
    ASSERT_FALSE(warn.empty());
    EXPECT_EQ(warn[0].level, USERNET_LOG_WARN);
    EXPECT_NE(warn[0].msg.find("search list"), std::string::npos) << warn[0].msg;
    for (const LogLine& l : warn) EXPECT_GE(l.level, USERNET_LOG_WARN) << l.msg;
    EXPECT_TRUE(error.empty()) << (error.empty() ? "" : error[0].msg);
    // Without a callback the same LAN is built silently (nothing to check
    // but that it works).
    ASSERT_TRUE(make([](usernet_config& c) { c.dns_search = kSearch.data(); }));
}

}  // namespace
