// The DNS address's UDP service: guests' queries go to the host's resolvers.
//
// A query a guest sends to cfg.dns:53 is checked (a DNS header with QR
// clear), given a fresh random id, remembered in a fixed table of
// kMaxPending entries (the oldest is evicted when it is full) and sent from
// a non-blocking socket (one per address family) to an upstream resolver.
// The reply must come from an upstream this query was sent to and carry
// its id; it is relayed to the guest from cfg.dns:53 with the guest's own
// id. A reply larger than the guest's path MTU allows is cut to the header
// and question with TC set, and the guest retries over TCP, which the NAT
// takes to the first upstream.
//
// Upstreams are tried in order, starting from the one that answered last:
// after kAttemptTimeoutMs without an answer, or at once on a send error or
// an ICMP error queued on the socket (IP_RECVERR, so a loopback resolver
// that is not running fails over without waiting), the next one gets the
// query, until every upstream has had it; then the guest gets SERVFAIL.
// With no upstream at all it gets REFUSED at once, so it never hangs.
//
// Loopback resolvers (systemd-resolved's 127.0.0.53) work: the sockets live
// in the host's namespace. Not done here: caching, local names, DNS over
// TCP (the NAT carries it), EDNS rewriting, per-query source ports (the
// id, the upstream address and the port of our one socket per family have
// to match a reply).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/net_config.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::gw {

class Gateway;

struct DnsForwarderStats {
    uint64_t queries = 0;            // accepted from guests
    uint64_t replies = 0;            // relayed to guests
    uint64_t truncated = 0;          // relayed cut to the question with TC
    uint64_t refused = 0;            // answered REFUSED (no upstream)
    uint64_t servfail = 0;           // answered SERVFAIL (every upstream failed)
    uint64_t timeouts = 0;           // attempts that got no answer in time
    uint64_t upstream_errors = 0;    // send errors and ICMP errors from upstreams
    uint64_t dropped_malformed = 0;  // guest query not a DNS query, or too long
    uint64_t dropped_evicted = 0;    // pending queries pushed out by newer ones
    uint64_t dropped_unmatched = 0;  // upstream datagrams matching no query
};

class DnsForwarder {
public:
    static constexpr size_t kMaxPending = 1024;
    static constexpr size_t kMaxQueryLen = 512;
    static constexpr core::Millis kAttemptTimeoutMs = 2000;

    DnsForwarder(core::EventLoop& loop, Gateway& gw);
    ~DnsForwarder();
    DnsForwarder(const DnsForwarder&) = delete;
    DnsForwarder& operator=(const DnsForwarder&) = delete;

    // The UDP payload of a guest's datagram to cfg.dns:53.
    void from_guest(wire::Ipv4 guest, uint16_t guest_port, wire::Bytes query);

    // Replaces the upstream list (pending queries are dropped).
    void set_upstreams(const std::vector<HostPort>& upstreams);
    size_t upstream_count() const { return upstreams_.size(); }
    // The upstream that answered last (the first one until any answered):
    // where DNS over TCP to the DNS address should go. Empty without
    // upstreams.
    std::optional<HostPort> active_upstream() const;
    size_t pending() const { return n_pending_; }
    const DnsForwarderStats& stats() const { return stats_; }

private:
    struct Socket final : core::IoHandler {
        DnsForwarder* fwd = nullptr;
        int fd = -1;
        int family = 0;
        void on_io(uint32_t events) override { fwd->on_socket(*this, events); }
    };
    struct Upstream {
        HostPort hp;
        sockaddr_storage sa{};
        socklen_t sa_len = 0;
        Socket* sock = nullptr;
    };
    struct Pending {
        bool used = false;
        uint16_t wire_id = 0;   // the id sent upstream
        uint16_t guest_id = 0;
        wire::Ipv4 guest = 0;
        uint16_t guest_port = 0;
        uint16_t len = 0;
        uint32_t first = 0;     // upstream index of the first attempt
        uint32_t tries = 0;     // upstreams tried so far, the current one included
        core::Millis created = 0;
        core::Millis deadline = 0;
        std::array<uint8_t, kMaxQueryLen> query{};  // with wire_id in place
    };

    void on_socket(Socket& s, uint32_t events);
    void on_timer();
    void read_replies(Socket& s);
    void read_errors(Socket& s);
    void relay(Pending& p, uint8_t* msg, size_t len);
    bool send_attempt(Pending& p);
    // Moves p on to the next upstream, or answers SERVFAIL when all failed.
    void next_upstream(Pending& p);
    void answer_error(wire::Ipv4 guest, uint16_t port, wire::Bytes query, uint16_t guest_id,
                      uint8_t rcode);
    void finish(Pending& p);
    Pending* alloc();
    uint16_t fresh_id();
    uint32_t current(const Pending& p) const {
        return static_cast<uint32_t>((p.first + p.tries - 1) % upstreams_.size());
    }
    bool tried(const Pending& p, uint32_t upstream) const;
    void open_socket(Socket& s, int family);
    void close_socket(Socket& s);
    void rearm();
    void drop_all();

    core::EventLoop& loop_;
    Gateway& gw_;
    Socket sock4_;
    Socket sock6_;
    std::vector<Upstream> upstreams_;
    uint32_t preferred_ = 0;  // the upstream that answered last
    std::vector<Pending> table_;
    std::vector<uint16_t> by_id_;  // wire id -> table index + 1, 0: none
    size_t n_pending_ = 0;
    core::Timer timer_;
    std::array<uint16_t, 64> random_ids_{};
    size_t random_left_ = 0;
    uint64_t prng_ = 0;
    DnsForwarderStats stats_;
};

}  // namespace usernet::gw
