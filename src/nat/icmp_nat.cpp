// ICMP echo NAT: see icmp_nat.hpp for the theory of operation.
#include "nat/icmp_nat.hpp"

#include <linux/errqueue.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>

#include "nat/nat.hpp"
#include "nat/tcp_nat.hpp"
#include "wire/icmp4.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv6.hpp"
#include "wire/ipv4.hpp"

namespace usernet::nat {

// ---------------------------------------------------------------- shared helpers

bool read_queued_error(int fd, wire::MutBytes buf, QueuedError& out) {
    out = QueuedError{};
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) uint8_t control[512];
    msghdr m{};
    m.msg_name = &out.dest;
    m.msg_namelen = sizeof out.dest;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) return false;
    out.payload_len = std::min(static_cast<size_t>(n), buf.size());
    if (m.msg_namelen == 0) out.dest.ss_family = AF_UNSPEC;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        const bool v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR;
        const bool v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR;
        if ((!v4 && !v6) || c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
        sock_extended_err ee;
        std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
        out.origin = ee.ee_origin;
        out.type = ee.ee_type;
        out.code = ee.ee_code;
        out.err = ee.ee_errno;
        out.info = ee.ee_info;
        // SO_EE_OFFENDER: the address right after the extended error.
        const size_t off_len = c->cmsg_len - CMSG_LEN(sizeof ee);
        if (off_len >= sizeof(sa_family_t))
            std::memcpy(&out.offender, CMSG_DATA(c) + sizeof ee,
                        std::min(off_len, sizeof(sockaddr_storage)));
    }
    return true;
}

std::optional<Icmp4Error> icmp4_error_for(const QueuedError& e) {
    using namespace wire;
    switch (e.origin) {
    case SO_EE_ORIGIN_ICMP:
        switch (e.type) {
        case icmptype::dest_unreach:
            return Icmp4Error{e.type, e.code,
                              e.code == icmpcode::frag_needed ? (e.info & 0xffff) : 0};
        case icmptype::time_exceeded:
            return Icmp4Error{e.type, e.code, 0};
        case 12:  // parameter problem: the pointer in the first byte
            return Icmp4Error{e.type, e.code, (e.info & 0xff) << 24};
        default:
            return std::nullopt;
        }
    case SO_EE_ORIGIN_LOCAL:
        // The host's own path MTU is below the datagram.
        if (e.err == EMSGSIZE)
            return Icmp4Error{icmptype::dest_unreach, icmpcode::frag_needed, e.info & 0xffff};
        return std::nullopt;
    case SO_EE_ORIGIN_ICMP6:
        // Said the ICMPv4 way; send_error() says it the ICMPv6 way again
        // to an IPv6 guest.
        switch (e.type) {
        case icmp6type::dest_unreach:
            switch (e.code) {
            case icmp6code::no_route:
                return Icmp4Error{icmptype::dest_unreach, icmpcode::net_unreach, 0};
            case icmp6code::admin_prohibited:
                return Icmp4Error{icmptype::dest_unreach, icmpcode::admin_prohibited, 0};
            case icmp6code::port_unreach:
                return Icmp4Error{icmptype::dest_unreach, icmpcode::port_unreach, 0};
            default:
                return Icmp4Error{icmptype::dest_unreach, icmpcode::host_unreach, 0};
            }
        case icmp6type::packet_too_big:
            return Icmp4Error{icmptype::dest_unreach, icmpcode::frag_needed,
                              std::min<uint32_t>(e.info, 0xffff)};
        case icmp6type::time_exceeded:
            return Icmp4Error{icmptype::time_exceeded, e.code, 0};
        default:
            return std::nullopt;
        }
    default:
        return std::nullopt;
    }
}

std::optional<uint8_t> unreach_code_for_errno(int err) {
    switch (err) {
    case ENETUNREACH:
    case ENONET:
        return wire::icmpcode::net_unreach;
    case EHOSTUNREACH:
    case EHOSTDOWN:
        return wire::icmpcode::host_unreach;
    case ECONNREFUSED:
        return wire::icmpcode::port_unreach;
    case EACCES:
    case EPERM:
        return wire::icmpcode::admin_prohibited;
    default:
        return std::nullopt;
    }
}

ssize_t send_datagram(int fd, wire::Bytes data, const sockaddr_storage& to, uint8_t guest_ttl) {
    iovec iov{const_cast<uint8_t*>(data.data()), data.size()};
    msghdr m = datagram_msg(to, &iov);
    alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(int))];
    if (guest_ttl >= 1 && guest_ttl < 64) {
        const int ttl = std::max(1, guest_ttl - 1);
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        if (to.ss_family == AF_INET) {
            c->cmsg_level = SOL_IP;
            c->cmsg_type = IP_TTL;
        } else {
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_HOPLIMIT;
        }
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &ttl, sizeof ttl);
    }
    return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

bool is_unicast(const wire::IpAddr& a, const gw::NetConfig& cfg) {
    if (a.is_v4()) {
        const wire::Ipv4 v = a.as_v4();
        if (v == 0 || v == 0xffffffff || (v >> 28) == 0xe) return false;
        if (cfg.prefix_len < 31 && v == cfg.broadcast()) return false;
        return true;
    }
    return a.b[0] != 0xff && !a.is_unspecified();
}

// ---------------------------------------------------------------- flows

struct IcmpNat::Flow final : FlowLru::Entry, core::IoHandler {
    IcmpNat* nat = nullptr;
    wire::IpAddr guest;
    wire::IpAddr dst;       // as the guest addressed it
    wire::IpAddr host_dst;  // where it went on the host
    sockaddr_storage target{};
    uint16_t guest_id = 0;
    uint16_t raw_id = 0;  // raw mode: our identifier on the host
    int fd = -1;          // ping-socket mode
    // Raw mode: the sequence numbers sent and not answered yet, among the
    // kSeqWindow up to the newest (the raw socket sees every echo reply of
    // the host with our identifier; only these are the guest's). A ping
    // with many requests in flight (ping -l, ping -f over a long path)
    // gets every reply: a ring of 16 lost all but the last 16.
    static constexpr uint16_t kSeqWindow = 1024;
    std::array<uint64_t, kSeqWindow / 64> seq_bits{};
    uint16_t seq_top = 0;  // the newest noted
    bool seq_any = false;

    static size_t seq_slot(uint16_t seq) { return seq % kSeqWindow; }
    void seq_set(uint16_t seq, bool on) {
        uint64_t& w = seq_bits[seq_slot(seq) / 64];
        const uint64_t bit = uint64_t{1} << (seq_slot(seq) % 64);
        w = on ? (w | bit) : (w & ~bit);
    }
    bool in_window(uint16_t seq) const {
        return seq_any && static_cast<uint16_t>(seq_top - seq) < kSeqWindow;
    }
    void note_seq(uint16_t seq) {
        const auto ahead = static_cast<uint16_t>(seq - seq_top);
        if (!in_window(seq)) {
            if (seq_any && ahead < kSeqWindow) {
                // The usual next request: the slots it passes leave the
                // window (their requests were never sent, or are too old).
                for (uint16_t s = static_cast<uint16_t>(seq_top + 1); s != seq; s++) seq_set(s, false);
            } else {
                seq_bits.fill(0);  // a jump: start again from it
            }
            seq_top = seq;
            seq_any = true;
        }
        seq_set(seq, true);
    }
    bool has_seq(uint16_t seq) const {
        return in_window(seq) &&
               (seq_bits[seq_slot(seq) / 64] >> (seq_slot(seq) % 64) & 1) != 0;
    }
    bool take_seq(uint16_t seq) {
        if (!has_seq(seq)) return false;
        seq_set(seq, false);
        return true;
    }

    void on_io(uint32_t events) override {
        if (events & EPOLLERR) nat->ping_errors(*this);
        if (events & EPOLLIN) nat->ping_read(*this);
    }
};

struct IcmpNat::RawSock final : core::IoHandler {
    IcmpNat* nat = nullptr;
    int fd = -1;
    bool v6 = false;
    void on_io(uint32_t) override {
        if (v6) nat->raw_read6();
        else nat->raw_read();
    }
};

size_t IcmpNat::KeyHash::operator()(const FlowKey& k) const noexcept {
    return wire::IpAddrHash{}(k.guest) ^ (wire::IpAddrHash{}(k.dst) * 31) ^
           (size_t{k.id} * 0x9e3779b97f4a7c15ULL);
}

namespace {

constexpr core::Millis kSweepMs = 1000;
constexpr size_t kMaxErrorLen = 576 - wire::kIpv4HeaderLen;  // RFC 1812 4.3.2.3
constexpr int kMaxReads = 64;                                // messages per wakeup and socket

bool debug_on() { return spdlog::should_log(spdlog::level::debug); }

bool is_icmp_error_type(uint8_t t) { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12; }

std::string ping_group_range() {
    std::ifstream in("/proc/sys/net/ipv4/ping_group_range");
    std::string a, b;
    if (!(in >> a >> b)) return "unknown";
    return a + " " + b;
}

}  // namespace

IcmpNat::IcmpNat(Nat& nat)
    : nat_(nat),
      loop_(nat.loop()),
      gw_(nat.gateway()),
      next_raw_id_(static_cast<uint16_t>(core::monotonic_ms() ^ (getpid() << 4))),
      lru_(nat.limits().icmp_flows, nat.limits().icmp_flows_per_guest),
      sweep_([this] {
          expire_idle();
          arm_sweep();
      }),
      buf_(65536) {}

IcmpNat::~IcmpNat() {
    while (!flows_.empty()) destroy_flow(*flows_.begin()->second);
    for (auto* r : {&raw_, &raw6_}) {
        if (!*r) continue;
        loop_.remove((*r)->fd, r->get());
        close((*r)->fd);
    }
}

// A raw ICMP socket of the family, filtered to echo replies and the errors
// that may quote our requests, registered with the loop; null (errno set)
// when it cannot be had.
std::unique_ptr<IcmpNat::RawSock> IcmpNat::open_raw(int family) {
    const bool v6 = family == AF_INET6;
    int fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP});
    if (fd < 0) return nullptr;
    int rc;
    if (v6) {
        icmp6_filter filter;
        ICMP6_FILTER_SETBLOCKALL(&filter);
        for (int t : {ICMP6_ECHO_REPLY, ICMP6_DST_UNREACH, ICMP6_PACKET_TOO_BIG,
                      ICMP6_TIME_EXCEEDED, ICMP6_PARAM_PROB})
            ICMP6_FILTER_SETPASS(t, &filter);
        rc = setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
    } else {
        icmp_filter filter{};
        filter.data = ~((1u << ICMP_ECHOREPLY) | (1u << ICMP_DEST_UNREACH) |
                        (1u << ICMP_TIME_EXCEEDED) | (1u << ICMP_PARAMETERPROB));
        rc = setsockopt(fd, SOL_RAW, ICMP_FILTER, &filter, sizeof filter);
    }
    // --outbound-addr: requests leave from it (and only replies to it come
    // back).
    if (rc == 0 && !gw_.config().bind_outbound(fd, family)) rc = -1;
    if (rc != 0) {
        // Unfiltered, the socket would get every ICMP message of the host;
        // bound elsewhere, it would send from the wrong address.
        const int e = errno;
        close(fd);
        errno = e;
        return nullptr;
    }
    auto raw = std::make_unique<RawSock>();
    raw->nat = this;
    raw->fd = fd;
    raw->v6 = v6;
    try {
        loop_.add(fd, EPOLLIN, raw.get());
    } catch (const std::system_error& e) {
        close(fd);
        spdlog::debug("icmp: {}", e.what());
        errno = e.code().value();
        return nullptr;
    }
    return raw;
}

// Chooses ping sockets, the raw fallback, or neither, once.
bool IcmpNat::decide_mode() {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd >= 0) {
        close(fd);
        mode_ = Mode::ping_socket;
        spdlog::debug("icmp: using ICMP echo sockets");
        return true;
    }
    const int ping_err = errno;
    if (ping_err == EMFILE || ping_err == ENFILE || ping_err == ENOBUFS || ping_err == ENOMEM)
        return false;  // transient: decide later
    if (auto raw = open_raw(AF_INET)) {
        raw_ = std::move(raw);
        mode_ = Mode::raw_socket;
        raw6_ = open_raw(AF_INET6);
        const int raw6_err = raw6_ ? 0 : errno;
        spdlog::info(
            "icmp: ICMP echo sockets not allowed ({}; net.ipv4.ping_group_range is "
            "\"{}\"), using raw sockets",
            std::strerror(ping_err), ping_group_range());
        if (!raw6_)
            spdlog::warn("ping beyond the gateway over IPv6 is unavailable: no raw ICMPv6 "
                         "socket ({})",
                         std::strerror(raw6_err));
        return true;
    }
    const int raw_err = errno;
    if (raw_err == EMFILE || raw_err == ENFILE || raw_err == ENOBUFS || raw_err == ENOMEM)
        return false;
    mode_ = Mode::unavailable;
    spdlog::warn(
        "ping beyond the gateway is unavailable: ICMP echo sockets are not allowed ({}: "
        "net.ipv4.ping_group_range is \"{}\", which excludes group {}) and a raw "
        "socket needs CAP_NET_RAW ({}). To allow it: sysctl -w "
        "net.ipv4.ping_group_range=\"0 2147483647\"",
        std::strerror(ping_err), ping_group_range(), getgid(), std::strerror(raw_err));
    return false;
}

// ---------------------------------------------------------------- guest -> host

// A destination unreachable from a guest (not "fragmentation needed": the
// TCP translator cuts segments to the guest's MSS) about a TCP segment we
// sent it: TcpNat refuses a port-forwarded connection still in its
// handshake. The quote must be of a segment to the sender itself and from
// the address the error goes to, so that a guest reaches only its own
// flows. True when msg was such an error (handled or ignored, counted).
bool IcmpNat::guest_error(const gw::GuestPacket& pkt, bool v6, wire::Bytes msg) {
    if (msg.size() < wire::kIcmpHeaderLen) return false;
    const uint8_t type = msg[0], code = msg[1];
    if (v6 ? type != wire::icmp6type::dest_unreach
           : type != wire::icmptype::dest_unreach || code == wire::icmpcode::frag_needed)
        return false;
    stats_.guest_unreachables++;
    const wire::Bytes q = msg.subspan(wire::kIcmpHeaderLen);
    tcp::FlowKey key;
    size_t l4 = 0;
    if (v6) {
        constexpr size_t kIp6 = wire::kIpv6HeaderLen;
        if (q.size() < kIp6 + 8 || (q[0] >> 4) != 6 || q[6] != wire::ipproto::tcp) return true;
        key.remote = wire::IpAddr::v6_from(&q[8]);
        key.guest = wire::IpAddr::v6_from(&q[24]);
        l4 = kIp6;
    } else {
        if (q.size() < wire::kIpv4HeaderLen || (q[0] >> 4) != 4) return true;
        l4 = size_t{q[0] & 0x0fu} * 4;
        if (l4 < wire::kIpv4HeaderLen || q.size() < l4 + 8 || q[9] != wire::ipproto::tcp)
            return true;
        key.remote = wire::IpAddr::v4_from(&q[12]);
        key.guest = wire::IpAddr::v4_from(&q[16]);
    }
    if (key.guest != pkt.src || key.remote != pkt.dst) return true;
    key.remote_port = wire::load16(&q[l4]);
    key.guest_port = wire::load16(&q[l4 + 2]);
    nat_.tcp().guest_unreachable(key, wire::load32(&q[l4 + 4]));
    return true;
}

void IcmpNat::from_guest(const gw::GuestPacket& pkt) {
    // An echo request, ICMPv4 or ICMPv6 by the guest's family: the same
    // 8-byte header (type, code, checksum, identifier, sequence).
    const bool v6 = !pkt.src.is_v4();
    wire::Bytes msg;
    uint16_t id = 0, seq = 0, csum = 0;
    bool echo = false;
    if (v6) {
        auto icmp = wire::Icmp6View::parse(pkt.l4);
        if (!icmp) {
            stats_.dropped_malformed++;
            nat_.stats().dropped_malformed++;
            return;
        }
        if (!pkt.l4_csum_trusted && !icmp->checksum_ok(pkt.src, pkt.dst)) {
            stats_.dropped_checksum++;
            nat_.stats().dropped_malformed++;
            return;
        }
        echo = icmp->type() == wire::icmp6type::echo_request && icmp->code() == 0;
        msg = icmp->message();
        if (echo) {
            id = icmp->echo_id();
            seq = icmp->echo_seq();
        }
    } else {
        auto icmp = wire::Icmp4View::parse(pkt.l4);
        if (!icmp) {
            stats_.dropped_malformed++;
            nat_.stats().dropped_malformed++;
            return;
        }
        if (!pkt.l4_csum_trusted && !icmp->checksum_ok()) {
            stats_.dropped_checksum++;
            nat_.stats().dropped_malformed++;
            return;
        }
        echo = icmp->type() == wire::icmptype::echo_request && icmp->code() == 0;
        msg = icmp->message();
        id = icmp->echo_id();
        seq = icmp->echo_seq();
        csum = icmp->checksum();
    }
    if (!echo && guest_error(pkt, v6, msg)) return;
    const gw::NetConfig& cfg = gw_.config();
    if (!echo || pkt.dst.is_v4() != !v6 || !is_unicast(pkt.dst, cfg) ||
        !is_unicast(pkt.src, cfg)) {
        stats_.dropped_unsupported++;
        return;
    }
    HostTarget t = nat_.host_target(pkt.dst, 0, v6 ? wire::ipproto::icmpv6 : wire::ipproto::icmp);
    if (!t.ok() || t.addr.ss_family != (v6 ? AF_INET6 : AF_INET)) {
        stats_.dropped_unreachable++;
        if (t.ok()) nat_.stats().dropped_unreachable++;
        send_error(nat_.gateway_for(pkt.src), pkt.src, wire::icmptype::dest_unreach,
                    t.forbidden() ? wire::icmpcode::admin_prohibited : wire::icmpcode::host_unreach,
                    0, pkt.ip_packet);
        return;
    }
    const sockaddr_storage* target = &t.addr;
    if (mode_ == Mode::undecided) decide_mode();
    if (!can_echo(v6)) {
        stats_.dropped_unavailable++;
        return;
    }
    Flow* f = flow_for(pkt, id, *target);
    if (!f) return;  // counted

    ssize_t sent;
    for (int attempt = 0;; attempt++) {
        if (mode_ == Mode::ping_socket) {
            // The kernel sets the identifier and the checksum.
            sent = send_datagram(f->fd, msg, f->target, pkt.ttl);
        } else {
            if (msg.size() > buf_.size()) {
                stats_.dropped_send++;
                return;
            }
            std::memcpy(buf_.data(), msg.data(), msg.size());
            wire::store16(&buf_[4], f->raw_id);
            // ICMPv6: the kernel computes the checksum (its pseudo-header
            // has addresses we do not choose).
            wire::store16(&buf_[2],
                          v6 ? 0 : wire::csum_update16(csum, f->guest_id, f->raw_id));
            sent = send_datagram(v6 ? raw6_->fd : raw_->fd,
                                 wire::Bytes(buf_.data(), msg.size()), f->target, pkt.ttl);
        }
        if (sent >= 0) break;
        const int err = errno;
        // A ping socket reports an earlier error once: drain it and retry.
        if (attempt == 0 && mode_ == Mode::ping_socket && err != EAGAIN && err != ENOBUFS &&
            err != ENOMEM && err != EINTR) {
            ping_errors(*f);
            continue;
        }
        stats_.dropped_send++;
        if (auto code = unreach_code_for_errno(err); code && err != ECONNREFUSED)
            send_error(nat_.gateway_for(pkt.src), pkt.src, wire::icmptype::dest_unreach, *code,
                        0, pkt.ip_packet);
        return;
    }
    if (mode_ == Mode::raw_socket) f->note_seq(seq);
    lru_.touch(*f, loop_.now());
    stats_.echo_requests++;
}

void IcmpNat::drop_port(uint32_t port) {
    while (FlowLru::Entry* e = lru_.any_of(port)) destroy_flow(static_cast<Flow&>(*e));
}

IcmpNat::Flow* IcmpNat::flow_for(const gw::GuestPacket& pkt, uint16_t id,
                                 const sockaddr_storage& target) {
    FlowKey key{pkt.src, pkt.dst, id};
    auto it = flows_.find(key);
    if (it != flows_.end()) return it->second.get();
    if (FlowLru::Entry* victim = lru_.victim_for(pkt.port)) {
        destroy_flow(static_cast<Flow&>(*victim));
        stats_.flows_evicted++;
    }
    auto f = std::make_unique<Flow>();
    f->nat = this;
    f->guest = pkt.src;
    f->dst = pkt.dst;
    f->target = target;
    f->host_dst = from_sockaddr(target).first;
    f->guest_id = id;
    if (mode_ == Mode::ping_socket) {
        for (int attempt = 0; attempt < 2 && f->fd < 0; attempt++) {
            f->fd = f->guest.is_v4()
                        ? socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP)
                        : socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                 IPPROTO_ICMPV6);
            if (f->fd < 0 && (errno == EMFILE || errno == ENFILE) && lru_.oldest()) {
                destroy_flow(static_cast<Flow&>(*lru_.oldest()));
                stats_.flows_evicted++;
            }
        }
        if (f->fd < 0) {
            stats_.dropped_socket++;
            if (debug_on()) spdlog::debug("icmp: socket: {}", std::strerror(errno));
            return nullptr;
        }
        int one = 1;
        if (f->guest.is_v4()) setsockopt(f->fd, SOL_IP, IP_RECVERR, &one, sizeof one);
        else setsockopt(f->fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof one);
        if (!gw_.config().bind_outbound(f->fd, f->guest.is_v4() ? AF_INET : AF_INET6)) {
            if (debug_on()) spdlog::debug("icmp: --outbound-addr: {}", std::strerror(errno));
            close(f->fd);
            stats_.dropped_socket++;
            return nullptr;
        }
        try {
            loop_.add(f->fd, EPOLLIN, f.get());
        } catch (const std::system_error& e) {
            close(f->fd);
            stats_.dropped_socket++;
            spdlog::debug("icmp: {}", e.what());
            return nullptr;
        }
    } else {
        f->raw_id = alloc_raw_id();
        by_raw_id_.emplace(f->raw_id, f.get());
    }
    Flow* raw = f.get();
    lru_.insert(*raw, pkt.port, loop_.now());
    flows_.emplace(key, std::move(f));
    stats_.flows_created++;
    if (debug_on())
        spdlog::debug("icmp: new echo flow {} id {} -> {}", pkt.src.to_string(), id,
                      pkt.dst.to_string());
    arm_sweep();
    return raw;
}

uint16_t IcmpNat::alloc_raw_id() {
    // At most icmp_flows identifiers are taken: this ends quickly.
    while (by_raw_id_.count(next_raw_id_) || next_raw_id_ == 0) next_raw_id_++;
    return next_raw_id_++;
}

void IcmpNat::destroy_flow(Flow& f) {
    if (f.fd >= 0) {
        loop_.remove(f.fd, &f);
        close(f.fd);
        f.fd = -1;
    }
    if (mode_ == Mode::raw_socket) by_raw_id_.erase(f.raw_id);
    lru_.erase(f);
    flows_.erase(FlowKey{f.guest, f.dst, f.guest_id});  // f is gone
}

// ---------------------------------------------------------------- host -> guest

void IcmpNat::deliver_reply(Flow& f, uint16_t seq, wire::Bytes payload) {
    const bool v4 = f.guest.is_v4();
    const size_t len = wire::kIcmpHeaderLen + payload.size();
    const size_t iph = v4 ? wire::kIpv4HeaderLen : wire::kIpv6HeaderLen;
    // Larger than the guest's MTU: the gateway sends it as fragments.
    if ((v4 && iph + len > 0xffff) || len > 0xffff || len > gw::Gateway::tx_l4_capacity()) {
        stats_.dropped_too_big++;
        return;
    }
    uint8_t* p = gw_.tx_l4();
    std::memmove(p + wire::kIcmpHeaderLen, payload.data(), payload.size());
    const uint32_t rest = (uint32_t{f.guest_id} << 16) | seq;
    if (v4) {
        wire::build_icmp4(p, wire::icmptype::echo_reply, 0, rest, len);
    } else {
        p[0] = wire::icmp6type::echo_reply;
        p[1] = 0;
        wire::store32(p + 4, rest);
        wire::finish_icmp6(p, len, f.dst, f.guest);
    }
    if (gw_.send_ip(f.dst, f.guest, v4 ? wire::ipproto::icmp : wire::ipproto::icmpv6, len))
        stats_.echo_replies++;
    lru_.touch(f, loop_.now());
}

void IcmpNat::ping_read(Flow& f) {
    for (int i = 0; i < kMaxReads; i++) {
        ssize_t n = recv(f.fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ping_errors(f);
            return;
        }
        const wire::Bytes got(buf_.data(), static_cast<size_t>(n));
        if (f.guest.is_v4()) {
            auto icmp = wire::Icmp4View::parse(got);
            if (!icmp || icmp->type() != wire::icmptype::echo_reply) continue;
            deliver_reply(f, icmp->echo_seq(), icmp->payload());
        } else {
            auto icmp = wire::Icmp6View::parse(got);
            if (!icmp || icmp->type() != wire::icmp6type::echo_reply) continue;
            deliver_reply(f, icmp->echo_seq(), icmp->body());
        }
    }
}

void IcmpNat::ping_errors(Flow& f) {
    for (int i = 0; i < kMaxReads; i++) {
        QueuedError qe;
        if (!read_queued_error(f.fd, buf_, qe)) break;
        std::optional<Icmp4Error> ie = icmp4_error_for(qe);
        if (!ie) continue;
        wire::IpAddr from = f.dst;
        if (qe.origin == SO_EE_ORIGIN_LOCAL) {
            from = nat_.gateway_for(f.guest);
        } else if (qe.offender.ss_family == AF_INET || qe.offender.ss_family == AF_INET6) {
            wire::IpAddr off = from_sockaddr(qe.offender).first;
            if (off != f.host_dst) from = nat_.guest_visible(off);
        }
        // The payload is the quoted echo request, from its ICMP header on.
        wire::Bytes quoted(buf_.data(), qe.payload_len);
        const uint16_t seq = quoted.size() >= 8 ? wire::load16(&quoted[6]) : 0;
        quote_error(f, from, ie->type, ie->code, ie->rest, seq,
                    quoted.size() >= 8 ? quoted.subspan(8) : wire::Bytes{});
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(f.fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
}

// Rebuilds the guest's echo request (its identifier, our quote of the
// payload) and sends the error about it.
void IcmpNat::quote_error(Flow& f, const wire::IpAddr& from, uint8_t type, uint8_t code,
                          uint32_t rest, uint16_t seq, wire::Bytes echo_payload) {
    const bool v4 = f.guest.is_v4();
    // Within 576 bytes for ICMP, 1280 for ICMPv6 (RFC 4443 2.4 (c)).
    constexpr size_t kMaxQuote4 = kMaxErrorLen - wire::kIcmpHeaderLen;
    constexpr size_t kMaxQuote6 = 1280 - wire::kIpv6HeaderLen - 8;
    std::array<uint8_t, kMaxQuote6> q{};
    const size_t iph = v4 ? wire::kIpv4HeaderLen : wire::kIpv6HeaderLen;
    const size_t hdrs = iph + wire::kIcmpHeaderLen;
    const size_t plen = std::min(echo_payload.size(), (v4 ? kMaxQuote4 : kMaxQuote6) - hdrs);
    const size_t len = wire::kIcmpHeaderLen + plen;
    std::memcpy(q.data() + hdrs, echo_payload.data(), plen);
    const uint32_t id_seq = (uint32_t{f.guest_id} << 16) | seq;
    if (v4) {
        wire::build_ipv4(q.data(), f.guest.as_v4(), f.dst.as_v4(), wire::ipproto::icmp, len);
        wire::build_icmp4(q.data() + iph, wire::icmptype::echo_request, 0, id_seq, len);
    } else {
        wire::build_ipv6(q.data(), f.guest, f.dst, wire::ipproto::icmpv6, len);
        uint8_t* m = q.data() + iph;
        m[0] = wire::icmp6type::echo_request;
        m[1] = 0;
        wire::store32(m + 4, id_seq);
        wire::finish_icmp6(m, len, f.guest, f.dst);
    }
    send_error(from, f.guest, type, code, rest, wire::Bytes(q.data(), hdrs + plen));
}

void IcmpNat::raw_read() {
    for (int i = 0; i < kMaxReads; i++) {
        ssize_t n = recv(raw_->fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
        if (n < 0) return;
        auto ip = wire::Ipv4View::parse(wire::Bytes(buf_.data(), static_cast<size_t>(n)));
        if (!ip || ip->protocol() != wire::ipproto::icmp || ip->is_fragment()) {
            stats_.raw_ignored++;
            continue;
        }
        auto icmp = wire::Icmp4View::parse(ip->payload());
        if (!icmp || !icmp->checksum_ok()) {
            stats_.raw_ignored++;
            continue;
        }
        if (icmp->type() == wire::icmptype::echo_reply) {
            auto it = by_raw_id_.find(icmp->echo_id());
            Flow* f = it == by_raw_id_.end() ? nullptr : it->second;
            // Not ours: another program's ping, or a stray duplicate.
            if (!f || f->host_dst != ip->src_addr() || !f->take_seq(icmp->echo_seq())) {
                stats_.raw_ignored++;
                continue;
            }
            deliver_reply(*f, icmp->echo_seq(), icmp->payload());
        } else if (is_icmp_error_type(icmp->type())) {
            raw_error(ip->src_addr(), icmp->type(), icmp->code(), icmp->rest(), icmp->payload());
        }
    }
}

void IcmpNat::raw_read6() {
    for (int i = 0; i < kMaxReads; i++) {
        // An ICMPv6 raw socket reads from the ICMPv6 header on, with the
        // sender in the address; the kernel has checked the checksum.
        sockaddr_in6 from{};
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(raw6_->fd, buf_.data(), buf_.size(), MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from), &flen);
        if (n < 0) return;
        auto icmp = wire::Icmp6View::parse(wire::Bytes(buf_.data(), static_cast<size_t>(n)));
        if (!icmp || flen < sizeof from || from.sin6_family != AF_INET6) {
            stats_.raw_ignored++;
            continue;
        }
        const wire::IpAddr src =
            wire::IpAddr::v6_from(reinterpret_cast<const uint8_t*>(&from.sin6_addr));
        if (icmp->type() == wire::icmp6type::echo_reply) {
            auto it = by_raw_id_.find(icmp->echo_id());
            Flow* f = it == by_raw_id_.end() ? nullptr : it->second;
            if (!f || f->guest.is_v4() || f->host_dst != src || !f->take_seq(icmp->echo_seq())) {
                stats_.raw_ignored++;
                continue;
            }
            deliver_reply(*f, icmp->echo_seq(), icmp->body());
        } else if (wire::is_icmp6_error(icmp->type()) && n >= 8) {
            // The error's second word (the MTU of packet too big), then
            // the quoted packet.
            raw_error6(src, icmp->type(), icmp->code(), wire::load32(&buf_[4]),
                       icmp->message().subspan(8));
        } else {
            stats_.raw_ignored++;
        }
    }
}

// An ICMPv6 error on the raw socket: it must quote one of our echo
// requests (an IPv6 header with no extension headers, as we sent it, and
// the echo header), to the flow's destination with an outstanding sequence.
void IcmpNat::raw_error6(const wire::IpAddr& from, uint8_t type, uint8_t code, uint32_t info,
                         wire::Bytes quoted) {
    constexpr size_t kIp6 = wire::kIpv6HeaderLen;
    if (quoted.size() < kIp6 + wire::kIcmpHeaderLen || (quoted[0] >> 4) != 6 ||
        quoted[6] != wire::ipproto::icmpv6 || quoted[kIp6] != wire::icmp6type::echo_request) {
        stats_.raw_ignored++;
        return;
    }
    const wire::IpAddr qdst = wire::IpAddr::v6_from(&quoted[24]);
    const uint16_t id = wire::load16(&quoted[kIp6 + 4]);
    const uint16_t seq = wire::load16(&quoted[kIp6 + 6]);
    auto it = by_raw_id_.find(id);
    Flow* f = it == by_raw_id_.end() ? nullptr : it->second;
    if (!f || f->guest.is_v4() || f->host_dst != qdst || !f->has_seq(seq)) {
        stats_.raw_ignored++;
        return;
    }
    // Said the ICMPv4 way, as for a ping socket's queued error; send_error
    // says it the ICMPv6 way again.
    QueuedError qe;
    qe.origin = SO_EE_ORIGIN_ICMP6;
    qe.type = type;
    qe.code = code;
    qe.info = info;
    std::optional<Icmp4Error> ie = icmp4_error_for(qe);
    if (!ie) {
        stats_.raw_ignored++;
        return;
    }
    wire::IpAddr src = from == f->host_dst ? f->dst : nat_.guest_visible(from);
    quote_error(*f, src, ie->type, ie->code, ie->rest, seq,
                quoted.subspan(kIp6 + wire::kIcmpHeaderLen));
}

// An error on the raw socket: it quotes one of our echo requests or not.
void IcmpNat::raw_error(const wire::IpAddr& from, uint8_t type, uint8_t code, uint32_t rest,
                        wire::Bytes quoted) {
    if (quoted.size() < wire::kIpv4HeaderLen || (quoted[0] >> 4) != 4) {
        stats_.raw_ignored++;
        return;
    }
    const size_t ihl = size_t{quoted[0] & 0x0fu} * 4;
    if (ihl < wire::kIpv4HeaderLen || quoted.size() < ihl + wire::kIcmpHeaderLen ||
        quoted[9] != wire::ipproto::icmp || quoted[ihl] != wire::icmptype::echo_request) {
        stats_.raw_ignored++;
        return;
    }
    const wire::IpAddr qdst = wire::IpAddr::v4_from(&quoted[16]);
    const uint16_t id = wire::load16(&quoted[ihl + 4]);
    const uint16_t seq = wire::load16(&quoted[ihl + 6]);
    auto it = by_raw_id_.find(id);
    Flow* f = it == by_raw_id_.end() ? nullptr : it->second;
    if (!f || f->host_dst != qdst || !f->has_seq(seq)) {
        stats_.raw_ignored++;
        return;
    }
    uint32_t r = 0;
    if (type == wire::icmptype::dest_unreach && code == wire::icmpcode::frag_needed)
        r = rest & 0xffff;
    else if (type == 12)
        r = rest & 0xff000000u;
    wire::IpAddr src = from == f->host_dst ? f->dst : nat_.guest_visible(from);
    quote_error(*f, src, type, code, r, seq, quoted.subspan(ihl + wire::kIcmpHeaderLen));
}

// ---------------------------------------------------------------- errors to guests

bool IcmpNat::send_error(const wire::IpAddr& from, const wire::IpAddr& guest, uint8_t type,
                         uint8_t code, uint32_t rest, wire::Bytes quote) {
    if (!guest.is_v4()) return send_error6(from, guest, type, code, rest, quote);
    if (!from.is_v4() || quote.size() < wire::kIpv4HeaderLen) return false;
    // RFC 1122 3.2.2: never about an ICMP error, a non-first fragment, or a
    // packet from a non-unicast source.
    const size_t ihl = size_t{quote[0] & 0x0fu} * 4;
    if (quote[9] == wire::ipproto::icmp && quote.size() > ihl && is_icmp_error_type(quote[ihl]))
        return false;
    if ((wire::load16(&quote[6]) & 0x1fff) != 0) return false;
    if (!is_unicast(guest, gw_.config())) return false;

    // The gateway's buckets, shared with its own time-exceeded messages.
    if (!gw_.icmp_error_allowed(guest)) {
        stats_.errors_rate_limited++;
        return false;
    }

    const size_t qlen = std::min(quote.size(), kMaxErrorLen - wire::kIcmpHeaderLen);
    const size_t len = wire::kIcmpHeaderLen + qlen;
    uint8_t* p = gw_.tx_l4();
    std::memmove(p + wire::kIcmpHeaderLen, quote.data(), qlen);
    wire::build_icmp4(p, type, code, rest, len);
    if (!gw_.send_ip(from, guest, wire::ipproto::icmp, len)) return false;
    stats_.errors_sent++;
    return true;
}

bool IcmpNat::send_error6(const wire::IpAddr& from, const wire::IpAddr& guest, uint8_t type,
                          uint8_t code, uint32_t rest, wire::Bytes quote) {
    if (from.is_v4()) return false;
    // The ICMPv6 message for the ICMPv4 one (RFC 7915 4.2, the other way).
    uint8_t t6 = wire::icmp6type::dest_unreach, c6 = wire::icmp6code::addr_unreach;
    uint32_t r6 = 0;
    if (type == wire::icmptype::time_exceeded) {
        t6 = wire::icmp6type::time_exceeded;
        c6 = code;
    } else if (type != wire::icmptype::dest_unreach) {
        return false;
    } else {
        switch (code) {
        case wire::icmpcode::net_unreach:
            c6 = wire::icmp6code::no_route;
            break;
        case wire::icmpcode::port_unreach:
            c6 = wire::icmp6code::port_unreach;
            break;
        case wire::icmpcode::proto_unreach:
            t6 = wire::icmp6type::param_problem;
            c6 = 1;  // unrecognized next header, at the header's next-header field
            r6 = 6;
            break;
        case wire::icmpcode::frag_needed:
            t6 = wire::icmp6type::packet_too_big;
            c6 = 0;
            r6 = std::max<uint32_t>(rest & 0xffff, 1280);
            break;
        case wire::icmpcode::admin_prohibited:
        case 9:
        case 10:
            c6 = wire::icmp6code::admin_prohibited;
            break;
        default:
            break;
        }
    }
    // RFC 4443 2.4 (e): never about an ICMPv6 error, a fragment other than
    // the first, or a packet to or from a group or unspecified address. A
    // quote is often cut short of the length its header gives (the TCP
    // translator quotes a SYN's first 8 bytes): it is read as far as it
    // goes.
    constexpr size_t kMax6 = 1280 - wire::kIpv6HeaderLen - 8;
    const size_t qlen = std::min(quote.size(), kMax6);
    if (qlen < wire::kIpv6HeaderLen) return false;
    std::array<uint8_t, kMax6> head;
    std::memcpy(head.data(), quote.data(), qlen);
    wire::store16(&head[4], static_cast<uint16_t>(std::min<size_t>(
                                wire::load16(&head[4]), qlen - wire::kIpv6HeaderLen)));
    auto ip = wire::Ipv6View::parse(wire::Bytes(head.data(), qlen));
    if (!ip) return false;
    if (ip->is_fragment() && ip->frag_offset() != 0) return false;
    if (ip->protocol() == wire::ipproto::icmpv6 && !ip->is_fragment()) {
        auto m = wire::Icmp6View::parse(ip->payload());
        if (!m || wire::is_icmp6_error(m->type())) return false;
    }
    if (!is_unicast(guest, gw_.config())) return false;
    if (!gw_.icmp_error_allowed(guest)) {
        stats_.errors_rate_limited++;
        return false;
    }
    // As much of the packet as keeps the error within the minimum MTU.
    const size_t len = 8 + qlen;
    uint8_t* p = gw_.tx_l4();
    std::memmove(p + 8, quote.data(), qlen);
    p[0] = t6;
    p[1] = c6;
    wire::store32(p + 4, r6);
    wire::finish_icmp6(p, len, from, guest);
    if (!gw_.send_ip(from, guest, wire::ipproto::icmpv6, len)) return false;
    stats_.errors_sent++;
    return true;
}

// ---------------------------------------------------------------- expiry

void IcmpNat::arm_sweep() {
    if (!sweep_.armed() && !flows_.empty()) loop_.arm(sweep_, kSweepMs);
}

void IcmpNat::expire_idle() {
    const core::Millis now = loop_.now();
    const core::Millis idle_ms = nat_.limits().icmp_idle_ms;
    while (FlowLru::Entry* e = lru_.oldest()) {
        if (now - std::min(now, e->last_used()) < idle_ms) break;
        Flow& f = static_cast<Flow&>(*e);
        if (debug_on())
            spdlog::debug("icmp: echo flow {} id {} -> {} expired", f.guest.to_string(), f.guest_id,
                          f.dst.to_string());
        destroy_flow(f);
        stats_.flows_expired++;
    }
}

bool IcmpNat::release_oldest() {
    for (FlowLru::Entry* e = lru_.oldest(); e; e = FlowLru::newer(*e)) {
        Flow& f = static_cast<Flow&>(*e);
        if (f.fd < 0) continue;  // raw mode: the shared socket serves it
        destroy_flow(f);
        stats_.flows_evicted++;
        return true;
    }
    return false;
}

}  // namespace usernet::nat
