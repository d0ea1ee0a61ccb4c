// UDP NAT: see udp_nat.hpp for the theory of operation.
#include "nat/udp_nat.hpp"

#include <linux/errqueue.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "nat/forward.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/nat.hpp"
#include "wire/icmp4.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/udp.hpp"

namespace usernet::nat {

// ---------------------------------------------------------------- FlowLru

struct FlowLru::OwnerList {
    Entry* head = nullptr;  // most recently used
    Entry* tail = nullptr;
    uint32_t count = 0;
};

FlowLru::FlowLru(uint32_t max_total, uint32_t max_per_owner)
    : max_total_(std::max<uint32_t>(max_total, 1)),
      max_per_owner_(std::max<uint32_t>(max_per_owner, 1)) {}

FlowLru::~FlowLru() = default;

FlowLru::Entry* FlowLru::victim_for(Owner owner) const {
    auto it = owners_.find(owner);
    if (it != owners_.end() && it->second->count >= max_per_owner_) return it->second->tail;
    if (count_ >= max_total_) return tail_;
    return nullptr;
}

FlowLru::Entry* FlowLru::any_of(Owner owner) const {
    auto it = owners_.find(owner);
    return it == owners_.end() ? nullptr : it->second->tail;
}

void FlowLru::insert(Entry& e, Owner owner, core::Millis now) {
    if (e.linked()) erase(e);
    std::unique_ptr<OwnerList>& ol = owners_[owner];
    if (!ol) ol = std::make_unique<OwnerList>();
    e.owner_ = owner;
    e.last_used_ = now;
    e.list_ = ol.get();
    // global list, at the head
    e.prev_ = nullptr;
    e.next_ = head_;
    if (head_) head_->prev_ = &e;
    head_ = &e;
    if (!tail_) tail_ = &e;
    // owner's list, at the head
    e.owner_prev_ = nullptr;
    e.owner_next_ = ol->head;
    if (ol->head) ol->head->owner_prev_ = &e;
    ol->head = &e;
    if (!ol->tail) ol->tail = &e;
    ol->count++;
    count_++;
}

void FlowLru::touch(Entry& e, core::Millis now) {
    e.last_used_ = now;
    if (head_ != &e) {
        // unlink from the global list (e is not the head, so it has a prev)
        e.prev_->next_ = e.next_;
        if (e.next_)
            e.next_->prev_ = e.prev_;
        else
            tail_ = e.prev_;
        e.prev_ = nullptr;
        e.next_ = head_;
        head_->prev_ = &e;
        head_ = &e;
    }
    OwnerList* ol = e.list_;
    if (ol->head != &e) {
        e.owner_prev_->owner_next_ = e.owner_next_;
        if (e.owner_next_)
            e.owner_next_->owner_prev_ = e.owner_prev_;
        else
            ol->tail = e.owner_prev_;
        e.owner_prev_ = nullptr;
        e.owner_next_ = ol->head;
        ol->head->owner_prev_ = &e;
        ol->head = &e;
    }
}

void FlowLru::erase(Entry& e) {
    OwnerList* ol = e.list_;
    if (!ol) return;
    if (e.prev_)
        e.prev_->next_ = e.next_;
    else
        head_ = e.next_;
    if (e.next_)
        e.next_->prev_ = e.prev_;
    else
        tail_ = e.prev_;
    if (e.owner_prev_)
        e.owner_prev_->owner_next_ = e.owner_next_;
    else
        ol->head = e.owner_next_;
    if (e.owner_next_)
        e.owner_next_->owner_prev_ = e.owner_prev_;
    else
        ol->tail = e.owner_prev_;
    e.prev_ = e.next_ = e.owner_prev_ = e.owner_next_ = nullptr;
    e.list_ = nullptr;
    count_--;
    if (--ol->count == 0) owners_.erase(e.owner_);
}

size_t FlowLru::owner_size(Owner owner) const {
    auto it = owners_.find(owner);
    return it == owners_.end() ? 0 : it->second->count;
}

// ---------------------------------------------------------------- flows

struct UdpNat::FlowSock final : core::IoHandler {
    Flow* flow = nullptr;
    int fd = -1;
    void on_io(uint32_t events) override;
};

struct UdpNat::Flow final : FlowLru::Entry {
    UdpNat* nat = nullptr;
    wire::IpAddr guest;
    uint16_t guest_port = 0;
    bool dns_only = true;  // every destination so far was port 53
    FlowSock s4, s6;
    // The last destination that host_target sent elsewhere than its own
    // address (the DNS address -> the upstream resolver): what comes back
    // from alias_host:alias_host_port appears from alias_guest:alias_guest_port.
    bool has_alias = false;
    uint16_t alias_host_port = 0;
    uint16_t alias_guest_port = 0;
    wire::IpAddr alias_host;
    wire::IpAddr alias_guest;

    // The address and port a host-side peer has in the guest's view.
    std::pair<wire::IpAddr, uint16_t> guest_view(const Nat& n, const wire::IpAddr& a,
                                                 uint16_t port) const {
        if (has_alias && a == alias_host && port == alias_host_port)
            return {alias_guest, alias_guest_port};
        return {n.guest_visible(a), port};
    }
};

void UdpNat::FlowSock::on_io(uint32_t events) { flow->nat->flow_io(*flow, *this, events); }

struct UdpNat::Listener final : core::IoHandler {
    UdpNat* nat = nullptr;
    int fd = -1;
    uint16_t guest_port = 0;
    std::optional<wire::IpAddr> guest_addr;
    void on_io(uint32_t) override { nat->listener_read(*this); }
};

// A client of a -u forward, as the guest sees it (key) and as it really is.
// The host address a forwarded client sent to, from IP_PKTINFO or
// IPV6_PKTINFO: replies leave from it, so that a client that sent to one of
// several addresses of the host (127.0.0.2, a second address of an
// interface) hears from that one and not from the route's preferred
// source, which a connected client socket would drop.
struct LocalAddr {
    sa_family_t family = AF_UNSPEC;  // none known
    in_addr v4{};
    in6_addr v6{};
    int ifindex = 0;  // for a link-local IPv6 address
};

namespace {

LocalAddr local_of(const msghdr& h) {
    LocalAddr a;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
        if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(in_pktinfo))) {
            in_pktinfo pi;
            std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
            // ipi_spec_dst: the local address a reply should come from
            // (a unicast one even for a broadcast).
            a.family = AF_INET;
            a.v4 = pi.ipi_spec_dst;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
                   c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
            in6_pktinfo pi;
            std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
            if (IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr)) continue;
            if (IN6_IS_ADDR_V4MAPPED(&pi.ipi6_addr)) {
                // An IPv4 client of a dual-stack socket: not a broadcast
                // or multicast destination.
                uint32_t v4;
                std::memcpy(&v4, &pi.ipi6_addr.s6_addr[12], 4);
                v4 = ntohl(v4);
                if (v4 == 0xffffffff || (v4 >> 28) >= 0xe) continue;
            }
            a.family = AF_INET6;
            a.v6 = pi.ipi6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr)) a.ifindex = static_cast<int>(pi.ipi6_ifindex);
        }
    }
    return a;
}

// A reply to a forwarded client, from the address it sent to when known.
ssize_t send_reply(int fd, wire::Bytes data, const sockaddr_storage& to, const LocalAddr& from) {
    iovec iov{const_cast<uint8_t*>(data.data()), data.size()};
    msghdr m = datagram_msg(to, &iov);
    alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
    if (from.family != AF_UNSPEC) {
        m.msg_control = control;
        cmsghdr* c = reinterpret_cast<cmsghdr*>(control);
        if (from.family == AF_INET) {
            in_pktinfo pi{};
            pi.ipi_spec_dst = from.v4;
            c->cmsg_level = SOL_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
            m.msg_controllen = CMSG_SPACE(sizeof pi);
        } else {
            in6_pktinfo pi{};
            pi.ipi6_addr = from.v6;
            pi.ipi6_ifindex = static_cast<unsigned>(from.ifindex);
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
            m.msg_controllen = CMSG_SPACE(sizeof pi);
        }
    }
    ssize_t n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && m.msg_control && (errno == EINVAL || errno == EADDRNOTAVAIL)) {
        // The address has gone meanwhile: from wherever the route says.
        m.msg_control = nullptr;
        m.msg_controllen = 0;
        n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    return n;
}

}  // namespace

struct UdpNat::Peer final : FlowLru::Entry {
    PeerKey key;
    Listener* listener = nullptr;
    sockaddr_storage client{};
    LocalAddr local;  // where client sent to
    std::optional<ClientKey> masq;  // in peers_by_host_client_ under this key
};

size_t UdpNat::KeyHash::operator()(const FlowKey& k) const noexcept {
    return wire::IpAddrHash{}(k.addr) ^ (size_t{k.port} * 0x9e3779b97f4a7c15ULL);
}

size_t UdpNat::KeyHash::operator()(const ClientKey& k) const noexcept {
    size_t h = wire::IpAddrHash{}(k.addr);
    h ^= std::hash<const void*>{}(k.listener) * 31;
    h ^= size_t{k.port} * 0x9e3779b97f4a7c15ULL;
    return h;
}

size_t UdpNat::KeyHash::operator()(const PeerKey& k) const noexcept {
    size_t h = wire::IpAddrHash{}(k.guest);
    h ^= wire::IpAddrHash{}(k.peer) * 31;
    h ^= ((size_t{k.guest_port} << 16) | k.peer_port) * 0x9e3779b97f4a7c15ULL;
    return h;
}

namespace {

constexpr unsigned kMaxReadRounds = 4;  // recvmmsg batches per wakeup and socket
constexpr core::Millis kSweepMs = 1000;
// What an ICMP error quotes of a datagram's payload: with the outer IP and
// ICMP headers and the quoted IP and UDP headers, 576 bytes (RFC 1812
// 4.3.2.3); for ICMPv6, 1280 (RFC 4443 2.4 (c)).
constexpr size_t kQuotePayload = 576 - 20 - 8 - 20 - 8;
constexpr size_t kQuotePayload6 = 1280 - 40 - 8 - 40 - 8;

bool debug_on() { return spdlog::should_log(spdlog::level::debug); }

void close_sock(core::EventLoop& loop, UdpNat::FlowSock& s);

}  // namespace

UdpNat::UdpNat(Nat& nat)
    : nat_(nat),
      loop_(nat.loop()),
      gw_(nat.gateway()),
      lru_(nat.limits().udp_flows, nat.limits().udp_flows_per_guest),
      peer_lru_(nat.limits().udp_flows, nat.limits().udp_flows_per_guest),
      sweep_([this] {
          expire_idle();
          arm_sweep();
      }),
      rx_bufs_(std::make_unique_for_overwrite<uint8_t[]>(kBatch * kBufSize)),
      rx_msgs_(kBatch),
      rx_iov_(kBatch),
      rx_names_(kBatch),
      rx_ctrl_(kBatch) {
    for (unsigned i = 0; i < kBatch; i++) {
        rx_iov_[i] = iovec{rx_bufs_.get() + i * kBufSize, kBufSize};
        msghdr& h = rx_msgs_[i].msg_hdr;
        h = msghdr{};
        h.msg_name = &rx_names_[i];
        h.msg_iov = &rx_iov_[i];
        h.msg_iovlen = 1;
    }
}

UdpNat::~UdpNat() {
    while (!flows_.empty()) destroy_flow(*flows_.begin()->second);
    while (!peers_.empty()) destroy_peer(*peers_.begin()->second);
    for (auto& l : listeners_) {
        loop_.remove(l->fd, l.get());
        close(l->fd);
    }
}

uint32_t UdpNat::idle_ms_for(bool dns_only) const {
    return dns_only ? nat_.limits().udp_dns_idle_ms : nat_.limits().udp_idle_ms;
}

// ---------------------------------------------------------------- guest -> host

void UdpNat::from_guest(const gw::GuestPacket& pkt) {
    auto udp = wire::UdpView::parse(pkt.l4);
    if (!udp || udp->src_port() == 0 || udp->dst_port() == 0) {
        stats_.dropped_malformed++;
        nat_.stats().dropped_malformed++;
        return;
    }
    if (!pkt.l4_csum_trusted && !udp->checksum_ok(pkt.src, pkt.dst)) {
        stats_.dropped_checksum++;
        nat_.stats().dropped_malformed++;
        return;
    }
    const core::Millis now = loop_.now();
    const uint16_t sport = udp->src_port();
    const uint16_t dport = udp->dst_port();
    const wire::Bytes payload = udp->payload();

    // A reply to a forwarded client goes back out of the forward's socket.
    if (!peers_.empty()) {
        Peer* found = nullptr;
        if (auto it = peers_.find(PeerKey{pkt.src, pkt.dst, sport, dport}); it != peers_.end()) {
            found = it->second.get();
        } else if (!pkt.src.is_v4()) {
            // From another of the guest's addresses: the same guest, as long
            // as it comes from the attachment the datagram went to.
            auto a = peers_by_client_.find(PeerKey{wire::IpAddr{}, pkt.dst, sport, dport});
            if (a != peers_by_client_.end() && gw_.port_of(a->second->key.guest) == pkt.port)
                found = a->second;
        }
        if (found) {
            Peer& p = *found;
            if (send_reply(p.listener->fd, payload, p.client, p.local) < 0) {
                stats_.dropped_send++;
                return;
            }
            peer_lru_.touch(p, now);
            stats_.fwd_to_host++;
            return;
        }
    }

    const gw::NetConfig& cfg = gw_.config();
    if (!is_unicast(pkt.dst, cfg)) {
        stats_.dropped_broadcast++;
        return;
    }
    if (!is_unicast(pkt.src, cfg)) {
        stats_.dropped_malformed++;
        nat_.stats().dropped_malformed++;
        return;
    }

    HostTarget t = nat_.host_target(pkt.dst, dport, wire::ipproto::udp);
    if (!t.ok()) {
        stats_.dropped_unreachable++;
        // The gateway's addresses (gateway, DNS, guest forwards', SMB's)
        // exist: only the port is missing there.
        bool own = pkt.dst.is_v4() ? gw_.is_own_v4(pkt.dst.as_v4()) : gw_.is_own_v6(pkt.dst);
        unreachable(pkt, t.forbidden() ? wire::icmpcode::admin_prohibited
                         : own         ? wire::icmpcode::port_unreach
                                       : wire::icmpcode::host_unreach);
        return;
    }
    const sockaddr_storage* target = &t.addr;

    Flow* f = flow_for(pkt.src, sport, pkt.port, now);
    FlowSock& s = target->ss_family == AF_INET ? f->s4 : f->s6;
    if (s.fd < 0 && !open_sock(*f, s, target->ss_family)) {
        stats_.dropped_socket++;
        return;
    }
    if (dport != 53) f->dns_only = false;
    auto [host_addr, host_port] = from_sockaddr(*target);
    if (host_port != dport || nat_.guest_visible(host_addr) != pkt.dst) {
        f->has_alias = true;
        f->alias_host = host_addr;
        f->alias_host_port = host_port;
        f->alias_guest = pkt.dst;
        f->alias_guest_port = dport;
    }
    if (send_to_host(*f, s, *target, pkt, payload)) {
        lru_.touch(*f, now);
        stats_.to_host++;
    }
}

bool UdpNat::send_to_host(Flow& f, FlowSock& s, const sockaddr_storage& to,
                          const gw::GuestPacket& pkt, wire::Bytes payload) {
    for (int attempt = 0; attempt < 2; attempt++) {
        if (send_datagram(s.fd, payload, to, pkt.ttl) >= 0) return true;
        const int err = errno;
        switch (err) {
        case EAGAIN:
        case ENOBUFS:
        case ENOMEM:
        case EINTR:
            stats_.dropped_send++;
            return false;
        case ECONNREFUSED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EHOSTDOWN:
        case ENONET:
        case EPROTO:
        case ETIMEDOUT:
            // Possibly the socket's pending error (sk_err) from an earlier
            // datagram, reported by this send: drain the error queue (the
            // guest gets its ICMP) and try once more.
            if (attempt == 0) {
                flow_errors(f, s);
                continue;
            }
            break;
        default:
            break;
        }
        stats_.dropped_send++;
        if (auto code = unreach_code_for_errno(err))
            nat_.icmp().send_error(nat_.gateway_for(pkt.src), pkt.src,
                                    wire::icmptype::dest_unreach, *code, 0, pkt.ip_packet);
        if (debug_on())
            spdlog::debug("udp: {}:{} -> {}: {}", f.guest.to_string(), f.guest_port,
                          pkt.dst.to_string(), std::strerror(err));
        return false;
    }
    stats_.dropped_send++;
    return false;
}

void UdpNat::unreachable(const gw::GuestPacket& pkt, uint8_t code) {
    wire::IpAddr from = code == wire::icmpcode::port_unreach ? pkt.dst : nat_.gateway_for(pkt.src);
    nat_.icmp().send_error(from, pkt.src, wire::icmptype::dest_unreach, code, 0, pkt.ip_packet);
}

UdpNat::Flow* UdpNat::flow_for(const wire::IpAddr& guest, uint16_t port, FlowLru::Owner owner,
                               core::Millis now) {
    auto it = flows_.find(FlowKey{guest, port});
    if (it != flows_.end()) {
        // The address moved to another attachment (a guest that came back):
        // the flow counts for its new port from now on.
        if (it->second->owner() != owner) lru_.insert(*it->second, owner, now);
        return it->second.get();
    }
    if (FlowLru::Entry* victim = lru_.victim_for(owner)) {
        Flow& v = static_cast<Flow&>(*victim);
        if (debug_on())
            spdlog::debug("udp: flow limit, evicting {}:{}", v.guest.to_string(), v.guest_port);
        destroy_flow(v);
        stats_.flows_evicted++;
    }
    auto f = std::make_unique<Flow>();
    f->nat = this;
    f->guest = guest;
    f->guest_port = port;
    f->s4.flow = f.get();
    f->s6.flow = f.get();
    Flow* raw = f.get();
    lru_.insert(*raw, owner, now);
    flows_.emplace(FlowKey{guest, port}, std::move(f));
    stats_.flows_created++;
    if (debug_on()) spdlog::debug("udp: new flow from {}:{}", guest.to_string(), port);
    arm_sweep();
    return raw;
}

bool UdpNat::open_sock(Flow& f, FlowSock& s, int family) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            const int err = errno;
            if ((err == EMFILE || err == ENFILE) && attempt == 0) {
                // Out of descriptors: give up the least recently used flow.
                FlowLru::Entry* v = lru_.oldest();
                if (v == &f) v = FlowLru::newer(*v);
                if (v) {
                    destroy_flow(static_cast<Flow&>(*v));
                    stats_.flows_evicted++;
                    continue;
                }
            }
            if (debug_on()) spdlog::debug("udp: socket: {}", std::strerror(err));
            return false;
        }
        int one = 1;
        if (family == AF_INET) {
            setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof one);
        } else {
            setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof one);
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        }
        if (!gw_.config().bind_outbound(fd, family)) {
            if (debug_on()) spdlog::debug("udp: --outbound-addr: {}", std::strerror(errno));
            close(fd);
            return false;
        }
        try {
            loop_.add(fd, EPOLLIN, &s);
        } catch (const std::system_error& e) {
            spdlog::debug("udp: {}", e.what());
            close(fd);
            return false;
        }
        s.fd = fd;
        return true;
    }
    return false;
}

namespace {

void close_sock(core::EventLoop& loop, UdpNat::FlowSock& s) {
    if (s.fd < 0) return;
    loop.remove(s.fd, &s);
    close(s.fd);
    s.fd = -1;
}

}  // namespace

void UdpNat::destroy_flow(Flow& f) {
    close_sock(loop_, f.s4);
    close_sock(loop_, f.s6);
    lru_.erase(f);
    flows_.erase(FlowKey{f.guest, f.guest_port});  // f is gone
}

void UdpNat::drop_port(uint32_t port) {
    while (FlowLru::Entry* e = lru_.any_of(port)) destroy_flow(static_cast<Flow&>(*e));
    while (FlowLru::Entry* e = peer_lru_.any_of(port)) destroy_peer(static_cast<Peer&>(*e));
}

void UdpNat::destroy_peer(Peer& p) {
    peer_lru_.erase(p);
    if (p.masq) {
        auto m = peers_by_host_client_.find(*p.masq);
        if (m != peers_by_host_client_.end() && m->second == &p) peers_by_host_client_.erase(m);
    }
    PeerKey k = p.key;
    if (!k.guest.is_v4()) {
        auto a = peers_by_client_.find(PeerKey{wire::IpAddr{}, k.peer, k.guest_port, k.peer_port});
        if (a != peers_by_client_.end() && a->second == &p) peers_by_client_.erase(a);
    }
    peers_.erase(k);
}

// ---------------------------------------------------------------- host -> guest

int UdpNat::recv_batch(int fd, bool with_local) {
    for (unsigned i = 0; i < kBatch; i++) {
        msghdr& h = rx_msgs_[i].msg_hdr;
        h.msg_namelen = sizeof(sockaddr_storage);
        h.msg_control = with_local ? rx_ctrl_[i].b : nullptr;
        h.msg_controllen = with_local ? sizeof rx_ctrl_[i].b : 0;
        h.msg_flags = 0;
    }
    return recvmmsg(fd, rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
}

void UdpNat::flow_io(Flow& f, FlowSock& s, uint32_t events) {
    if (events & EPOLLERR) flow_errors(f, s);
    if (events & EPOLLIN) flow_read(f, s);
}

void UdpNat::flow_read(Flow& f, FlowSock& s) {
    for (unsigned round = 0; round < kMaxReadRounds; round++) {
        int n = recv_batch(s.fd);
        if (n < 0) {
            // A pending socket error is reported here once the queue is empty.
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) flow_errors(f, s);
            return;
        }
        for (int i = 0; i < n; i++) {
            const msghdr& h = rx_msgs_[i].msg_hdr;
            if (h.msg_flags & MSG_TRUNC) {
                stats_.dropped_too_big++;
                continue;
            }
            auto [addr, port] = from_sockaddr(rx_names_[i]);
            auto [src, sport] = f.guest_view(nat_, addr, port);
            // The socket takes datagrams from anyone (endpoint-independent,
            // as a guest's STUN or peer-to-peer traffic needs), but not
            // from a peer the guest could not have sent to.
            if (!nat_.inbound_allowed(src, sport, wire::ipproto::udp)) {
                stats_.dropped_policy++;
                continue;
            }
            wire::Bytes payload(rx_bufs_.get() + size_t(i) * kBufSize, rx_msgs_[i].msg_len);
            if (send_to_guest(src, sport, f.guest, f.guest_port, payload)) stats_.to_guest++;
        }
        if (n > 0) lru_.touch(f, loop_.now());
        if (static_cast<unsigned>(n) < kBatch) return;
    }
}

bool UdpNat::send_to_guest(const wire::IpAddr& src, uint16_t sport, const wire::IpAddr& dst,
                           uint16_t dport, wire::Bytes payload) {
    // Larger than the guest's MTU: the gateway sends it as fragments.
    const size_t l4 = wire::kUdpHeaderLen + payload.size();
    const size_t ip_header = dst.is_v4() ? wire::kIpv4HeaderLen : 0;
    if (src.is_v4() != dst.is_v4() || l4 > gw::Gateway::tx_l4_capacity() ||
        ip_header + l4 > 0xffff) {
        stats_.dropped_too_big++;
        return false;
    }
    uint8_t* p = gw_.tx_l4();
    std::memcpy(p + wire::kUdpHeaderLen, payload.data(), payload.size());
    wire::build_udp(p, src, dst, sport, dport, payload.size());
    return gw_.send_ip(src, dst, wire::ipproto::udp, l4);
}

// Queued errors (IP_RECVERR) become ICMP errors quoting the guest's datagram.
void UdpNat::flow_errors(Flow& f, FlowSock& s) {
    std::array<uint8_t, kQuotePayload6> payload{};
    for (int i = 0; i < 64; i++) {
        QueuedError qe;
        if (!read_queued_error(s.fd, payload, qe)) break;
        std::optional<Icmp4Error> ie = icmp4_error_for(qe);
        auto [dst_host, dst_port] = from_sockaddr(qe.dest);
        auto [dst, dport] = f.guest_view(nat_, dst_host, dst_port);
        if (!ie || f.guest.is_v4() != dst.is_v4()) {
            stats_.errors_untranslated++;
            continue;
        }
        wire::IpAddr from;
        if (qe.origin == SO_EE_ORIGIN_LOCAL) {
            from = nat_.gateway_for(f.guest);  // our own hop
        } else if (qe.offender.ss_family == AF_INET || qe.offender.ss_family == AF_INET6) {
            wire::IpAddr off = from_sockaddr(qe.offender).first;
            from = off == dst_host ? dst : nat_.guest_visible(off);
        } else {
            from = dst;
        }
        // Rebuild what the guest sent: its address and port to the original
        // destination, with as much of the payload as the error quoted.
        std::array<uint8_t, wire::kIpv6HeaderLen + wire::kUdpHeaderLen + kQuotePayload6> q{};
        const size_t plen =
            std::min(qe.payload_len, f.guest.is_v4() ? kQuotePayload : kQuotePayload6);
        const size_t iph = f.guest.is_v4() ? wire::kIpv4HeaderLen : wire::kIpv6HeaderLen;
        std::memcpy(q.data() + iph + wire::kUdpHeaderLen, payload.data(), plen);
        if (f.guest.is_v4())
            wire::build_ipv4(q.data(), f.guest.as_v4(), dst.as_v4(), wire::ipproto::udp,
                             wire::kUdpHeaderLen + plen);
        else
            wire::build_ipv6(q.data(), f.guest, dst, wire::ipproto::udp, wire::kUdpHeaderLen + plen);
        wire::build_udp(q.data() + iph, f.guest, dst, f.guest_port, dport, plen);
        if (nat_.icmp().send_error(from, f.guest, ie->type, ie->code, ie->rest,
                                    wire::Bytes(q.data(), iph + wire::kUdpHeaderLen + plen)))
            stats_.icmp_errors++;
        if (debug_on())
            spdlog::debug("udp: ICMP {}/{} from {} for {}:{} -> {}:{}", ie->type, ie->code,
                          from.to_string(), f.guest.to_string(), f.guest_port, dst.to_string(),
                          dport);
    }
    // Clear a pending error that had no queue entry, so the next send works.
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
}

// ---------------------------------------------------------------- forwards

void UdpNat::add_forward_socket(int fd, uint16_t guest_port,
                                std::optional<wire::IpAddr> guest_addr) {
    auto l = std::make_unique<Listener>();
    l->nat = this;
    l->fd = fd;
    l->guest_port = guest_port;
    l->guest_addr = guest_addr;
    // The address each client sent to, for the replies' source.
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    const int on = 1;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) == 0) {
        const int r = bound.ss_family == AF_INET6
                          ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on)
                          : setsockopt(fd, SOL_IP, IP_PKTINFO, &on, sizeof on);
        if (r < 0) spdlog::debug("udp forward: PKTINFO: {}", std::strerror(errno));
    }
    try {
        loop_.add(fd, EPOLLIN, l.get());
    } catch (...) {
        close(fd);
        throw;
    }
    listeners_.push_back(std::move(l));
}

void UdpNat::remove_forward_socket(int fd) {
    auto it = std::find_if(listeners_.begin(), listeners_.end(),
                           [fd](const auto& l) { return l->fd == fd; });
    if (it == listeners_.end()) return;
    Listener* l = it->get();
    for (auto p = peers_.begin(); p != peers_.end();) {
        Peer& peer = *p->second;
        ++p;
        if (peer.listener == l) destroy_peer(peer);
    }
    loop_.remove(l->fd, l);
    close(l->fd);
    listeners_.erase(it);
}

void UdpNat::listener_read(Listener& l) {
    for (unsigned round = 0; round < kMaxReadRounds; round++) {
        int n = recv_batch(l.fd, true);
        if (n <= 0) return;
        const core::Millis now = loop_.now();
        for (int i = 0; i < n; i++) {
            const msghdr& h = rx_msgs_[i].msg_hdr;
            if (h.msg_flags & MSG_TRUNC) {
                stats_.dropped_too_big++;
                continue;
            }
            auto [client, client_port] = from_sockaddr(rx_names_[i]);
            wire::IpAddr guest = forward_target_guest(nat_, l.guest_addr, client);
            if (guest.is_unspecified()) {
                stats_.dropped_no_guest++;
                continue;
            }
            wire::IpAddr peer = forward_peer_for_guest(nat_, client, guest);
            PeerKey key{guest, peer, l.guest_port, client_port};
            Peer* p = nullptr;
            std::optional<ClientKey> masq;
            if (peer != client) {
                // Appearing as the gateway: this client's own peer, else a
                // port no other client of this guest port has.
                masq = ClientKey{&l, client, client_port};
                auto m = peers_by_host_client_.find(*masq);
                if (m != peers_by_host_client_.end() && m->second->key.guest == guest) {
                    p = m->second;
                } else {
                    key.peer_port = peer_ports_.pick(client_port, [&](uint16_t port) {
                        return peers_.count(PeerKey{guest, peer, l.guest_port, port}) > 0;
                    });
                    if (key.peer_port == 0) {
                        stats_.dropped_no_guest++;
                        continue;
                    }
                }
            } else if (auto it = peers_.find(key); it != peers_.end()) {
                p = it->second.get();
            }
            if (p) {
                peer_lru_.touch(*p, now);
            } else {
                const FlowLru::Owner owner = gw_.port_of(guest);
                if (FlowLru::Entry* victim = peer_lru_.victim_for(owner)) {
                    destroy_peer(static_cast<Peer&>(*victim));
                    stats_.fwd_peers_evicted++;
                }
                auto np = std::make_unique<Peer>();
                np->key = key;
                np->masq = masq;
                p = np.get();
                if (masq) peers_by_host_client_[*masq] = p;
                peer_lru_.insert(*p, owner, now);
                peers_.emplace(key, std::move(np));
                if (!guest.is_v4())
                    peers_by_client_[PeerKey{wire::IpAddr{}, peer, l.guest_port, key.peer_port}] = p;
                stats_.fwd_peers_created++;
                if (debug_on())
                    spdlog::debug("udp forward: {}:{} -> guest {}:{} as {}:{}", client.to_string(),
                                  client_port, guest.to_string(), l.guest_port, peer.to_string(),
                                  key.peer_port);
                arm_sweep();
            }
            // The latest client wins should two map onto the same peer.
            p->listener = &l;
            p->client = rx_names_[i];
            p->local = local_of(h);
            wire::Bytes payload(rx_bufs_.get() + size_t(i) * kBufSize, rx_msgs_[i].msg_len);
            if (send_to_guest(peer, p->key.peer_port, guest, l.guest_port, payload))
                stats_.fwd_to_guest++;
        }
        if (static_cast<unsigned>(n) < kBatch) return;
    }
}

// ---------------------------------------------------------------- expiry

void UdpNat::arm_sweep() {
    if (!sweep_.armed() && (!flows_.empty() || !peers_.empty())) loop_.arm(sweep_, kSweepMs);
}

bool UdpNat::release_oldest() {
    FlowLru::Entry* v = lru_.oldest();
    if (!v) return false;
    if (debug_on())
        spdlog::debug("udp: out of descriptors, closing the flow of {}:{}",
                      static_cast<Flow&>(*v).guest.to_string(), static_cast<Flow&>(*v).guest_port);
    destroy_flow(static_cast<Flow&>(*v));
    stats_.flows_evicted++;
    return true;
}

void UdpNat::expire_idle() {
    const core::Millis now = loop_.now();
    const core::Millis shortest = std::min(idle_ms_for(true), idle_ms_for(false));
    for (FlowLru::Entry* e = lru_.oldest(); e;) {
        FlowLru::Entry* next = FlowLru::newer(*e);
        const core::Millis idle = now - std::min(now, e->last_used());
        if (idle < shortest) break;  // everything newer is younger still
        Flow& f = static_cast<Flow&>(*e);
        if (idle >= idle_ms_for(f.dns_only)) {
            if (debug_on())
                spdlog::debug("udp: flow from {}:{} expired", f.guest.to_string(), f.guest_port);
            destroy_flow(f);
            stats_.flows_expired++;
        }
        e = next;
    }
    const core::Millis peer_idle = idle_ms_for(false);
    while (FlowLru::Entry* e = peer_lru_.oldest()) {
        if (now - std::min(now, e->last_used()) < peer_idle) break;
        destroy_peer(static_cast<Peer&>(*e));
        stats_.fwd_peers_expired++;
    }
}

}  // namespace usernet::nat
