// The DNS address's UDP service: guests' queries go to the host's resolvers.
//
// A query a guest sends to cfg.dns:53 or [cfg.dns6]:53 is checked (a DNS header with QR
// clear), given a fresh random id, remembered in a fixed table of
// kMaxPending entries and sent to an upstream resolver from one of a small
// pool of sockets (below). A reply is relayed to the guest from cfg.dns:53
// with the guest's own id only if everything an off-path forger would have
// to guess matches: it comes from an upstream this query was sent to
// (address and port), arrives on the very socket (source port) the query
// left from, carries the query's id, and repeats its question (name
// compared case-insensitively as RFC 4343 says, type and class exactly).
// Anything else is dropped and counted; the real answer still gets through.
// A reply larger than the guest's path MTU allows is cut to the header and
// question with TC set, and the guest retries over TCP, which the NAT takes
// to the first upstream.
//
// Source ports. A fresh socket per query would cost a socket(), an epoll
// registration and a close() per query and up to kMaxPending descriptors.
// Instead kPoolSize sockets per address family, each bound by the kernel
// to a random ephemeral port, serve the queries: each query takes one at
// random, so a forger must guess the port (about 15 bits of the kernel's
// ephemeral range) as well as the 16-bit id (from getrandom()). A socket
// retires after kRotateQueries queries or kRotateMs, whichever comes first,
// so no port is known for long (a port scan could find an open one): it
// takes no new queries, and once its last pending query is done it is
// closed and opened again on a new random port. That work is done when a
// query arrives, never from a socket's own callback, and costs a few
// system calls per hundreds of queries; nothing is allocated per query.
//
// Quota. Each guest (GuestKey: its address today, the switch port it is
// attached to once the gateway knows that) may have kMaxPendingPerGuest
// queries pending; a query over that is dropped and counted (the guest's
// resolver retries), so one guest cannot fill the table and push out the
// others' queries. 256, a quarter of the table: a busy guest's burst (a
// mail server's or a crawler's couple of hundred lookups at once) fits, and
// three quarters of the table stay for the others. The counts live in a
// fixed open-addressing table.
//
// Upstreams are tried in order, starting from the one that answered last:
// after kAttemptTimeoutMs without an answer, or at once on a send error or
// an ICMP error queued on the socket (IP_RECVERR, so a loopback resolver
// that is not running fails over without waiting), the next one gets the
// query, until every upstream has had it; then the guest gets SERVFAIL, at
// once if the last one failed, else when kAnswerWaitMs have passed since
// the query came without an answer from any of them (a slow upstream's
// late answer is relayed until then).
// An ICMP error counts only if it quotes the pending query (id and bytes),
// was sent to that query's current upstream, and is queued on the query's
// own socket. With no upstream at all the guest gets REFUSED at once, so it
// never hangs.
//
// Local names are answered here, before any upstream is asked, and also
// when there is none (Gateway::local_addresses: the host's alias,
// --dns-host entries, guests' DHCP host names): A and AAAA records of the
// family asked, authoritative, TTL kLocalTtl; a name of ours without an
// address of that family gets an empty answer (NODATA), never a trip
// upstream.
//
// Loopback resolvers (systemd-resolved's 127.0.0.53) work: the sockets live
// in the host's namespace. DNS over TCP is DnsTcpService's (dns_tcp.hpp),
// which answers local names through local_answer() too. Not done: caching,
// EDNS rewriting, 0x20 case randomisation.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/net_config.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::gw {

class Gateway;

struct DnsForwarderStats {
    uint64_t queries = 0;            // accepted from guests and sent upstream
    uint64_t local_answers = 0;      // answered from local names
    uint64_t replies = 0;            // relayed to guests
    uint64_t truncated = 0;          // relayed cut to the question with TC
    uint64_t refused = 0;            // answered REFUSED (no upstream)
    uint64_t servfail = 0;           // answered SERVFAIL (every upstream failed)
    uint64_t timeouts = 0;           // attempts that got no answer in time
    uint64_t upstream_errors = 0;    // send errors and ICMP errors from upstreams
    uint64_t formerr = 0;            // answered FORMERR (question unreadable, too long)
    uint64_t dropped_malformed = 0;  // guest datagram not a DNS query
    uint64_t dropped_evicted = 0;    // pending queries pushed out by newer ones
    uint64_t dropped_unmatched = 0;  // upstream datagrams matching no query
    uint64_t dropped_quota = 0;      // guest queries over kMaxPendingPerGuest
    uint64_t socket_rotations = 0;   // pool sockets reopened on a new port
};

// Who a pending query counts against for the per-guest quota: the switch
// port the query came in on (the gateway passes it), so that a guest cannot
// escape its quota by changing its address.
using DnsGuestKey = uint32_t;

class DnsForwarder {
public:
    static constexpr size_t kMaxPending = 1024;
    // The longest query relayed over UDP. Legal EDNS queries can pass 512
    // bytes (padding, cookies, signatures); a slot keeps 512 inline and
    // grows to what it has had to hold, at most this.
    static constexpr size_t kMaxQueryLen = 4096;
    static constexpr size_t kQueryReserve = wire::kDnsMaxUdpLen;
    static constexpr core::Millis kAttemptTimeoutMs = 2000;
    // How long a query waits for any upstream it went to before SERVFAIL:
    // glibc's resolver waits 5 s for an answer.
    static constexpr core::Millis kAnswerWaitMs = 5000;
    static constexpr size_t kMaxPendingPerGuest = 256;  // a quarter of the table
    static constexpr size_t kPoolSize = 8;              // source ports per family
    static constexpr uint32_t kRotateQueries = 256;
    static constexpr core::Millis kRotateMs = 60'000;
    static constexpr uint32_t kLocalTtl = 60;

    DnsForwarder(core::EventLoop& loop, Gateway& gw);
    ~DnsForwarder();
    DnsForwarder(const DnsForwarder&) = delete;
    DnsForwarder& operator=(const DnsForwarder&) = delete;

    // The UDP payload of a guest's datagram to cfg.dns:53 (an IPv4 guest)
    // or [cfg.dns6]:53 (an IPv6 guest); the upstream may be of either
    // family. `key` is who it counts against for the quota (the port;
    // callers without one, such as tests, key by the guest's IPv4 address).
    void from_guest(wire::Ipv4 guest, uint16_t guest_port, wire::Bytes query) {
        from_guest(DnsGuestKey{guest}, wire::IpAddr::v4(guest), guest_port, query);
    }
    void from_guest(DnsGuestKey key, const wire::IpAddr& guest, uint16_t guest_port,
                    wire::Bytes query);

    // Replaces the upstream list (pending queries are dropped).
    void set_upstreams(const std::vector<HostPort>& upstreams);
    size_t upstream_count() const { return upstreams_.size(); }
    // The upstreams are the nameservers of the resolv.conf at path and
    // follow it: when a query needs an upstream, at most once every
    // kResolvCheckMs, the file's identity (device, inode, size, modification
    // time) is compared with the last one read, and a changed list of
    // nameservers replaces the old (as libslirp re-reads it). A file that
    // names none for a while (being rewritten) leaves the list as it was.
    void follow_resolv_conf(std::string path);
    static constexpr core::Millis kResolvCheckMs = 1000;
    // The upstream that answered last (the first one until any answered):
    // where DNS over TCP to the DNS address should go. Empty without
    // upstreams.
    std::optional<HostPort> active_upstream();
    // Every upstream, the one answering last first (DNS over TCP tries
    // them in this order).
    std::vector<HostPort> upstreams_in_order();
    // The address queries of that family (AF_INET, AF_INET6) leave from
    // (--outbound-addr); unspecified: the kernel's choice.
    const wire::IpAddr& outbound_addr(int family) const;
    // The answer to a query for a local name, built into out; 0 when the
    // query is not one (or does not fit).
    size_t local_answer(wire::Bytes query, wire::MutBytes out);
    size_t pending() const { return n_pending_; }
    size_t pending_of(DnsGuestKey key) const;
    const DnsForwarderStats& stats() const { return stats_; }

private:
    struct Socket final : core::IoHandler {
        DnsForwarder* fwd = nullptr;
        int fd = -1;
        int family = 0;
        uint8_t slot = 0;  // index in slots_
        void on_io(uint32_t events) override { fwd->on_socket(*this, events); }
    };
    // One source port per family; a query uses the slot's socket of its
    // upstream's family.
    struct Slot {
        Socket s4, s6;
        uint32_t pending = 0;  // queries using this slot
        uint32_t used = 0;     // queries since (re)opened
        core::Millis opened = 0;
        bool retiring = false;
    };
    struct Upstream {
        HostPort hp;
        sockaddr_storage sa{};
        socklen_t sa_len = 0;
        int family = 0;
    };
    struct GuestCount {
        DnsGuestKey key{};
        uint32_t count = 0;  // 0: an empty cell
    };
    struct Pending {
        bool used = false;
        uint16_t wire_id = 0;   // the id sent upstream
        uint16_t guest_id = 0;
        uint8_t slot = 0;       // the source socket pair (slots_)
        DnsGuestKey key{};      // the quota it counts against
        wire::IpAddr guest;     // IPv4 or IPv6: answered from cfg.dns or cfg.dns6
        uint16_t guest_port = 0;
        uint16_t len = 0;
        uint32_t first = 0;     // upstream index of the first attempt
        uint32_t tries = 0;     // upstreams tried so far, the current one included
        core::Millis created = 0;
        core::Millis deadline = 0;
        std::vector<uint8_t> query;  // with wire_id in place; len bytes
    };

    core::Millis bind_warned_at_ = 0;  // the last "cannot bind" warning (0: none yet)

    void on_socket(Socket& s, uint32_t events);
    void on_timer();
    void read_replies(Socket& s);
    void read_errors(Socket& s);
    void relay(Pending& p, uint8_t* msg, size_t len);
    bool send_attempt(Pending& p);
    // Moves p on to the next upstream, or answers SERVFAIL when all failed.
    void next_upstream(Pending& p);
    // Answers query from the local names if it asks for one; false when
    // it goes upstream.
    bool answer_locally(const wire::IpAddr& guest, uint16_t port, wire::Bytes query);
    // Our DNS address of guest's family, the one its query went to.
    wire::IpAddr server_for(const wire::IpAddr& guest) const;
    void answer_error(const wire::IpAddr& guest, uint16_t port, wire::Bytes query, uint16_t guest_id,
                      uint8_t rcode);
    void finish(Pending& p);
    Pending* alloc();
    uint16_t fresh_id();
    uint32_t current(const Pending& p) const {
        return static_cast<uint32_t>((p.first + p.tries - 1) % upstreams_.size());
    }
    bool tried(const Pending& p, uint32_t upstream) const;
    // Whether reply (a DNS message) repeats the question of p's query.
    bool same_question(const Pending& p, wire::Bytes reply) const;
    Socket& socket_for(Slot& slot, int family) { return family == AF_INET ? slot.s4 : slot.s6; }
    void open_socket(Socket& s, int family);
    void close_socket(Socket& s);
    void open_slot(Slot& slot);
    void close_slot(Slot& slot);
    // Retires worn slots and reopens idle retired ones; picks a slot.
    uint8_t pick_slot();
    uint64_t random64();
    GuestCount* guest_count(DnsGuestKey key, bool insert);
    void guest_release(DnsGuestKey key);
    void rearm();
    void drop_all();
    // follow_resolv_conf(): re-reads the file if it changed.
    void refresh_upstreams();

    core::EventLoop& loop_;
    Gateway& gw_;
    std::array<Slot, kPoolSize> slots_;
    bool need4_ = false, need6_ = false;  // families the upstreams use
    std::vector<Upstream> upstreams_;
    uint32_t preferred_ = 0;  // the upstream that answered last
    std::vector<Pending> table_;
    std::vector<uint16_t> by_id_;  // wire id -> table index + 1, 0: none
    size_t n_pending_ = 0;
    std::vector<GuestCount> guests_;  // 2 * kMaxPending cells, linear probing
    core::Timer timer_;
    std::array<uint16_t, 64> random_ids_{};
    size_t random_left_ = 0;
    uint64_t prng_ = 0;
    DnsForwarderStats stats_;
    std::vector<wire::IpAddr> local_;  // scratch for answer_locally()
    std::string ptr_name_;             // ... and for a reverse lookup's name
    // follow_resolv_conf()
    struct FileId {
        uint64_t dev = 0, ino = 0, size = 0;
        int64_t mtime_sec = 0, mtime_nsec = 0;
        bool exists = false;
        bool operator==(const FileId&) const = default;
    };
    std::string resolv_path_;  // empty: not following
    FileId resolv_id_;
    core::Millis resolv_checked_ = 0;
    std::vector<HostPort> resolv_list_;
};

}  // namespace usernet::gw
