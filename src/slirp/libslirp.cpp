// libslirp.so.0 on usernet: the ABI of libslirp 4.7 (Debian 12's), so that
// QEMU's -netdev user and slirp4netns run on usernet's engine unchanged.
//
// The types come from the system's own <slirp/libslirp.h> (libslirp-dev),
// so the structures match the library they replace byte for byte; the
// symbol versions come from libslirp.map beside this file. Every function
// of the 4.7 header is here. What differs from libslirp, and why, is in
// docs/embedding.md ("The libslirp drop-in"); in short:
//
// - The stack is usernet's engine (embed/engine.hpp): a translating NAT,
//   no TCP/IP stack of its own toward the host. It needs no timers from the
//   application: slirp_pollfds_fill() adds one descriptor (the engine's
//   epoll set) and lowers the timeout to the engine's next deadline, and
//   slirp_pollfds_poll() runs one batch. select_error changes nothing: the
//   engine never trusts revents, it asks epoll itself. slirp_handle_timer()
//   and the timer callbacks are never needed (router advertisements are
//   the engine's own timer), so none is created.
// - Guest forwards to a callback (QEMU's chardev guestfwd) are ordinary
//   flows whose host side is one end of a socketpair; this file keeps the
//   other end, hands what it reads to the write callback, and writes what
//   slirp_socket_recv() brings.
// - Migration saves what libslirp's version-4 stream can carry for a NAT
//   that translates: the DHCP leases. Live TCP connections do not move (a
//   translating NAT's connections are host sockets); the guest sees them
//   reset, and the forwards come back from the destination's command line.
#include <slirp/libslirp.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "embed/engine.hpp"
#include "gateway/dhcp4_server.hpp"
#include "gateway/gateway.hpp"
#include "nat/forward.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/tcp_nat.hpp"
#include "nat/udp_nat.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/tcp.hpp"

#ifndef USERNET_VERSION
#define USERNET_VERSION "0"
#endif

#define SLIRP_EXPORT extern "C" __attribute__((visibility("default")))

namespace emb = usernet::embed;
namespace wire = usernet::wire;
namespace nat = usernet::nat;
namespace gw = usernet::gw;

namespace {

// libslirp reports misuse and failures with g_critical/g_warning on stderr;
// so do we, for warnings and errors only.
void log_stderr(emb::LogLevel lvl, std::string_view msg) {
    std::fprintf(stderr, "usernet (libslirp): %s: %.*s\n", lvl >= emb::LogLevel::error ? "error" : "warning",
                 static_cast<int>(msg.size()), msg.data());
}

wire::IpAddr v4(in_addr a) { return wire::IpAddr::v4(ntohl(a.s_addr)); }
wire::IpAddr v6(const in6_addr& a) {
    wire::IpAddr r;
    std::memcpy(r.b.data(), a.s6_addr, 16);
    return r;
}

class ChardevForward;

// Guest frames whose answers slirp_pollfds_poll holds back at most.
constexpr uint32_t kHoldFrames = 32;
// A guest frame this large is bulk data, whose answer may wait for the next.
constexpr size_t kBulkFrame = 1024;
// How long the answers to frames handed in on another thread may wait for
// the polling thread (see slirp_input).
// 250 us: QEMU's NE2000 guest downloaded 2 MiB at 9.1-11.3 MB/s with it,
// at 4.8-8.6 with 100 us, 4.5-8.1 with 500 us, 3.7-6.1 with 1 ms, 4.0-4.4
// with 2 ms and 1.8-2.2 with 4 ms
// (bench/results/2026-12-04/ne2k-hold-sweep.txt).
constexpr long kForeignHoldNs = 250'000;

// A frame whose answer can wait a little: a TCP segment without SYN, FIN,
// RST or URG that carries no data (an ACK: what it releases is more of a
// bulk transfer) or is bulk data itself. Anything else (a request, a
// handshake, a close, ARP, DNS, ping) is answered at once.
bool can_wait(wire::Bytes frame) {
    auto eth = wire::EthernetView::parse(frame);
    if (!eth) return false;
    wire::Bytes l4;
    if (eth->ethertype() == wire::ethertype::ipv4) {
        auto ip = wire::Ipv4View::parse(eth->payload());
        if (!ip || ip->protocol() != 6 || ip->is_fragment()) return false;
        l4 = ip->payload();
    } else if (eth->ethertype() == wire::ethertype::ipv6) {
        auto ip = wire::Ipv6View::parse(eth->payload());
        if (!ip || ip->protocol() != 6) return false;
        l4 = ip->payload();
    } else {
        return false;
    }
    auto tcp = wire::TcpView::parse(l4);
    if (!tcp || !tcp->has(wire::tcpflag::ack)) return false;
    using namespace wire::tcpflag;
    if (tcp->flags() & (syn | fin | rst | urg)) return false;
    return tcp->payload().empty() || frame.size() >= kBulkFrame;
}

}  // namespace

// One libslirp instance.
struct Slirp {
    Slirp(const SlirpConfig* cfg, const SlirpCb* cb, void* opaque);
    ~Slirp();

    const SlirpCb* cb;
    void* opaque;
    std::unique_ptr<emb::Engine> engine;
    emb::Nic* nic = nullptr;
    std::vector<std::unique_ptr<ChardevForward>> chardevs;
    uint32_t ip_id = 0;  // for the migration stream: IPv4 packets sent
    bool filled_since_input = true;  // slirp_pollfds_fill since the last slirp_input
    bool direct_poller = false;      // the application polls right after input
    uint32_t inputs_since_poll = 0;  // slirp_input() calls since the last poll
    bool foreign_input = false;      // ... one of them on another thread than polls
    std::thread::id poll_thread;     // the thread of the last slirp_pollfds_poll
    uint32_t foreign_held = 0;       // foreign frames whose answers wait
    int hold_timer = -1;             // timerfd in the engine's epoll set: ends the wait
    struct HoldTimer final : usernet::core::IoHandler {
        int fd = -1;
        void on_io(uint32_t) override {
            uint64_t n;
            while (read(fd, &n, sizeof n) > 0) {
            }
        }
    } hold_handler;
    void hold_foreign();
    void release_foreign();
    uint32_t held = 0;               // frames whose deferred work polls have held
    bool urgent_since_poll = false;  // a frame since the last poll that cannot wait
    in_addr net{}, mask{};

    ChardevForward* chardev(in_addr addr, int port);
};

namespace {

// A guest forward whose host side is the application's write callback
// (QEMU: a chardev). Each guest connection is a socketpair: the NAT's flow
// holds one end, a Conn here the other.
class ChardevForward final : public nat::GuestForwardOpener {
public:
    ChardevForward(Slirp& s, SlirpWriteCb write_cb, void* opaque, in_addr addr, int port)
        : s_(s), write_cb_(write_cb), opaque_(opaque), addr_(addr), port_(port) {}
    ~ChardevForward() {
        while (!conns_.empty()) close_conn(*conns_.back());
    }

    in_addr addr() const { return addr_; }
    int port() const { return port_; }

    int open_connection(uint32_t) override {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
        auto c = std::make_unique<Conn>(*this, sv[0]);
        try {
            s_.engine->loop().add(sv[0], EPOLLIN, c.get());
        } catch (...) {
            close(sv[0]);
            close(sv[1]);
            return -EMFILE;
        }
        conns_.push_back(std::move(c));
        return sv[1];
    }

    // slirp_socket_can_recv: what the newest connection takes now.
    size_t can_recv() const {
        const Conn* c = current();
        if (!c || !c->pending.empty()) return 0;
        int sndbuf = 0, outq = 0;
        socklen_t len = sizeof sndbuf;
        if (getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0 ||
            ioctl(c->fd, SIOCOUTQ, &outq) < 0)
            return 0;
        // The unix socket counts its buffer in memory, not bytes: promise
        // half of what is free; a short write keeps the rest (pending).
        const int room = (sndbuf - outq) / 2;
        return room > 0 ? static_cast<size_t>(room) : 0;
    }

    // slirp_socket_recv: bytes from the application for the guest.
    void recv(const uint8_t* buf, size_t size) {
        Conn* c = current();
        if (!c) return;
        if (!c->pending.empty()) {
            c->pending.append(reinterpret_cast<const char*>(buf), size);
            return;
        }
        ssize_t n = send(c->fd, buf, size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN) {
                close_conn(*c);
                return;
            }
            n = 0;
        }
        if (static_cast<size_t>(n) < size) {
            c->pending.assign(reinterpret_cast<const char*>(buf) + n, size - n);
            s_.engine->loop().modify(c->fd, c->wanted(true), c);
        }
    }

    bool has_connection() const { return current() != nullptr; }

private:
    struct Conn final : usernet::core::IoHandler {
        Conn(ChardevForward& f, int fd_) : fwd(f), fd(fd_) {}
        void on_io(uint32_t events) override { fwd.on_io(*this, events); }
        ChardevForward& fwd;
        int fd;
        std::string pending;  // accepted by slirp_socket_recv, not yet written
        // The guest sent its FIN: nothing more to read, but the application's
        // answer still goes to it (libslirp's CLOSE_WAIT).
        bool guest_done = false;
        uint32_t wanted(bool out) const {
            return (guest_done ? 0u : uint32_t{EPOLLIN}) | (out ? uint32_t{EPOLLOUT} : 0u);
        }
    };

    const Conn* current() const { return conns_.empty() ? nullptr : conns_.back().get(); }
    Conn* current() { return conns_.empty() ? nullptr : conns_.back().get(); }

    void on_io(Conn& c, uint32_t events) {
        if (events & EPOLLOUT) {
            while (!c.pending.empty()) {
                ssize_t n = send(c.fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n <= 0) {
                    if (n < 0 && errno == EAGAIN) break;
                    close_conn(c);
                    return;
                }
                c.pending.erase(0, static_cast<size_t>(n));
            }
            if (c.pending.empty()) {
                s_.engine->loop().modify(c.fd, c.wanted(false), &c);
                // The application stops reading its chardev while
                // can_recv() is 0; tell it to ask again.
                if (s_.cb->notify) s_.cb->notify(s_.opaque);
            }
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (c.guest_done) {
                // The flow is gone altogether (reset, or closed both ways).
                if (events & (EPOLLHUP | EPOLLERR)) close_conn(c);
                return;
            }
            uint8_t buf[16384];
            for (int round = 0; round < 16; round++) {
                ssize_t n = read(c.fd, buf, sizeof buf);
                if (n > 0) {
                    write_cb_(buf, static_cast<size_t>(n), opaque_);
                    continue;
                }
                if (n < 0 && errno == EAGAIN) return;
                if (n == 0 && !(events & (EPOLLHUP | EPOLLERR))) {
                    // Half-closed by the guest: keep the connection current
                    // for the answer (slirp_socket_recv), read no more.
                    c.guest_done = true;
                    s_.engine->loop().modify(c.fd, c.wanted(!c.pending.empty()), &c);
                    return;
                }
                close_conn(c);  // gone, or an error
                return;
            }
        }
    }

    void close_conn(Conn& c) {
        s_.engine->loop().remove(c.fd, &c);
        close(c.fd);
        std::erase_if(conns_, [&](const auto& p) { return p.get() == &c; });
    }

    Slirp& s_;
    SlirpWriteCb write_cb_;
    void* opaque_;
    in_addr addr_;
    int port_;
    std::vector<std::unique_ptr<Conn>> conns_;
};

emb::EngineConfig engine_config(const SlirpConfig* c) {
    emb::EngineConfig e;
    gw::NetConfig& n = e.net;
    const uint32_t net = ntohl(c->vnetwork.s_addr), mask = ntohl(c->vnetmask.s_addr);
    n.prefix_len = static_cast<uint8_t>(__builtin_popcount(mask));
    n.net = net & mask;
    n.gateway = ntohl(c->vhost.s_addr);
    n.dns = ntohl(c->vnameserver.s_addr);
    n.dhcp_start = ntohl(c->vdhcp_start.s_addr);
    n.ipv6 = c->in6_enabled;
    if (n.ipv6) {
        n.prefix6 = v6(c->vprefix_addr6);
        n.prefix6_len = c->vprefix_len;
        n.gateway6 = v6(c->vhost6);
        n.dns6 = v6(c->vnameserver6);
    }
    if (c->vhostname) n.hostname = std::string(c->vhostname).substr(0, 32);
    if (c->tftp_server_name) n.tftp_server_name = c->tftp_server_name;
    if (c->tftp_path) n.tftp_root = c->tftp_path;
    if (c->bootfile) n.bootfile = c->bootfile;
    if (c->vdnssearch)
        for (const char** p = c->vdnssearch; *p; p++) n.dns_search.emplace_back(*p);
    if (c->vdomainname) n.domain = c->vdomainname;
    n.restrict = c->restricted != 0;
    n.map_gateway_to_loopback = !c->disable_host_loopback;
    if (c->version >= 2) {
        if (c->outbound_addr && c->outbound_addr->sin_family == AF_INET)
            n.outbound4 = wire::IpAddr::v4(ntohl(c->outbound_addr->sin_addr.s_addr));
        if (c->outbound_addr6 && c->outbound_addr6->sin6_family == AF_INET6)
            n.outbound6 = v6(c->outbound_addr6->sin6_addr);
    }
    if (c->version >= 3) n.dns_service = !c->disable_dns;
    if (c->version >= 4) n.dhcp4 = !c->disable_dhcp;
    e.log = log_stderr;
    e.log_level = emb::LogLevel::warn;
    return e;
}

}  // namespace

Slirp::Slirp(const SlirpConfig* cfg, const SlirpCb* cb_, void* opaque_) : cb(cb_), opaque(opaque_) {
    net = cfg->vnetwork;
    mask = cfg->vnetmask;
    engine = std::make_unique<emb::Engine>(engine_config(cfg));
    const uint32_t mtu = cfg->if_mtu ? static_cast<uint32_t>(cfg->if_mtu) : 1500;
    nic = &engine->add_nic(
        [this](wire::Bytes f) {
            if (f.size() >= 14 + 20 && f[12] == 0x08 && f[13] == 0x00) ip_id++;
            cb->send_packet(f.data(), f.size(), opaque);
        },
        mtu);
    hold_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (hold_timer < 0) throw std::system_error(errno, std::generic_category(), "timerfd_create");
    hold_handler.fd = hold_timer;
    try {
        engine->loop().add(hold_timer, EPOLLIN, &hold_handler);
    } catch (...) {
        close(hold_timer);
        throw;
    }
}

Slirp::~Slirp() {
    // Guest forwards' sockets first: they live in the engine's loop.
    chardevs.clear();
    engine.reset();
    if (hold_timer >= 0) close(hold_timer);
}

// The first frame of a wait arms the timer that ends it: its expiry makes
// the engine's descriptor readable, which wakes the application's poll.
void Slirp::hold_foreign() {
    if (foreign_held++ > 0) return;
    itimerspec t{};
    t.it_value.tv_nsec = kForeignHoldNs;
    timerfd_settime(hold_timer, 0, &t, nullptr);
}

// The held answers are going now: the timer is not needed.
void Slirp::release_foreign() {
    if (foreign_held == 0) return;
    foreign_held = 0;
    itimerspec t{};
    timerfd_settime(hold_timer, 0, &t, nullptr);
}

ChardevForward* Slirp::chardev(in_addr addr, int port) {
    for (auto& c : chardevs)
        if (c->addr().s_addr == addr.s_addr && c->port() == port) return c.get();
    return nullptr;
}

namespace {

// Why libslirp would refuse this configuration (it returns NULL for the
// same), or nullptr.
const char* config_error(const SlirpConfig* cfg, const SlirpCb* cb) {
    if (!cfg || !cb || !cb->send_packet) return "no configuration or no send_packet callback";
    if (cfg->version < SLIRP_CONFIG_VERSION_MIN || cfg->version > SLIRP_CONFIG_VERSION_MAX)
        return "SlirpConfig version must be 1 to 4";
    if (cfg->if_mtu != 0 && (cfg->if_mtu < 68 || cfg->if_mtu > 65521)) return "if_mtu must be 68..65521";
    if (cfg->if_mru != 0 && (cfg->if_mru < 68 || cfg->if_mru > 65521)) return "if_mru must be 68..65521";
    if (cfg->bootfile && std::strlen(cfg->bootfile) >= 128) return "bootfile is 128 characters or more";
    return nullptr;
}

// libslirp fills in a guest forward's address when it is 0: the network's
// .4 (QEMU reads it back).
in_addr default_guestfwd_addr(const Slirp& s, in_addr a) {
    if (a.s_addr != 0) return a;
    in_addr r;
    r.s_addr = (s.net.s_addr & s.mask.s_addr) | (htonl(0x00000204) & ~s.mask.s_addr);
    return r;
}

template <class F>
int guarded(F&& f) {
    try {
        return f();
    } catch (const std::exception& e) {
        log_stderr(emb::LogLevel::warn, e.what());
        return -1;
    }
}

int add_guest_forward(Slirp* s, in_addr* guest_addr, int guest_port, nat::GuestForwardSpec spec) {
    if (!s || !guest_addr || guest_port <= 0 || guest_port > 65535) return -1;
    *guest_addr = default_guestfwd_addr(*s, *guest_addr);
    spec.addr = v4(*guest_addr);
    spec.port = static_cast<uint16_t>(guest_port);
    return guarded([&] {
        emb::Engine::Scope scope(s->engine.get());
        s->engine->add_guest_forward(spec, true);  // libslirp's rules
        return 0;
    });
}

void append(std::string& out, const char* fmt, auto... args) {
    char line[256];
    int n = std::snprintf(line, sizeof line, fmt, args...);
    if (n > 0) out.append(line, std::min<size_t>(static_cast<size_t>(n), sizeof line - 1));
}

std::string addr_text(const wire::IpAddr& a) {
    return a.is_v4() && a.as_v4() == 0 ? "*" : a.to_string();
}

const char* tcp_state_name(const nat::tcp::FlowState& f) {
    using nat::tcp::Phase;
    switch (f.phase) {
    case Phase::syn_pending: return "SYN_SENT";
    case Phase::syn_rcvd: return "SYN_RCVD";
    case Phase::syn_sent: return "SYN_SENT";
    case Phase::linger: return "TIME_WAIT";
    case Phase::established:
        if (f.guest_fin && f.host_eof) return "LAST_ACK";
        if (f.guest_fin) return "CLOSE_WAIT";
        if (f.host_eof) return "FIN_WAIT_1";
        return "ESTABLISHED";
    case Phase::free: break;
    }
    return "NONE";
}

}  // namespace

// ---------------------------------------------------------------- SLIRP_4.0

SLIRP_EXPORT Slirp* slirp_new(const SlirpConfig* cfg, const SlirpCb* callbacks, void* opaque) {
    if (const char* why = config_error(cfg, callbacks)) {
        log_stderr(emb::LogLevel::error, std::string("slirp_new: ") + why);
        return nullptr;
    }
    try {
        auto* s = new Slirp(cfg, callbacks, opaque);
        if (cfg->version >= 4 && callbacks->init_completed) callbacks->init_completed(s, opaque);
        return s;
    } catch (const std::exception& e) {
        log_stderr(emb::LogLevel::error, std::string("cannot start the network: ") + e.what());
        return nullptr;
    }
}

SLIRP_EXPORT Slirp* slirp_init(int restricted, bool in_enabled, struct in_addr vnetwork,
                               struct in_addr vnetmask, struct in_addr vhost, bool in6_enabled,
                               struct in6_addr vprefix_addr6, uint8_t vprefix_len,
                               struct in6_addr vhost6, const char* vhostname,
                               const char* tftp_server_name, const char* tftp_path,
                               const char* bootfile, struct in_addr vdhcp_start,
                               struct in_addr vnameserver, struct in6_addr vnameserver6,
                               const char** vdnssearch, const char* vdomainname,
                               const SlirpCb* callbacks, void* opaque) {
    SlirpConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.version = 1;
    cfg.restricted = restricted;
    cfg.in_enabled = in_enabled;
    cfg.vnetwork = vnetwork;
    cfg.vnetmask = vnetmask;
    cfg.vhost = vhost;
    cfg.in6_enabled = in6_enabled;
    cfg.vprefix_addr6 = vprefix_addr6;
    cfg.vprefix_len = vprefix_len;
    cfg.vhost6 = vhost6;
    cfg.vhostname = vhostname;
    cfg.tftp_server_name = tftp_server_name;
    cfg.tftp_path = tftp_path;
    cfg.bootfile = bootfile;
    cfg.vdhcp_start = vdhcp_start;
    cfg.vnameserver = vnameserver;
    cfg.vnameserver6 = vnameserver6;
    cfg.vdnssearch = vdnssearch;
    cfg.vdomainname = vdomainname;
    return slirp_new(&cfg, callbacks, opaque);
}

SLIRP_EXPORT void slirp_cleanup(Slirp* slirp) { delete slirp; }

SLIRP_EXPORT void slirp_pollfds_fill(Slirp* slirp, uint32_t* timeout, SlirpAddPollCb add_poll,
                                     void* opaque) {
    if (!slirp || !add_poll) return;
    slirp->filled_since_input = true;
    add_poll(slirp->engine->fd(), SLIRP_POLL_IN, opaque);
    const int t = slirp->engine->timeout_ms();
    if (timeout && t >= 0 && static_cast<uint32_t>(t) < *timeout) *timeout = static_cast<uint32_t>(t);
}

SLIRP_EXPORT void slirp_pollfds_poll(Slirp* slirp, int /*select_error*/, SlirpGetREventsCb,
                                     void*) {
    if (!slirp) return;
    // An application that polls straight after slirp_input, with no fill
    // (no wait) in between, is reading its guest's frames one per loop
    // (slirp4netns): its frames' work can wait for this poll, and while
    // the frames that keep coming can wait (can_wait(): TCP ACKs and bulk
    // segments), for up to kHoldFrames of them, so that a burst is answered
    // in one batch: one ACK and one send() for many guest segments, one
    // peek for the segments many guest ACKs let out. A held poll does not
    // look at the engine either (its epoll_wait would be the only system
    // call besides the application's own read() and poll() for each frame);
    // the first poll with no new frame, which fill's zero timeout (work is
    // pending) brings at once, runs everything. A request, a handshake or
    // a close is never held: waiting would only add to its latency. An
    // application that polls from its own loop after a wait (QEMU with
    // virtio-net, whose main loop hands in the frames) gets every frame's
    // answer before slirp_input returns: its next poll is a wakeup away.
    // One that hands frames in on another thread than the one that polls
    // is not polling after input either, though no fill comes between
    // (QEMU with an NE2000: its vCPU thread transmits while the main loop
    // waits); see slirp_input.
    if (slirp->inputs_since_poll > 0)
        slirp->direct_poller = !slirp->filled_since_input && !slirp->foreign_input;
    slirp->poll_thread = std::this_thread::get_id();
    slirp->foreign_input = false;
    slirp->release_foreign();
    const bool hold = slirp->direct_poller && slirp->inputs_since_poll > 0 &&
                      !slirp->urgent_since_poll &&
                      slirp->held + slirp->inputs_since_poll < kHoldFrames;
    slirp->held = hold ? slirp->held + slirp->inputs_since_poll : 0;
    slirp->inputs_since_poll = 0;
    slirp->urgent_since_poll = false;
    if (hold) return;
    try {
        slirp->engine->poll();
    } catch (const std::exception& e) {
        log_stderr(emb::LogLevel::error, e.what());
    }
}

// What a frame defers runs before slirp_input returns, unless the
// application polls straight after it (see slirp_pollfds_poll), or the
// frame comes from another thread than the one that polls and its answer
// can wait (can_wait(): an ACK or bulk data of a TCP transfer). Those
// answers wait for the polling thread, up to kHoldFrames frames or
// kForeignHoldNs, whose timer wakes it: an emulator whose CPU thread
// transmits (QEMU's NE2000) then gets a burst's answers together, as one
// batch of ACKs or of data, instead of one interrupt per frame: 2 MiB
// downloads at about 9 MB/s against 1 MB/s answering each frame at once,
// and uploads at 1.15x libslirp's (docs/performance.md), while a request,
// which never waits, is answered about as fast as libslirp answers it.
SLIRP_EXPORT void slirp_input(Slirp* slirp, const uint8_t* pkt, int pkt_len) {
    if (!slirp || !pkt || pkt_len < 14) return;
    slirp->inputs_since_poll++;
    slirp->filled_since_input = false;
    const wire::Bytes frame(pkt, static_cast<size_t>(pkt_len));
    const bool waits = can_wait(frame);
    if (!waits) slirp->urgent_since_poll = true;
    bool flush = !slirp->direct_poller;
    // Before the first poll there is no polling thread to compare with
    // (slirp4netns may hand in a frame first): not foreign.
    if (slirp->poll_thread != std::thread::id() &&
        std::this_thread::get_id() != slirp->poll_thread) {
        slirp->foreign_input = true;
        slirp->direct_poller = false;
        // QEMU's classic NICs transmit on the vCPU thread, and its NE2000
        // loses a frame that arrives right behind another: no pure ACK
        // just before the host's answer (TcpNat's delayed ACK).
        slirp->nic->set_small_ring(true);
        flush = !waits || slirp->foreign_held + 1 >= kHoldFrames;
        if (flush) slirp->release_foreign();
        else slirp->hold_foreign();
    }
    try {
        slirp->engine->input(*slirp->nic, frame, flush);
    } catch (const std::exception& e) {
        log_stderr(emb::LogLevel::error, e.what());  // the frame is dropped
    }
}

SLIRP_EXPORT int slirp_add_hostfwd(Slirp* slirp, int is_udp, struct in_addr host_addr,
                                   int host_port, struct in_addr guest_addr, int guest_port) {
    // Host port 0: the kernel picks one (info usernet shows which).
    if (!slirp || host_port < 0 || host_port > 65535 || guest_port <= 0 || guest_port > 65535)
        return -1;
    return guarded([&] {
        nat::ForwardSpec spec;
        spec.proto = is_udp ? 'u' : 't';
        spec.bind_addr = v4(host_addr);  // 0.0.0.0: IPv4 only, as libslirp
        spec.host_first = spec.host_last = static_cast<uint16_t>(host_port);
        spec.guest_first = spec.guest_last = static_cast<uint16_t>(guest_port);
        if (guest_addr.s_addr != 0) spec.guest_addr = v4(guest_addr);
        slirp->engine->add_forward(spec);
        return 0;
    });
}

SLIRP_EXPORT int slirp_remove_hostfwd(Slirp* slirp, int is_udp, struct in_addr host_addr,
                                      int host_port) {
    if (!slirp || host_port <= 0 || host_port > 65535) return -1;
    return slirp->engine->remove_forward(is_udp ? 'u' : 't', v4(host_addr),
                                         static_cast<uint16_t>(host_port)) > 0
               ? 0
               : -1;
}

SLIRP_EXPORT int slirp_add_exec(Slirp* slirp, const char* cmdline, struct in_addr* guest_addr,
                                int guest_port) {
    if (!cmdline) return -1;
    nat::GuestForwardSpec spec;
    spec.kind = nat::GuestForwardSpec::Kind::command;
    spec.command = cmdline;
    return add_guest_forward(slirp, guest_addr, guest_port, std::move(spec));
}

SLIRP_EXPORT int slirp_add_guestfwd(Slirp* slirp, SlirpWriteCb write_cb, void* opaque,
                                    struct in_addr* guest_addr, int guest_port) {
    if (!slirp || !write_cb || !guest_addr) return -1;
    const in_addr addr = default_guestfwd_addr(*slirp, *guest_addr);
    auto fwd = std::make_unique<ChardevForward>(*slirp, write_cb, opaque, addr, guest_port);
    nat::GuestForwardSpec spec;
    spec.kind = nat::GuestForwardSpec::Kind::embedder;
    spec.opener = fwd.get();
    const int r = add_guest_forward(slirp, guest_addr, guest_port, std::move(spec));
    if (r == 0) slirp->chardevs.push_back(std::move(fwd));
    return r;
}

SLIRP_EXPORT size_t slirp_socket_can_recv(Slirp* slirp, struct in_addr guest_addr, int guest_port) {
    if (!slirp) return 0;
    ChardevForward* f = slirp->chardev(guest_addr, guest_port);
    return f ? f->can_recv() : 0;
}

SLIRP_EXPORT void slirp_socket_recv(Slirp* slirp, struct in_addr guest_addr, int guest_port,
                                    const uint8_t* buf, int size) {
    if (!slirp || !buf || size <= 0) return;
    ChardevForward* f = slirp->chardev(guest_addr, guest_port);
    if (!f) return;
    emb::Engine::Scope scope(slirp->engine.get());
    f->recv(buf, static_cast<size_t>(size));
    slirp->engine->run_pending();
}

SLIRP_EXPORT char* slirp_connection_info(Slirp* slirp) {
    std::string out;
    // libslirp's header, column for column.
    out += "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\n";
    if (slirp) {
        emb::Engine& e = *slirp->engine;
        e.nat().forwarder().for_each_listener(
            [&](char proto, int fd, uint16_t guest_port, const std::optional<wire::IpAddr>& guest) {
                sockaddr_storage ss{};
                socklen_t len = sizeof ss;
                getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
                auto [a, port] = usernet::core::from_sockaddr(ss);
                // Where it goes: its guest, else the first lease address
                // (libslirp's default guest).
                const wire::IpAddr to =
                    guest ? *guest : wire::IpAddr::v4(e.gateway().config().dhcp_start);
                append(out, "%-19s %3d %15s %5d %15s %5d %5d %5d\n",
                       proto == 't' ? "  TCP[HOST_FORWARD]" : "  UDP[HOST_FORWARD]", fd,
                       addr_text(a).c_str(), port, addr_text(to).c_str(), guest_port, 0, 0);
            });
        e.nat().tcp().for_each_flow([&](const nat::tcp::FlowState& f) {
            std::string state = std::string("  TCP[") + tcp_state_name(f) + "]";
            append(out, "%-19s %3d %15s %5d %15s %5d %5d %5d\n", state.c_str(), f.fd,
                   f.key.guest.to_string().c_str(), f.key.guest_port, f.key.remote.to_string().c_str(),
                   f.key.remote_port, 0, 0);
        });
        append(out, "  %-19s %zu open\n", "UDP", e.nat().udp().flow_count());
        append(out, "  %-19s %zu open\n", "ICMP", e.nat().icmp().flow_count());
    }
    char* r = static_cast<char*>(std::malloc(out.size() + 1));
    if (r) std::memcpy(r, out.c_str(), out.size() + 1);
    return r;
}

// The version-4 stream of libslirp: no guest-forward connections (byte 0),
// then ip_id and the 16 DHCP leases from the pool's first address, each an
// "allocated" flag and a MAC, all big-endian. A real libslirp loads it, and
// this loads a real libslirp's (its connection records are skipped: the
// connections they describe do not exist here).
SLIRP_EXPORT void slirp_state_save(Slirp* s, SlirpWriteCb write_cb, void* opaque) {
    if (!s || !write_cb) return;
    uint8_t buf[131] = {};
    size_t n = 1;  // no connection records
    buf[n++] = static_cast<uint8_t>(s->ip_id >> 8);
    buf[n++] = static_cast<uint8_t>(s->ip_id);
    const gw::Dhcp4Leases& leases = s->engine->gateway().dhcp().leases();
    const gw::NetConfig& c = s->engine->config();
    const usernet::core::Millis now = usernet::core::monotonic_ms();
    for (uint32_t i = 0; i < 16; i++) {
        const gw::Dhcp4Leases::Lease* l = leases.lease_at(c.dhcp_start + i);
        const bool held = l && l->state == gw::Dhcp4Leases::State::bound && l->expires > now;
        buf[n++] = 0;
        buf[n++] = held ? 1 : 0;
        if (held) std::memcpy(buf + n, l->mac.b.data(), 6);
        n += 6;
    }
    write_cb(buf, n, opaque);
}

SLIRP_EXPORT int slirp_state_load(Slirp* s, int version_id, SlirpReadCb read_cb, void* opaque) {
    if (!s || !read_cb) return -EINVAL;
    uint8_t b = 0;
    if (read_cb(&b, 1, opaque) != 1) return -EINVAL;
    // A connection record (a chardev guest forward's TCP connection) cannot
    // be taken over: its length depends on its buffers, so refuse cleanly.
    if (b != 0) return -EINVAL;
    if (version_id > 4) return -EINVAL;
    uint8_t id[2] = {};
    if (version_id >= 2 && read_cb(id, 2, opaque) != 2) return -EINVAL;
    s->ip_id = static_cast<uint32_t>(id[0]) << 8 | id[1];
    if (version_id < 3) return 0;
    uint8_t leases[16 * 8];
    if (read_cb(leases, sizeof leases, opaque) != static_cast<ssize_t>(sizeof leases)) return -EINVAL;
    emb::Engine::Scope scope(s->engine.get());
    gw::Dhcp4Leases& table = s->engine->gateway().dhcp().leases();
    const gw::NetConfig& c = s->engine->config();
    const usernet::core::Millis now = usernet::core::monotonic_ms();
    for (uint32_t i = 0; i < 16; i++) {
        const uint8_t* e = leases + i * 8;
        if ((e[0] << 8 | e[1]) == 0) continue;
        wire::MacAddr mac;
        std::memcpy(mac.b.data(), e + 2, 6);
        table.bind(gw::Dhcp4ClientKey::from_mac(mac), mac, c.dhcp_start + i, now);
    }
    return 0;
}

SLIRP_EXPORT int slirp_state_version(void) { return 4; }

SLIRP_EXPORT const char* slirp_version_string(void) { return "4.7.0 (usernet " USERNET_VERSION ")"; }

// ---------------------------------------------------------------- SLIRP_4.2

SLIRP_EXPORT int slirp_add_unix(Slirp* slirp, const char* unixsock, struct in_addr* guest_addr,
                                int guest_port) {
    if (!unixsock || std::strlen(unixsock) >= sizeof(sockaddr_un{}.sun_path)) return -1;
    nat::GuestForwardSpec spec;
    spec.kind = nat::GuestForwardSpec::Kind::unix_socket;
    spec.path = unixsock;
    return add_guest_forward(slirp, guest_addr, guest_port, std::move(spec));
}

SLIRP_EXPORT int slirp_remove_guestfwd(Slirp* slirp, struct in_addr guest_addr, int guest_port) {
    if (!slirp || guest_port <= 0 || guest_port > 65535) return -1;
    if (!slirp->engine->remove_guest_forward(v4(guest_addr), static_cast<uint16_t>(guest_port)))
        return -1;
    std::erase_if(slirp->chardevs, [&](const auto& c) {
        return c->addr().s_addr == guest_addr.s_addr && c->port() == guest_port;
    });
    return 0;
}

// ---------------------------------------------------------------- SLIRP_4.5

SLIRP_EXPORT int slirp_add_hostxfwd(Slirp* slirp, const struct sockaddr* haddr, socklen_t haddrlen,
                                    const struct sockaddr* gaddr, socklen_t gaddrlen, int flags) {
    if (!slirp || !haddr || !gaddr) return -1;
    return guarded([&] {
        sockaddr_storage hs{}, gs{};
        std::memcpy(&hs, haddr, std::min<size_t>(haddrlen, sizeof hs));
        std::memcpy(&gs, gaddr, std::min<size_t>(gaddrlen, sizeof gs));
        if ((hs.ss_family != AF_INET && hs.ss_family != AF_INET6) ||
            (gs.ss_family != AF_INET && gs.ss_family != AF_INET6))
            return -1;
        auto [ha, hp] = usernet::core::from_sockaddr(hs);
        auto [ga, gp] = usernet::core::from_sockaddr(gs);
        if (gp == 0) return -1;  // host port 0: the kernel picks one
        nat::ForwardSpec spec;
        spec.proto = (flags & SLIRP_HOSTFWD_UDP) ? 'u' : 't';
        // "::" without V6ONLY takes both families, as libslirp's does.
        spec.bind_addr = ha;
        spec.v6only = (flags & SLIRP_HOSTFWD_V6ONLY) != 0;
        spec.host_first = spec.host_last = hp;
        spec.guest_first = spec.guest_last = gp;
        if (!ga.is_unspecified()) spec.guest_addr = ga;
        slirp->engine->add_forward(spec);
        return 0;
    });
}

SLIRP_EXPORT int slirp_remove_hostxfwd(Slirp* slirp, const struct sockaddr* haddr,
                                       socklen_t haddrlen, int flags) {
    if (!slirp || !haddr) return -1;
    sockaddr_storage hs{};
    std::memcpy(&hs, haddr, std::min<size_t>(haddrlen, sizeof hs));
    if (hs.ss_family != AF_INET && hs.ss_family != AF_INET6) return -1;
    auto [ha, hp] = usernet::core::from_sockaddr(hs);
    return slirp->engine->remove_forward((flags & SLIRP_HOSTFWD_UDP) ? 'u' : 't', ha, hp) > 0 ? 0
                                                                                             : -1;
}

SLIRP_EXPORT char* slirp_neighbor_info(Slirp* slirp) {
    std::string out;
    append(out, "  %5s  %-17s  %s\n", "Table", "MacAddr", "IP Address");
    if (slirp) {
        slirp->engine->gateway().for_each_neighbor4([&](const wire::IpAddr& ip, const wire::MacAddr& mac) {
            append(out, "  %5s  %-17s  %s\n", ip.is_v4() ? "ARP" : "NDP", mac.to_string().c_str(),
                   ip.to_string().c_str());
        });
    }
    char* r = static_cast<char*>(std::malloc(out.size() + 1));
    if (r) std::memcpy(r, out.c_str(), out.size() + 1);
    return r;
}

// ---------------------------------------------------------------- SLIRP_4.7

// Timers are the engine's own (slirp_pollfds_fill gives their deadline):
// slirp_new never asks the application for one, so no id ever comes back.
SLIRP_EXPORT void slirp_handle_timer(Slirp*, SlirpTimerId, void*) {}
