// See dns_tcp.hpp.
#include "gateway/dns_tcp.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/sockaddr.hpp"
#include "gateway/dns_forwarder.hpp"
#include "wire/dns.hpp"

namespace usernet::gw {
namespace {

constexpr size_t kMaxOutstanding = 64;  // queries upstream per session
constexpr uint16_t kTypeIxfr = 251, kTypeAxfr = 252;

// The question section of a message (offset 12 to the end of the first
// question), for matching an answer to its query; empty if none parses.
wire::Bytes question_of(const uint8_t* msg, size_t len) {
    auto v = wire::DnsView::parse(wire::Bytes(msg, len));
    if (!v || v->qdcount() == 0) return {};
    auto q = v->question();
    if (!q || q->end > len) return {};
    return wire::Bytes(msg + wire::kDnsHeaderLen, q->end - wire::kDnsHeaderLen);
}

bool same_question(wire::Bytes a, wire::Bytes b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) {
        uint8_t x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<uint8_t>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<uint8_t>(y + 32);
        if (x != y) return false;
    }
    return true;
}
constexpr uint32_t kEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

}  // namespace

struct DnsTcpService::Session {
    struct End final : core::IoHandler {
        Session* s = nullptr;
        bool upstream = false;
        void on_io(uint32_t events) override { s->io(upstream, events); }
    };

    // A query sent upstream: its framed copy; a zone transfer (AXFR, IXFR)
    // takes several answers, so it stays once answered (`answered`), and
    // later messages with its id are its own.
    struct Query {
        std::vector<uint8_t> framed;
        bool transfer = false;
        bool answered = false;
    };

    DnsTcpService& svc;
    uint32_t owner = 0;
    int g = -1;  // our end of the guest's socketpair
    int u = -1;  // the upstream connection, when there is one
    End g_end, u_end;
    bool g_eof = false;
    bool u_connecting = false;
    bool dead = false;
    bool reconnected = false;  // the upstream's close was met by one reconnect
    std::vector<HostPort> order;  // upstreams to try, from the one answering last
    size_t tried = 0;             // ... how many of them so far
    std::vector<uint8_t> in_g, in_u;    // a message being read
    size_t skip_g = 0;  // bytes of an over-long query still to throw away
    std::vector<uint8_t> out_g, out_u;  // framed messages to write
    size_t out_g_off = 0, out_u_off = 0;
    // The queries sent upstream and not answered yet (and transfers).
    std::vector<Query> outstanding;
    // kIdleMs without a query pending, kUpstreamWaitMs for a connect or an
    // answer while one is.
    core::Timer timer;

    explicit Session(DnsTcpService& service, uint32_t owner_)
        : svc(service), owner(owner_), timer([this] { on_timer(); }) {
        g_end.s = this;
        u_end.s = this;
        u_end.upstream = true;
    }
    ~Session() {
        svc.per_owner_[owner]--;
        if (svc.per_owner_[owner] == 0) svc.per_owner_.erase(owner);
        if (g >= 0) {
            svc.loop_.remove(g, &g_end);
            close(g);
        }
        close_upstream();
    }

    void close_upstream() {
        if (u < 0) return;
        svc.loop_.remove(u, &u_end);
        close(u);
        u = -1;
        u_connecting = false;
        in_u.clear();
        out_u.clear();
        out_u_off = 0;
    }

    void io(bool upstream, uint32_t events) {
        if (dead) return;
        if (upstream) {
            if (u_connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) connected();
            if (u >= 0 && !u_connecting) {
                flush_u();
                read_u();
            }
        }
        flush_g();
        read_g();
        if (u >= 0 && !u_connecting) read_u();  // room made in out_g
        flush_g();
        finish_if_done();
        if (dead) svc.close_session(this);
    }

    size_t waiting() const {
        return static_cast<size_t>(std::count_if(outstanding.begin(), outstanding.end(),
                                                 [](const Query& q) { return !q.answered; }));
    }

    // After progress: the idle limit, or the upstream's deadline.
    void rearm() { svc.loop_.arm(timer, waiting() ? kUpstreamWaitMs : kIdleMs); }

    void on_timer() {
        if (dead) return;
        if (waiting() == 0) {
            svc.stats_.idle_closed++;
            svc.close_session(this);  // freed after this batch
            return;
        }
        // An upstream that does not connect or answer in time: the next
        // one for a connect, SERVFAIL for an answer.
        svc.stats_.upstream_timeouts++;
        if (u_connecting) {
            close_upstream();
            connect_next();
        } else {
            fail_outstanding();
        }
        flush_g();
        finish_if_done();
        if (dead) svc.close_session(this);
        else rearm();
    }

    void finish_if_done() {
        if (g_eof && waiting() == 0 && out_g_off == out_g.size()) dead = true;
    }

    // Guest side -----------------------------------------------------------

    void read_g() {
        std::array<uint8_t, 4096> buf;
        while (!g_eof && !dead && out_g.size() - out_g_off < kMaxOut &&
               outstanding.size() < kMaxOutstanding) {
            const size_t want = std::min(buf.size(), 2 + kMaxQueryLen - in_g.size());
            ssize_t n = recv(g, buf.data(), want, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                if (errno != EAGAIN) dead = true;
                return;
            }
            if (n == 0) {
                g_eof = true;
                return;
            }
            size_t off = 0;
            if (skip_g > 0) {
                off = std::min(skip_g, static_cast<size_t>(n));
                skip_g -= off;
            }
            in_g.insert(in_g.end(), buf.begin() + static_cast<long>(off), buf.begin() + n);
            while (!dead && in_g.size() >= 2) {
                const size_t len = load16(in_g.data());
                if (len < wire::kDnsHeaderLen) {
                    bad("a message of " + std::to_string(len) + " bytes");
                    return;
                }
                if (len > kMaxQueryLen) {
                    // More than a query is kept for: FORMERR with its id
                    // (RFC 6891 7), the rest read past, the session and
                    // the answers owed on it kept.
                    if (in_g.size() < 2 + wire::kDnsHeaderLen) break;
                    const wire::Bytes header(in_g.data() + 2, wire::kDnsHeaderLen);
                    if (wire::DnsView::parse(header)->qr()) {
                        bad("a message that is not a DNS query");
                        return;
                    }
                    formerr(header);
                    const size_t have = std::min(in_g.size(), 2 + len);
                    skip_g = 2 + len - have;
                    in_g.erase(in_g.begin(), in_g.begin() + static_cast<long>(have));
                    continue;
                }
                if (in_g.size() < 2 + len) break;
                query(wire::Bytes(in_g.data() + 2, len));
                in_g.erase(in_g.begin(), in_g.begin() + static_cast<long>(2 + len));
            }
        }
    }

    void bad(const std::string& what) {
        svc.stats_.bad_queries++;
        spdlog::debug("dns over tcp: {} from a guest: closing", what);
        dead = true;
    }

    // FORMERR for the query whose header is msg's first 12 bytes, echoing
    // its question when that parses.
    void formerr(wire::Bytes msg) {
        svc.stats_.formerr++;
        std::array<uint8_t, 2 + 512> answer;
        if (size_t len = wire::dns_build_error(wire::MutBytes(answer.data() + 2, answer.size() - 2),
                                               *wire::DnsView::parse(msg), wire::dnsrcode::formerr))
            push_g(answer.data(), len);
    }

    void query(wire::Bytes msg) {
        auto v = wire::DnsView::parse(msg);
        if (!v || v->qr()) {
            bad("a message that is not a DNS query");
            return;
        }
        // As over UDP (DnsForwarder::from_guest): FORMERR at once.
        if (wire::dns_question_unreadable(*v)) {
            formerr(msg);
            return;
        }
        std::array<uint8_t, 2 + 65535> answer;
        wire::MutBytes body(answer.data() + 2, answer.size() - 2);
        if (size_t len = svc.dns_.local_answer(msg, body)) {
            svc.stats_.local_answers++;
            push_g(answer.data(), len);
            return;
        }
        if (svc.dns_.upstream_count() == 0) {
            svc.stats_.no_upstream++;
            if (size_t len = wire::dns_build_error(body, *v, wire::dnsrcode::refused))
                push_g(answer.data(), len);
            return;
        }
        svc.stats_.forwarded++;
        Query q;
        q.framed = {static_cast<uint8_t>(msg.size() >> 8), static_cast<uint8_t>(msg.size())};
        q.framed.insert(q.framed.end(), msg.data(), msg.data() + msg.size());
        auto qq = v->question();
        q.transfer = qq && (qq->qtype == kTypeAxfr || qq->qtype == kTypeIxfr);
        out_u.insert(out_u.end(), q.framed.begin(), q.framed.end());
        outstanding.push_back(std::move(q));
        rearm();
        if (u < 0) {
            order = svc.dns_.upstreams_in_order();
            tried = 0;
            connect_next();
        } else if (!u_connecting) {
            flush_u();
        }
    }

    // A message of len bytes at buf + 2; the two bytes before it are ours.
    void push_g(uint8_t* buf, size_t len) {
        buf[0] = static_cast<uint8_t>(len >> 8);
        buf[1] = static_cast<uint8_t>(len);
        out_g.insert(out_g.end(), buf, buf + 2 + len);
    }

    void flush_g() {
        while (!dead && out_g_off < out_g.size()) {
            ssize_t n = send(g, out_g.data() + out_g_off, out_g.size() - out_g_off,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                if (errno != EAGAIN) dead = true;
                return;
            }
            out_g_off += static_cast<size_t>(n);
        }
        out_g.clear();
        out_g_off = 0;
    }

    // Upstream side ----------------------------------------------------------

    void connect_next() {
        while (tried < order.size()) {
            const HostPort hp = order[tried++];
            const sockaddr_storage sa = core::to_sockaddr(hp.addr, hp.port, hp.scope);
            const socklen_t len = core::sockaddr_len(sa);
            u = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
            if (u < 0) break;
            int one = 1;
            setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            // From --outbound-addr, as the UDP queries.
            const wire::IpAddr& from = svc.dns_.outbound_addr(sa.ss_family);
            if (!from.is_unspecified()) {
                const sockaddr_storage src = core::to_sockaddr(from, 0);
                if (bind(u, reinterpret_cast<const sockaddr*>(&src), core::sockaddr_len(src)) != 0) {
                    spdlog::debug("dns over tcp: bind to {}: {}", from.to_string(),
                                  std::strerror(errno));
                    close(u);
                    u = -1;
                    continue;
                }
            }
            int rc = connect(u, reinterpret_cast<const sockaddr*>(&sa), len);
            if (rc < 0 && errno != EINPROGRESS) {
                spdlog::debug("dns over tcp: connect to {}: {}", hp.addr.to_string(),
                              std::strerror(errno));
                close(u);
                u = -1;
                continue;
            }
            try {
                svc.loop_.add(u, kEvents, &u_end);
            } catch (const std::exception&) {
                close(u);
                u = -1;
                break;
            }
            u_connecting = true;
            // Whatever is still unanswered goes to this upstream; finished
            // transfers are done with.
            std::erase_if(outstanding, [](const Query& q) { return q.answered; });
            out_u.clear();
            out_u_off = 0;
            for (const Query& q : outstanding)
                out_u.insert(out_u.end(), q.framed.begin(), q.framed.end());
            return;
        }
        fail_outstanding();
    }

    void connected() {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(u, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err == 0) {
            u_connecting = false;
            return;
        }
        spdlog::debug("dns over tcp: upstream connect: {}", std::strerror(err));
        close_upstream();
        connect_next();
    }

    // Every query still waiting gets SERVFAIL: the guest's resolver moves
    // on at once instead of timing out.
    void fail_outstanding() {
        for (const Query& query : outstanding) {
            if (query.answered) continue;  // a transfer cut short: the guest sees the close
            const std::vector<uint8_t>& q = query.framed;
            auto v = wire::DnsView::parse(wire::Bytes(q.data() + 2, q.size() - 2));
            std::array<uint8_t, 2 + 1024> answer;
            size_t len = v ? wire::dns_build_error(wire::MutBytes(answer.data() + 2, 1024), *v,
                                                   wire::dnsrcode::servfail)
                           : 0;
            if (len == 0) continue;
            svc.stats_.servfail++;
            push_g(answer.data(), len);
        }
        outstanding.clear();
        close_upstream();
    }

    void flush_u() {
        while (u >= 0 && out_u_off < out_u.size()) {
            ssize_t n = send(u, out_u.data() + out_u_off, out_u.size() - out_u_off,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                if (errno != EAGAIN) upstream_gone();
                return;
            }
            out_u_off += static_cast<size_t>(n);
        }
        out_u.clear();
        out_u_off = 0;
    }

    void read_u() {
        std::array<uint8_t, 16384> buf;
        while (u >= 0 && out_g.size() - out_g_off < kMaxOut) {
            ssize_t n = recv(u, buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            if (n <= 0) {
                upstream_gone();
                return;
            }
            in_u.insert(in_u.end(), buf.begin(), buf.begin() + n);
            size_t at = 0;
            while (in_u.size() - at >= 2) {
                const size_t len = load16(in_u.data() + at);
                if (in_u.size() - at < 2 + len) break;
                answer(in_u.data() + at, 2 + len);
                at += 2 + len;
            }
            in_u.erase(in_u.begin(), in_u.begin() + static_cast<long>(at));
        }
    }

    // A whole framed message from upstream: the answer to one of ours, by
    // id and question (two pipelined queries may share an id), or a later
    // message of a zone transfer, by id.
    void answer(const uint8_t* framed, size_t len) {
        if (len < 2 + wire::kDnsHeaderLen) return;
        const uint16_t id = load16(framed + 2);
        const wire::Bytes question = question_of(framed + 2, len - 2);
        auto it = std::find_if(outstanding.begin(), outstanding.end(), [&](const Query& q) {
            if (load16(q.framed.data() + 2) != id) return false;
            if (q.answered) return true;  // a transfer's next message
            return same_question(question, question_of(q.framed.data() + 2, q.framed.size() - 2));
        });
        if (it == outstanding.end()) return;  // not ours: dropped
        if (it->transfer) it->answered = true;
        else outstanding.erase(it);
        svc.stats_.answers++;
        reconnected = false;
        rearm();
        out_g.insert(out_g.end(), framed, framed + len);
    }

    // The upstream closed or failed: queries still waiting are sent again
    // once, over a new connection (an upstream may close an idle or a busy
    // connection, RFC 7766 6.2.3), then get SERVFAIL.
    void upstream_gone() {
        close_upstream();
        std::erase_if(outstanding, [](const Query& q) { return q.answered; });
        if (outstanding.empty()) return;
        if (!reconnected) {
            reconnected = true;
            order = svc.dns_.upstreams_in_order();
            tried = 0;
            connect_next();
            return;
        }
        fail_outstanding();
    }
};

DnsTcpService::DnsTcpService(core::EventLoop& loop, DnsForwarder& dns) : loop_(loop), dns_(dns) {}

DnsTcpService::~DnsTcpService() { sessions_.clear(); }  // before per_owner_, which they update

int DnsTcpService::open_session(uint32_t owner) {
    if (sessions_.size() >= kMaxSessions || per_owner_[owner] >= kMaxSessionsPerGuest) {
        if (per_owner_[owner] == 0) per_owner_.erase(owner);
        stats_.refused++;
        return -EAGAIN;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        stats_.refused++;
        return -errno;
    }
    per_owner_[owner]++;
    auto s = std::make_unique<Session>(*this, owner);
    s->g = sv[1];
    try {
        loop_.add(s->g, kEvents, &s->g_end);
    } catch (const std::exception&) {
        close(sv[0]);
        close(sv[1]);
        s->g = -1;
        stats_.refused++;
        return -ENOMEM;
    }
    loop_.arm(s->timer, kIdleMs);
    sessions_.push_back(std::move(s));
    stats_.sessions++;
    return sv[0];
}

void DnsTcpService::close_session(Session* s) {
    s->dead = true;
    loop_.cancel(s->timer);
    loop_.defer(*this);
}

void DnsTcpService::run_deferred() {
    std::erase_if(sessions_, [](const std::unique_ptr<Session>& s) { return s->dead; });
}

}  // namespace usernet::gw
