#include "gateway/dns_forwarder.hpp"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "gateway/log_format.hpp"

#include <algorithm>
#include <cerrno>
#include <type_traits>
#include <cstdio>
#include <cstring>

#include "gateway/gateway.hpp"
#include "gateway/resolv_conf.hpp"
#include "core/sockaddr.hpp"
#include "wire/dns.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {

namespace {

constexpr int kMaxReadsPerWakeup = 64;

bool same_sockaddr(const sockaddr_storage& a, const sockaddr_storage& b) {
    if (a.ss_family != b.ss_family) return false;
    if (a.ss_family == AF_INET) {
        const auto& x = reinterpret_cast<const sockaddr_in&>(a);
        const auto& y = reinterpret_cast<const sockaddr_in&>(b);
        return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
    }
    if (a.ss_family == AF_INET6) {
        const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
        const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
        return x.sin6_port == y.sin6_port &&
               std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
    }
    return false;
}

std::string sockaddr_text(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN + 16];
    if (ss.ss_family == AF_INET) {
        const auto& s = reinterpret_cast<const sockaddr_in&>(ss);
        std::snprintf(buf, sizeof buf, "%s:%u",
                      wire::ipv4_to_string(ntohl(s.sin_addr.s_addr)).c_str(),
                      unsigned{ntohs(s.sin_port)});
    } else {
        const auto& s = reinterpret_cast<const sockaddr_in6&>(ss);
        std::snprintf(
            buf, sizeof buf, "[%s]:%u",
            wire::IpAddr::v6_from(reinterpret_cast<const uint8_t*>(&s.sin6_addr)).to_string().c_str(),
            unsigned{ntohs(s.sin6_port)});
    }
    return buf;
}

// Errors a send may report for an earlier ICMP error on the same socket
// (sk_err), rather than for this datagram.
bool maybe_stale_error(int e) {
    return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN ||
           e == ENONET || e == EPROTO;
}

// An upstream's address for a log message, formatted only when logged.
struct SockText {
    const sockaddr_storage* ss;
};

}  // namespace
}  // namespace usernet::gw

template <>
struct fmt::formatter<usernet::gw::SockText> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const usernet::gw::SockText& t, Ctx& ctx) const {
        return fmt::format_to(ctx.out(), "{}", usernet::gw::sockaddr_text(*t.ss));
    }
};

namespace usernet::gw {

DnsForwarder::DnsForwarder(core::EventLoop& loop, Gateway& gw)
    : loop_(loop), gw_(gw), timer_([this] { on_timer(); }) {
    for (size_t i = 0; i < slots_.size(); i++) {
        for (Socket* s : {&slots_[i].s4, &slots_[i].s6}) {
            s->fwd = this;
            s->slot = static_cast<uint8_t>(i);
        }
    }
    table_.resize(kMaxPending);
    for (Pending& p : table_) p.query.reserve(kQueryReserve);
    by_id_.assign(65536, 0);
    guests_.resize(2 * kMaxPending);
    if (getrandom(&prng_, sizeof prng_, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof prng_))
        prng_ = core::monotonic_ms() ^ (uint64_t(getpid()) << 32);
    set_upstreams(gw.config().dns_upstreams);
}

DnsForwarder::~DnsForwarder() {
    loop_.cancel(timer_);
    for (Slot& slot : slots_) close_slot(slot);
}

void DnsForwarder::open_socket(Socket& s, int family) {
    if (s.fd >= 0) return;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        spdlog::warn("dns: cannot open an {} socket for the upstream resolvers: {}",
                     family == AF_INET ? "IPv4" : "IPv6", std::strerror(errno));
        return;
    }
    // ICMP errors from an upstream (port unreachable: no resolver there)
    // come back on the error queue and fail the query over at once.
    int one = 1;
    if (family == AF_INET) setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof one);
    else setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof one);
    // Bound now rather than on the first send, so the port is the kernel's
    // random pick from its ephemeral range and any error shows here.
    sockaddr_storage any{};
    any.ss_family = static_cast<sa_family_t>(family);
    socklen_t any_len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    const wire::IpAddr& out = outbound_addr(family);
    if (!out.is_unspecified()) {
        any = core::to_sockaddr(out, 0);  // --outbound-addr
        any_len = core::sockaddr_len(any);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&any), any_len) != 0) {
        // Each query tries again: say so once a minute, not per query.
        const core::Millis now = loop_.now();
        if (bind_warned_at_ == 0 || now - bind_warned_at_ >= 60'000) {
            bind_warned_at_ = now;
            spdlog::warn("dns: cannot bind a socket for the upstream resolvers{}: {}{}",
                         out.is_unspecified() ? "" : " to " + out.to_string(),
                         std::strerror(errno),
                         out.is_unspecified() ? "" : " (is the outbound address one of this host's?)");
        }
        close(fd);
        return;
    }
    s.fd = fd;
    s.family = family;
    loop_.add(fd, EPOLLIN, &s);
}

void DnsForwarder::close_socket(Socket& s) {
    if (s.fd < 0) return;
    loop_.remove(s.fd, &s);
    close(s.fd);
    s.fd = -1;
}

void DnsForwarder::open_slot(Slot& slot) {
    if (need4_) open_socket(slot.s4, AF_INET);
    if (need6_) open_socket(slot.s6, AF_INET6);
    slot.used = 0;
    slot.opened = loop_.now();
    slot.retiring = false;
}

void DnsForwarder::close_slot(Slot& slot) {
    close_socket(slot.s4);
    close_socket(slot.s6);
}

void DnsForwarder::set_upstreams(const std::vector<HostPort>& upstreams) {
    drop_all();
    upstreams_.clear();
    preferred_ = 0;
    need4_ = need6_ = false;
    for (const HostPort& hp : upstreams) (hp.addr.is_v4() ? need4_ : need6_) = true;
    for (Slot& slot : slots_) {
        close_slot(slot);
        open_slot(slot);
    }
    for (const HostPort& hp : upstreams) {
        Upstream u;
        u.hp = hp;
        u.sa = core::to_sockaddr(hp.addr, hp.port, hp.scope);
        u.sa_len = core::sockaddr_len(u.sa);
        u.family = hp.addr.is_v4() ? AF_INET : AF_INET6;
        // A family whose sockets cannot be opened at all has no upstreams.
        if (socket_for(slots_[0], u.family).fd < 0) continue;
        upstreams_.push_back(u);
    }
    if (upstreams_.empty())
        spdlog::debug("dns: no upstream resolver; queries to {} are answered REFUSED",
                     V4{gw_.config().dns});
    for (const Upstream& u : upstreams_) spdlog::debug("dns: upstream {}", SockText{&u.sa});
}

namespace {

bool file_id(const std::string& path, struct stat& st) { return stat(path.c_str(), &st) == 0; }

}  // namespace

void DnsForwarder::follow_resolv_conf(std::string path) {
    resolv_path_ = std::move(path);
    struct stat st {};
    resolv_id_ = FileId{};
    if (file_id(resolv_path_, st))
        resolv_id_ = FileId{st.st_dev, st.st_ino, static_cast<uint64_t>(st.st_size),
                            st.st_mtim.tv_sec, st.st_mtim.tv_nsec, true};
    resolv_list_.clear();
    for (const Upstream& u : upstreams_) resolv_list_.push_back(u.hp);
    resolv_checked_ = loop_.now();
}

void DnsForwarder::refresh_upstreams() {
    if (resolv_path_.empty() || loop_.now() - resolv_checked_ < kResolvCheckMs) return;
    resolv_checked_ = loop_.now();
    struct stat st {};
    FileId id;
    if (file_id(resolv_path_, st))
        id = FileId{st.st_dev, st.st_ino, static_cast<uint64_t>(st.st_size), st.st_mtim.tv_sec,
                    st.st_mtim.tv_nsec, true};
    if (id == resolv_id_) return;
    resolv_id_ = id;
    std::vector<HostPort> list = load_system_resolvers(resolv_path_);
    if (list.empty() || list == resolv_list_) return;
    std::string names;
    for (const HostPort& hp : list) names += (names.empty() ? "" : ", ") + hp.addr.to_string();
    spdlog::info("dns: {} changed; forwarding to {}", resolv_path_, names);
    resolv_list_ = list;
    set_upstreams(list);
}

std::optional<HostPort> DnsForwarder::active_upstream() {
    refresh_upstreams();
    if (upstreams_.empty()) return std::nullopt;
    return upstreams_[preferred_ % upstreams_.size()].hp;
}

void DnsForwarder::drop_all() {
    for (Pending& p : table_)
        if (p.used) finish(p);
    loop_.cancel(timer_);
}

uint64_t DnsForwarder::random64() {
    // splitmix64 over a getrandom() seed: for picking a socket, where the
    // ids' and ports' own randomness is what a forger has to beat.
    uint64_t z = (prng_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint8_t DnsForwarder::pick_slot() {
    core::Millis now = loop_.now();
    for (Slot& slot : slots_) {
        if (!slot.retiring && (slot.used >= kRotateQueries || now - slot.opened >= kRotateMs))
            slot.retiring = true;
        if (slot.retiring && slot.pending == 0) {
            close_slot(slot);
            open_slot(slot);
            stats_.socket_rotations++;
        }
    }
    size_t start = static_cast<size_t>(random64() % kPoolSize);
    for (size_t i = 0; i < kPoolSize; i++) {
        size_t k = (start + i) % kPoolSize;
        if (!slots_[k].retiring) return static_cast<uint8_t>(k);
    }
    return static_cast<uint8_t>(start);  // all busy retiring: still usable
}

// The quota counts: open addressing with linear probing over a power of
// two cells, at most half of them in use (a pending query holds one), and
// backward-shift deletion so no tombstones build up.
static_assert(std::is_integral_v<DnsGuestKey>);
namespace {
size_t guest_home(DnsGuestKey key, size_t mask) {
    return static_cast<size_t>((static_cast<uint64_t>(key) * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}
}  // namespace

DnsForwarder::GuestCount* DnsForwarder::guest_count(DnsGuestKey key, bool insert) {
    const size_t mask = guests_.size() - 1;
    for (size_t i = guest_home(key, mask);; i = (i + 1) & mask) {
        GuestCount& c = guests_[i];
        if (c.count != 0 && c.key == key) return &c;
        if (c.count == 0) {
            if (!insert) return nullptr;
            c.key = key;
            return &c;  // count 0 until the caller adds one
        }
    }
}

void DnsForwarder::guest_release(DnsGuestKey key) {
    GuestCount* c = guest_count(key, false);
    if (!c || --c->count != 0) return;
    const size_t mask = guests_.size() - 1;
    size_t hole = static_cast<size_t>(c - guests_.data());
    for (size_t j = (hole + 1) & mask; guests_[j].count != 0; j = (j + 1) & mask) {
        size_t home = guest_home(guests_[j].key, mask);
        // Move j into the hole unless its home lies cyclically in (hole, j].
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays) continue;
        guests_[hole] = guests_[j];
        guests_[j].count = 0;
        hole = j;
    }
}

size_t DnsForwarder::pending_of(DnsGuestKey key) const {
    const size_t mask = guests_.size() - 1;
    for (size_t i = guest_home(key, mask); guests_[i].count != 0; i = (i + 1) & mask)
        if (guests_[i].key == key) return guests_[i].count;
    return 0;
}

uint16_t DnsForwarder::fresh_id() {
    for (;;) {
        if (random_left_ == 0) {
            ssize_t n = getrandom(random_ids_.data(), sizeof random_ids_, GRND_NONBLOCK);
            if (n != static_cast<ssize_t>(sizeof random_ids_)) {
                // The seeded generator only if the kernel's is unavailable.
                for (uint16_t& v : random_ids_) v = static_cast<uint16_t>(random64());
            }
            random_left_ = random_ids_.size();
        }
        uint16_t id = random_ids_[--random_left_];
        if (by_id_[id] == 0) return id;
    }
}

DnsForwarder::Pending* DnsForwarder::alloc() {
    Pending* victim = nullptr;
    for (Pending& p : table_) {
        if (!p.used) return &p;
        if (!victim || p.created < victim->created) victim = &p;
    }
    stats_.dropped_evicted++;
    spdlog::debug("dns: pending table full, dropping the oldest query");
    finish(*victim);
    return victim;
}

void DnsForwarder::finish(Pending& p) {
    if (!p.used) return;
    by_id_[p.wire_id] = 0;
    slots_[p.slot].pending--;
    guest_release(p.key);
    p.used = false;
    n_pending_--;
}

bool DnsForwarder::tried(const Pending& p, uint32_t upstream) const {
    size_t n = upstreams_.size();
    return (upstream + n - p.first) % n < p.tries;
}

wire::IpAddr DnsForwarder::server_for(const wire::IpAddr& guest) const {
    return guest.is_v4() ? wire::IpAddr::v4(gw_.config().dns) : gw_.config().dns6;
}

void DnsForwarder::from_guest(DnsGuestKey key, const wire::IpAddr& guest, uint16_t guest_port,
                              wire::Bytes query) {
    auto v = wire::DnsView::parse(query);
    if (!v || v->qr()) {
        stats_.dropped_malformed++;
        spdlog::debug("dns: dropped a malformed query from {}", guest);
        return;
    }
    // FORMERR now, as the upstream would: sent on, its answer could not be
    // matched to the query, and the guest would wait for SERVFAIL.
    if (wire::dns_question_unreadable(*v)) {
        stats_.formerr++;
        spdlog::debug("dns: a query from {} whose question does not parse: FORMERR", guest);
        answer_error(guest, guest_port, query, v->id(), wire::dnsrcode::formerr);
        return;
    }
    if (answer_locally(guest, guest_port, query)) return;
    refresh_upstreams();
    if (upstreams_.empty()) {
        stats_.refused++;
        answer_error(guest, guest_port, query, v->id(), wire::dnsrcode::refused);
        return;
    }
    if (query.size() > kMaxQueryLen) {
        // Legal with EDNS (a large option), but more than the table keeps:
        // FORMERR, so the resolver asks again without it (RFC 6891 7)
        // rather than waiting for an answer that never comes.
        stats_.formerr++;
        spdlog::debug("dns: a {}-byte query from {}: FORMERR", query.size(), guest);
        answer_error(guest, guest_port, query, v->id(), wire::dnsrcode::formerr);
        return;
    }
    if (pending_of(key) >= kMaxPendingPerGuest) {
        stats_.dropped_quota++;
        spdlog::debug("dns: {} has {} queries pending, dropped one more", guest,
                      kMaxPendingPerGuest);
        return;
    }
    stats_.queries++;
    Pending& p = *alloc();
    p.used = true;
    n_pending_++;
    p.key = key;
    guest_count(key, true)->count++;
    p.slot = pick_slot();
    slots_[p.slot].pending++;
    slots_[p.slot].used++;
    p.wire_id = fresh_id();
    by_id_[p.wire_id] = static_cast<uint16_t>(&p - table_.data() + 1);
    p.guest_id = v->id();
    p.guest = guest;
    p.guest_port = guest_port;
    p.len = static_cast<uint16_t>(query.size());
    p.query.assign(query.begin(), query.end());  // allocates only past kQueryReserve
    wire::store16(p.query.data(), p.wire_id);
    p.first = preferred_ % upstreams_.size();
    p.tries = 0;
    p.created = loop_.now();
    next_upstream(p);
}

const wire::IpAddr& DnsForwarder::outbound_addr(int family) const {
    return family == AF_INET ? gw_.config().outbound4 : gw_.config().outbound6;
}

size_t DnsForwarder::local_answer(wire::Bytes query, wire::MutBytes out) {
    auto v = wire::DnsView::parse(query);
    if (!v || v->qr() || v->opcode() != 0 || v->qdcount() != 1) return 0;
    auto q = v->question();
    if (!q || q->qclass != wire::dnsclass::in) return 0;
    // An EDNS version we do not speak: the upstream answers BADVERS.
    if (auto ver = wire::dns_edns_version(*v); ver && *ver != 0) return 0;
    if (q->qtype == wire::dnstype::ptr || q->qtype == wire::dnstype::any) {
        // A reverse lookup of a local address: its local name (dnsmasq
        // does so for its hosts and leases); others go upstream.
        if (auto addr = wire::dns_reverse_addr(q->name)) {
            if (gw_.local_name(*addr, ptr_name_)) {
                uint8_t rdata[wire::kDnsMaxNameLen];
                const size_t len = wire::dns_encode_name(ptr_name_, rdata, sizeof rdata);
                if (len == 0) return 0;
                wire::DnsResponseBuilder b(out, *v, *q);
                b.add_record(wire::dnstype::ptr, kLocalTtl, wire::Bytes(rdata, len));
                return b.finish();
            }
            // An address of this LAN without a name: NXDOMAIN from here,
            // as dnsmasq's bogus-priv does (RFC 6303): the virtual LAN's
            // reverse lookups are nobody's business upstream.
            const NetConfig& c = gw_.config();
            if (addr->is_v4() ? c.in_subnet(addr->as_v4()) : c.ipv6 && c.in_prefix6(*addr))
                return wire::dns_build_error(out, *v, wire::dnsrcode::nxdomain, true);
        }
    }
    char name[wire::kDnsMaxTextLen + 1];
    auto n = q->name.to_text(name, sizeof name);
    if (!n || !gw_.local_addresses(std::string_view(name, *n), local_)) return 0;
    const bool any = q->qtype == wire::dnstype::any;
    wire::DnsResponseBuilder b(out, *v, *q);
    for (const wire::IpAddr& a : local_)
        if (any || q->qtype == (a.is_v4() ? wire::dnstype::a : wire::dnstype::aaaa))
            b.add_address(a, kLocalTtl);
    return b.finish();
}

std::vector<HostPort> DnsForwarder::upstreams_in_order() {
    refresh_upstreams();
    std::vector<HostPort> out;
    for (size_t i = 0; i < upstreams_.size(); i++)
        out.push_back(upstreams_[(preferred_ + i) % upstreams_.size()].hp);
    return out;
}

bool DnsForwarder::answer_locally(const wire::IpAddr& guest, uint16_t port, wire::Bytes query) {
    uint8_t* out = gw_.tx_l4() + wire::kUdpHeaderLen;
    // As large as the query's EDNS offers (512 without), within one packet
    // to the guest; more records than that get TC, and the guest asks
    // over TCP, where they all fit.
    auto v = wire::DnsView::parse(query);
    if (!v) return false;
    const uint32_t mtu = gw_.path_mtu(guest);
    const size_t headers = (guest.is_v4() ? 20 : 40) + wire::kUdpHeaderLen;
    const size_t room = std::min({wire::dns_udp_payload(*v), size_t{wire::kEdnsUdpSize},
                                  mtu > headers ? size_t{mtu - headers} : size_t{0}});
    const size_t len = local_answer(query, wire::MutBytes(out, std::max(room, wire::kDnsMaxUdpLen)));
    if (len == 0) return false;
    stats_.local_answers++;
    if (wire::DnsView::parse(wire::Bytes(out, len))->tc()) stats_.truncated++;
    const wire::IpAddr src = server_for(guest);
    wire::build_udp(gw_.tx_l4(), src, guest, wire::kDnsPort, port, len);
    gw_.send_ip(src, guest, wire::ipproto::udp, wire::kUdpHeaderLen + len);
    return true;
}

bool DnsForwarder::send_attempt(Pending& p) {
    const Upstream& u = upstreams_[current(p)];
    Socket& sock = socket_for(slots_[p.slot], u.family);
    if (sock.fd < 0) return false;  // could not be reopened (out of descriptors)
    for (int attempt = 0; attempt < 3; attempt++) {
        ssize_t n = sendto(sock.fd, p.query.data(), p.len, MSG_DONTWAIT | MSG_NOSIGNAL,
                           reinterpret_cast<const sockaddr*>(&u.sa), u.sa_len);
        if (n == p.len) return true;
        if (n >= 0) return false;
        if (errno == EINTR || (attempt == 0 && maybe_stale_error(errno))) continue;
        spdlog::debug("dns: send to {} failed: {}", SockText{&u.sa}, std::strerror(errno));
        return false;
    }
    return false;
}

void DnsForwarder::next_upstream(Pending& p) {
    while (p.tries < upstreams_.size()) {
        p.tries++;
        if (send_attempt(p)) {
            p.deadline = loop_.now() + kAttemptTimeoutMs;
            if (!timer_.armed() || p.deadline < timer_.deadline()) loop_.arm_at(timer_, p.deadline);
            return;
        }
        stats_.upstream_errors++;
    }
    stats_.servfail++;
    spdlog::debug("dns: every upstream failed for a query from {}", p.guest);
    answer_error(p.guest, p.guest_port, wire::Bytes(p.query.data(), p.len), p.guest_id,
                 wire::dnsrcode::servfail);
    finish(p);
}

void DnsForwarder::answer_error(const wire::IpAddr& guest, uint16_t port, wire::Bytes query,
                                uint16_t guest_id, uint8_t rcode) {
    auto v = wire::DnsView::parse(query);
    if (!v) return;
    uint8_t* out = gw_.tx_l4() + wire::kUdpHeaderLen;
    size_t n = wire::dns_build_error(wire::MutBytes(out, wire::kDnsMaxUdpLen), *v, rcode);
    if (n == 0) return;
    wire::store16(out, guest_id);
    const wire::IpAddr src = server_for(guest);
    const wire::IpAddr& dst = guest;
    wire::build_udp(gw_.tx_l4(), src, dst, wire::kDnsPort, port, n);
    gw_.send_ip(src, dst, wire::ipproto::udp, wire::kUdpHeaderLen + n);
}

void DnsForwarder::on_socket(Socket& s, uint32_t events) {
    if (events & EPOLLERR) read_errors(s);
    if (events & EPOLLIN) read_replies(s);
}

void DnsForwarder::read_errors(Socket& s) {
    for (int i = 0; i < kMaxReadsPerWakeup; i++) {
        uint8_t data[64];
        uint8_t control[512];
        sockaddr_storage dst{};
        iovec iov{data, sizeof data};
        msghdr msg{};
        msg.msg_name = &dst;
        msg.msg_namelen = sizeof dst;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = recvmsg(s.fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        // The queued datagram is our query: its id names the entry, and
        // msg_name the upstream it was sent to. It counts only if it is
        // that query, sent from this socket to the upstream now asked.
        if (n < 2) continue;
        uint16_t idx = by_id_[wire::load16(data)];
        if (idx == 0) continue;
        Pending& p = table_[idx - 1];
        size_t quoted = std::min<size_t>(static_cast<size_t>(n), p.len);
        if (!p.used || p.slot != s.slot || upstreams_[current(p)].family != s.family ||
            !same_sockaddr(upstreams_[current(p)].sa, dst) ||
            std::memcmp(data, p.query.data(), quoted) != 0) {
            stats_.dropped_unmatched++;
            continue;
        }
        int err = 0;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
                sock_extended_err ee;
                std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
                err = static_cast<int>(ee.ee_errno);
            }
        }
        stats_.upstream_errors++;
        spdlog::debug("dns: upstream {} error: {}", SockText{&dst},
                      err ? std::strerror(err) : "unknown");
        next_upstream(p);
    }
}

void DnsForwarder::read_replies(Socket& s) {
    uint8_t* buf = gw_.tx_l4() + wire::kUdpHeaderLen;
    const size_t cap = Gateway::tx_l4_capacity() - wire::kUdpHeaderLen;
    for (int i = 0; i < kMaxReadsPerWakeup; i++) {
        sockaddr_storage from{};
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(s.fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC,
                             reinterpret_cast<sockaddr*>(&from), &flen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            continue;  // EINTR, or an ICMP error reported here (read_errors has it)
        }
        size_t len = static_cast<size_t>(n);
        if (len > cap || len < wire::kDnsHeaderLen ||
            !(wire::load16(buf + 2) & wire::dnsflag::qr)) {
            stats_.dropped_unmatched++;
            continue;
        }
        uint16_t idx = by_id_[wire::load16(buf)];
        if (idx == 0) {
            stats_.dropped_unmatched++;
            continue;
        }
        Pending& p = table_[idx - 1];
        uint32_t k = 0;
        while (k < upstreams_.size() && !same_sockaddr(upstreams_[k].sa, from)) k++;
        if (!p.used || p.slot != s.slot || k == upstreams_.size() || !tried(p, k)) {
            stats_.dropped_unmatched++;
            spdlog::debug("dns: dropped a reply from unexpected {}", SockText{&from});
            continue;
        }
        if (!same_question(p, wire::Bytes(buf, len))) {
            stats_.dropped_unmatched++;
            spdlog::debug("dns: dropped a reply from {} to another question", SockText{&from});
            continue;
        }
        preferred_ = k;
        relay(p, buf, len);
        finish(p);
    }
}

bool DnsForwarder::same_question(const Pending& p, wire::Bytes reply) const {
    auto q = wire::DnsView::parse(wire::Bytes(p.query.data(), p.len));
    auto r = wire::DnsView::parse(reply);
    if (!q || !r) return false;
    auto qq = q->question();
    if (!qq) return r->qdcount() == 0 && q->qdcount() == 0;
    auto rq = r->question();
    if (!rq || rq->qtype != qq->qtype || rq->qclass != qq->qclass) return false;
    wire::Bytes a = qq->name.bytes(), b = rq->name.bytes();
    if (a.size() != b.size()) return false;
    // Label lengths are below 64, so folding A-Z touches only letters.
    auto fold = [](uint8_t c) { return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c | 0x20) : c; };
    for (size_t i = 0; i < a.size(); i++)
        if (fold(a[i]) != fold(b[i])) return false;
    return true;
}

void DnsForwarder::relay(Pending& p, uint8_t* msg, size_t len) {
    wire::store16(msg, p.guest_id);
    const wire::IpAddr src = server_for(p.guest);
    const wire::IpAddr& dst = p.guest;
    const uint32_t mtu = gw_.path_mtu(dst);
    const size_t headers = (dst.is_v4() ? 20 : 40) + wire::kUdpHeaderLen;
    size_t max = mtu > headers ? mtu - headers : 0;
    // No more than the guest said it takes (512 without EDNS, RFC 1035
    // 4.2.1; its OPT's size with, RFC 6891 6.2.5), should an upstream
    // send more.
    if (auto q = wire::DnsView::parse(wire::Bytes(p.query.data(), p.len)))
        max = std::min(max, wire::dns_udp_payload(*q));
    if (len > max) {
        // Keep the header and the query's question, set TC: the guest asks
        // again over TCP.
        size_t qend = wire::kDnsHeaderLen;
        bool edns = false;
        auto q = wire::DnsView::parse(wire::Bytes(p.query.data(), p.len));
        if (q) {
            if (auto qq = q->question()) qend = qq->end;
            edns = wire::dns_edns_version(*q).has_value();
        }
        if (qend > max) return;
        std::memcpy(msg + wire::kDnsHeaderLen, p.query.data() + wire::kDnsHeaderLen,
                    qend - wire::kDnsHeaderLen);
        wire::store16(msg + 2, wire::load16(msg + 2) | wire::dnsflag::tc);
        wire::store16(msg + 4, qend > wire::kDnsHeaderLen ? 1 : 0);
        wire::store16(msg + 6, 0);
        wire::store16(msg + 8, 0);
        wire::store16(msg + 10, 0);
        len = qend;
        // The query's EDNS gets an OPT back, truncated answer or not.
        if (edns && wire::dns_write_opt(msg + len, max - len)) {
            len += wire::kEdnsOptLen;
            wire::store16(msg + 10, 1);
        }
        stats_.truncated++;
    }
    wire::build_udp(gw_.tx_l4(), src, dst, wire::kDnsPort, p.guest_port, len);
    if (gw_.send_ip(src, dst, wire::ipproto::udp, wire::kUdpHeaderLen + len)) stats_.replies++;
}

void DnsForwarder::on_timer() {
    core::Millis now = loop_.now();
    for (Pending& p : table_) {
        if (!p.used || p.deadline > now) continue;
        if (p.tries >= upstreams_.size() && now < p.created + kAnswerWaitMs) {
            // Every upstream has it: a slow one's answer is still relayed
            // until kAnswerWaitMs, then SERVFAIL.
            stats_.timeouts++;
            p.deadline = p.created + kAnswerWaitMs;
            continue;
        }
        if (p.tries < upstreams_.size()) {
            stats_.timeouts++;
            spdlog::debug("dns: upstream {} did not answer in time",
                          SockText{&upstreams_[current(p)].sa});
        }
        next_upstream(p);
    }
    rearm();
}

void DnsForwarder::rearm() {
    core::Millis next = 0;
    for (const Pending& p : table_)
        if (p.used && (next == 0 || p.deadline < next)) next = p.deadline;
    if (next) loop_.arm_at(timer_, next);
    else loop_.cancel(timer_);
}

}  // namespace usernet::gw
