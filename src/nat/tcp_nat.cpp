// The TCP translator.
//
// Theory of operation
// ===================
// usernet does not run a TCP stack of its own. Each guest connection is
// paired with one host TCP socket, and the translator keeps the two ends
// agreeing on sequence numbers while the payload itself stays in the host
// kernel's socket buffers (the approach of passt's tcp.c; RFC 9293 names
// below are from usernet's side facing the guest: "rcv" is guest-to-host
// data, "snd" host-to-guest). docs/tcp.md has the long version.
//
// Opening. A guest SYN for an unknown (guest addr, guest port, remote addr,
// remote port) opens a non-blocking socket toward Nat::host_target() and
// calls connect(); the flow waits in syn_pending. Retransmitted SYNs are
// not answered, but keep the connect alive: when the guest's next SYN is
// overdue (its backoff doubles the gap; max(2 gaps, 3 s) + 3 s) it has
// given up, and the socket and the half-open slot are freed, not held for
// the kernel's two minutes. Only when the kernel reports the connection
// (EPOLLOUT, SO_ERROR 0) does the guest get a SYN-ACK: a clock-based ISN,
// our MSS from the smaller of the ingress and path MTU, window scale 7,
// timestamps and SACK-permitted if the guest's latest SYN offered them.
// A refusal becomes a RST, an unreachable network or host or a prohibited
// destination an ICMP destination unreachable (ICMPv6 for an IPv6 guest;
// either ends a Linux guest's connect() at once with the matching error),
// anything else a RST. The
// flow limits (NatLimits: in total, per guest) answer RST; a SYN over the
// half-open limit (connect()s in progress per guest) is dropped, as by a
// full listen queue, so that a burst of connections is only delayed. A
// port forward's accepted socket (open_inbound) sends a SYN the other way,
// retried at 1, 2, 4 ... s, six tries.
//
// Guest to host. In-order payload is written with send(MSG_DONTWAIT): the
// in-order segments of one flow in a batch are gathered in a 256 KiB stage
// and go in one send() (at the end of the batch, when another flow's
// segment comes, or before any segment of this flow leaves: rcv_nxt moves
// when a segment is staged and moves back by what the kernel refused
// before an ACK can say otherwise); what was already accepted is trimmed
// off the front. A segment that starts beyond rcv_nxt (a hole: a frame
// lost or reordered before usernet) is answered at once with a duplicate
// ACK and held in an out-of-order queue (tcp_ooo.hpp: a 1 MiB ring lent
// to the flow from a pool of 32, at most 8 per guest, given back once
// empty); the segment that fills the hole goes to the socket in one send()
// with the held bytes it joins. With SACK (the guest offered it), the
// duplicate ACKs list the held ranges, so the guest resends only the
// holes. Without a free queue the segment is dropped and sent again.
// Only what the kernel took is acknowledged. The window advertised is the
// room in the socket's send buffer (SO_MEMINFO: sndbuf minus queued
// memory, less 1/16), never shrinking the right edge already offered, and
// capped (window_cap(): at most 256 segments, and all of a guest's flows
// together about 4096, so that their bursts fit the attachment's queue);
// so, apart from what waits beyond a hole, usernet holds no guest data.
// While the room is low, EPOLLOUT is in the socket's interest set and its
// edge sends the window update (and writes held bytes a short write left).
// Pure ACKs are coalesced: a flow owes at most one per event-loop batch
// (the end-of-batch list, run as Deferred), skipped when a data segment
// already carried it; duplicate ACKs, FIN ACKs, challenge ACKs and
// short-write ACKs go out at once.
//
// Host to guest. The kernel keeps every byte the guest has not yet
// acknowledged: snd_una is the first byte in the socket's receive queue,
// snd_nxt the next to send, and SO_PEEK_OFF (Linux 6.9+) holds snd_nxt -
// snd_una, so each recv(MSG_PEEK) continues after what is in flight and
// lands directly after our TCP header in the gateway's transmit buffer:
// one copy. Segments are min(guest MSS, path MTU - headers) - options
// long and go out while both the guest's window and the congestion window
// have room for a whole one (a FIN needs room for its sequence number
// too). ACKs are taken a batch at a time: each one only counts the bytes
// it acknowledges (acked_unread) and puts the flow on the end-of-batch
// send list; there, one recv(MSG_TRUNC) discards them all (which also
// moves the kernel's peek offset back) and one send_pending() fills the
// window they opened. At MTU 1500 a guest ACKs every other segment, and
// a relay or an emulator hands usernet dozens of ACKs at once: two
// syscalls per batch instead of two per ACK. Whatever reads or closes
// the socket first settles the count (settle()). The
// socket is registered edge-triggered: an EPOLLIN edge means new data, and
// while the windows are full nothing is read until an ACK opens them (the
// ACK path peeks again), so the unacknowledged data that keeps a TCP
// socket readable never spins the loop. Host EOF becomes our FIN: on the
// last data segment when EPOLLRDHUP came and the peek came up short, else
// alone after a peek that returns 0. Sockets have SO_OOBINLINE; reads stop
// at an urgent mark all the same, so after EPOLLPRI a short peek is
// checked against SIOCINQ before it counts as the end. Without SO_PEEK_OFF,
// peeks start at 0 and the in-flight bytes land in a 1 MiB discard area,
// which then bounds the flight.
//
// Loss toward the guest. One timer per flow: the RTO per RFC 6298 (1 s
// before the first sample, 200 ms minimum, doubling per timeout, 60 s
// maximum; samples from the timestamp echo, else Karn-style), or the
// earlier tail loss probe. A timeout rewinds snd_nxt to snd_una (peek
// offset 0) and sends everything again: go-back-N. Without SACK, three
// duplicate ACKs (fewer when fewer segments follow the hole and nothing
// new can, RFC 5827), or a probe timeout of about 2 SRTT with data out,
// retransmit only the segment at snd_una and enter NewReno recovery (RFC
// 6582): each partial ACK retransmits the next hole (two segments of it,
// so that the guest's ACK need not wait for its delayed-ACK timer), and a
// retransmission
// that is itself lost is sent again once more duplicate ACKs arrive than
// the flight behind it explains. With SACK (RFC 6675), the guest's blocks
// fill a scoreboard of four ranges; recovery starts at three duplicate
// ACKs (any ACK with new SACK information is one) or once more than two
// segments are held beyond the hole, and sends every hole again, lowest
// first and each in one peek, as the pipe (the bytes above the highest
// held one and the holes sent again) leaves room in the halved window; a
// retransmission counts as lost once the guest holds bytes sent after it.
// The probe of a SACK flow sends the last segment (RFC 8985), whose ACK
// then names the hole. With timestamps, an ACK
// echoing a time older than the retransmission undoes the window cut
// (Eifel, RFC 3522). The congestion window (RFC 5681: 10 segments,
// slow start, halved on loss, 2 segments after a timeout, additive
// increase, grown only while it limits) paces a guest whose NIC drops what
// it cannot take: an NE2000 ring holds 9-16 frames. Twelve timeouts
// without progress reset both ends. A zero window with data waiting is
// probed with an old ACK (seq snd_una - 1), forever while the guest answers;
// so is a zero window with only the host's FIN to send.
//
// Timestamps (RFC 7323), when the guest offers them, are on every segment
// we send: without them a Linux guest takes no RTT sample from the ACK of
// a retransmission and its RTO stays backed off for seconds after losses.
//
// Closing. A guest FIN, in order, becomes shutdown(SHUT_WR) and is ACKed at
// once; host EOF becomes our FIN; either side may keep sending after the
// other's FIN. When the guest's FIN is in and ours is acknowledged, the
// socket is closed and the flow lingers 4 s without it (no longer counted
// by the limits; at most 4096 linger, oldest evicted), ACKing retransmitted
// FINs. A guest RST is accepted only at exactly rcv_nxt (RFC 5961 3.2;
// in-window: challenge ACK; else dropped) and closes the socket abortively
// (SO_LINGER 0), so the host peer sees a RST; a SYN on a live flow gets a
// challenge ACK (5961 4.2). A host error (ECONNRESET ...) becomes a RST to
// the guest. Segments for no flow that are not a SYN get the RFC 9293
// 3.10.7.1 reset; segments outside the window get an ACK (old data and
// keepalives: one coalesced ACK; a pure ACK at the right edge is inside,
// as in Linux). A write the kernel refuses is not answered with an ACK
// that repeats the last (a duplicate ACK to the guest). Idle connections
// are never timed out; a guest's keepalive probe turns on SO_KEEPALIVE for
// the host socket, so that a dead remote becomes a RST to the guest.
//
// Not done: RACK's timer (a lost retransmission with nothing sent after it
// waits for the RTO), ECN, PAWS, TCP Fast Open (data
// on a SYN is not acknowledged; the guest sends it again), urgent data
// (ordinary data both ways: the guest's pointer is ignored, the host's
// urgent byte reaches the guest inline without URG), ICMPv6 errors (an
// IPv6 guest gets a RST where an IPv4 guest gets ICMP).
//
// Memory: a flow is a fixed FlowState (no buffers) plus its timer and
// handler, 312 bytes, from a pool that grows only when a flow is created;
// a hash table maps the 4-tuple to it. Nothing is allocated per segment.
#include "nat/tcp_nat.hpp"

#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>

#include "gateway/dns_tcp.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/nat.hpp"
#include "wire/icmp4.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"

namespace usernet::nat {

using tcp::Flow;
using tcp::FlowKey;
using tcp::FlowState;
using tcp::Phase;
namespace flag = wire::tcpflag;

namespace {

constexpr uint8_t kMaxRetries = 12;    // timeouts without progress before giving up
constexpr uint8_t kMaxSynRetries = 6;  // SYN / SYN-ACK tries toward the guest
constexpr core::Millis kLingerMs = 4000;
constexpr size_t kMaxLingering = 4096;  // closed flows kept to ACK a retransmitted FIN
constexpr size_t kTimestampOptionLen = 12;  // NOP, NOP, kind 8 length 10
// Windows advertised to a guest (see window_cap()).
constexpr uint32_t kMaxWindowSegments = 256;
constexpr uint32_t kMinWindowSegments = 8;
constexpr uint32_t kWindowBudgetSegments = 4096;  // per guest, all flows together
constexpr uint32_t kGsoFrameBytes = 65536 - 536;  // what a guest's TSO frame carries, about
constexpr core::Millis kNeighborRetryMs = 50;  // SYN again once ARP had time to resolve
// Ethernet and the largest attachment framing (a WebSocket header, a
// stream's 4-byte length) around each segment queued toward a guest.
constexpr size_t kFramingOverhead = 14 + 14;
// A pending connect() lives while its guest still wants it: a guest SYN
// retransmission is due after twice the previous gap (RFC 6298 backoff),
// the first one after 1 s (RFC 6298) or 3 s (RFC 1122: Windows, older
// BSDs). Allowed: max(twice the gap, kSynFirstRtoMs) plus kSynSlackMs.
constexpr uint32_t kSynFirstRtoMs = 3000;
constexpr uint32_t kSynSlackMs = 3000;
// A guest at its half-open limit whose oldest connect has waited this long
// (unanswered past the first SYN retry of every stack: 1 s, or 3 s) loses
// that one to a new SYN, rather than every new connection waiting for it:
// a Linux guest retries an unanswered SYN for about 2 minutes.
constexpr core::Millis kHalfOpenEvictMs = 3000;
// Host keepalive once the guest probes (see enable_host_keepalive()).
constexpr uint32_t kKeepIdleMinS = 10;
constexpr uint32_t kKeepIdleMaxS = 7200;  // Linux's default tcp_keepalive_time
constexpr uint32_t kKeepIdleUnknownS = 75;
constexpr int kKeepCount = 8;
constexpr size_t kDiscardSize = size_t{1} << 20;
// EPOLLPRI: urgent data arrived (see send_pending()).
constexpr uint32_t kEventsOpen = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLET;
constexpr uint32_t kEventsConnecting = EPOLLOUT | EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLET;

bool debug_on() { return spdlog::should_log(spdlog::level::debug); }

// IP plus TCP header bytes per segment toward this address.
uint32_t header_overhead(const wire::IpAddr& a) {
    return (a.is_v4() ? 20u : 40u) + static_cast<uint32_t>(wire::kTcpHeaderLen);
}

std::string describe(const FlowKey& k) {
    return k.guest.to_string() + ":" + std::to_string(k.guest_port) + " <-> " +
           k.remote.to_string() + ":" + std::to_string(k.remote_port);
}

// Urgent data stays in the stream: without SO_OOBINLINE Linux takes the
// urgent byte out of it (a byte the guest never gets, and a peek offset
// that then lags by one).
void set_oob_inline(int fd) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
}

int socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
}

}  // namespace

static_assert(sizeof(Flow) <= 312, "a flow costs bytes, not kilobytes");

tcp::Flow::Flow(TcpNat& n) : nat(n), timer([this] { nat.on_timer(*this); }) {}

void tcp::Flow::on_io(uint32_t events) { nat.on_io(*this, events); }

// ---------------------------------------------------------------------------
// construction

TcpNat::TcpNat(Nat& nat) : nat_(nat), loop_(nat.loop()), gw_(nat.gateway()) {
    flows_.reserve(std::min<uint32_t>(nat.limits().tcp_flows, 4096));
    ack_list_.reserve(256);
    tx_list_.reserve(256);
    stage_ = std::make_unique_for_overwrite<uint8_t[]>(kStageSize);
    ack_running_.reserve(256);
    dead_.reserve(64);
    if (getrandom(key_, sizeof key_, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof key_)) {
        key_[0] = core::monotonic_ms() * 0x9e3779b97f4a7c15ULL;
        key_[1] = reinterpret_cast<uintptr_t>(this) * 0xbf58476d1ce4e5b9ULL;
    }
    // Probe SO_PEEK_OFF on TCP once (Linux 6.9+). USERNET_NO_PEEK_OFF=1
    // forces the fallback, so that tests and benchmarks can run the path
    // that kernels without it (Debian 12's 6.1) take (docs/tcp.md).
    const char* force = std::getenv("USERNET_NO_PEEK_OFF");
    bool forced = force && *force && std::strcmp(force, "0") != 0;
    int s = forced ? -1 : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    int zero = 0;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) < 0) {
        peek_off_ok_ = false;
        discard_ = std::make_unique<uint8_t[]>(kDiscardSize);
        spdlog::info("tcp: {}; peeking from the start (at most {} KiB in flight per connection)",
                     forced ? "USERNET_NO_PEEK_OFF is set, SO_PEEK_OFF not used"
                            : "the kernel has no SO_PEEK_OFF for TCP",
                     kDiscardSize / 1024);
    } else {
        spdlog::debug("tcp: peeking at SO_PEEK_OFF");
    }
    if (s >= 0) close(s);
}

TcpNat::~TcpNat() {
    if (debug_on()) {
        const Stats& t = stats_;
        spdlog::debug(
            "tcp: segments in {} out {}, bytes to host {} to guest {}, flows out {} in {} "
            "established {} closed {}, refused by limits {}, connect refused {} unreachable {} "
            "failed {}, RSTs sent {} accepted {} no-flow {}, challenge ACKs {}, malformed {}, "
            "out of window {}, out of order {} (not held {}, bytes written once in order {}), "
            "partial writes {}, retransmits RTO {} fast {}, "
            "zero-window probes {}, gave up {}, coalesced ACKs {}, "
            "SYNs over the half-open limit {}, connects abandoned by the guest {} "
            "(given up for a new SYN {}), "
            "tail loss probes {}, spurious retransmissions undone {}, delayed ACKs {} "
            "(piggybacked {}), forwards refused by the guest's ICMP {}",
            t.segs_from_guest, t.segs_to_guest, t.bytes_to_host, t.bytes_to_guest,
            t.flows_outbound, t.flows_inbound, t.flows_established, t.flows_closed,
            t.refused_limit, t.connect_refused, t.connect_unreachable, t.connect_failed,
            t.resets_to_guest, t.resets_from_guest, t.resets_no_flow, t.challenge_acks,
            t.dropped_malformed, t.dropped_out_of_window, t.out_of_order, t.out_of_order_dropped,
            t.reassembled_bytes, t.partial_writes,
            t.retransmits_rto, t.retransmits_fast, t.zero_window_probes, t.gave_up,
            t.acks_coalesced, t.syn_dropped_half_open, t.connect_abandoned, t.connect_evicted,
            t.tail_loss_probes,
            t.spurious_retransmits, t.acks_delayed, t.acks_piggybacked,
            t.refused_by_guest_icmp);
    }
    loop_.cancel(delack_timer_);
    for (auto& [key, f] : flows_) {
        if (f->st.fd >= 0) {
            loop_.remove(f->st.fd);
            abort_socket(f->st.fd);
            f->st.fd = -1;
        }
        loop_.cancel(f->timer);
    }
}

// A keyed hash of the given words (SipHash-2-4's rounds over 64-bit words;
// the key is random per process).
uint64_t TcpNat::keyed_hash(std::initializer_list<uint64_t> words) const {
    uint64_t v0 = key_[0] ^ 0x736f6d6570736575ULL, v1 = key_[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = key_[0] ^ 0x6c7967656e657261ULL, v3 = key_[1] ^ 0x7465646279746573ULL;
    auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
    auto round = [&] {
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
    };
    for (uint64_t m : words) {
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++) round();
    return v0 ^ v1 ^ v2 ^ v3;
}

namespace {
uint64_t addr_word(const wire::IpAddr& a, int half) {
    uint64_t w;
    std::memcpy(&w, a.b.data() + 8 * half, 8);
    return w;
}
}  // namespace

// Our ISN for a flow (RFC 6528): a 4-microsecond clock plus a keyed hash of
// the 4-tuple. The clock matters: a port forward reuses a host client's
// port for the same 4-tuple while the guest still holds the previous
// connection in TIME-WAIT, and Linux accepts the new SYN only if its
// sequence number (or timestamp) is beyond the old connection's.
uint32_t TcpNat::initial_seq(const FlowKey& k) const {
    uint64_t h = keyed_hash({addr_word(k.guest, 0), addr_word(k.guest, 1), addr_word(k.remote, 0),
                             addr_word(k.remote, 1),
                             (uint64_t{k.guest_port} << 16) | k.remote_port});
    return static_cast<uint32_t>(core::monotonic_ms() * 250) + static_cast<uint32_t>(h);
}

// The origin of our timestamp clock toward one guest from one remote
// address: random per address pair but the same for every connection
// between them (as Linux does), so that timestamps grow across
// consecutive connections and a SYN meeting TIME-WAIT is accepted.
uint32_t TcpNat::ts_origin(const FlowKey& k) const {
    return static_cast<uint32_t>(keyed_hash({addr_word(k.guest, 0), addr_word(k.guest, 1),
                                             addr_word(k.remote, 0), addr_word(k.remote, 1)}));
}

// ---------------------------------------------------------------------------
// flow table

// Takes a flow from the pool (allocating only when it is empty) and enters
// it in the table and the per-guest count.
Flow* TcpNat::alloc_flow(const FlowKey& key, uint32_t port) {
    Flow* f;
    if (!free_.empty()) {
        f = free_.back();
        free_.pop_back();
    } else {
        pool_.push_back(std::make_unique<Flow>(*this));
        f = pool_.back().get();
    }
    f->st = FlowState{};
    f->st.key = key;
    f->st.port = port;
    f->gen++;
    flows_.emplace(key, f);
    per_guest_[port].flows++;
    return f;
}

// The guest's oldest pending connect if it has waited kHalfOpenEvictMs,
// else null; stale entries in front are dropped on the way.
Flow* TcpNat::stale_pending(GuestCounts& g) {
    while (!g.pending.empty()) {
        const PendingConnect& p = g.pending.front();
        if (p.f->gen != p.gen || p.f->st.phase != Phase::syn_pending) {
            g.pending.pop_front();
            continue;
        }
        if (loop_.now() - p.since < kHalfOpenEvictMs) return nullptr;
        Flow* f = p.f;
        g.pending.pop_front();
        return f;
    }
    return nullptr;
}

// Drops the half-open count when a flow leaves syn_pending.
void TcpNat::leave_syn_pending(Flow& f) {
    if (f.st.phase != Phase::syn_pending) return;
    auto it = per_guest_.find(f.st.port);
    if (it != per_guest_.end() && it->second.half_open > 0) it->second.half_open--;
    if (half_open_ > 0) half_open_--;
    f.st.phase = Phase::syn_rcvd;
}

// Removes a flow from the table and the loop and closes its socket (if
// still open) gracefully. The memory is reused only after this batch.
void TcpNat::free_flow(Flow& f) {
    if (f.st.phase == Phase::free) return;
    leave_syn_pending(f);
    release_held(f);
    if (f.st.fd >= 0) {
        (void)settle(f);  // unread data would make close() send a RST
        loop_.forget(f.st.fd, &f);
        close(f.st.fd);
        f.st.fd = -1;
    }
    loop_.cancel(f.timer);
    flows_.erase(f.st.key);
    if (f.st.phase == Phase::linger) {
        lingering_--;
    } else {
        uncount_guest_flow(f);
    }
    if (debug_on()) spdlog::debug("tcp: {} freed", describe(f.st.key));
    f.st.phase = Phase::free;
    if (staged_flow_ == &f) {  // going away: what it staged goes with it
        staged_flow_ = nullptr;
        stage_len_ = 0;
    }
    f.st.ack_queued = false;
    f.st.tx_queued = false;
    f.st.acked_unread = 0;
    stats_.flows_closed++;
    dead_.push_back(&f);
    loop_.defer(*this);
}

// Takes a flow out of its guest's count (the entry goes with the last).
void TcpNat::uncount_guest_flow(Flow& f) {
    auto it = per_guest_.find(f.st.port);
    if (it != per_guest_.end() && --it->second.flows == 0) per_guest_.erase(it);
}

void TcpNat::drop_port(uint32_t port) {
    if (port == UINT32_MAX || !per_guest_.contains(port)) return;
    std::vector<Flow*> victims;
    for (auto& [key, f] : flows_)
        if (f->st.port == port) victims.push_back(f);
    for (Flow* f : victims) reset_flow(*f, false);
    if (!victims.empty())
        spdlog::info("tcp: reset {} connection(s) of an attachment that went away",
                     victims.size());
}

// Closes fd so that the peer sees a RST.
void TcpNat::abort_socket(int fd) {
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

// Ends a flow abortively: RST toward the guest (if asked) and toward the host.
void TcpNat::reset_flow(Flow& f, bool rst_guest) {
    if (f.st.phase == Phase::free) return;
    FlowState& s = f.st;
    if (rst_guest) {
        switch (s.phase) {
        case Phase::syn_pending:
            send_rst(s.key, 0, s.rcv_nxt, true);
            break;
        case Phase::syn_sent:
            send_rst(s.key, s.snd_nxt, 0, false);
            break;
        case Phase::linger:
        case Phase::free:
            break;
        default:
            send_rst(s.key, s.snd_max, s.rcv_nxt, true);
            break;
        }
    }
    if (s.fd >= 0) {
        loop_.forget(s.fd, &f);
        abort_socket(s.fd);
        s.fd = -1;
    }
    if (debug_on()) spdlog::debug("tcp: {} reset", describe(s.key));
    free_flow(f);
}

// Both directions are closed and acknowledged: close the socket, linger.
void TcpNat::finish_flow(Flow& f) {
    FlowState& s = f.st;
    if (staged_flow_ == &f) flush_stage(false);
    if (s.fd >= 0) {
        (void)settle(f);  // unread data would make close() send a RST
        loop_.forget(s.fd, &f);
        close(s.fd);
        s.fd = -1;
    }
    // A lingering flow no longer counts against the limits (a guest that
    // opens a thousand connections a second keeps thousands lingering);
    // at most kMaxLingering of them are kept, the oldest go first.
    release_held(f);
    uncount_guest_flow(f);
    s.phase = Phase::linger;
    s.persist = false;
    s.pto_armed = false;
    lingering_++;
    while (!linger_queue_.empty() && !is_lingering(linger_queue_.front()))
        linger_queue_.pop_front();
    if (linger_queue_.size() >= kMaxLingering) evict_oldest_lingering();
    linger_queue_.push_back({&f, f.gen});
    loop_.arm(f.timer, kLingerMs);
    if (debug_on()) spdlog::debug("tcp: {} closed", describe(s.key));
}

// Frees the flow that has lingered longest (entries of flows freed
// meanwhile, or reused, are skipped).
void TcpNat::evict_oldest_lingering() {
    while (!linger_queue_.empty()) {
        LingerEntry e = linger_queue_.front();
        linger_queue_.pop_front();
        if (is_lingering(e)) {
            free_flow(*e.flow);
            return;
        }
    }
}

// Lingers once both directions are closed and acknowledged.
void TcpNat::maybe_finish(Flow& f) {
    if (f.st.phase == Phase::established && f.st.guest_fin && f.st.fin_acked) finish_flow(f);
}

// ---------------------------------------------------------------------------
// opening

// Entry point: a guest's TCP segment, checked, then to its flow, to a
// new flow (SYN), or answered with a reset.
void TcpNat::from_guest(const gw::GuestPacket& pkt) {
    stats_.segs_from_guest++;
    auto seg = wire::TcpView::parse(pkt.l4);
    if (!seg || (!pkt.l4_csum_trusted && !seg->checksum_ok(pkt.src, pkt.dst)) || seg->src_port() == 0 ||
        seg->dst_port() == 0) {
        stats_.dropped_malformed++;
        nat_.stats().dropped_malformed++;
        return;
    }
    FlowKey key{pkt.src, pkt.dst, seg->src_port(), seg->dst_port()};
    bool syn_only = seg->has(flag::syn) && !seg->has(flag::ack) && !seg->has(flag::rst);
    auto it = flows_.find(key);
    if (it != flows_.end() && syn_only && it->second->st.phase == Phase::linger) {
        // A new connection reusing the 4-tuple of one that is closing.
        free_flow(*it->second);
        it = flows_.end();
    }
    if (it == flows_.end()) {
        if (syn_only) {
            open_outbound(pkt, *seg, key);
        } else if (!seg->has(flag::rst)) {
            stats_.resets_no_flow++;
            send_reset_reply(pkt, *seg);
        }
        return;
    }
    input(*it->second, pkt, *seg);
}

// A guest SYN for a new flow: limits, socket, connect().
void TcpNat::open_outbound(const gw::GuestPacket& pkt, const wire::TcpView& seg,
                           const FlowKey& key) {
    HostTarget target = nat_.host_target(pkt.dst, key.remote_port, wire::ipproto::tcp);
    if (!target.ok()) {
        // Counted by host_target; unreachable and forbidden both get a RST.
        send_reset_reply(pkt, seg);
        return;
    }
    const NatLimits& lim = nat_.limits();
    auto gc = per_guest_.find(pkt.port);
    uint32_t guest_flows = gc == per_guest_.end() ? 0 : gc->second.flows;
    uint32_t guest_half = gc == per_guest_.end() ? 0 : gc->second.half_open;
    if (guest_half >= lim.tcp_half_open_per_guest || half_open_ >= lim.tcp_half_open) {
        // The guest's oldest connect, if it has waited kHalfOpenEvictMs,
        // gives way: it fails toward the guest as an unreachable host
        // would, and this SYN takes its slot. Only the guest's own: it
        // cannot push out another guest's.
        Flow* victim = gc != per_guest_.end() ? stale_pending(gc->second) : nullptr;
        if (!victim) {
            // Too many connect()s in progress, none of them old: drop the
            // SYN, as a full listen queue does. The guest sends it again
            // in a second, by when a burst of ordinary connections has
            // completed.
            stats_.syn_dropped_half_open++;
            nat_.stats().dropped_limit++;
            return;
        }
        stats_.connect_evicted++;
        connect_failed(*victim, EHOSTUNREACH);
    }
    if (flows_.size() - lingering_ >= lim.tcp_flows || guest_flows >= lim.tcp_flows_per_guest) {
        stats_.refused_limit++;
        nat_.stats().dropped_limit++;
        send_reset_reply(pkt, seg);
        return;
    }
    // A guest forward's target may be a unix socket (FlowState::local), or
    // a command, whose socket comes connected; so does the gateway's DNS
    // over TCP, one end of a socketpair (local too).
    const bool connected = target.command || target.dns_tcp || target.opener;
    const bool local = target.addr.ss_family == AF_UNIX || target.dns_tcp || target.opener;
    int fd = target.command   ? nat_.commands().spawn(*target.command, pkt.port)
             : target.dns_tcp ? target.dns_tcp->open_session(pkt.port)
             : target.opener  ? target.opener->open_connection(pkt.port)
                              : socket(target.addr.ss_family,
                                       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                       local ? 0 : IPPROTO_TCP);
    // Out of descriptors: a UDP or ping flow gives its socket up (it comes
    // back with its guest's next datagram); a refused connection would not.
    if (fd < 0 && !connected && (errno == EMFILE || errno == ENFILE) &&
        nat_.release_descriptor())
        fd = socket(target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    local ? 0 : IPPROTO_TCP);
    if (fd < 0) {
        int e = connected ? -fd : errno;
        if (debug_on())
            spdlog::debug("tcp: {}: {}", target.command ? "command" : "socket", std::strerror(e));
        stats_.connect_failed++;
        send_reset_reply(pkt, seg);
        return;
    }
    if (!local) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_oob_inline(fd);
    } else {
        // A unix socket's send buffer does not grow by itself as TCP's
        // does, and it is the window the guest gets: ask for kLocalSndBuf
        // (beyond net.core.wmem_max only with CAP_NET_ADMIN).
        int size = kLocalSndBuf;
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
    if (peek_off_ok_) {
        int zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
    }
    int rc = 0, err = 0;
    if (!connected) {
        // --outbound-addr: an address the host lost fails the connection
        // (a RST), as libslirp's does. Not for a guest forward's target,
        // which usernet(1) leaves out of it.
        if (!local && !target.guest_forward &&
            !gw_.config().bind_outbound(fd, target.addr.ss_family))
            rc = -1;
        else
            rc = connect(fd, reinterpret_cast<const sockaddr*>(&target.addr),
                         sockaddr_len(target.addr));
        err = rc == 0 ? 0 : errno;
        // A unix socket's full backlog is EAGAIN: refused, as a full
        // listen queue would not be for TCP, but the guest retries anyway.
        if (local && err == EAGAIN) err = ECONNREFUSED;
    }

    Flow* f = alloc_flow(key, pkt.port);
    FlowState& s = f->st;
    s.fd = fd;
    s.local = local;
    s.phase = Phase::syn_pending;
    GuestCounts& counts = per_guest_[pkt.port];
    counts.half_open++;
    half_open_++;
    if (counts.pending.size() >= 4 * size_t{lim.tcp_half_open_per_guest} + 64) {
        // Mostly connects that completed long ago: sweep them out (at most
        // tcp_half_open_per_guest are live, so this runs once in many SYNs).
        std::erase_if(counts.pending, [](const PendingConnect& p) {
            return p.f->gen != p.gen || p.f->st.phase != Phase::syn_pending;
        });
    }
    counts.pending.push_back({f, f->gen, loop_.now()});
    s.irs = seg.seq();
    s.rcv_nxt = s.irs + 1;
    s.rcv_adv = s.rcv_nxt;
    take_syn_options(*f, pkt, seg);
    s.ts_offset = ts_origin(key);
    stats_.flows_outbound++;
    if (debug_on()) spdlog::debug("tcp: {} connecting", describe(key));

    if (rc < 0 && err != EINPROGRESS) {
        connect_failed(*f, err);
        return;
    }
    try {
        loop_.add(fd, kEventsConnecting, f);
    } catch (const std::exception& e) {
        spdlog::warn("tcp: cannot watch a socket: {}", e.what());
        close(fd);
        s.fd = -1;
        reset_flow(*f, true);
        return;
    }
    // The half-open slot is held only while the guest keeps asking.
    s.rtt_start = static_cast<uint32_t>(loop_.now());  // its last SYN (syn_pending only)
    loop_.arm(f->timer, kSynFirstRtoMs + kSynSlackMs);
    if (rc == 0) on_connected(*f);
}

// The options of the guest's SYN, the latest one counting: BSD stacks
// drop window scaling and timestamps from later SYN retries, and then
// expect a SYN-ACK without them (RFC 7323 1.3, 2.2: only if both SYNs
// carry the option is it in effect).
void TcpNat::take_syn_options(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg) {
    FlowState& s = f.st;
    wire::TcpOptions opts = seg.parse_options();
    s.guest_syn_mss = opts.mss.value_or(0);
    s.guest_wscale = opts.wscale.has_value();
    s.snd_wscale = opts.wscale.value_or(0);
    s.ingress_mtu = static_cast<uint16_t>(std::min<uint32_t>(pkt.ingress_mtu, 65535));
    s.ts_on = opts.ts_val.has_value();
    s.ts_recent = opts.ts_val.value_or(0);
    s.sack_on = opts.sack_permitted;
}

// A guest SYN for a flow whose connect() is pending: the guest still
// wants it; expect the next one within about twice this gap.
void TcpNat::syn_pending_retransmit(Flow& f, const gw::GuestPacket& pkt,
                                    const wire::TcpView& seg) {
    FlowState& s = f.st;
    take_syn_options(f, pkt, seg);
    uint32_t now = static_cast<uint32_t>(loop_.now());
    uint32_t gap = now - s.rtt_start;
    s.rtt_start = now;
    uint32_t wait = std::max(std::min(gap, tcp::kRtoMaxMs) * 2, kSynFirstRtoMs) + kSynSlackMs;
    loop_.arm(f.timer, wait);
}

// The host connect() finished (or failed): answer the guest's SYN.
void TcpNat::on_connected(Flow& f) {
    FlowState& s = f.st;
    int err = socket_error(s.fd);
    if (err != 0) {
        connect_failed(f, err);
        return;
    }
    leave_syn_pending(f);  // -> syn_rcvd
    try {
        loop_.modify(s.fd, kEventsOpen, &f);
    } catch (const std::exception&) {
        reset_flow(f, true);
        return;
    }
    syn_rcvd_options(f);
    s.iss = initial_seq(s.key);
    s.snd_una = s.iss;
    s.snd_nxt = s.iss + 1;
    s.snd_max = s.snd_nxt;
    s.recover = s.iss;
    send_syn(f, true);
    s.rtt_timing = true;
    s.rtt_seq = s.snd_nxt;
    s.rtt_start = static_cast<uint32_t>(loop_.now());
    loop_.arm(f.timer, s.rto.rto_ms());
}

// What the guest's SYN options decide for our SYN-ACK and the data phase.
void TcpNat::syn_rcvd_options(Flow& f) {
    FlowState& s = f.st;
    s.mss = sending_mss(f, s.guest_syn_mss);
    s.rcv_wscale = s.guest_wscale ? tcp::kOurWindowScale : 0;
    if (!s.guest_wscale) s.snd_wscale = 0;
    s.cc.init(s.mss);
}

// The MSS toward the guest: its own MSS option (536 without one, RFC 9293
// 3.7.1), within the path MTU and the gateway's transmit buffer.
uint16_t TcpNat::sending_mss(const Flow& f, uint16_t guest_mss) const {
    const FlowState& s = f.st;
    uint32_t path = std::min<uint32_t>({s.ingress_mtu, gw_.path_mtu(s.key.guest), 65535});
    uint32_t cap = path - header_overhead(s.key.guest);
    cap = std::min(cap, static_cast<uint32_t>(gw_.tx_l4_tcp_capacity() - wire::kTcpHeaderLen));
    uint32_t mss = std::min<uint32_t>(guest_mss ? guest_mss : tcp::kDefaultMss, cap);
    return static_cast<uint16_t>(std::max<uint32_t>(mss, 64));
}

// connect() failed with err: tell the guest the way its kernel expects.
void TcpNat::connect_failed(Flow& f, int err) {
    FlowState& s = f.st;
    if (debug_on())
        spdlog::debug("tcp: {} connect failed: {}", describe(s.key), std::strerror(err));
    switch (err) {
    case ECONNREFUSED:
        stats_.connect_refused++;
        send_rst(s.key, 0, s.rcv_nxt, true);
        break;
    case ENETUNREACH:
        stats_.connect_unreachable++;
        send_icmp_unreachable(s.key, s.irs, wire::icmpcode::net_unreach);
        break;
    case EHOSTUNREACH:
    case EHOSTDOWN:
        stats_.connect_unreachable++;
        send_icmp_unreachable(s.key, s.irs, wire::icmpcode::host_unreach);
        break;
    case EACCES:
    case EPERM:
        stats_.connect_unreachable++;
        send_icmp_unreachable(s.key, s.irs, wire::icmpcode::admin_prohibited);
        break;
    default:  // ETIMEDOUT and the rest
        stats_.connect_failed++;
        send_rst(s.key, 0, s.rcv_nxt, true);
        break;
    }
    if (s.fd >= 0) {
        loop_.forget(s.fd, &f);
        close(s.fd);
        s.fd = -1;
    }
    free_flow(f);
}

// A port-forwarded host connection: a flow in syn_sent, our SYN to the guest.
bool TcpNat::open_inbound(int fd, const wire::IpAddr& peer, uint16_t peer_port,
                          const wire::IpAddr& guest, uint16_t guest_port) {
    FlowKey key{guest, peer, guest_port, peer_port};
    const NatLimits& lim = nat_.limits();
    auto existing = flows_.find(key);
    if (existing != flows_.end() && existing->second->st.phase == Phase::linger) {
        free_flow(*existing->second);
        existing = flows_.end();
    }
    const uint32_t port = gw_.port_of(guest);
    auto gc = per_guest_.find(port);
    uint32_t guest_flows = gc == per_guest_.end() ? 0 : gc->second.flows;
    if (existing != flows_.end() || flows_.size() - lingering_ >= lim.tcp_flows ||
        guest_flows >= lim.tcp_flows_per_guest || guest_port == 0 || peer_port == 0) {
        stats_.refused_limit++;
        abort_socket(fd);
        return false;
    }
    // TCP_NODELAY and SO_OOBINLINE come from the forward's listener, which
    // the accepted socket inherits them from (three system calls fewer per
    // connection; Forwarder_AcceptedSocketsAreNonBlockingWithNodelayAndOobInline
    // checks them).
    if (peek_off_ok_) {
        int zero = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) < 0) {
            abort_socket(fd);
            return false;
        }
    }
    Flow* f = alloc_flow(key, port);
    FlowState& s = f->st;
    s.fd = fd;
    s.phase = Phase::syn_sent;
    // No ingress to go by: the path MTU decides, asked again for every SYN
    // and at the SYN-ACK (the gateway says 1500 until it knows the guest).
    s.ingress_mtu = 65535;
    s.ts_offset = ts_origin(key);
    s.iss = initial_seq(key);
    s.snd_una = s.iss;
    s.snd_nxt = s.iss + 1;
    s.snd_max = s.snd_nxt;
    s.recover = s.iss;
    try {
        loop_.add(fd, kEventsOpen, f);
    } catch (const std::exception& e) {
        spdlog::warn("tcp: cannot watch a socket: {}", e.what());
        close(fd);
        s.fd = -1;
        free_flow(*f);
        return false;
    }
    stats_.flows_inbound++;
    if (debug_on()) spdlog::debug("tcp: {} inbound", describe(key));
    s.rtt_timing = true;
    s.rtt_seq = s.snd_nxt;
    s.rtt_start = static_cast<uint32_t>(loop_.now());
    if (send_syn(*f, false)) {
        loop_.arm(f->timer, s.rto.rto_ms());
    } else {
        // The gateway is asking for the guest's MAC: try again soon
        // rather than after a whole RTO.
        s.neigh_wait = true;
        loop_.arm(f->timer, kNeighborRetryMs);
    }
    return true;
}

// SYN (inbound) or SYN-ACK (outbound) toward the guest, with our options.
// Returns whether the gateway could send it.
bool TcpNat::send_syn(Flow& f, bool with_ack) {
    FlowState& s = f.st;
    // The window of a SYN is never scaled (RFC 7323 2.2).
    uint32_t room = socket_send_room(f);
    uint16_t field = static_cast<uint16_t>(std::min<uint32_t>(room, tcp::kMaxWindowField));
    bool sent = emit(f, s.iss, with_ack ? (flag::syn | flag::ack) : flag::syn, 0, field);
    if (with_ack) s.rcv_adv = s.rcv_nxt + field;
    return sent;
}

// The handshake completed (guest ACK of our SYN-ACK, or our ACK of its
// SYN-ACK): start the data phase.
void TcpNat::establish(Flow& f) {
    FlowState& s = f.st;
    s.phase = Phase::established;
    s.retries = 0;
    s.rto.reset_backoff();
    if (s.rtt_timing) {
        s.rto.sample(static_cast<uint32_t>(loop_.now()) - s.rtt_start);
        s.rtt_timing = false;
    }
    loop_.cancel(f.timer);
    // host_pending already says whether the host wrote during the
    // handshake: the socket's EPOLLIN edges are recorded in every phase
    // (and registering a readable socket reports it at once).
    stats_.flows_established++;
    if (debug_on()) spdlog::debug("tcp: {} established, mss {}", describe(s.key), s.mss);
}

// ---------------------------------------------------------------------------
// segments from the guest

// A segment for an existing flow, by phase.
void TcpNat::input(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg) {
    FlowState& s = f.st;
    switch (s.phase) {
    case Phase::syn_pending:
        // Retransmitted SYNs wait for connect() (and keep it alive); a
        // RST for our SYN's sequence number abandons it.
        if (seg.has(flag::rst) && seg.seq() == s.rcv_nxt) {
            stats_.resets_from_guest++;
            reset_flow(f, false);
        } else if (seg.has(flag::syn) && !seg.has(flag::ack) && seg.seq() == s.irs) {
            syn_pending_retransmit(f, pkt, seg);
        }
        return;
    case Phase::syn_rcvd:
        input_syn_rcvd(f, pkt, seg);
        return;
    case Phase::syn_sent:
        input_syn_sent(f, seg);
        return;
    case Phase::established:
        input_synchronized(f, seg);
        return;
    case Phase::linger:
        if (seg.has(flag::rst)) {
            free_flow(f);
        } else if (seg.seg_len() > 0) {
            // A retransmitted FIN (our ACK of it was lost): ACK again.
            emit(f, s.snd_max, flag::ack, 0, 0);
        }
        return;
    case Phase::free:
        return;
    }
}

// Our SYN-ACK is out: the guest's ACK establishes (RFC 9293 3.10.7.4, SYN-RECEIVED).
void TcpNat::input_syn_rcvd(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg) {
    FlowState& s = f.st;
    if (seg.has(flag::rst)) {
        if (tcp::rst_verdict(seg.seq(), s.rcv_nxt, s.rcv_adv - s.rcv_nxt) ==
            tcp::RstVerdict::accept) {
            stats_.resets_from_guest++;
            reset_flow(f, false);
        }
        return;
    }
    if (seg.has(flag::syn)) {
        // A retransmitted SYN: our SYN-ACK was lost.
        if (!seg.has(flag::ack) && seg.seq() == s.irs) {
            s.rtt_timing = false;  // Karn: the handshake's RTT is ambiguous now
            take_syn_options(f, pkt, seg);
            syn_rcvd_options(f);
            send_syn(f, true);
        }
        return;
    }
    if (!seg.has(flag::ack)) return;
    if (seg.ack() != s.iss + 1) {
        send_rst(s.key, seg.ack(), 0, false);
        return;
    }
    s.snd_una = s.iss + 1;
    s.snd_wnd = uint32_t{seg.window()} << s.snd_wscale;
    s.max_snd_wnd = s.snd_wnd;
    s.snd_wl1 = seg.seq();
    s.snd_wl2 = seg.ack();
    establish(f);
    input_synchronized(f, seg);
}

void TcpNat::guest_unreachable(const FlowKey& key, uint32_t seq) {
    auto it = flows_.find(key);
    if (it == flows_.end()) return;
    Flow& f = *it->second;
    // Only our SYN (a quote of anything else is stale or forged).
    if (f.st.phase != Phase::syn_sent || seq != f.st.iss) return;
    stats_.refused_by_guest_icmp++;
    if (debug_on()) spdlog::debug("tcp: {} refused by the guest with ICMP", describe(f.st.key));
    reset_flow(f, false);
}

// Our SYN is out (inbound): the guest's SYN-ACK establishes, its RST refuses.
void TcpNat::input_syn_sent(Flow& f, const wire::TcpView& seg) {
    FlowState& s = f.st;
    if (seg.has(flag::ack) && seg.ack() != s.iss + 1) {
        if (!seg.has(flag::rst)) send_rst(s.key, seg.ack(), 0, false);
        return;
    }
    if (seg.has(flag::rst)) {
        if (seg.has(flag::ack)) {
            // The guest refused: the host client sees a RST.
            stats_.resets_from_guest++;
            reset_flow(f, false);
        }
        return;
    }
    if (!seg.has(flag::syn) || !seg.has(flag::ack)) return;
    wire::TcpOptions opts = seg.parse_options();
    s.irs = seg.seq();
    s.rcv_nxt = s.irs + 1;
    s.rcv_adv = s.rcv_nxt;
    s.last_ack_sent = s.rcv_nxt - 1;
    s.mss = sending_mss(f, opts.mss.value_or(0));
    s.guest_wscale = opts.wscale.has_value();
    s.snd_wscale = opts.wscale.value_or(0);
    s.rcv_wscale = s.guest_wscale ? tcp::kOurWindowScale : 0;
    s.ts_on = opts.ts_val.has_value();
    s.ts_recent = opts.ts_val.value_or(0);
    s.sack_on = opts.sack_permitted;
    s.snd_una = s.iss + 1;
    s.snd_wnd = seg.window();  // unscaled in a SYN
    s.max_snd_wnd = s.snd_wnd;
    s.snd_wl1 = seg.seq();
    s.snd_wl2 = seg.ack();
    s.cc.init(s.mss);
    establish(f);
    if (s.host_pending) {
        // The host client wrote before the guest answered (a request, as a
        // forwarded connection usually starts): the handshake's ACK rides
        // on that data (RFC 9293 lets the third segment carry it), one
        // frame fewer for the guest, with the window it would have had.
        bool low = false;
        const uint32_t room = socket_send_room(f, &low);
        s.rcv_adv = tcp::advertise_window(s.rcv_nxt, s.rcv_adv, room, s.rcv_wscale).right_edge;
        send_pending(f);
        if (s.phase != Phase::established) return;  // reset meanwhile
        if (s.last_ack_sent == s.rcv_nxt) {
            if (low != s.want_out) update_interest(f, low);
            return;
        }
    }
    send_ack_now(f);
    send_pending(f);
}

// RFC 9293 3.10.7.4 for a synchronized flow, with RFC 5961's checks.
void TcpNat::input_synchronized(Flow& f, const wire::TcpView& seg) {
    FlowState& s = f.st;
    uint32_t seq = seg.seq();
    uint32_t plen = static_cast<uint32_t>(seg.payload().size());
    uint32_t rcv_wnd = wire::seq_gt(s.rcv_adv, s.rcv_nxt) ? s.rcv_adv - s.rcv_nxt : 0;

    if (seg.has(flag::rst)) {
        switch (tcp::rst_verdict(seq, s.rcv_nxt, rcv_wnd)) {
        case tcp::RstVerdict::accept:
            stats_.resets_from_guest++;
            // What the guest sent before its RST (staged in this batch for
            // one write) reaches the host first, as it would directly.
            if (staged_flow_ == &f) flush_stage(false);
            reset_flow(f, false);
            return;
        case tcp::RstVerdict::challenge:
            stats_.challenge_acks++;
            send_ack_now(f);
            return;
        case tcp::RstVerdict::drop:
            return;
        }
    }
    if (!tcp::seq_acceptable(seq, seg.seg_len(), s.rcv_nxt, rcv_wnd)) {
        stats_.dropped_out_of_window++;
        // A keepalive probe (Linux: no data, BSD: one byte, both one
        // below rcv_nxt): the guest wants to know whether the remote is
        // still there, which only the host socket can find out. Not while
        // our window is shut: then it is a zero-window probe, which Linux
        // sends the same way.
        if (seq == s.rcv_nxt - 1 && plen <= 1 && seg.has(flag::ack) && rcv_wnd > 0 &&
            !seg.has(flag::syn) && !seg.has(flag::fin) && !s.host_keepalive)
            enable_host_keepalive(f);
        if (wire::seq_le(seq + seg.seg_len(), s.rcv_nxt)) {
            // Old data (our ACK was lost) or a keepalive: one ACK for the
            // batch. An ACK per old segment would look to a guest without
            // SACK like duplicate ACKs beyond its flight, which Linux takes
            // for reordering and then waits longer before retransmitting.
            queue_ack(f, true);
        } else {
            send_ack_now(f);
        }
        return;
    }
    if (seg.has(flag::syn)) {
        stats_.challenge_acks++;
        send_ack_now(f);
        return;
    }
    if (!seg.has(flag::ack)) return;
    switch (tcp::ack_verdict(seg.ack(), s.snd_una, s.snd_max, s.max_snd_wnd)) {
    case tcp::AckVerdict::ack_and_drop:
        send_ack_now(f);
        return;
    case tcp::AckVerdict::drop:
        return;
    case tcp::AckVerdict::process:
        break;
    }
    uint32_t ts_ecr = 0;
    bool sacked_new = false;
    if ((s.ts_on || s.sack_on) && seg.header_len() > wire::kTcpHeaderLen) {
        wire::TcpOptions o = seg.parse_options();
        if (s.ts_on) {
            // RFC 7323 4.3: echo the TSval of the segment that our next ACK
            // acknowledges (not of a newer out-of-order one).
            if (o.ts_val && wire::seq_le(seq, s.last_ack_sent) &&
                wire::seq_ge(*o.ts_val, s.ts_recent))
                s.ts_recent = *o.ts_val;
            ts_ecr = o.ts_ecr.value_or(0);
        }
        if (s.sack_on) {
            // What the guest holds beyond a hole: recovery sends the holes
            // again rather than the head alone (fill_holes). Only data
            // sent since the last rewind counts (not a FIN).
            const uint32_t data_end = s.snd_una + s.data_in_flight();
            for (uint8_t i = 0; i < o.sack_blocks; i++)
                sacked_new |= s.sacked.add(o.sack[i].left, o.sack[i].right, s.snd_una, data_end);
        }
    }
    process_ack(f, seg, ts_ecr, sacked_new);
    if (s.phase != Phase::established) return;

    if (plen > 0 || seg.has(flag::fin)) {
        tcp::NewData nd = tcp::new_data(seq, plen, s.rcv_nxt);
        if (!nd.in_order) {
            // A hole before this segment: it is held for when the hole
            // fills (if a queue is free), and the guest gets a duplicate
            // ACK at once.
            stats_.out_of_order++;
            if (!s.guest_fin) hold_out_of_order(f, seg);
            send_ack_now(f);
        } else if (s.guest_fin) {
            send_ack_now(f);
        } else {
            if (nd.len > 0) {
                write_payload(f, seg, nd);  // and what was held behind it
                if (s.phase != Phase::established) return;
            } else if (plen > 0) {
                queue_ack(f, true);  // old data again: our ACK was lost
            }
            const tcp::OooQueue* q = held_queue(s);
            const bool held_fin = q != nullptr && q->has_fin();
            if ((seg.has(flag::fin) || held_fin) && staged_flow_ == &f) {
                // Data staged from earlier segments goes before the FIN's
                // shutdown(); a short write leaves the FIN out of order.
                flush_stage(true);
                if (s.phase != Phase::established) return;
            }
            if ((seg.has(flag::fin) && seq + plen == s.rcv_nxt) ||
                (held_fin && q->fin_at(s.rcv_nxt))) {
                accept_guest_fin(f);
                if (s.phase != Phase::established) return;
            }
        }
    }
    queue_tx(f);
}

// The guest's FIN, in order: shutdown(SHUT_WR) toward the host.
void TcpNat::accept_guest_fin(Flow& f) {
    FlowState& s = f.st;
    release_held(f);
    s.guest_fin = true;
    s.rcv_nxt++;
    if (shutdown(s.fd, SHUT_WR) < 0 && debug_on())
        spdlog::debug("tcp: {} shutdown: {}", describe(s.key), std::strerror(errno));
    if (s.want_out) update_interest(f, false);
    // The guest sends nothing after its FIN: the window it is told no
    // longer matters, so no need to ask the socket. Until our own FIN is
    // out, the ACK waits up to kDelAckMs: the host peer, told by
    // shutdown(), usually closes at once, and our FIN then carries it (one
    // frame fewer for the guest per connection it closes first).
    if (s.fin_sent) emit(f, s.snd_max, flag::ack, 0);
    else delay_ack(f);
    maybe_finish(f);
}

// A segment beyond rcv_nxt: its bytes (and FIN) go into the flow's
// out-of-order queue, which is lent from the pool on first need. Without a
// free queue, or room in it, the segment is dropped as before queues were
// kept: the guest sends it again.
void TcpNat::hold_out_of_order(Flow& f, const wire::TcpView& seg) {
    FlowState& s = f.st;
    if (s.ooo == tcp::kNoOoo) {
        auto it = per_guest_.find(s.port);
        if (it == per_guest_.end() || it->second.ooo_queues >= kOooQueuesPerGuest) {
            stats_.out_of_order_dropped++;
            return;
        }
        if (ooo_free_.empty() && ooo_pool_.size() < kOooQueues) {
            // Not zeroed: the ring's pages cost memory only once written.
            // Without memory, the segment is dropped as without a queue.
            std::unique_ptr<uint8_t[]> ring(new (std::nothrow) uint8_t[tcp::OooQueue::kBytes]);
            if (ring) {
                uint8_t* p = ring.get();
                ooo_pool_.push_back(
                    std::make_unique<OooSlot>(OooSlot{std::move(ring), tcp::OooQueue(p)}));
                ooo_free_.push_back(static_cast<uint8_t>(ooo_pool_.size() - 1));
            }
        }
        if (ooo_free_.empty()) {
            stats_.out_of_order_dropped++;
            return;
        }
        s.ooo = ooo_free_.back();
        ooo_free_.pop_back();
        held_queue(s)->clear();
        it->second.ooo_queues++;
    }
    tcp::OooQueue& q = *held_queue(s);
    if (q.add(seg.seq(), seg.payload(), seg.has(flag::fin), s.rcv_nxt, s.rcv_adv) ==
        tcp::OooQueue::Added::refused) {
        stats_.out_of_order_dropped++;
        if (q.empty()) release_held(f);
    }
}

// The held bytes that continue the stream at rcv_nxt, for the send() that
// writes the segment which filled the hole; rcv_nxt moves past them (and
// back, as for staged bytes, by what the kernel does not take). Returns
// the number of slices.
int TcpNat::take_held(Flow& f, iovec out[2]) {
    FlowState& s = f.st;
    tcp::OooQueue* q = held_queue(s);
    if (q == nullptr) return 0;
    q->trim(s.rcv_nxt);
    int n = 0;
    s.rcv_nxt += q->ready(s.rcv_nxt, out, &n);
    return n;
}

// Forgets held bytes already written; the queue goes back to the pool
// when nothing is left in it.
void TcpNat::tidy_held(Flow& f) {
    FlowState& s = f.st;
    tcp::OooQueue* q = held_queue(s);
    if (q == nullptr) return;
    q->trim(s.rcv_nxt);
    if (q->empty()) {
        release_held(f);
        return;
    }
    // Bytes a short write left at rcv_nxt wait for room: EPOLLOUT brings
    // them (drain_held), even when the room left did not look low enough
    // to watch for a window update. Adding it reports a socket that is
    // writable already.
    iovec unused[2];
    int n = 0;
    if (!s.want_out && !s.guest_fin && q->ready(s.rcv_nxt, unused, &n) > 0)
        update_interest(f, true);
}

// Writes held bytes that continue the stream at rcv_nxt (after a short
// write left some, once EPOLLOUT says there is room), and the FIN behind
// them; the ACK goes at the end of the batch.
void TcpNat::drain_held(Flow& f) {
    FlowState& s = f.st;
    if (s.ooo == tcp::kNoOoo || s.guest_fin || s.phase != Phase::established) return;
    if (staged_flow_ != nullptr) {
        // Whichever flow staged bytes: the stage goes out with the flow
        // that staged it, never in front of this one's held bytes.
        flush_stage(true);
        if (s.phase != Phase::established || s.ooo == tcp::kNoOoo) return;
    }
    const uint32_t before = s.rcv_nxt;
    iovec held[2];
    int n = take_held(f, held);
    if (n > 0) {
        staged_flow_ = &f;
        flush_stage(true, {held, static_cast<size_t>(n)});
        if (s.phase != Phase::established) return;
        if (wire::seq_gt(s.rcv_nxt, before)) {
            stats_.reassembled_bytes += s.rcv_nxt - before;
            queue_ack(f);
        }
    }
    tcp::OooQueue* q = held_queue(s);
    if (q != nullptr && q->fin_at(s.rcv_nxt)) {
        accept_guest_fin(f);
        return;
    }
    tidy_held(f);
}

// Gives the flow's out-of-order queue back to the pool.
void TcpNat::release_held(Flow& f) {
    FlowState& s = f.st;
    if (s.ooo == tcp::kNoOoo) return;
    ooo_pool_[s.ooo]->queue.clear();
    ooo_free_.push_back(s.ooo);
    s.ooo = tcp::kNoOoo;
    auto it = per_guest_.find(s.port);
    if (it != per_guest_.end() && it->second.ooo_queues > 0) it->second.ooo_queues--;
}

// The ACK and window fields of an acceptable segment (RFC 9293 3.10.7.4
// fifth check), with RTT sampling, congestion control and recovery.
// sacked_new: its SACK blocks named bytes not known to be held before.
void TcpNat::process_ack(Flow& f, const wire::TcpView& seg, uint32_t ts_ecr, bool sacked_new) {
    FlowState& s = f.st;
    uint32_t ack = seg.ack();
    uint32_t seq = seg.seq();
    uint32_t wnd = uint32_t{seg.window()} << s.snd_wscale;
    bool pure = seg.payload().empty() && !seg.has(flag::fin) && !seg.has(flag::syn);
    const bool probe_out = s.tlp_out;
    if (s.in_recovery && s.sack_recovery && sacked_new && wire::seq_gt(s.high_rxt, s.snd_una) &&
        wire::seq_gt(s.sacked.high(), s.rxt_fence)) {
        // The guest holds bytes sent after our latest retransmission, so
        // any retransmitted hole it still misses was lost again (frames
        // are not reordered on the way): every hole is open once more
        // (after RFC 8985's rule; duplicate ACKs are too few to tell when
        // each acknowledges a whole GSO frame).
        s.high_rxt = s.snd_una;
        stats_.retransmits_lost++;
    }

    if (wire::seq_gt(ack, s.snd_una)) {
        s.tlp_out = false;  // (a probe timer may be armed again below)
        uint32_t acked = ack - s.snd_una;
        bool cwnd_limited = (s.snd_nxt - s.snd_una) + s.mss >= s.cc.cwnd();
        uint32_t data_acked = acked;
        if (s.host_eof && wire::seq_gt(ack, s.fin_seq)) {
            s.fin_acked = true;
            data_acked = s.fin_seq - s.snd_una;
        }
        if (data_acked > 0) {
            s.acked_unread += data_acked;
            queue_tx(f);
        }
        s.snd_una = ack;
        if (!s.sacked.empty()) s.sacked.trim(ack);
        if (wire::seq_lt(s.snd_nxt, s.snd_una)) s.snd_nxt = s.snd_una;
        if (s.fin_acked) s.fin_sent = true;
        if (ts_ecr != 0) {
            // RFC 7323 4.1: every ACK of new data times the segment it
            // echoes, retransmitted or not.
            uint32_t rtt = ts_now(f) - ts_ecr;
            if (rtt < tcp::kRtoMaxMs) s.rto.sample(rtt);
            s.rtt_timing = false;
        } else if (s.rtt_timing && wire::seq_ge(ack, s.rtt_seq)) {
            s.rto.sample(static_cast<uint32_t>(loop_.now()) - s.rtt_start);
            s.rtt_timing = false;
        }
        s.retries = 0;
        s.dupacks = 0;
        s.rto.reset_backoff();
        if (s.undo_ok && ts_ecr != 0) {
            // Eifel (RFC 3522): the first ACK after our retransmission
            // echoes a timestamp older than it: the original had arrived,
            // the retransmission was spurious (a slow guest, not a loss).
            s.undo_ok = false;
            if (wire::seq_lt(ts_ecr, s.rexmit_tsval)) {
                stats_.spurious_retransmits++;
                s.cc.undo();
                s.in_recovery = false;
                s.recover = s.snd_una;
            }
        }
        if (s.in_recovery) {
            if (wire::seq_ge(ack, s.recover)) {
                // With SACK the window was never inflated: it stays at
                // ssthresh (RFC 6675), however little is in flight.
                if (!s.sack_recovery) s.cc.on_recovery_end(s.snd_max - s.snd_una, s.mss);
                s.in_recovery = false;
            } else if (!s.sack_recovery) {
                // NewReno: the next hole. Two segments of it, where there
                // are two: a guest acknowledges one in-order segment with
                // nothing queued behind it only after its delayed-ACK
                // timer (40-200 ms), and a hole tens of segments long (a
                // lost tail) would take that long per segment.
                s.cc.on_partial_ack(acked, s.mss);
                stats_.retransmits_fast++;
                retransmit_head(f, 2);
                if (s.phase != Phase::established) return;
            } else if (s.sacked.empty() && !wire::seq_lt(s.snd_una, s.high_rxt)) {
                // Nothing held beyond the new head, which was not sent
                // again yet: NewReno's answer.
                stats_.retransmits_fast++;
                retransmit_head(f, 2);
                if (s.phase != Phase::established) return;
            } else {
                // The holes go at the end of the batch (send_pending); the
                // head, sent again already, is sent once more if duplicate
                // ACKs say that copy was lost too.
                expect_dups_behind_head(f);
            }
        } else {
            s.cc.on_ack(acked, s.mss, cwnd_limited);
        }
        if (s.snd_una == s.snd_max) {
            if (!s.persist) {
                loop_.cancel(f.timer);
                s.pto_armed = false;
            }
        } else {
            arm_rto(f);
        }
    } else if (ack == s.snd_una && pure && s.snd_max != s.snd_una &&
               (wnd == s.snd_wnd || sacked_new)) {
        // A duplicate ACK: RFC 5681's (same window), or RFC 6675's (new
        // SACK information, whatever the window: a Linux guest's window
        // grows while it queues what arrives beyond the hole, so its
        // duplicate ACKs rarely repeat the window).
        if (s.dupacks < 255) s.dupacks++;
        if (s.in_recovery) {
            // Every segment that was in flight behind the retransmitted one
            // answers with a duplicate ACK; more than that come from
            // segments sent after it, which arrived while it did not: it
            // was lost too. Send it again now rather than after an RTO
            // (NewReno alone cannot tell).
            if (++s.rexmit_dups > s.rexmit_expect_dups) {
                stats_.retransmits_fast++;
                if (s.sack_recovery && !s.sacked.empty()) {
                    // Every hole sent again and not reported held since
                    // is lost again: they all go again.
                    s.high_rxt = s.snd_una;
                    expect_dups_behind_head(f);
                    fill_holes(f, true);
                } else {
                    if (!s.sack_recovery) s.cc.on_recovery_dupack(s.mss);
                    retransmit_head(f);
                }
                if (s.phase != Phase::established) return;
            } else if (!s.sack_recovery) {
                // A segment has left the network: one new one may go
                // (RFC 5681 3.2 step 4). With SACK the pipe counts that,
                // and the holes go first (send_pending).
                s.cc.on_recovery_dupack(s.mss);
            }
        } else if ((s.dupacks >= dupack_threshold(f) ||
                    (s.sack_on && s.sacked.bytes() > 2 * std::max(segment_limit(f), 1u))) &&
                   wire::seq_ge(s.snd_una, s.recover)) {
            // Three duplicate ACKs, or with SACK more than two segments
            // held beyond the hole (RFC 6675 IsLost(): a guest that
            // acknowledges whole GSO frames sends fewer ACKs than that).
            stats_.retransmits_fast++;
            enter_recovery(f);
            if (s.phase != Phase::established) return;
            arm_rto(f);
        }
    }
    if (probe_out && !s.in_recovery && !s.sacked.empty() && s.snd_una != s.snd_max &&
        wire::seq_ge(s.snd_una, s.recover)) {
        // The probe's ACK names it beyond a hole: the tail before it was
        // lost (RFC 8985 7.4). (Not while a rewind's go-back-N is still
        // below the old snd_max, as for duplicate ACKs.)
        stats_.retransmits_fast++;
        enter_recovery(f);
        if (s.phase != Phase::established) return;
        arm_rto(f);
    }
    // Window update: only from a segment at least as new as the last one
    // that updated it (RFC 9293 SND.WL1/SND.WL2).
    if (wire::seq_lt(s.snd_wl1, seq) || (s.snd_wl1 == seq && wire::seq_le(s.snd_wl2, ack))) {
        s.snd_wnd = wnd;
        s.snd_wl1 = seq;
        s.snd_wl2 = ack;
        s.max_snd_wnd = std::max(s.max_snd_wnd, wnd);
    }
    // A guest that answers while its window is closed is alive: probing
    // it forever is fine (idle connections are never timed out).
    if (s.snd_wnd == 0) s.retries = 0;
    if (s.persist && (s.snd_wnd != 0 || s.snd_una != s.snd_max)) {
        s.persist = false;
        loop_.cancel(f.timer);
        if (s.snd_una != s.snd_max) arm_rto(f);
    }
    if (s.fin_acked) maybe_finish(f);
}

// The guest probes an idle connection: usernet answers the probe itself,
// so the host socket must do the probing toward the remote. Keepalive
// starts after about as long an idle time as the guest's (the time since
// it last sent data: a guest's keepalive timer also restarts on what it
// receives, so this may be longer, within 10 s .. 2 h), then probes eight
// times at an eighth of it: a dead remote is found in about twice the
// guest's idle time, and the kernel's ETIMEDOUT becomes a RST to the
// guest (on_io). A guest that never probes keeps its idle connections.
void TcpNat::enable_host_keepalive(Flow& f) {
    FlowState& s = f.st;
    s.host_keepalive = true;
    if (s.fd < 0 || s.local) return;  // a local stream has no peer to lose
    uint32_t now_s = static_cast<uint32_t>(loop_.now() / 1000) + 1;  // as note_active()
    uint32_t idle = s.active_epoch ? now_s - s.active_epoch : kKeepIdleUnknownS;
    idle = std::clamp(idle, kKeepIdleMinS, kKeepIdleMaxS);
    int on = 1, idle_s = static_cast<int>(idle);
    int intvl = static_cast<int>(std::max<uint32_t>(idle / kKeepCount, 1));
    int cnt = kKeepCount;
    setsockopt(s.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    setsockopt(s.fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(s.fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    if (setsockopt(s.fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 && debug_on())
        spdlog::debug("tcp: {} SO_KEEPALIVE: {}", describe(s.key), std::strerror(errno));
    stats_.keepalives_enabled++;
    if (debug_on())
        spdlog::debug("tcp: {} guest keepalive: host keepalive after {} s idle, {} x {} s",
                      describe(s.key), idle_s, cnt, intvl);
}

// Writes the new bytes of a guest segment to the socket; acknowledges
// only what the kernel took.
void TcpNat::write_payload(Flow& f, const wire::TcpView& seg, tcp::NewData nd) {
    FlowState& s = f.st;
    // Staged, not sent: the in-order segments of a batch go to the socket
    // in one send() (flush_stage). rcv_nxt moves now, so that the next
    // segment is in order; a short write moves it back before any ACK
    // can tell the guest (every path that emits one flushes first).
    if (staged_flow_ != nullptr &&
        (staged_flow_ != &f || (nd.len < kDirectWrite && stage_len_ + nd.len > kStageSize))) {
        const uint32_t expected = s.rcv_nxt;
        flush_stage(true);
        if (s.phase != Phase::established) return;
        if (s.rcv_nxt != expected) {
            // A short write took rcv_nxt back: this segment's new bytes
            // start elsewhere now, perhaps beyond a hole.
            nd = tcp::new_data(seg.seq(), static_cast<uint32_t>(seg.payload().size()), s.rcv_nxt);
            if (!nd.in_order) {
                hold_out_of_order(f, seg);
                return;
            }
            if (nd.len == 0) return;
        }
    }
    tcp::OooQueue* q = held_queue(s);
    if (q != nullptr && q->has_fin() && wire::seq_gt(s.rcv_nxt + nd.len, q->fin_seq())) {
        // Not past a FIN the guest sent already.
        nd.len = wire::seq_gt(q->fin_seq(), s.rcv_nxt) ? q->fin_seq() - s.rcv_nxt : 0;
    }
    if (nd.len == 0) return;
    std::span<const uint8_t> data = seg.payload().subspan(nd.skip, nd.len);
    const bool direct = nd.len >= kDirectWrite;
    s.rcv_nxt += nd.len;
    queue_ack(f);  // also schedules run_deferred, which flushes
    static_assert(kStageSize >= kDirectWrite, "a small segment always fits an empty stage");
    if (!direct) {
        std::memcpy(stage_.get() + stage_len_, data.data(), nd.len);
        stage_len_ += nd.len;
    }
    staged_flow_ = &f;
    // Bytes held out of order that this segment joins to the stream go in
    // the same send(); not behind a FIN it carries (held bytes there would
    // be a guest's contradiction).
    const uint32_t before_held = s.rcv_nxt;
    iovec tail[3];
    size_t nt = 0;
    if (direct) tail[nt++] = {const_cast<uint8_t*>(data.data()), data.size()};
    int nheld = seg.has(flag::fin) ? 0 : take_held(f, tail + nt);
    nt += static_cast<size_t>(nheld);
    if (direct || nheld > 0) {
        // Written now, after what this flow has staged, in one sendmsg().
        flush_stage(true, {tail, nt});
        if (nheld > 0 && s.phase == Phase::established) {
            if (wire::seq_gt(s.rcv_nxt, before_held))
                stats_.reassembled_bytes += s.rcv_nxt - before_held;
            tidy_held(f);
        }
        return;
    }
    if (seg.has(flag::fin)) flush_stage(true);  // the FIN needs the real rcv_nxt
}

// Writes the staged bytes of staged_flow_, then `tail` (bytes of a segment
// too large to stage, and held bytes it joined to the stream, already
// counted in rcv_nxt), with one send(). What
// the kernel did not take is taken back from rcv_nxt (the guest sends it
// again). With `answer`, as write_payload() did before staging, a short
// write is answered at once and a socket error resets the flow; without
// (called on the way to emitting a segment, which carries the ACK), the
// ACK is left to that segment and a reset to the end of the batch.
void TcpNat::flush_stage(bool answer, std::span<const iovec> tail) {
    Flow* fp = staged_flow_;
    iovec iov[4];
    size_t niov = 0;
    size_t len = 0;
    if (stage_len_ > 0) iov[niov++] = {stage_.get(), stage_len_};
    len += stage_len_;
    for (const iovec& v : tail) {
        if (niov == std::size(iov)) break;
        iov[niov++] = v;
        len += v.iov_len;
    }
    staged_flow_ = nullptr;
    stage_len_ = 0;
    if (fp == nullptr) return;
    Flow& f = *fp;
    FlowState& s = f.st;
    if (s.phase != Phase::established || s.fd < 0) return;
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = niov;
    ssize_t n;
    do {
        n = sendmsg(s.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    bool dead = false;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            if (debug_on())
                spdlog::debug("tcp: {} send: {}", describe(s.key), std::strerror(errno));
            dead = true;
        }
        n = 0;
    }
    uint32_t taken = static_cast<uint32_t>(n);
    s.rcv_nxt -= static_cast<uint32_t>(len) - taken;
    stats_.bytes_to_host += taken;
    if (taken > 0) note_active(f);
    if (dead) {
        if (answer) reset_flow(f, true);
        else doomed_.push_back(&f);
        return;
    }
    if (taken == len) return;
    stats_.partial_writes++;
    if (answer) {
        // Nothing taken from inside the window offered: an ACK like the
        // last one would be a duplicate ACK to the guest (three make it
        // fast-retransmit into a full buffer). It retransmits by its
        // timer, or sooner on the window update that EPOLLOUT brings
        // (send_ack_now() watches for it).
        send_ack_now(f, /*skip_identical=*/taken == 0);
    } else if (!s.guest_fin && !s.want_out) {
        update_interest(f, true);  // the kernel's room is what we wait for
    }
}

// ---------------------------------------------------------------------------
// toward the guest

// Payload per segment: the MSS less the options we put on every segment
// (RFC 6691: the MSS option does not count them).
// The data one segment carries: the guest's MSS less our options, and at
// most half the largest window the guest has offered (RFC 9293 3.8.6.2.1,
// as Linux's tcp_bound_to_half_wnd), so that two segments fit its window
// and it acknowledges at once instead of at its delayed-ACK timer (a guest
// without window scaling at MTU 65520 offers 65,535 bytes, one segment).
uint32_t TcpNat::segment_limit(const Flow& f) const {
    const uint32_t opts = static_cast<uint32_t>(data_header_len(f) - wire::kTcpHeaderLen);
    const uint32_t seg = f.st.mss - opts;
    const uint32_t wnd = f.st.max_snd_wnd;
    const uint32_t cutoff = wnd > tcp::kDefaultMss ? wnd / 2 : wnd;
    if (cutoff == 0 || seg <= cutoff) return seg;
    return std::max<uint32_t>(cutoff, 68 > wire::kTcpHeaderLen + opts ? 68 - wire::kTcpHeaderLen - opts : 1);
}

// Sends host data the windows allow, then our FIN once the data is out.
void TcpNat::send_pending(Flow& f) {
    FlowState& s = f.st;
    if (s.phase != Phase::established || s.fd < 0) return;
    if (!settle(f)) {
        reset_flow(f, true);
        return;
    }
    if (s.in_recovery && s.sack_recovery) {
        fill_holes(f, false);  // before new data
        if (s.phase != Phase::established) return;
    }
    // Nothing to read until the next EPOLLIN edge: spare the peek that
    // would say so (an upload's ACK-only direction would pay one per
    // guest segment).
    if (!s.host_pending && !(s.host_eof && !s.fin_sent)) return;
    for (int guard = 0; guard < 4096; guard++) {
        if (s.fin_sent) return;
        if (s.host_eof && s.snd_nxt == s.fin_seq) {
            if (!wire::seq_lt(s.fin_seq, s.snd_una + s.snd_wnd)) {
                // The FIN takes a sequence number too: a receiver drops it
                // in a zero window (Linux does), so it waits, and the
                // window is probed, as for data.
                if (s.snd_una == s.snd_max && (!f.timer.armed() || !s.persist)) {
                    s.persist = true;
                    s.pto_armed = false;
                    loop_.arm(f.timer, s.rto.rto_ms());
                }
                return;
            }
            emit(f, s.fin_seq, flag::fin | flag::ack, 0);
            s.fin_sent = true;
            s.snd_nxt = s.fin_seq + 1;
            if (wire::seq_gt(s.snd_nxt, s.snd_max)) s.snd_max = s.snd_nxt;
            if (!f.timer.armed() || s.persist) arm_rto(f);
            return;
        }
        uint32_t flight = s.snd_nxt - s.snd_una;
        uint32_t wnd_edge = s.snd_una + s.snd_wnd;
        uint32_t room = wire::seq_gt(wnd_edge, s.snd_nxt) ? wnd_edge - s.snd_nxt : 0;
        uint32_t cwnd = s.cc.cwnd();
        // In a recovery with SACK, what the window limits is the pipe
        // (RFC 6675 5 step C.2), not everything past snd_una.
        uint32_t in_net = s.in_recovery && s.sack_recovery ? sack_pipe(s) : flight;
        room = std::min(room, cwnd > in_net ? cwnd - in_net : 0u);
        if (!peek_off_ok_) {
            uint32_t cap = static_cast<uint32_t>(kDiscardSize);
            room = std::min(room, cap - std::min(flight, cap));
        }
        if (s.host_eof) room = std::min(room, s.fin_seq - s.snd_nxt);
        // With nothing in flight one segment goes regardless (other flows
        // may hold the attachment's queue; its loss is then this flow's
        // RTO, not a stall; with data in flight, the guest's ACKs bring us
        // back).
        room = std::min(room, attachment_room(f, flight == 0));
        if (room == 0) {
            if (s.snd_wnd == 0 && s.snd_una == s.snd_max && !f.timer.armed() &&
                (s.host_rdhup || s.host_eof || host_data_waiting(f))) {
                // Zero window, nothing in flight, data or the host's FIN to
                // send: probe the window (persist timer) so that a lost
                // update cannot stall us.
                s.persist = true;
                s.pto_armed = false;
                loop_.arm(f.timer, s.rto.rto_ms());
            }
            return;
        }
        const uint32_t seg = segment_limit(f);
        uint32_t want = std::min(room, seg);
        const bool gso = gw_.offload_to(s.key.guest);
        if (want == seg && room > seg && (!gso || seg >= wire::kMinGsoSize)) {
            // As many whole segments as fit, with one peek. The guest's
            // attachment takes large segments: one frame, cut into pieces
            // of `seg` by the guest's kernel (not below the gso_size the
            // switch accepts: a guest with a tiny MSS). Otherwise (a
            // stream, datagram or emulated NIC at MTU 1500) the peek
            // lands in the gateway's buffer all the same and goes out as
            // `seg`-sized frames, each one's headers written over the
            // tail of the one before, which has gone by then: one recv()
            // for up to 44 segments instead of one each, and no copy.
            uint32_t max = static_cast<uint32_t>(gw_.tx_l4_tcp_capacity() - data_header_len(f));
            want = std::min(room, max);
            if (want > seg) want -= want % seg;
        }
        const bool split = want > seg && !gso;
        if (want < seg && flight > 0 && !(s.host_eof && want == room)) {
            // Sender silly-window avoidance (RFC 9293 3.8.6.2.1): with data
            // in flight, wait until a whole segment fits rather than send
            // the sliver a byte-counted window leaves.
            return;
        }
        uint8_t* buf = gw_.tx_l4() + data_header_len(f);
        long n = peek(f, flight, buf, want);
        if (n > 0) {
            uint32_t len = static_cast<uint32_t>(n);
            bool fresh = s.snd_nxt == s.snd_max;
            if (fresh && !s.rtt_timing) {
                s.rtt_timing = true;
                s.rtt_seq = s.snd_nxt + len;
                s.rtt_start = static_cast<uint32_t>(loop_.now());
            }
            // A peek is short at the end of the queued data, or at an
            // urgent mark (Linux stops every read there, SO_OOBINLINE or
            // not). Only a flow that saw EPOLLPRI can meet a mark: the
            // poll that reported the data we peeked reported the urgent
            // pointer too (or another edge follows). There, ask how much
            // is queued rather than take the mark for the end.
            bool short_peek = len < want;
            bool more = short_peek && s.host_urg && host_queued(f) > flight + len;
            // A short peek after EPOLLRDHUP has read up to the host's FIN
            // (the data before a FIN is all queued when it is seen): the
            // FIN goes with this segment instead of after another peek.
            bool fin = short_peek && !more && s.host_rdhup && peek_off_ok_ && !s.host_reset;
            if (fin) {
                s.host_eof = true;
                s.fin_seq = s.snd_nxt + len;
                if (debug_on()) spdlog::debug("tcp: {} host EOF", describe(s.key));
            }
            uint8_t last = (short_peek ? flag::psh : 0) | (fin ? flag::fin : 0);
            if (split) {
                for (uint32_t at = 0; at < len; at += seg) {
                    uint32_t piece = std::min(seg, len - at);
                    emit(f, s.snd_nxt + at, flag::ack | (at + piece == len ? last : 0), piece, -1,
                         at);
                }
            } else {
                emit(f, s.snd_nxt, flag::ack | last, len);
            }
            stats_.bytes_to_guest += len;
            s.snd_nxt += len;
            if (fin) {
                s.fin_sent = true;
                s.snd_nxt = s.fin_seq + 1;
            }
            if (wire::seq_gt(s.snd_nxt, s.snd_max)) s.snd_max = s.snd_nxt;
            if (!f.timer.armed() || s.persist) {
                arm_rto(f);
            } else if (!s.pto_armed && !s.in_recovery) {
                // More is out now: a tail loss probe may be due before the RTO.
                core::Millis deadline = f.timer.deadline();
                arm_rto(f);
                if (!s.pto_armed) loop_.arm_at(f.timer, deadline);  // keep the RTO where it was
            }
            // Drained: the next EPOLLIN edge brings more, unless the host's
            // FIN came with the data (its edge is the one being handled).
            if (short_peek && !more && !s.host_rdhup) {
                s.host_pending = false;
                return;
            }
            continue;
        }
        if (n == -ENOBUFS) return;  // behind an urgent mark until the guest ACKs (peek())
        if (n == 0 && s.host_reset) return;  // all out: a RST follows, not a FIN
        if (n == 0) {
            s.host_eof = true;
            s.fin_seq = s.snd_nxt;
            if (debug_on()) spdlog::debug("tcp: {} host EOF", describe(s.key));
            continue;
        }
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            s.host_pending = false;
            return;
        }
        if (n == -EINTR) continue;
        if (debug_on())
            spdlog::debug("tcp: {} recv: {}", describe(s.key), std::strerror(static_cast<int>(-n)));
        reset_flow(f, true);
        return;
    }
}

// The payload bytes the guest's attachment can take now. One that queues (a
// stream socket, a WebSocket) drops what does not fit: keep within what it
// can take, each segment with its framing, as the data can wait in the
// host socket (a whole window dropped at the tail would cost a recovery).
// A ring of whole frames (a datagram attachment) bounds the segments as
// well as the bytes. at_least_one: a segment even when nothing fits.
uint32_t TcpNat::attachment_room(Flow& f, bool at_least_one) {
    constexpr size_t kNoBound = std::numeric_limits<size_t>::max();
    const gw::Gateway::TxRoom port_room = gw_.tx_room_to(f.st.key.guest);
    if (port_room.bytes == kNoBound && port_room.frames == kNoBound) return UINT32_MAX;
    const size_t seg = segment_limit(f);
    size_t fits = kNoBound;
    if (port_room.bytes != kNoBound) {
        const size_t per = seg + data_header_len(f) + kFramingOverhead;
        fits = port_room.bytes / per * seg;
    }
    if (port_room.frames != kNoBound) fits = std::min(fits, port_room.frames * seg);
    if (fits == 0 && at_least_one) fits = seg;
    return static_cast<uint32_t>(std::min<size_t>(fits, UINT32_MAX));
}

// Bytes of host data in the socket's receive queue, from snd_una (urgent
// bytes included: SO_OOBINLINE). UINT32_MAX if the kernel will not say.
uint32_t TcpNat::host_queued(Flow& f) {
    if (!settle(f)) return UINT32_MAX;
    int inq = 0;
    if (ioctl(f.st.fd, SIOCINQ, &inq) < 0) return UINT32_MAX;
    return static_cast<uint32_t>(inq);
}

// Whether the host has sent bytes beyond those in flight toward the guest.
bool TcpNat::host_data_waiting(Flow& f) {
    if (!settle(f)) return true;
    int inq = 0;
    if (ioctl(f.st.fd, SIOCINQ, &inq) < 0) return true;
    return static_cast<uint32_t>(inq) > f.st.data_in_flight();
}

// The tail loss probe of a SACK flow: the last segment of the data in
// flight, sent again.
void TcpNat::probe_tail(Flow& f) {
    FlowState& s = f.st;
    if (!settle(f)) {
        reset_flow(f, true);
        return;
    }
    const uint32_t inflight = s.data_in_flight();
    const uint32_t len = std::min(inflight, std::max<uint32_t>(segment_limit(f), 1));
    resend(f, inflight - len, len);
}

// The response to a loss seen by duplicate ACKs or a tail loss probe:
// NewReno recovery up to what is out now, half the window, the first
// missing segment again (RFC 5681 3.2, RFC 6582).
void TcpNat::enter_recovery(Flow& f) {
    FlowState& s = f.st;
    s.tlp_out = false;
    s.recover = s.snd_max;
    s.in_recovery = true;
    s.rtt_timing = false;
    s.cc.save();
    s.undo_ok = s.ts_on;
    s.rexmit_tsval = ts_now(f);
    s.high_rxt = s.snd_una;
    s.sack_recovery = s.sack_on && !s.sacked.empty();
    if (s.sack_recovery) {
        s.cc.on_sack_recovery(s.snd_max - s.snd_una, s.mss);
        expect_dups_behind_head(f);
        fill_holes(f, true);
        return;
    }
    s.cc.on_fast_retransmit(s.snd_max - s.snd_una, s.mss);
    retransmit_head(f);
}

// Retransmits up to segs segments from snd_una (fast retransmit: one;
// NewReno partial ACK: two), or the FIN when only the FIN is outstanding.
void TcpNat::retransmit_head(Flow& f, uint32_t segs) {
    FlowState& s = f.st;
    if (!settle(f)) {
        reset_flow(f, true);
        return;
    }
    uint32_t inflight = s.data_in_flight();
    expect_dups_behind_head(f);
    if (inflight == 0) {
        if (s.fin_sent && !s.fin_acked) emit(f, s.fin_seq, flag::fin | flag::ack, 0);
        return;
    }
    resend(f, 0, std::min(inflight, segs * segment_limit(f)));
}

// Duplicate ACKs to expect from what is in flight behind the segment at
// snd_una, which has just been sent again, plus the usual three of margin:
// more mean that it was lost again (see process_ack).
void TcpNat::expect_dups_behind_head(Flow& f) {
    FlowState& s = f.st;
    uint32_t inflight = s.data_in_flight();
    uint32_t seg = std::max<uint32_t>(segment_limit(f), 1);
    uint32_t behind = inflight > seg ? (inflight - seg + seg - 1) / seg : 0;
    s.rexmit_expect_dups = static_cast<uint16_t>(std::min<uint32_t>(behind + 3, 0xffff));
    s.rexmit_dups = 0;
}

// Sends up to len bytes from `offset` bytes after snd_una again (the
// socket settled: its queue starts at snd_una), in one peek: as one GSO
// frame to a guest that takes them, else cut into segments. Returns the
// bytes sent.
uint32_t TcpNat::resend(Flow& f, uint32_t offset, uint32_t len) {
    FlowState& s = f.st;
    const uint32_t seg = std::max<uint32_t>(segment_limit(f), 1);
    const bool gso = gw_.offload_to(s.key.guest);
    if (gso && seg < wire::kMinGsoSize) len = std::min(len, seg);
    len = std::min(len, static_cast<uint32_t>(gw_.tx_l4_tcp_capacity() - data_header_len(f)));
    uint8_t* buf = gw_.tx_l4() + data_header_len(f);
    long n;
    if (peek_off_ok_) {
        set_peek_offset(f, offset);
        n = recv(s.fd, buf, len, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0) n = -errno;
        set_peek_offset(f, s.data_in_flight());
    } else {
        n = peek(f, offset, buf, len);
    }
    if (n <= 0) return 0;
    const uint32_t sent = static_cast<uint32_t>(n);
    const uint32_t seq = s.snd_una + offset;
    if (sent > seg && !gso) {
        for (uint32_t at = 0; at < sent; at += seg)
            emit(f, seq + at, flag::ack, std::min(seg, sent - at), -1, at);
    } else {
        emit(f, seq, flag::ack, sent);
    }
    stats_.bytes_to_guest += sent;
    if (wire::seq_gt(seq + sent, s.high_rxt)) s.high_rxt = seq + sent;
    s.rxt_fence = s.snd_nxt;
    return sent;
}

// RFC 6675 4 SetPipe(): the bytes in the network. Every hole below the
// highest byte the guest reported holding counts as lost (usernet's guests
// sit on a LAN, where frames are lost, not reordered), so in the network
// are the bytes above that one and the holes sent again.
uint32_t TcpNat::sack_pipe(const FlowState& s) const {
    if (s.sacked.empty()) return s.snd_nxt - s.snd_una;
    const uint32_t high = wire::seq_lt(s.sacked.high(), s.snd_nxt) ? s.sacked.high() : s.snd_nxt;
    uint32_t pipe = wire::seq_gt(s.snd_nxt, high) ? s.snd_nxt - high : 0;
    const uint32_t rxt_end = wire::seq_lt(s.high_rxt, high) ? s.high_rxt : high;
    uint32_t from = s.snd_una;
    for (int i = 0; i < s.sacked.size() && wire::seq_lt(from, rxt_end); i++) {
        const tcp::SackBoard::Range r = s.sacked.range(i);
        if (wire::seq_lt(from, r.start))
            pipe += (wire::seq_lt(r.start, rxt_end) ? r.start : rxt_end) - from;
        if (wire::seq_gt(r.end, from)) from = r.end;
    }
    return pipe;
}

// RFC 6675 5 step (C): the holes below what the guest holds, lowest first,
// each sent again once, as long as the pipe leaves room in the congestion
// window; `first`: the recovery's first retransmission, which goes
// regardless (step 4.3). A whole hole (a GSO frame dropped in the guest is
// tens of segments) goes in one peek.
void TcpNat::fill_holes(Flow& f, bool first) {
    FlowState& s = f.st;
    if (!settle(f)) {
        reset_flow(f, true);
        return;
    }
    const uint32_t seg = std::max<uint32_t>(segment_limit(f), 1);
    const uint32_t data_end = s.snd_una + s.data_in_flight();
    uint32_t pipe = sack_pipe(s);
    for (int guard = 0; guard < 64; guard++) {
        uint32_t from = wire::seq_gt(s.high_rxt, s.snd_una) ? s.high_rxt : s.snd_una;
        uint32_t start = 0, end = 0;
        if (!s.sacked.next_hole(from, start, end) || !wire::seq_lt(start, data_end)) return;
        if (wire::seq_gt(end, data_end)) end = data_end;
        uint32_t room = s.cc.cwnd() > pipe ? s.cc.cwnd() - pipe : 0;
        if (first) room = std::max(room, seg);
        first = false;
        // What the attachment cannot queue would be dropped: it waits for
        // the next ACK (or the RTO) in the host socket, as new data does.
        room = std::min(room, attachment_room(f, false));
        uint32_t len = std::min(end - start, room);
        if (len < seg && len < end - start) return;  // less than a segment of room
        if (len > seg && len < end - start) len -= len % seg;
        uint32_t sent = resend(f, start - s.snd_una, len);
        if (sent == 0) return;
        stats_.retransmits_sack++;
        pipe += sent;
    }
}

// Go-back-N after a timeout: everything from snd_una is sent again.
void TcpNat::rewind(Flow& f) {
    FlowState& s = f.st;
    (void)settle(f);  // a failure shows at the next read (send_pending)
    s.snd_nxt = s.snd_una;
    s.host_pending = true;
    if (s.fin_sent && !s.fin_acked) s.fin_sent = false;
    if (peek_off_ok_) set_peek_offset(f, 0);
    s.rtt_timing = false;
    s.dupacks = 0;
    s.in_recovery = false;
    s.recover = s.snd_max;
    s.tlp_out = false;
    s.sacked.clear();  // RFC 6675 5.1: all of it is sent again
}

// Peeks up to len bytes starting `offset` bytes after snd_una. Returns the
// byte count, 0 at the host's EOF, or -errno (-EAGAIN: nothing new;
// -ENOBUFS: more is queued, but behind an urgent mark that a peek from 0
// cannot pass, until the guest acknowledges the bytes before it).
long TcpNat::peek(Flow& f, uint32_t offset, uint8_t* dst, size_t len) {
    FlowState& s = f.st;
    if (peek_off_ok_) {
        // The kernel's peek offset already equals `offset`.
        ssize_t n = recv(s.fd, dst, len, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 ? -errno : n;
    }
    iovec iov[2] = {{discard_.get(), offset}, {dst, len}};
    msghdr mh{};
    mh.msg_iov = offset ? iov : iov + 1;
    mh.msg_iovlen = offset ? 2 : 1;
    ssize_t n = recvmsg(s.fd, &mh, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) return -errno;
    if (offset == 0) return n;
    if (static_cast<size_t>(n) > offset) return n - static_cast<long>(offset);
    // Nothing beyond what is in flight, or an urgent mark in the flight
    // (every read stops there; EPOLLPRI told us): ask how much is queued.
    if (s.host_urg && host_queued(f) > offset) return -ENOBUFS;
    // EOF only if the host said so.
    return (s.host_rdhup || n == 0) ? 0 : -EAGAIN;
}

// Sets the kernel's peek offset (SO_PEEK_OFF) to off bytes after snd_una.
bool TcpNat::set_peek_offset(Flow& f, uint32_t off) {
    int v = static_cast<int>(off);
    return setsockopt(f.st.fd, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof v) == 0;
}

// Drops the bytes the guest acknowledged (acked_unread) from the socket's
// receive queue, so that its head is snd_una again. False on a socket
// error: the bytes were peeked, so they are there. The caller resets the
// flow (or, closing it anyway, need not).
bool TcpNat::settle(Flow& f) {
    FlowState& s = f.st;
    uint32_t bytes = s.acked_unread;
    s.acked_unread = 0;
    // A unix stream socket (FlowState::local) has no MSG_TRUNC discard
    // without a buffer: its bytes are read into one and dropped.
    if (s.local && !local_sink_) local_sink_ = std::make_unique<uint8_t[]>(kLocalSinkSize);
    for (int i = 0; bytes > 0 && s.fd >= 0; i++) {
        ssize_t n = s.local ? recv(s.fd, local_sink_.get(), std::min<size_t>(bytes, kLocalSinkSize),
                                   MSG_DONTWAIT)
                            : recv(s.fd, nullptr, bytes, MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || (!s.local && i == 64)) {
            if (debug_on())
                spdlog::debug("tcp: {} discard: {}", describe(s.key),
                              n < 0 ? std::strerror(errno) : "EOF");
            return false;
        }
        bytes -= static_cast<uint32_t>(n);
    }
    return true;
}

// Puts the flow on the end-of-batch send list (run_deferred).
void TcpNat::queue_tx(Flow& f) {
    if (f.st.tx_queued) return;
    f.st.tx_queued = true;
    tx_list_.push_back(&f);
    loop_.defer(*this);
}

// Our TCP header at p: 20 bytes, then on a SYN our options (MSS, window
// scale, timestamps: whatever the guest offered, or all on our own SYN; no
// SACK), on any other segment the timestamp option when the flow uses it.
// Returns its length (data_header_len() for segments that carry data).
size_t TcpNat::write_header(Flow& f, uint8_t* p, uint32_t seq, uint8_t flags, uint16_t wnd,
                            bool pure) {
    FlowState& s = f.st;
    uint8_t* o = p + wire::kTcpHeaderLen;
    size_t olen = 0;
    bool syn = (flags & flag::syn) != 0;
    bool own_syn = syn && !(flags & flag::ack);
    if (syn) {
        uint32_t path = std::min<uint32_t>(s.ingress_mtu, gw_.path_mtu(s.key.guest));
        uint32_t mss = std::min<uint32_t>(path, 65535) - header_overhead(s.key.guest);
        o[olen++] = 2;  // MSS
        o[olen++] = 4;
        wire::store16(o + olen, static_cast<uint16_t>(std::max<uint32_t>(mss, 64)));
        olen += 2;
        if (own_syn || s.guest_wscale) {
            o[olen++] = 1;  // NOP
            o[olen++] = 3;  // window scale
            o[olen++] = 3;
            o[olen++] = own_syn ? tcp::kOurWindowScale : s.rcv_wscale;
        }
    }
    // SACK-permitted (RFC 2018 2) in our SYN, and in our SYN-ACK when the
    // guest's SYN offered it: in the two bytes the timestamp option would
    // pad with NOPs, as Linux puts it.
    const bool sack_ok = syn && (own_syn || s.sack_on);
    if (own_syn || s.ts_on) {
        o[olen++] = sack_ok ? 4 : 1;
        o[olen++] = sack_ok ? 2 : 1;
        o[olen++] = 8;  // timestamps (RFC 7323 3)
        o[olen++] = 10;
        wire::store32(o + olen, ts_now(f));
        wire::store32(o + olen + 4, (flags & flag::ack) ? s.ts_recent : 0);
        olen += 8;
    } else if (sack_ok) {
        o[olen++] = 1;
        o[olen++] = 1;
        o[olen++] = 4;
        o[olen++] = 2;
    }
    if (pure && !syn && (flags & flag::ack) && s.sack_on) olen += write_sack(f, o + olen, olen);
    size_t hl = wire::kTcpHeaderLen + olen;
    uint32_t ack = (flags & flag::ack) ? s.rcv_nxt : 0;
    wire::store16(p, s.key.remote_port);
    wire::store16(p + 2, s.key.guest_port);
    wire::store32(p + 4, seq);
    wire::store32(p + 8, ack);
    p[12] = static_cast<uint8_t>((hl / 4) << 4);
    p[13] = flags;
    wire::store16(p + 14, wnd);
    wire::store16(p + 16, 0);
    wire::store16(p + 18, 0);
    return hl;
}

// RFC 2018 4: on an ACK while guest bytes are held beyond a hole, a SACK
// option listing them, the block with the latest segment first, then the
// others from the highest (a sender moving forward reported those most
// recently; the queue keeps no report order), as many as fit behind the olen option bytes
// already written (three beside timestamps, four without). Only what lies
// above the ACK (rcv_nxt) is listed. Returns the bytes written.
size_t TcpNat::write_sack(Flow& f, uint8_t* o, size_t olen) {
    const FlowState& s = f.st;
    const tcp::OooQueue* q = held_queue(s);
    if (q == nullptr) return 0;
    const size_t room = (wire::kTcpMaxHeaderLen - wire::kTcpHeaderLen - olen - 4) / 8;
    auto ranges = q->ranges();
    const int latest = q->latest();
    size_t n = 0;
    uint8_t* b = o + 4;
    auto put = [&](const tcp::OooQueue::Range& r) {
        if (n == room || wire::seq_le(r.end, s.rcv_nxt)) return;
        uint32_t left = wire::seq_gt(r.start, s.rcv_nxt) ? r.start : s.rcv_nxt;
        if (left == s.rcv_nxt) return;  // the bytes at the ACK are not beyond a hole
        wire::store32(b + 8 * n, left);
        wire::store32(b + 8 * n + 4, r.end);
        n++;
    };
    if (latest >= 0) put(ranges[static_cast<size_t>(latest)]);
    for (size_t i = ranges.size(); i-- > 0;)
        if (static_cast<int>(i) != latest) put(ranges[i]);
    if (n == 0) return 0;
    o[0] = 1;
    o[1] = 1;
    o[2] = 5;  // SACK
    o[3] = static_cast<uint8_t>(2 + 8 * n);
    return 4 + 8 * n;
}

// Header bytes in front of the payload of our data segments.
size_t TcpNat::data_header_len(const Flow& f) const {
    return wire::kTcpHeaderLen + (f.st.ts_on ? kTimestampOptionLen : 0);
}

// Our timestamp clock: milliseconds, from the address pair's origin.
uint32_t TcpNat::ts_now(const Flow& f) const {
    return static_cast<uint32_t>(loop_.now()) + f.st.ts_offset;
}

// Builds and sends one segment whose payload (payload_len bytes) is
// already in place at gw.tx_l4() + at + data_header_len(). window_field
// < 0: the cached advertisement. at > 0: one of a run of segments peeked
// in one read (Gateway::send_ip). Returns whether the gateway sent it.
bool TcpNat::emit(Flow& f, uint32_t seq, uint8_t flags, size_t payload_len, int window_field,
                  size_t at) {
    FlowState& s = f.st;
    if (staged_flow_ == &f) flush_stage(false);  // never ACK bytes not yet written
    uint16_t wnd = window_field >= 0 ? static_cast<uint16_t>(window_field) : cached_window_field(f);
    uint8_t* p = gw_.tx_l4() + at;
    size_t hl = write_header(f, p, seq, flags, wnd, payload_len == 0);
    bool sent;
    if (payload_len > 0 && gw_.offload_to(s.key.guest)) {
        // Only the pseudo-header sum: the guest's kernel trusts a partial
        // checksum (or the switch completes it for an attachment without
        // offload). Segments longer than the MSS go as one GSO frame.
        wire::Offload off;
        off.csum_partial = true;
        off.csum_start = 0;
        off.csum_offset = 16;
        off.hdr_len = static_cast<uint16_t>(hl);
        uint32_t seg = segment_limit(f);
        if (payload_len > seg) {
            off.gso_type = s.key.guest.is_v4() ? wire::Offload::gso_tcp4 : wire::Offload::gso_tcp6;
            off.gso_size = static_cast<uint16_t>(seg);
        }
        wire::store16(p + 16,
                      wire::csum_pseudo_partial(s.key.remote, s.key.guest, wire::ipproto::tcp,
                                                static_cast<uint32_t>(hl + payload_len)));
        sent = gw_.send_ip(s.key.remote, s.key.guest, wire::ipproto::tcp, hl + payload_len, 64,
                           &off, at);
    } else {
        wire::finish_tcp_checksum(p, hl + payload_len, s.key.remote, s.key.guest);
        sent = gw_.send_ip(s.key.remote, s.key.guest, wire::ipproto::tcp, hl + payload_len, 64,
                           nullptr, at);
    }
    stats_.segs_to_guest++;
    if (flags & flag::ack) {
        s.last_ack_sent = s.rcv_nxt;
        s.last_wnd_field = wnd;
    }
    return sent;
}

// The advertised window without asking the socket: the right edge stays
// where the last fresh computation put it.
uint16_t TcpNat::cached_window_field(Flow& f) {
    FlowState& s = f.st;
    tcp::Advertised a = tcp::advertise_window(s.rcv_nxt, s.rcv_adv, 0, s.rcv_wscale);
    s.rcv_adv = a.right_edge;
    return a.field;
}

// Free room in the socket's send buffer, in the kernel's own accounting.
uint32_t TcpNat::socket_send_room(Flow& f, bool* low) {
    uint32_t mem[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof mem;
    uint32_t buf = 0, queued = 0;
    if (getsockopt(f.st.fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 &&
        len >= sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1)) {
        buf = mem[SK_MEMINFO_SNDBUF];
        // A unix socket's writes are charged to wmem_alloc until the peer
        // reads them (TCP's wmem_queued stays 0 there).
        queued = mem[f.st.local ? SK_MEMINFO_WMEM_ALLOC : SK_MEMINFO_WMEM_QUEUED];
    } else {
        int b = 0, q = 0;
        socklen_t bl = sizeof b;
        getsockopt(f.st.fd, SOL_SOCKET, SO_SNDBUF, &b, &bl);
        ioctl(f.st.fd, SIOCOUTQ, &q);
        buf = static_cast<uint32_t>(std::max(b, 0));
        queued = static_cast<uint32_t>(std::max(q, 0));
    }
    // Queued memory includes per-buffer overhead the payload does not see
    // (about 3% for bulk writes), so room in memory is a fair bound for
    // payload; keep 1/16 spare so that a right edge we may not take back
    // does not outgrow what the kernel accepts when the host peer stalls.
    uint32_t room = buf > queued ? buf - queued : 0;
    room -= room / 16;
    // Low: the kernel will signal EPOLLOUT (a third of the buffer free)
    // before the guest could fill what is left.
    if (low) *low = room < buf / 4 && room < window_cap(f);
    return std::min(room, window_cap(f));
}

// The most a flow may offer its guest, in bytes. The guest is one hop
// away, so a few dozen segments fill the path, and a larger flight only
// makes a loss dearer (what follows a hole beyond the out-of-order queue's
// reach is sent again). And the windows of all of a guest's
// flows together should fit the attachment's queue (a TAP holds some
// thousands of frames and drops the rest): with many flows sending at
// once (in this second or the last; idle ones do not count) each offers
// less, down to 8 segments.
uint32_t TcpNat::window_cap(const Flow& f) const {
    auto it = per_guest_.find(f.st.port);
    uint32_t flows = 1;
    if (it != per_guest_.end()) {
        // Flows that sent in this second or the last; a count older than
        // that is stale (no flow has sent since).
        const GuestCounts& g = it->second;
        uint32_t epoch = static_cast<uint32_t>(loop_.now() / 1000) + 1;
        if (g.active_epoch == epoch) flows = std::max({flows, g.active_cur, g.active_prev});
        else if (g.active_epoch + 1 == epoch) flows = std::max(flows, g.active_cur);
    }
    uint32_t segs = std::clamp<uint32_t>(kWindowBudgetSegments / flows, kMinWindowSegments,
                                         kMaxWindowSegments);
    // What fills a queue is frames: with offload the guest sends segments
    // of up to 64 KiB whatever its MSS (and a loss costs one frame too).
    uint32_t unit = f.st.mss;
    if (gw_.offload_to(f.st.key.guest)) unit = std::max<uint32_t>(unit, kGsoFrameBytes);
    return segs * unit;
}

// Counts f among its guest's flows that sent data this second (once).
void TcpNat::note_active(Flow& f) {
    uint32_t epoch = static_cast<uint32_t>(loop_.now() / 1000) + 1;  // never 0
    if (f.st.active_epoch == epoch) return;
    f.st.active_epoch = epoch;
    auto it = per_guest_.find(f.st.port);
    if (it == per_guest_.end()) return;
    GuestCounts& g = it->second;
    if (g.active_epoch != epoch) {
        g.active_prev = g.active_epoch + 1 == epoch ? g.active_cur : 0;
        g.active_cur = 0;
        g.active_epoch = epoch;
    }
    g.active_cur++;
}

// An ACK now, with a freshly computed window; watches EPOLLOUT while the
// window is low so that the update that reopens it is not missed.
// skip_identical: not if it would repeat the last ACK's number and window.
void TcpNat::send_ack_now(Flow& f, bool skip_identical) {
    FlowState& s = f.st;
    if (staged_flow_ == &f) flush_stage(false);
    if (s.fd < 0) {
        emit(f, s.snd_max, flag::ack, 0, 0);
        return;
    }
    bool low = false;
    uint32_t room = socket_send_room(f, &low);
    tcp::Advertised a = tcp::advertise_window(s.rcv_nxt, s.rcv_adv, room, s.rcv_wscale);
    s.rcv_adv = a.right_edge;
    // (A closed window is different: the segment was a window probe with
    // new data, as BSD and Windows send them, and must be answered.)
    if (skip_identical && a.field != 0 && s.last_ack_sent == s.rcv_nxt &&
        s.last_wnd_field == a.field) {
        low = true;  // the kernel refused bytes: its room is what we wait for
    } else {
        emit(f, s.snd_max, flag::ack, 0, a.field);
    }
    if (s.phase == Phase::established && !s.guest_fin && low != s.want_out)
        update_interest(f, low);
}

// EPOLLOUT while the window was low: a window update, if it opens it.
// (An ACK identical to the last would count as a duplicate ACK.)
void TcpNat::send_window_update(Flow& f) {
    FlowState& s = f.st;
    if (staged_flow_ == &f) flush_stage(false);
    bool low = false;
    uint32_t room = socket_send_room(f, &low);
    tcp::Advertised a = tcp::advertise_window(s.rcv_nxt, s.rcv_adv, room, s.rcv_wscale);
    if (a.field != s.last_wnd_field || s.last_ack_sent != s.rcv_nxt) {
        s.rcv_adv = a.right_edge;
        emit(f, s.snd_max, flag::ack, 0, a.field);
    }
    if (low != s.want_out) update_interest(f, low);
}

// Owes the guest an ACK at the end of the batch (force: even if a data
// segment carried the same ACK meanwhile).
void TcpNat::queue_ack(Flow& f, bool force) {
    if (force) f.st.ack_force = true;
    if (f.st.ack_queued) return;
    f.st.ack_queued = true;
    ack_list_.push_back(&f);
    loop_.defer(*this);
}

// Adds or removes EPOLLOUT (window updates) from the socket's interest.
void TcpNat::update_interest(Flow& f, bool want_out) {
    if (f.st.fd < 0) return;
    try {
        loop_.modify(f.st.fd, kEventsOpen | (want_out ? uint32_t{EPOLLOUT} : 0u), &f);
        f.st.want_out = want_out;
    } catch (const std::exception& e) {
        spdlog::warn("tcp: epoll: {}", e.what());
    }
}

// Arms the retransmission timer, or the earlier tail loss probe when it
// applies: outside recovery and backoff, with an RTT sample, after
// max(2 SRTT, SRTT + 4 RTTVAR) plus room for a delayed ACK (200 ms when
// only one segment is out, which a guest may hold back; else 40 ms, Linux's
// shortest delayed ACK, for the odd segment at the end of a burst).
void TcpNat::arm_rto(Flow& f) {
    FlowState& s = f.st;
    s.persist = false;
    s.pto_armed = false;
    uint32_t rto = s.rto.rto_ms();
    if (!s.in_recovery && !s.tlp_out && !s.rto.backed_off() && s.rto.has_sample() &&
        s.snd_max != s.snd_una) {
        uint32_t out = s.snd_max - s.snd_una;
        // With SACK a probe costs one segment and no window (probe_tail):
        // RFC 8985's 2 ms of margin, as Linux. Without, it halves the
        // window if an odd segment's delayed ACK comes late: 40 ms.
        uint32_t pto = std::max(2 * s.rto.srtt_ms(), s.rto.raw_rto_ms()) +
                       (out <= segment_limit(f) ? 200u : s.sack_on ? 2u : 40u);
        if (pto < rto) {
            s.pto_armed = true;
            loop_.arm(f.timer, pto);
            return;
        }
    }
    loop_.arm(f.timer, rto);
}

// Duplicate ACKs that mean a loss: three (RFC 5681), fewer when fewer
// segments are out behind the head and no new data can follow them to
// produce more (early retransmit, RFC 5827). A TAP or a socket does not
// reorder frames, so the smaller count is safe.
uint32_t TcpNat::dupack_threshold(const Flow& f) const {
    const FlowState& s = f.st;
    uint32_t seg = std::max<uint32_t>(segment_limit(f), 1);
    uint32_t out = s.snd_max - s.snd_una;
    uint32_t behind = out > seg ? (out - seg + seg - 1) / seg : 0;
    if (behind >= 3) return 3;
    uint32_t flight = s.snd_nxt - s.snd_una;
    uint32_t wnd_room = s.snd_wnd > flight ? s.snd_wnd - flight : 0;
    uint32_t cwnd_room = s.cc.cwnd() > flight ? s.cc.cwnd() - flight : 0;
    bool more_coming = s.host_pending && std::min(wnd_room, cwnd_room) >= seg;
    if (more_coming) return 3;
    return std::max<uint32_t>(behind, 1);
}

// RFC 9293 3.10.7.1: the reset for a segment that belongs to no flow.
void TcpNat::send_reset_reply(const gw::GuestPacket& pkt, const wire::TcpView& seg) {
    FlowKey key{pkt.src, pkt.dst, seg.src_port(), seg.dst_port()};
    if (seg.has(flag::ack))
        send_rst(key, seg.ack(), 0, false);
    else
        send_rst(key, 0, seg.seq() + seg.seg_len(), true);
}

// A RST (with ACK if asked) from the remote toward the guest.
void TcpNat::send_rst(const FlowKey& key, uint32_t seq, uint32_t ack, bool with_ack) {
    uint8_t* p = gw_.tx_l4();
    uint8_t flags = with_ack ? (flag::rst | flag::ack) : flag::rst;
    size_t hl =
        wire::build_tcp(p, key.remote_port, key.guest_port, seq, with_ack ? ack : 0, flags, 0);
    wire::finish_tcp_checksum(p, hl, key.remote, key.guest);
    gw_.send_ip(key.remote, key.guest, wire::ipproto::tcp, hl);
    stats_.resets_to_guest++;
    stats_.segs_to_guest++;
}

// ICMP destination unreachable for the guest's SYN (ICMPv6 toward an IPv6
// guest: IcmpNat::send_error maps the code), from the gateway, the router
// that could not deliver it (as libslirp's come from its host address and
// the UDP NAT's do), quoting a rebuilt IP header
// and the first 8 bytes of the SYN (ports and sequence number, all a guest
// stack needs to find its socket). It takes a token from the ICMP error
// bucket like every error toward guests; without one, the guest's SYN
// retry meets the same answer.
void TcpNat::send_icmp_unreachable(const FlowKey& key, uint32_t guest_seq, uint8_t code) {
    std::array<uint8_t, wire::kIpv6HeaderLen + 8> q{};
    size_t n;
    if (key.guest.is_v4()) {
        wire::build_ipv4(q.data(), key.guest.as_v4(), key.remote.as_v4(), wire::ipproto::tcp,
                         wire::kTcpHeaderLen);
        n = wire::kIpv4HeaderLen;
    } else {
        wire::build_ipv6(q.data(), key.guest, key.remote, wire::ipproto::tcp, wire::kTcpHeaderLen);
        n = wire::kIpv6HeaderLen;
    }
    wire::store16(q.data() + n, key.guest_port);
    wire::store16(q.data() + n + 2, key.remote_port);
    wire::store32(q.data() + n + 4, guest_seq);
    nat_.icmp().send_error(nat_.gateway_for(key.guest), key.guest, wire::icmptype::dest_unreach,
                           code, 0, wire::Bytes(q.data(), n + 8));
}

// ---------------------------------------------------------------------------
// events

// Socket events: connect done, errors, new data, writable again.
void TcpNat::on_io(Flow& f, uint32_t events) {
    FlowState& s = f.st;
    if (s.fd < 0) return;
    if (events & EPOLLPRI) s.host_urg = true;
    if (s.phase == Phase::syn_pending) {
        // Data may come with the connection (a server that speaks first):
        // remember it, the edge will not come again.
        if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP)) s.host_pending = true;
        if (events & (EPOLLRDHUP | EPOLLHUP)) s.host_rdhup = true;
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(f);
        return;
    }
    if (events & EPOLLERR) {
        int err = socket_error(s.fd);
        if (err != 0) {
            if (debug_on())
                spdlog::debug("tcp: {} host socket: {}", describe(s.key), std::strerror(err));
            if (err == ECONNRESET && s.phase == Phase::established) {
                // A server that writes an error and aborts: its bytes are
                // queued before the reset, and a direct client reads them
                // first. They go to the guest (as far as its window takes
                // them now), then the RST after them.
                s.host_reset = true;
                s.host_pending = true;
                send_pending(f);
            }
            reset_flow(f, true);
            return;
        }
    }
    if (events & (EPOLLRDHUP | EPOLLHUP)) s.host_rdhup = true;
    if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP)) s.host_pending = true;
    if (s.phase != Phase::established) return;  // data waits for the handshake
    if ((events & EPOLLOUT) && s.want_out) {
        drain_held(f);  // held bytes a short write left at rcv_nxt
        if (s.phase != Phase::established) return;
        if (s.want_out) send_window_update(f);
    }
    if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP)) send_pending(f);
}

// The flow's timer: SYN retries, tail loss probe, RTO, zero-window probe
// or the end of the linger, by phase and flags.
void TcpNat::on_timer(Flow& f) {
    FlowState& s = f.st;
    switch (s.phase) {
    case Phase::syn_rcvd:
    case Phase::syn_sent:
        if (s.neigh_wait) {
            s.neigh_wait = false;
            s.rtt_timing = false;
            send_syn(f, s.phase == Phase::syn_rcvd);
            loop_.arm(f.timer, s.rto.rto_ms());
            return;
        }
        if (++s.retries >= kMaxSynRetries) {
            stats_.gave_up++;
            reset_flow(f, s.phase == Phase::syn_rcvd);
            return;
        }
        s.rto.backoff();
        s.rtt_timing = false;
        send_syn(f, s.phase == Phase::syn_rcvd);
        loop_.arm(f.timer, s.rto.rto_ms());
        return;
    case Phase::established:
        break;
    case Phase::linger:
        free_flow(f);
        return;
    case Phase::syn_pending:
        // The guest has stopped retransmitting its SYN: it gave up (or
        // will send a new SYN, which opens a new flow). Free the socket
        // and the half-open slot now rather than when the kernel's own
        // SYN retries run out (about 2 minutes); the guest is not told.
        stats_.connect_abandoned++;
        if (debug_on())
            spdlog::debug("tcp: {} connect abandoned by the guest", describe(s.key));
        free_flow(f);
        return;
    case Phase::free:
        return;
    }
    if (s.pto_armed) {
        // Tail loss probe: no ACK for 2 SRTT with data out, and nothing
        // new to follow it that would bring duplicate ACKs (a burst whose
        // end an NE2000 ring dropped): treat it as the third duplicate
        // ACK, retransmitting the first missing segment and halving the
        // window, rather than wait for the RTO and start over.
        s.pto_armed = false;
        if (s.snd_una != s.snd_max && s.snd_wnd != 0) {
            stats_.tail_loss_probes++;
            if (s.sack_on && s.data_in_flight() > 0) {
                // With SACK, the probe is the last segment (RFC 8985
                // 7.3): its ACK names it, and the hole below it is what
                // was lost, all of which recovery then sends at once
                // (process_ack). The head alone would come back one
                // delayed ACK at a time.
                probe_tail(f);
                if (s.phase != Phase::established) return;
                s.tlp_out = true;
                arm_rto(f);
                return;
            }
            enter_recovery(f);
            if (s.phase != Phase::established) return;
            arm_rto(f);
            return;
        }
    }
    if (s.persist || (s.snd_wnd == 0 && s.snd_una == s.snd_max)) {
        // Zero-window probe: an old ACK makes the guest state its window.
        stats_.zero_window_probes++;
        if (++s.retries > kMaxRetries) {
            stats_.gave_up++;
            reset_flow(f, true);
            return;
        }
        emit(f, s.snd_una - 1, flag::ack, 0);
        s.rto.backoff();
        s.persist = true;
        loop_.arm(f.timer, s.rto.rto_ms());
        return;
    }
    if (s.snd_una == s.snd_max) return;  // nothing outstanding
    if (++s.retries > kMaxRetries) {
        if (debug_on())
            spdlog::debug("tcp: {} guest does not acknowledge, giving up", describe(s.key));
        stats_.gave_up++;
        reset_flow(f, true);
        return;
    }
    stats_.retransmits_rto++;
    s.undo_ok = false;
    s.cc.on_timeout(s.snd_max - s.snd_una, s.mss);
    s.rto.backoff();
    rewind(f);
    arm_rto(f);
    if (s.snd_wnd == 0) {
        // The guest closed its window on data in flight: probe, do not resend.
        emit(f, s.snd_una - 1, flag::ack, 0);
        return;
    }
    send_pending(f);
}

// End of the batch: the sends that ACKs made room for (data segments carry
// the ACK too), the coalesced ACKs, then flows freed in this batch return
// to the pool.
void TcpNat::run_deferred() {
    flush_stage(true);
    for (size_t i = 0; i < doomed_.size(); i++) reset_flow(*doomed_[i], true);
    doomed_.clear();
    // send_pending() may queue more (a reset frees a flow): index, not iterators.
    for (size_t i = 0; i < tx_list_.size(); i++) {
        Flow* f = tx_list_[i];
        if (!f->st.tx_queued) continue;
        f->st.tx_queued = false;
        send_pending(*f);
    }
    tx_list_.clear();
    ack_running_.swap(ack_list_);
    for (Flow* f : ack_running_) {
        FlowState& s = f->st;
        if (!s.ack_queued) continue;
        s.ack_queued = false;
        bool force = s.ack_force;
        s.ack_force = false;
        if (s.phase != Phase::established || s.fd < 0) continue;
        // The guest's FIN came with this batch's data, and its ACK waits
        // for our FIN (input_synchronized): nothing else is owed.
        if (!force && s.guest_fin && s.ack_delayed) continue;
        bool low = false;
        uint32_t room = socket_send_room(*f, &low);
        tcp::Advertised a = tcp::advertise_window(s.rcv_nxt, s.rcv_adv, room, s.rcv_wscale);
        if (s.last_ack_sent == s.rcv_nxt && !force) {
            // The ACK went out with data already; send a pure window update
            // only if it opens the window by two segments at least (the
            // receiver's silly window avoidance, RFC 9293 3.8.6.2.2).
            if (s.guest_fin || wire::seq_lt(a.right_edge, s.rcv_adv + 2u * s.mss)) continue;
        } else if (!force && !s.guest_fin && s.rcv_nxt - s.last_ack_sent < s.mss &&
                   gw_.small_ring_to(s.key.guest)) {
            // Less than a segment since our last ACK, to a NIC that loses a
            // frame arriving right behind another (QEMU's NE2000): a
            // request, most likely, whose answer the host is about to send.
            // Its ACK waits up to kDelAckMs to ride on that answer, so that
            // the guest gets one frame, not an ACK and then the data a few
            // microseconds behind it. Bulk data (a segment or more) is
            // acknowledged at once. Other NICs get the ACK at once: through
            // slirp4netns the wait cost 8% of TCP request/response latency
            // (docs/tcp.md).
            delay_ack(*f);
            continue;
        }
        s.rcv_adv = a.right_edge;
        emit(*f, s.snd_max, flag::ack, 0, a.field);
        stats_.acks_coalesced++;
        if (!s.guest_fin && low != s.want_out) update_interest(*f, low);
    }
    ack_running_.clear();
    free_.insert(free_.end(), dead_.begin(), dead_.end());
    dead_.clear();
}

// Owes the guest an ACK that waits up to kDelAckMs for a segment of ours
// to carry it (on_delack sends it alone after that).
void TcpNat::delay_ack(Flow& f) {
    if (f.st.ack_delayed) return;
    f.st.ack_delayed = true;
    delack_list_.push_back({&f, f.gen});
    stats_.acks_delayed++;
    if (!delack_timer_.armed()) loop_.arm(delack_timer_, kDelAckMs);
}

// The delayed ACKs' wait is over: each flow still owing one sends it with
// the end of this batch (a flow freed meanwhile, or reused by another
// connection, is skipped by its generation).
void TcpNat::on_delack() {
    for (const LingerEntry& e : delack_list_) {
        Flow& f = *e.flow;
        if (f.gen != e.gen || !f.st.ack_delayed) continue;
        f.st.ack_delayed = false;
        if (f.st.phase != Phase::established) continue;
        if (f.st.last_ack_sent == f.st.rcv_nxt) {
            stats_.acks_piggybacked++;
            continue;
        }
        queue_ack(f, true);
    }
    delack_list_.clear();
}

void TcpNat::for_each_flow(const std::function<void(const tcp::FlowState&)>& fn) const {
    for (const auto& [key, flow] : flows_) fn(flow->st);
}

}  // namespace usernet::nat
