// Port forwards: see forward.hpp for the syntax and the theory of operation.
#include "nat/forward.hpp"

#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "nat/nat.hpp"
#include "nat/tcp_nat.hpp"
#include "nat/udp_nat.hpp"

namespace usernet::nat {

// ---------------------------------------------------------------- parsing

namespace {

constexpr std::string_view kSyntax =
    "expected [ADDR[%IFNAME]/]PORT[-END][:[GUESTADDR:]GUESTPORT[-END]][,...] with ports "
    "1-65535 (an IPv6 GUESTADDR in brackets)";

[[noreturn]] void bad(const std::string& what) {
    throw std::invalid_argument(what + "; " + std::string(kSyntax));
}

std::string quoted(std::string_view s) {
    std::string q;
    q.reserve(s.size() + 2);
    return q.append("'").append(s).append("'");
}

struct Range {
    uint32_t first;
    uint32_t last;
    uint32_t size() const { return last - first + 1; }
};

uint32_t parse_port(std::string_view s, std::string_view item) {
    if (s.empty()) bad("missing port number in " + quoted(item));
    if (s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos)
        bad(quoted(s) + " is not a port number");
    uint32_t v = 0;
    for (char c : s) v = v * 10 + static_cast<uint32_t>(c - '0');
    if (v < 1 || v > 65535) bad("port " + quoted(s) + " is out of range 1-65535");
    return v;
}

Range parse_range(std::string_view s, std::string_view item) {
    const size_t dash = s.find('-');
    Range r{};
    r.first = parse_port(s.substr(0, dash), item);
    r.last = dash == std::string_view::npos ? r.first : parse_port(s.substr(dash + 1), item);
    if (r.last < r.first) bad("range " + quoted(s) + " ends before it starts");
    return r;
}

}  // namespace

std::vector<ForwardSpec> parse_forward_specs(char proto, std::string_view text) {
    if (proto != 't' && proto != 'u')
        throw std::invalid_argument("unknown forward protocol " +
                                    quoted(std::string_view(&proto, 1)));
    if (text.empty()) bad("empty port forward");
    if (text == "none") return {};
    if (text == "all" || text == "auto")
        throw std::invalid_argument(quoted(text) +
                                    " is not supported: list the ports to forward, such as "
                                    "8080, 8080:80 or 1000-2000");

    ForwardSpec base;
    base.proto = proto;
    std::string_view ports = text;
    if (const size_t slash = text.find('/'); slash != std::string_view::npos) {
        std::string_view addr = text.substr(0, slash);
        ports = text.substr(slash + 1);
        if (const size_t pct = addr.find('%'); pct != std::string_view::npos) {
            std::string_view ifname = addr.substr(pct + 1);
            addr = addr.substr(0, pct);
            if (ifname.empty() || ifname.size() >= IFNAMSIZ ||
                ifname.find_first_of(" \t%:/") != std::string_view::npos)
                bad(quoted(ifname) + " is not an interface name");
            base.bind_ifname = std::string(ifname);
        }
        if (!addr.empty()) {
            auto ip = wire::IpAddr::parse(addr);
            if (!ip) bad(quoted(addr) + " is not an IPv4 or IPv6 address");
            base.bind_addr = *ip;
            // An address restricts the listener to it: "::" is every IPv6
            // address, not IPv4's as well (passt's meaning).
            base.v6only = !ip->is_v4();
        } else if (base.bind_ifname.empty()) {
            bad("no address before '/' in " + quoted(text));
        }
        if (ports.empty()) bad("no ports after " + quoted(text.substr(0, slash + 1)));
    }

    struct Item {
        Range host;
        Range guest;
        std::optional<wire::IpAddr> guest_addr;
    };
    std::vector<Item> items;
    std::vector<Range> excluded;
    size_t pos = 0;
    while (true) {
        const size_t comma = ports.find(',', pos);
        std::string_view item = ports.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (item.empty()) bad("empty entry in " + quoted(ports));
        if (item[0] == '~') {
            std::string_view r = item.substr(1);
            if (r.find(':') != std::string_view::npos)
                bad("an exclusion cannot map ports: " + quoted(item));
            excluded.push_back(parse_range(r, item));
        } else {
            const size_t colon = item.find(':');
            Item it{};
            it.host = parse_range(item.substr(0, colon), item);
            std::string_view guest =
                colon == std::string_view::npos ? std::string_view{} : item.substr(colon + 1);
            // A guest address of its own: 8080:10.0.2.16:80, 8080:[fec0::16]:80.
            std::string_view gaddr;
            if (guest.starts_with('[')) {
                const size_t close = guest.find(']');
                if (close == std::string_view::npos || close + 1 >= guest.size() ||
                    guest[close + 1] != ':')
                    bad("no ':GUESTPORT' after the guest address in " + quoted(item));
                gaddr = guest.substr(1, close - 1);
                guest = guest.substr(close + 2);
            } else if (const size_t c2 = guest.rfind(':'); c2 != std::string_view::npos) {
                gaddr = guest.substr(0, c2);
                guest = guest.substr(c2 + 1);
            }
            if (!gaddr.empty()) {
                auto ip = wire::IpAddr::parse(gaddr);
                if (!ip || ip->is_unspecified())
                    bad(quoted(gaddr) + " is not a guest's IPv4 or IPv6 address");
                it.guest_addr = *ip;
            }
            it.guest = colon == std::string_view::npos ? it.host : parse_range(guest, item);
            if (it.host.size() != it.guest.size())
                bad(quoted(item) + " maps " + std::to_string(it.host.size()) +
                    " host port(s) onto " + std::to_string(it.guest.size()) + " guest port(s)");
            items.push_back(it);
        }
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    if (items.empty())
        throw std::invalid_argument(quoted(text) +
                                    " only excludes ports; forwarding every other port is not "
                                    "supported: list the ports to forward");

    auto is_excluded = [&](uint32_t p) {
        for (const Range& r : excluded)
            if (p >= r.first && p <= r.last) return true;
        return false;
    };
    std::vector<bool> seen(65536);
    std::vector<ForwardSpec> out;
    for (const Item& it : items) {
        // Split the range around excluded ports.
        uint32_t run_start = 0;
        bool in_run = false;
        for (uint32_t p = it.host.first; p <= it.host.last + 1; p++) {
            const bool take = p <= it.host.last && !is_excluded(p);
            if (take) {
                if (seen[p])
                    bad("port " + std::to_string(p) + " is forwarded twice in " + quoted(text));
                seen[p] = true;
                if (!in_run) {
                    run_start = p;
                    in_run = true;
                }
            } else if (in_run) {
                ForwardSpec s = base;
                s.host_first = static_cast<uint16_t>(run_start);
                s.host_last = static_cast<uint16_t>(p - 1);
                s.guest_first = static_cast<uint16_t>(it.guest.first + (run_start - it.host.first));
                s.guest_last = static_cast<uint16_t>(it.guest.first + (p - 1 - it.host.first));
                s.guest_addr = it.guest_addr;
                out.push_back(std::move(s));
                in_run = false;
            }
        }
    }
    if (out.empty()) bad(quoted(text) + " excludes every port it names");
    return out;
}

ForwardSpec parse_hostfwd(std::string_view text) {
    auto fail = [&](const std::string& what) {
        throw std::invalid_argument(
            what + "; expected [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, such as "
                   "tcp::2222-:22 or tcp:127.0.0.1:8080-10.0.2.16:80");
    };
    ForwardSpec s;
    // The protocol field comes first, empty meaning TCP.
    const size_t first = text.find(':');
    const std::string_view proto = text.substr(0, first);
    if (first == std::string_view::npos || (proto != "" && proto != "tcp" && proto != "udp"))
        fail("no tcp:, udp: or : first in " + quoted(text));
    if (proto == "udp") s.proto = 'u';
    std::string_view rest = text.substr(first + 1);
    const size_t dash = rest.find('-');
    if (dash == std::string_view::npos) fail("no '-' between host and guest in " + quoted(text));
    // ADDR:PORT, the address possibly empty or an IPv6 one in brackets.
    auto side = [&](std::string_view part, bool host, std::optional<wire::IpAddr>& addr) {
        const size_t colon = part.rfind(':');
        if (colon == std::string_view::npos) fail("no ':PORT' in " + quoted(part));
        std::string_view a = part.substr(0, colon);
        if (a.starts_with('[') && a.ends_with(']')) a = a.substr(1, a.size() - 2);
        if (!a.empty()) {
            auto ip = wire::IpAddr::parse(a);
            if (!ip || (!host && ip->is_unspecified()))
                fail(quoted(a) + " is not an IPv4 or IPv6 address");
            if (host || !ip->is_unspecified()) addr = *ip;
        } else if (host) {
            addr = wire::IpAddr::v4(0);  // QEMU's: every IPv4 address
        }
        auto port = std::string_view(part).substr(colon + 1);
        try {
            return parse_port(port, text);
        } catch (const std::invalid_argument& e) {
            // parse_port speaks -t's syntax: keep what was wrong, say ours.
            const std::string what = e.what();
            fail(what.substr(0, what.find("; ")));
            throw;  // not reached: fail() throws
        }
    };
    std::optional<wire::IpAddr> guest;
    s.host_first = s.host_last = static_cast<uint16_t>(side(rest.substr(0, dash), true, s.bind_addr));
    s.guest_first = s.guest_last = static_cast<uint16_t>(side(rest.substr(dash + 1), false, guest));
    s.guest_addr = guest;
    return s;
}

std::string ForwardSpec::to_string() const {
    std::string s = proto == 'u' ? "-u " : "-t ";
    if (bind_addr || !bind_ifname.empty()) {
        if (bind_addr && bind_addr->is_v4()) s.append(bind_addr->to_string());
        else if (bind_addr) s.append("[").append(bind_addr->to_string()).append("]");
        if (!bind_ifname.empty()) s.append("%").append(bind_ifname);
        s.append("/");
    }
    s.append(std::to_string(host_first));
    if (host_last != host_first) s.append("-").append(std::to_string(host_last));
    if (guest_first != host_first || guest_last != host_last || guest_addr) {
        s.append(":");
        if (guest_addr && guest_addr->is_v4()) s.append(guest_addr->to_string()).append(":");
        else if (guest_addr) s.append("[").append(guest_addr->to_string()).append("]:");
        s.append(std::to_string(guest_first));
        if (guest_last != guest_first) s.append("-").append(std::to_string(guest_last));
    }
    return s;
}

// ---------------------------------------------------------------- addresses

wire::IpAddr forward_peer_for_guest(Nat& nat, const wire::IpAddr& client,
                                    const wire::IpAddr& guest) {
    const wire::IpAddr seen = nat.guest_visible(client);
    const gw::NetConfig& cfg = nat.gateway().config();
    const wire::IpAddr gateway = nat.gateway_for(guest);
    if (!cfg.forward_keep_client) return gateway;
    // What the guest could not answer through the gateway appears as the
    // gateway: loopback, a client of the other family, addresses inside
    // the virtual network (the guest would look for them on its link) and
    // link-local ones.
    if (seen.is_loopback() || seen.is_unspecified()) return gateway;
    if (guest.is_v4())
        return !seen.is_v4() || cfg.in_subnet(seen.as_v4()) ? gateway : seen;
    if (seen.is_v4() || cfg.in_prefix6(seen) || wire::is_v6_link_local(seen) ||
        wire::is_v6_multicast(seen))
        return gateway;
    return seen;
}

uint16_t ForwardPortPicker::pick(uint16_t want, const std::function<bool(uint16_t)>& taken) {
    if (want != 0 && !taken(want)) return want;
    for (uint32_t i = 0; i < kTries; i++) {
        const uint16_t p = static_cast<uint16_t>(kFirst + next_);
        next_ = (next_ + 1) % kCount;
        if (!taken(p)) return p;
    }
    return 0;
}

wire::IpAddr forward_target_guest(Nat& nat, const std::optional<wire::IpAddr>& override_addr,
                                  const wire::IpAddr& client) {
    if (override_addr && !override_addr->is_v4()) return *override_addr;
    gw::Gateway& gw = nat.gateway();
    const gw::NetConfig& cfg = gw.config();
    const wire::IpAddr v4 = override_addr ? *override_addr : gw.first_guest_v4();
    // An IPv6 client goes to the guest's IPv6 address when it has one, and
    // so does every client of a guest that has only IPv6.
    if (cfg.ipv6 && (!client.is_v4() || v4.is_unspecified())) {
        const wire::IpAddr v6 = gw.guest_v6_of(v4);
        if (!v6.is_unspecified()) return v6;
    }
    if (!v4.is_unspecified()) return v4;
    // No guest heard from yet (one configured with --config-net that has
    // not sent anything, or one still booting): QEMU's default hostfwd
    // target, the first DHCP address, which is also the address
    // --config-net gives the first namespace. The gateway ARPs for it and
    // the TCP translator's SYN retries cover the wait.
    if (cfg.dhcp_count == 0) return wire::IpAddr{};
    return wire::IpAddr::v4(cfg.dhcp_start);
}

// ---------------------------------------------------------------- TCP listeners

namespace {

constexpr int kMaxAcceptsPerWakeup = 256;
constexpr core::Millis kAcceptPauseMs = 200;

std::string endpoint_text(const wire::IpAddr& a, const std::string& ifname, uint16_t port) {
    std::string s;
    if (a.is_v4()) s = a.to_string();
    else s.append("[").append(a.to_string()).append("]");
    if (!ifname.empty()) s.append("%").append(ifname);
    return s.append(":").append(std::to_string(port));
}

}  // namespace

class Forwarder::TcpListener final : public core::IoHandler {
public:
    TcpListener(Forwarder& fwd, int fd, uint16_t host_port, uint16_t guest_port,
                std::optional<wire::IpAddr> guest_addr)
        : fwd_(fwd),
          fd_(fd),
          host_port_(host_port),
          guest_port_(guest_port),
          guest_addr_(guest_addr),
          resume_([this] { resume(); }) {}
    ~TcpListener() {
        fwd_.nat_.loop().remove(fd_, this);
        close(fd_);
    }
    TcpListener(const TcpListener&) = delete;
    TcpListener& operator=(const TcpListener&) = delete;

    int fd() const { return fd_; }

    void on_io(uint32_t) override {
        for (int i = 0; i < kMaxAcceptsPerWakeup; i++) {
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            int cfd =
                accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (cfd < 0) {
                switch (errno) {
                case EAGAIN:
                    return;
                case EINTR:
                case ECONNABORTED:
                case EPROTO:
                case ENETDOWN:
                case ENOPROTOOPT:
                case EHOSTDOWN:
                case ENONET:
                case EHOSTUNREACH:
                case EOPNOTSUPP:
                case ENETUNREACH:
                    continue;  // the connection is gone; accept(2) says retry
                case EMFILE:
                case ENFILE:
                case ENOBUFS:
                case ENOMEM:
                    pause(errno);
                    return;
                default:
                    fwd_.stats_.accept_errors++;
                    return;
                }
            }
            handle(cfd, ss);
        }
    }

private:
    void handle(int cfd, const sockaddr_storage& ss) {
        Nat& nat = fwd_.nat_;
        auto [client, client_port] = from_sockaddr(ss);
        const wire::IpAddr guest = forward_target_guest(nat, guest_addr_, client);
        if (guest.is_unspecified()) {
            fwd_.stats_.tcp_no_guest++;
            spdlog::debug("tcp forward: no guest yet for {} on port {}: reset", client.to_string(),
                          host_port_);
            reset(cfd);
            return;
        }
        const wire::IpAddr peer = forward_peer_for_guest(nat, client, guest);
        // A client that appears as the gateway keeps its port unless another
        // connection to the same guest port has it already.
        uint16_t peer_port = client_port;
        if (peer != client) {
            peer_port = fwd_.ports_.pick(client_port, [&](uint16_t p) {
                return nat.tcp().has_flow(tcp::FlowKey{guest, peer, guest_port_, p});
            });
            if (peer_port == 0) {
                fwd_.stats_.tcp_refused++;
                reset(cfd);
                return;
            }
        }
        // open_inbound owns cfd from here on, and resets it itself on refusal.
        if (!nat.tcp().open_inbound(cfd, peer, peer_port, guest, guest_port_)) {
            fwd_.stats_.tcp_refused++;
            return;
        }
        fwd_.stats_.tcp_accepted++;
        if (spdlog::should_log(spdlog::level::debug))
            spdlog::debug("tcp forward: {}:{} -> guest {}:{} as {}:{}", client.to_string(),
                          client_port, guest.to_string(), guest_port_, peer.to_string(), peer_port);
    }

    static void reset(int fd) {
        linger lg{1, 0};  // abortive close: the client sees a reset, not an EOF
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }

    // Out of descriptors or memory: the listener would stay readable and spin.
    void pause(int err) {
        fwd_.stats_.accept_paused++;
        if (!warned_) {
            spdlog::warn("tcp forward on port {}: cannot accept ({}); pausing the listener",
                         host_port_, std::strerror(err));
            warned_ = true;
        }
        try {
            fwd_.nat_.loop().modify(fd_, 0, this);
        } catch (const std::system_error&) {
        }
        fwd_.nat_.loop().arm(resume_, kAcceptPauseMs);
    }

    void resume() {
        try {
            fwd_.nat_.loop().modify(fd_, EPOLLIN, this);
        } catch (const std::system_error& e) {
            spdlog::error("tcp forward on port {}: {}", host_port_, e.what());
        }
    }

    Forwarder& fwd_;
    int fd_;
    uint16_t host_port_;
    uint16_t guest_port_;
    std::optional<wire::IpAddr> guest_addr_;
    core::Timer resume_;
    bool warned_ = false;
};

// ---------------------------------------------------------------- Forwarder

Forwarder::Forwarder(Nat& nat) : nat_(nat) {}

Forwarder::~Forwarder() = default;

namespace {

struct Bound {
    int fd;
    uint16_t host_port;
};

// Opens, binds (and for TCP, listens on) one socket. Returns -1 when the
// address family is missing and `optional` says that is fine; throws
// std::runtime_error otherwise.
int open_listener(const ForwardSpec& spec, const wire::IpAddr& addr, uint16_t port, bool optional) {
    const bool tcp = spec.proto == 't';
    const int family = addr.is_v4() ? AF_INET : AF_INET6;
    const std::string where = endpoint_text(addr, spec.bind_ifname, port) + (tcp ? "/tcp" : "/udp");
    auto fail = [&](int err, const char* what) -> int {
        throw std::runtime_error("cannot listen on " + where + ": " +
                                 (what ? std::string(what) + ": " : std::string()) +
                                 std::strerror(err));
    };
    int fd = socket(family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (optional && errno == EAFNOSUPPORT) return -1;
        return fail(errno, nullptr);
    }
    int one = 1;
    if (tcp) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        // Accepted sockets inherit both (TcpNat::open_inbound relies on
        // it): urgent data a client sends before the accept stays in the
        // stream too, and each accepted socket saves two setsockopt calls.
        setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (family == AF_INET6) {
        // All addresses: a separate IPv4 socket takes IPv4. An explicit
        // "::" takes both families, unless the spec says IPv6 only.
        int v6only = !spec.bind_addr || spec.v6only ? 1 : 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (!spec.bind_ifname.empty() &&
        setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, spec.bind_ifname.c_str(),
                   static_cast<socklen_t>(spec.bind_ifname.size())) < 0) {
        int err = errno;
        close(fd);
        return fail(err, ("binding to interface " + spec.bind_ifname).c_str());
    }
    sockaddr_storage ss = to_sockaddr(addr, port);
    if (family == AF_INET6 && !spec.bind_ifname.empty() && addr.b[0] == 0xfe &&
        (addr.b[1] & 0xc0) == 0x80)  // link-local: needs its interface
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_scope_id =
            if_nametoindex(spec.bind_ifname.c_str());
    if (bind(fd, reinterpret_cast<const sockaddr*>(&ss), sockaddr_len(ss)) < 0) {
        int err = errno;
        close(fd);
        if (optional && (err == EADDRNOTAVAIL || err == EAFNOSUPPORT)) return -1;
        return fail(err, nullptr);
    }
    if (tcp && listen(fd, SOMAXCONN) < 0) {
        int err = errno;
        close(fd);
        return fail(err, nullptr);
    }
    return fd;
}

}  // namespace

size_t Forwarder::remove(char proto, const std::optional<wire::IpAddr>& bind_addr,
                         uint16_t host_port) {
    size_t removed = 0;
    for (auto it = bindings_.begin(); it != bindings_.end();) {
        if (it->proto != proto || it->host_port != host_port || it->bind_addr != bind_addr) {
            ++it;
            continue;
        }
        if (proto == 't') {
            const int fd = it->fd;
            std::erase_if(tcp_listeners_, [fd](const auto& l) { return l->fd() == fd; });
        } else {
            nat_.udp().remove_forward_socket(it->fd);
            udp_sockets_--;
        }
        it = bindings_.erase(it);
        removed++;
    }
    return removed;
}

void Forwarder::add(const ForwardSpec& spec) {
    // Host port 0 (one port, as libslirp allows): the kernel picks one.
    const bool any_port = spec.host_first == 0 && spec.host_last == 0;
    if ((spec.proto != 't' && spec.proto != 'u') || (spec.host_first == 0 && !any_port) ||
        spec.host_last < spec.host_first || spec.guest_first == 0 ||
        spec.guest_last < spec.guest_first ||
        spec.guest_last - spec.guest_first != spec.host_last - spec.host_first)
        throw std::invalid_argument("invalid port forward " + spec.to_string());

    std::vector<wire::IpAddr> addrs;
    if (spec.bind_addr) {
        addrs.push_back(*spec.bind_addr);
    } else {
        addrs.push_back(wire::IpAddr::v4(0));
        addrs.push_back(wire::IpAddr{});  // ::, when the host has IPv6
    }
    // Bind everything first, so that a failure leaves nothing half-done.
    std::vector<Bound> bound;
    bool no_v6 = false;
    try {
        for (uint32_t port = spec.host_first; port <= spec.host_last; port++) {
            for (const wire::IpAddr& a : addrs) {
                const bool implicit_v6 = !spec.bind_addr && !a.is_v4();
                if (implicit_v6 && no_v6) continue;
                int fd = open_listener(spec, a, static_cast<uint16_t>(port), implicit_v6);
                if (fd < 0) {
                    no_v6 = true;
                    spdlog::debug("forward {}: no IPv6 on this host, IPv4 only", spec.to_string());
                    continue;
                }
                uint16_t actual = static_cast<uint16_t>(port);
                if (any_port) {
                    // The kernel's choice; the other family's socket takes the same.
                    sockaddr_storage ss{};
                    socklen_t len = sizeof ss;
                    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
                    actual = core::from_sockaddr(ss).second;
                    port = actual;
                }
                bound.push_back(Bound{fd, actual});
            }
            if (any_port) break;
        }
    } catch (...) {
        for (const Bound& b : bound) close(b.fd);
        throw;
    }

    size_t i = 0;
    try {
        for (; i < bound.size(); i++) {
            const uint16_t guest_port = any_port ? spec.guest_first : spec.guest_port(bound[i].host_port);
            if (spec.proto == 't') {
                auto l = std::make_unique<TcpListener>(*this, bound[i].fd, bound[i].host_port,
                                                       guest_port, spec.guest_addr);
                // The listener owns the fd from here on (and removes it from the loop).
                TcpListener* raw = l.get();
                tcp_listeners_.push_back(std::move(l));
                nat_.loop().add(raw->fd(), EPOLLIN, raw);
            } else {
                nat_.udp().add_forward_socket(bound[i].fd, guest_port, spec.guest_addr);
                udp_sockets_++;
            }
            bindings_.push_back(Binding{spec.proto, spec.bind_addr, bound[i].host_port, bound[i].fd,
                                        guest_port, spec.guest_addr});
        }
    } catch (const std::exception& e) {
        for (size_t k = i + 1; k < bound.size(); k++) close(bound[k].fd);
        throw std::runtime_error("cannot listen for " + spec.to_string() + ": " + e.what());
    }
    spdlog::debug("forward {}: {} listening socket(s) for {}{}", spec.to_string(), bound.size(),
                  spec.guest_addr ? spec.guest_addr->to_string() : std::string("the guest"),
                  spec.proto == 't' ? " (tcp)" : " (udp)");
}

}  // namespace usernet::nat
