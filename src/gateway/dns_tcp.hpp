// The DNS address's TCP service (RFC 7766): what a guest's connection to
// cfg.dns:53 or [cfg.dns6]:53 reaches.
//
// The NAT gives such a connection to open_session() (Nat::host_target,
// HostTarget::dns_tcp) instead of connecting it to an upstream itself: the
// TCP translator's host side is one end of a unix socketpair, and this
// service serves the other, so that local names (DnsForwarder's:
// the host's alias, --dns-host, guests' DHCP names) are answered over TCP
// as over UDP. Each message the guest sends (two length bytes, then the
// message) is read whole: a query for a local name is answered here; any
// other goes, unchanged, over one TCP connection per session to the
// upstream that answered UDP last (the next ones in turn when a connect
// fails), and the upstream's messages come back whole, so that local
// answers never split one. Queries may be pipelined and answers come in
// any order, as RFC 7766 6.2.1 allows. With no upstream a query gets
// REFUSED. An answer is matched to its query by id and question (a zone
// transfer's later messages by id). An upstream that closes the connection
// with queries unanswered gets them again once, over a new connection.
// Queries no upstream can be reached for (each refused, or not connected
// within kUpstreamWaitMs), or that get no answer in kUpstreamWaitMs, are
// answered SERVFAIL: a guest never waits long on a dead resolver.
//
// Bounds: kMaxSessions sessions, kMaxSessionsPerGuest for one attachment
// (a connection beyond is refused, and the guest sees a RST); a message
// from the guest that is not a DNS query ends its session; one whose
// question does not parse, or of more than kMaxQueryLen bytes, is answered
// FORMERR (the rest of it read past); answers wait in a buffer of at most kMaxOut
// bytes, and while it is full neither side is read (the guest's window and
// the upstream's close). A session idle for kIdleMs (no query pending) is
// closed, as RFC 7766 6.2.3 lets a server do.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/net_config.hpp"

namespace usernet::gw {

class DnsForwarder;

struct DnsTcpStats {
    uint64_t sessions = 0;        // opened
    uint64_t refused = 0;         // sessions refused: kMaxSessions reached, or no socketpair
    uint64_t local_answers = 0;   // queries answered from local names
    uint64_t forwarded = 0;       // queries sent upstream
    uint64_t answers = 0;         // upstream messages relayed
    uint64_t servfail = 0;        // queries answered SERVFAIL (upstream unreachable or gone)
    uint64_t no_upstream = 0;     // queries answered REFUSED (no upstream)
    uint64_t formerr = 0;         // queries answered FORMERR (unreadable question, too long)
    uint64_t bad_queries = 0;     // sessions ended by a message that is not a query
    uint64_t idle_closed = 0;     // sessions closed after kIdleMs
    uint64_t upstream_timeouts = 0;  // connects or answers that took over kUpstreamWaitMs
};

class DnsTcpService final : private core::Deferred {
public:
    static constexpr size_t kMaxSessions = 256;
    static constexpr size_t kMaxSessionsPerGuest = 32;
    static constexpr core::Millis kUpstreamWaitMs = 5'000;
    static constexpr size_t kMaxQueryLen = 4096;
    static constexpr size_t kMaxOut = 2 * (2 + 65535);
    static constexpr core::Millis kIdleMs = 30'000;

    DnsTcpService(core::EventLoop& loop, DnsForwarder& dns);
    ~DnsTcpService();
    DnsTcpService(const DnsTcpService&) = delete;
    DnsTcpService& operator=(const DnsTcpService&) = delete;

    // A new connection of the guest behind attachment `owner`: returns the
    // caller's end of a stream socketpair (non-blocking, close-on-exec), or
    // -errno (-EAGAIN: a session limit).
    int open_session(uint32_t owner);
    size_t sessions() const { return sessions_.size(); }
    const DnsTcpStats& stats() const { return stats_; }

    struct Session;

private:
    friend struct Session;
    // Marks s dead; it is freed after the batch (run_deferred), never from
    // inside one of its own callbacks.
    void close_session(Session* s);
    void run_deferred() override;

    core::EventLoop& loop_;
    DnsForwarder& dns_;
    std::vector<std::unique_ptr<Session>> sessions_;
    std::unordered_map<uint32_t, size_t> per_owner_;  // sessions per attachment
    DnsTcpStats stats_;
};

}  // namespace usernet::gw
