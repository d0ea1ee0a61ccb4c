// The datagram attachment (see the header for the theory of operation and
// the wire format).
#include "ports/dgram_port.hpp"
#include "ports/netlink_config.hpp"

#include "core/sockaddr.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "wire/ethernet.hpp"

namespace usernet::ports {
namespace {

std::string errstr(int err) { return std::strerror(err); }

const char* kind_name(DgramKind k) {
    switch (k) {
    case DgramKind::udp: return "udp";
    case DgramKind::unix_dgram: return "unix";
    case DgramKind::mcast: return "mcast";
    }
    return "?";
}

// Deep socket buffers, as the stream port has (capped by rmem_max and
// wmem_max): every frame the kernel holds is one usernet need not queue.
void set_socket_buffers(int fd) {
    int v = INT_MAX / 2;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

void set_int(int fd, int level, int name, int value, const char* what) {
    if (setsockopt(fd, level, name, &value, sizeof(value)) < 0)
        throw std::runtime_error(std::string("cannot set ") + what + ": " + errstr(errno));
}

// Errors that mean "nobody at the remote address" rather than "this frame".
bool peer_absent(int e) {
    return e == ENOENT || e == ECONNREFUSED || e == ENOTCONN || e == EHOSTUNREACH ||
           e == ENETUNREACH || e == EDESTADDRREQ || e == EPERM || e == EACCES;
}

}  // namespace

// ---------------------------------------------------------------- SockAddr

SockAddr SockAddr::inet(const wire::IpAddr& addr, uint16_t port) {
    SockAddr s;
    s.ss = core::to_sockaddr(addr, port);
    s.len = core::sockaddr_len(s.ss);
    return s;
}

std::optional<SockAddr> SockAddr::unix_path(std::string_view path) {
    SockAddr s;
    auto* un = reinterpret_cast<sockaddr_un*>(&s.ss);
    if (path.empty() || path.size() >= sizeof(un->sun_path) ||
        path.find('\0') != std::string_view::npos)
        return std::nullopt;
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    s.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return s;
}

SockAddr SockAddr::from(const sockaddr* sa, socklen_t len) {
    SockAddr s;
    len = std::min<socklen_t>(len, sizeof(s.ss));
    std::memcpy(&s.ss, sa, len);
    s.len = len;
    return s;
}

wire::IpAddr SockAddr::ip() const {
    if (family() == AF_INET)
        return wire::IpAddr::v4(ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr));
    if (family() == AF_INET6)
        return wire::IpAddr::v6_from(
            reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr.s6_addr);
    return {};
}

uint16_t SockAddr::port() const {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
    return 0;
}

std::string SockAddr::path() const {
    if (family() != AF_UNIX) return {};
    const auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
    size_t max = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    max = std::min(max, sizeof(un->sun_path));
    return std::string(un->sun_path, strnlen(un->sun_path, max));
}

std::string SockAddr::to_string() const {
    if (family() == AF_UNIX) {
        std::string p = path();
        return p.empty() ? "(unbound unix socket)" : p;
    }
    if (!is_inet()) return "(no address)";
    wire::IpAddr a = ip();
    std::string s = a.to_string();
    if (!a.is_v4()) s = "[" + s + "]";
    return s + ":" + std::to_string(port());
}

bool SockAddr::same(const sockaddr* other, socklen_t other_len) const {
    if (other_len < static_cast<socklen_t>(sizeof(sa_family_t)) || other->sa_family != family())
        return false;
    switch (family()) {
    case AF_INET: {
        if (other_len < static_cast<socklen_t>(sizeof(sockaddr_in))) return false;
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        const auto* b = reinterpret_cast<const sockaddr_in*>(other);
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    case AF_INET6: {
        if (other_len < static_cast<socklen_t>(sizeof(sockaddr_in6))) return false;
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        const auto* b = reinterpret_cast<const sockaddr_in6*>(other);
        return a->sin6_port == b->sin6_port &&
               std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0;
    }
    case AF_UNIX: {
        SockAddr o = from(other, other_len);
        std::string p = path();
        return !p.empty() && p == o.path();
    }
    default:
        return false;
    }
}

// ---------------------------------------------------------------- port

DgramPort::DgramPort(core::EventLoop& loop, sw::Switch& sw, DgramConfig cfg)
    : loop_(loop), sw_(sw), cfg_(std::move(cfg)) {
    name_ = cfg_.name.empty() ? std::string("dgram ") + kind_name(cfg_.kind) + " " +
                                    cfg_.local.to_string()
                              : cfg_.name;
    if (cfg_.kind == DgramKind::mcast) cfg_.remote.reset();
    if (cfg_.remote && cfg_.remote->family() != cfg_.local.family())
        throw std::runtime_error(name_ + ": the local address " + cfg_.local.to_string() +
                                 " and the remote " + cfg_.remote->to_string() +
                                 " are of different families");
    // An Ethernet header and one 802.1Q tag on top of the MTU.
    slot_size_ = std::max<size_t>(cfg_.mtu + wire::kEthHeaderLen + wire::kVlanTagLen,
                                  wire::kEthMinFrame);
    tx_slots_ = std::clamp(kMaxTxQueueBytes / slot_size_, kMinTxSlots, kMaxTxSlots);

    rx_buf_ = std::make_unique_for_overwrite<uint8_t[]>(slot_size_ * kRxBatch);
    rx_msgs_ = std::make_unique<mmsghdr[]>(kRxBatch);
    rx_iov_ = std::make_unique<iovec[]>(kRxBatch);
    rx_from_ = std::make_unique<sockaddr_storage[]>(kRxBatch);
    tx_buf_ = std::make_unique_for_overwrite<uint8_t[]>(slot_size_ * tx_slots_);
    tx_len_ = std::make_unique<uint32_t[]>(tx_slots_);
    tx_msgs_ = std::make_unique<mmsghdr[]>(tx_slots_);
    tx_iov_ = std::make_unique<iovec[]>(tx_slots_);
    for (unsigned i = 0; i < kRxBatch; i++) {
        rx_iov_[i].iov_base = rx_buf_.get() + i * slot_size_;
        rx_iov_[i].iov_len = slot_size_;
    }

    try {
        switch (cfg_.kind) {
        case DgramKind::udp: open_unicast(); break;
        case DgramKind::unix_dgram: open_unix(); break;
        case DgramKind::mcast: open_mcast(); break;
        }
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        if (tx_fd_ >= 0 && tx_fd_ != fd_) close(tx_fd_);
        if (fd_ >= 0) close(fd_);
        if (unix_bound_) unlink(cfg_.local.path().c_str());
        throw;
    }
    sw_.attach(*this);
    attached_ = true;
    if (cfg_.kind == DgramKind::mcast)
        spdlog::info("{}: port {} on multicast group {}, sending from {} (MTU {})", name_, id(),
                     bound_.to_string(), tx_bound_.to_string(), cfg_.mtu);
    else
        spdlog::info("{}: port {} bound to {}, peer {} (MTU {})", name_, id(), bound_.to_string(),
                     cfg_.remote ? cfg_.remote->to_string() : "learned from the first datagram",
                     cfg_.mtu);
}

DgramPort::~DgramPort() {
    for (auto& m : members_) sw_.detach(*m);
    if (attached_) sw_.detach(*this);
    loop_.cancel(retry_timer_);
    if (fd_ >= 0) {
        loop_.remove(fd_, this);
        close(fd_);
    }
    if (tx_fd_ >= 0 && tx_fd_ != fd_) close(tx_fd_);
    if (unix_bound_) {
        struct stat st {};
        std::string p = cfg_.local.path();
        if (lstat(p.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) unlink(p.c_str());
    }
    const auto& s = stats();
    const auto& d = dstats_;
    uint64_t rx = s.rx_frames, tx = s.tx_frames;
    for (const auto& m : members_) {
        rx += m->stats().rx_frames;
        tx += m->stats().tx_frames;
    }
    spdlog::info("{} closed: rx {} frames, tx {} frames, {} tx dropped; dropped in: {} short, {} "
                 "too long, {} from other sources, {} own echoes",
                 name_, rx, tx, s.tx_dropped, d.too_short, d.too_long, d.foreign, d.own_echo);
}

void DgramPort::open_unicast() {
    if (!cfg_.local.is_inet())
        throw std::runtime_error(name_ + ": the local address is not an IP address");
    fd_ = socket(cfg_.local.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("cannot create a UDP socket: " + errstr(errno));
    tx_fd_ = fd_;
    if (cfg_.local.family() == AF_INET6) set_int(fd_, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    set_socket_buffers(fd_);
    if (bind(fd_, cfg_.local.sa(), cfg_.local.len) < 0) {
        int e = errno;
        if (e == EADDRINUSE)
            throw std::runtime_error("UDP " + cfg_.local.to_string() +
                                     " is in use by another program");
        throw std::runtime_error("cannot bind UDP " + cfg_.local.to_string() + ": " + errstr(e));
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    bound_ = SockAddr::from(reinterpret_cast<sockaddr*>(&ss), len);
    tx_bound_ = bound_;
}

void DgramPort::open_unix() {
    if (cfg_.local.family() != AF_UNIX)
        throw std::runtime_error(name_ + ": the local address is not a unix socket path");
    std::string path = cfg_.local.path();
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("socket path " + path + " exists and is not a socket");
        // A datagram socket someone has bound accepts a connect(); a stale
        // file refuses it.
        int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (probe < 0) throw std::runtime_error("cannot create a unix socket: " + errstr(errno));
        int r = connect(probe, cfg_.local.sa(), cfg_.local.len);
        int e = errno;
        close(probe);
        if (r == 0 || e == EAGAIN)
            throw std::runtime_error("socket path " + path + " is in use by another process");
        if (e == ECONNREFUSED) {
            spdlog::info("removing stale socket {}", path);
            if (unlink(path.c_str()) < 0 && errno != ENOENT)
                throw std::runtime_error("cannot remove stale socket " + path + ": " +
                                         errstr(errno));
        } else if (e != ENOENT) {
            throw std::runtime_error("cannot check socket path " + path + ": " + errstr(e));
        }
    }
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("cannot create a unix socket: " + errstr(errno));
    tx_fd_ = fd_;
    set_socket_buffers(fd_);
    // Owner only (srwx------); umask is per process and this runs at
    // start-up, before any other thread exists.
    mode_t old = umask(077);
    int r = bind(fd_, cfg_.local.sa(), cfg_.local.len);
    int e = errno;
    umask(old);
    if (r < 0) {
        if (e == EADDRINUSE)
            throw std::runtime_error("socket path " + path + " is in use by another process");
        throw std::runtime_error("cannot bind socket " + path + ": " + errstr(e));
    }
    unix_bound_ = true;
    if (stat(path.c_str(), &st) == 0) {
        dev_ = st.st_dev;
        ino_ = st.st_ino;
    }
    bound_ = cfg_.local;
    tx_bound_ = bound_;
}

void DgramPort::open_mcast() {
    if (cfg_.local.family() != AF_INET || !IN_MULTICAST(cfg_.local.ip().as_v4()))
        throw std::runtime_error(name_ + ": " + cfg_.local.to_string() +
                                 " is not an IPv4 multicast group (224.0.0.0/4)");
    in_addr group{};
    group.s_addr = htonl(cfg_.local.ip().as_v4());
    in_addr ifaddr{};
    ifaddr.s_addr = htonl(cfg_.mcast_if.value_or(0));

    // Receiving: bound to GROUP:PORT beside every QEMU on the group.
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("cannot create a UDP socket: " + errstr(errno));
    set_int(fd_, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    set_int(fd_, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    set_socket_buffers(fd_);
    if (bind(fd_, cfg_.local.sa(), cfg_.local.len) < 0)
        throw std::runtime_error("cannot bind to multicast group " + cfg_.local.to_string() +
                                 ": " + errstr(errno));
    ip_mreq mreq{};
    mreq.imr_multiaddr = group;
    mreq.imr_interface = ifaddr;
    if (setsockopt(fd_, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0) {
        int e = errno;
        std::string why;
        if (e == ENODEV && cfg_.mcast_if)
            why = " (localaddr=" + wire::ipv4_to_string(*cfg_.mcast_if) +
                  " is not an address of this host: give one that is, as 'ip addr' lists them)";
        else if (e == ENODEV)
            why = " (no interface has a route to the group: add one, such as 'ip route add "
                  "224.0.0.0/4 dev lo', or give localaddr=ADDR)";
        throw std::runtime_error("cannot join multicast group " + cfg_.local.to_string() + ": " +
                                 errstr(e) + why);
    }
    set_int(fd_, IPPROTO_IP, IP_MULTICAST_LOOP, 1, "IP_MULTICAST_LOOP");
    set_int(fd_, IPPROTO_IP, IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL");
    bound_ = cfg_.local;

    // Sending: a socket of our own, so that our datagrams' source (address
    // and ephemeral port) is ours alone and their echo can be recognised.
    tx_fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (tx_fd_ < 0) throw std::runtime_error("cannot create a UDP socket: " + errstr(errno));
    set_socket_buffers(tx_fd_);
    set_int(tx_fd_, IPPROTO_IP, IP_MULTICAST_LOOP, 1, "IP_MULTICAST_LOOP");
    if (cfg_.mcast_if &&
        setsockopt(tx_fd_, IPPROTO_IP, IP_MULTICAST_IF, &ifaddr, sizeof(ifaddr)) < 0)
        throw std::runtime_error("cannot send multicast from " +
                                 wire::ipv4_to_string(*cfg_.mcast_if) + ": " + errstr(errno) +
                                 " (give localaddr= an address of this host)");
    if (!cfg_.mcast_if) {
        // Out of the interface the route to the group names, as QEMU's
        // unconnected sendto() goes. connect() alone would pick a source
        // address first (another interface's, when the route's has none of
        // scope link or wider, as lo) and then send out of the interface
        // that owns it, away from the QEMUs on the group.
        if (unsigned oif = netlink_route_oif_v4(ntohl(group.s_addr))) {
            ip_mreqn m{};
            m.imr_ifindex = static_cast<int>(oif);
            setsockopt(tx_fd_, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof(m));
        }
    }
    if (connect(tx_fd_, cfg_.local.sa(), cfg_.local.len) < 0)
        throw std::runtime_error("cannot send to multicast group " + cfg_.local.to_string() +
                                 ": " + errstr(errno) +
                                 " (add a route for it, such as 'ip route add 224.0.0.0/4 dev "
                                 "lo', or give localaddr=ADDR)");
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    getsockname(tx_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    tx_bound_ = SockAddr::from(reinterpret_cast<sockaddr*>(&ss), len);
}

std::optional<SockAddr> DgramPort::peer() const {
    if (cfg_.kind == DgramKind::mcast) return cfg_.local;
    if (cfg_.remote) return cfg_.remote;
    return learned_;
}

void DgramPort::on_io(uint32_t events) {
    if (events & (EPOLLIN | EPOLLERR)) on_readable();
}

void DgramPort::on_readable() {
    int frames = 0;
    while (frames < kMaxFramesPerWakeup) {
        for (unsigned i = 0; i < kRxBatch; i++) {
            msghdr& h = rx_msgs_[i].msg_hdr;
            h.msg_name = &rx_from_[i];
            h.msg_namelen = sizeof(sockaddr_storage);
            h.msg_iov = &rx_iov_[i];
            h.msg_iovlen = 1;
            h.msg_control = nullptr;
            h.msg_controllen = 0;
            h.msg_flags = 0;
            rx_msgs_[i].msg_len = 0;
        }
        int n = recvmmsg(fd_, rx_msgs_.get(), kRxBatch, MSG_DONTWAIT, nullptr);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                spdlog::debug("{}: receive: {}", name_, errstr(errno));  // a queued ICMP error
            return;
        }
        for (int i = 0; i < n; i++) {
            const msghdr& h = rx_msgs_[i].msg_hdr;
            handle(static_cast<const uint8_t*>(rx_iov_[i].iov_base), rx_msgs_[i].msg_len,
                   h.msg_flags, static_cast<const sockaddr*>(h.msg_name), h.msg_namelen);
        }
        frames += n;
        if (static_cast<unsigned>(n) < kRxBatch) return;  // drained
    }
}

void DgramPort::handle(const uint8_t* buf, size_t len, int flags, const sockaddr* from,
                       socklen_t from_len) {
    if (cfg_.kind == DgramKind::mcast) {
        if (tx_bound_.same(from, from_len)) {
            dstats_.own_echo++;
            return;
        }
    } else if (cfg_.remote && cfg_.peer_only && !cfg_.remote->same(from, from_len) &&
               !(cfg_.remote_alias && cfg_.remote_alias->same(from, from_len))) {
        dstats_.foreign++;
        stats().rx_dropped++;
        if (dstats_.foreign == 1)
            spdlog::warn("{}: dropping datagrams from {}: only {} may send here", name_,
                         SockAddr::from(from, from_len).to_string(), cfg_.remote->to_string());
        return;
    }
    if (len == 0) {  // QEMU's "end of connection"; nothing to do
        dstats_.empty++;
        return;
    }
    if (flags & MSG_TRUNC) {
        // Longer than the slot: an IP packet that fits, followed by junk
        // (QEMU's i82559er sends 1514-byte frames in 2600-byte datagrams),
        // goes on cut to the packet; anything else is too long.
        len = std::min(len, slot_size_);
        auto whole = wire::ip_frame_length(wire::Bytes(buf, len));
        if (!whole) {
            dstats_.too_long++;
            stats().rx_dropped++;
            spdlog::debug("{}: dropped a datagram longer than {} bytes", name_, slot_size_);
            return;
        }
        dstats_.trimmed++;
        len = *whole;
    }
    if (len < wire::kEthHeaderLen) {
        dstats_.too_short++;
        stats().rx_dropped++;
        return;
    }
    if (!cfg_.remote && cfg_.kind != DgramKind::mcast &&
        (!learned_ || !learned_->same(from, from_len))) {
        SockAddr src = SockAddr::from(from, from_len);
        if (src.family() == AF_UNIX && src.path().empty()) {
            // An unbound unix socket cannot be answered.
            dstats_.foreign++;
            stats().rx_dropped++;
            return;
        }
        dstats_.peer_changes++;
        if (dstats_.peer_changes <= 16)
            spdlog::info("{}: port {} peer is {}{}", name_, id(), src.to_string(),
                         learned_ ? " (was " + learned_->to_string() + ")" : std::string());
        learned_ = src;
    }
    if (cfg_.kind == DgramKind::mcast) {
        sw_.input(member_for(buf), wire::Bytes(buf, len));
        return;
    }
    note_mac(buf);
    sw_.input(id(), wire::Bytes(buf, len));
}

sw::PortId DgramPort::member_for(const uint8_t* frame) {
    wire::MacAddr src = wire::MacAddr::from(frame + 6);
    const core::Millis now = loop_.now();
    if (last_member_ < members_.size() && members_[last_member_]->mac() == src) {
        members_[last_member_]->last_seen = now;
        return members_[last_member_]->id();
    }
    for (size_t i = 0; i < members_.size(); i++)
        if (members_[i]->mac() == src) {
            last_member_ = i;
            members_[i]->last_seen = now;
            return members_[i]->id();
        }
    // The switch refuses these sources anyway; they get no port.
    if (src.is_multicast() || src.is_zero()) return id();
    if (members_.size() >= kMaxGroupGuests) {
        size_t idlest = 0;
        for (size_t i = 1; i < members_.size(); i++)
            if (members_[i]->last_seen < members_[idlest]->last_seen) idlest = i;
        if (now - std::min(now, members_[idlest]->last_seen) < kMemberIdleMs) {
            note_mac(frame);
            return id();
        }
        spdlog::info("{}: guest MAC {} silent for {} s, its port {} goes", name_,
                     members_[idlest]->mac().to_string(),
                     (now - members_[idlest]->last_seen) / 1000, members_[idlest]->id());
        sw_.detach(*members_[idlest]);
        members_.erase(members_.begin() + static_cast<std::ptrdiff_t>(idlest));
    }
    members_.push_back(std::make_unique<Member>(*this, src));
    members_.back()->last_seen = now;
    sw_.attach(*members_.back());
    last_member_ = members_.size() - 1;
    spdlog::info("{}: guest MAC {} on the group is port {}", name_, src.to_string(),
                 members_.back()->id());
    if (members_.size() == kMaxGroupGuests && !full_warned_) {
        full_warned_ = true;
        spdlog::warn("{}: {} guests on the group; further MACs share port {} unless a guest "
                     "has been silent for {} s",
                     name_, kMaxGroupGuests, id(), kMemberIdleMs / 1000);
    }
    return members_.back()->id();
}

bool DgramPort::own_port(sw::PortId p) const {
    if (p == id()) return true;
    for (const auto& m : members_)
        if (m->id() == p) return true;
    return false;
}

std::vector<sw::PortId> DgramPort::member_ports() const {
    std::vector<sw::PortId> ids;
    for (const auto& m : members_) ids.push_back(m->id());
    return ids;
}

void DgramPort::note_mac(const uint8_t* frame) {
    wire::MacAddr src = wire::MacAddr::from(frame + 6);
    if (src == last_mac_ || mac_logs_ >= kMaxMacLogs || src.is_multicast() || src.is_zero())
        return;
    last_mac_ = src;
    size_t n = std::min(mac_count_, macs_.size());
    for (size_t i = 0; i < n; i++)
        if (macs_[i] == src) return;
    macs_[mac_count_ % macs_.size()] = src;
    mac_count_++;
    mac_logs_++;
    spdlog::info("{}: port {} guest MAC {}", name_, id(), src.to_string());
}

void DgramPort::deliver(wire::Bytes frame, const sw::FrameMeta& meta) {
    size_t len = frame.size();
    if (cfg_.kind == DgramKind::mcast) {
        // From a guest on the group: the group carried it to everyone.
        if (own_port(meta.ingress)) {
            dstats_.group_local++;
            return;
        }
        // The same flooded frame, handed to the next member port: the same
        // frame of the switch's and the same bytes (a GSO segment the
        // switch cut for us shares its frame's number, not its bytes; two
        // frames with the same bytes do not share a number).
        if (tx_count_ > 0 && meta.seq == last_tx_seq_ && len == last_tx_len_) {
            size_t last = (tx_head_ + tx_count_ - 1) % tx_slots_;
            if (std::memcmp(tx_buf_.get() + last * slot_size_, frame.data(), len) == 0) {
                dstats_.flood_copies++;
                return;
            }
        }
        last_tx_seq_ = meta.seq;
        last_tx_len_ = len;
    }
    if (len == 0 || len > slot_size_ || tx_count_ >= tx_slots_) {
        if (tx_count_ >= tx_slots_) dstats_.tx_queue_full++;
        lost_tx(1, frame.size());
        return;
    }
    size_t slot = (tx_head_ + tx_count_) % tx_slots_;
    uint8_t* p = tx_buf_.get() + slot * slot_size_;
    std::memcpy(p, frame.data(), len);
    if (len < wire::kEthMinFrame) {
        std::memset(p + len, 0, wire::kEthMinFrame - len);
        len = wire::kEthMinFrame;
    }
    tx_len_[slot] = static_cast<uint32_t>(len);
    tx_count_++;
    if (!defer_pending_) {
        defer_pending_ = true;
        loop_.defer(*this);
    }
}

void DgramPort::run_deferred() {
    defer_pending_ = false;
    if (!retry_timer_.armed()) flush();
}

void DgramPort::log_tx_error(int err) {
    // One line per kind of error, not one per frame.
    uint32_t bit = peer_absent(err) ? 1u : 2u;
    if (tx_error_logged_ & bit) {
        spdlog::debug("{}: send to {}: {}", name_, peer() ? peer()->to_string() : "-",
                      errstr(err));
        return;
    }
    tx_error_logged_ |= bit;
    if (peer_absent(err))
        spdlog::warn("{}: nobody at {} yet ({}): frames are dropped until the emulator is there",
                     name_, peer() ? peer()->to_string() : "-", errstr(err));
    else
        spdlog::warn("{}: send to {}: {}", name_, peer() ? peer()->to_string() : "-", errstr(err));
}

void DgramPort::flush() {
    while (tx_count_ > 0) {
        const SockAddr* dest = nullptr;
        if (cfg_.kind != DgramKind::mcast) {  // the multicast socket is connected
            dest = cfg_.remote ? &*cfg_.remote : learned_ ? &*learned_ : nullptr;
            if (!dest) {
                dstats_.tx_no_peer += tx_count_;
                lost_tx(tx_count_);
                tx_head_ = (tx_head_ + tx_count_) % tx_slots_;
                tx_count_ = 0;
                return;
            }
        }
        size_t n = tx_count_;
        for (size_t i = 0; i < n; i++) {
            size_t slot = (tx_head_ + i) % tx_slots_;
            tx_iov_[i].iov_base = tx_buf_.get() + slot * slot_size_;
            tx_iov_[i].iov_len = tx_len_[slot];
            msghdr& h = tx_msgs_[i].msg_hdr;
            h = msghdr{};
            if (dest) {
                h.msg_name = const_cast<sockaddr*>(dest->sa());
                h.msg_namelen = dest->len;
            }
            h.msg_iov = &tx_iov_[i];
            h.msg_iovlen = 1;
        }
        int r = sendmmsg(tx_fd_, tx_msgs_.get(), static_cast<unsigned>(n),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            tx_error_logged_ = 0;  // the next outage is logged again
            tx_head_ = (tx_head_ + static_cast<size_t>(r)) % tx_slots_;
            tx_count_ -= static_cast<size_t>(r);
            continue;
        }
        int e = r < 0 ? errno : EIO;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            // The receiver (or our send buffer) is full: try again shortly,
            // or with the next batch.
            dstats_.tx_retries++;
            if (!retry_timer_.armed()) loop_.arm(retry_timer_, kRetryMs);
            return;
        }
        log_tx_error(e);
        // Nobody there: the whole queue is undeliverable. Anything else:
        // this frame only.
        size_t drop = peer_absent(e) ? tx_count_ : 1;
        dstats_.tx_errors += drop;
        lost_tx(drop);
        tx_head_ = (tx_head_ + drop) % tx_slots_;
        tx_count_ -= drop;
    }
}

}  // namespace usernet::ports
