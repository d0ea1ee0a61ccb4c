// The TCP translator: guests' TCP connections become host TCP sockets, and
// port-forwarded host connections become TCP connections toward a guest.
//
// usernet does not terminate TCP twice: the payload stays in the host
// kernel's socket buffers and the translator only rewrites the guest's
// segments into socket calls and socket events into segments. The theory
// of operation is at the top of tcp_nat.cpp; the per-flow arithmetic is in
// tcp_flow.hpp; docs/tcp.md describes the whole as built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/gateway.hpp"
#include "nat/tcp_flow.hpp"
#include "wire/addr.hpp"
#include "wire/tcp.hpp"

namespace usernet::nat {

class Nat;

class TcpNat final : private core::Deferred {
public:
    struct Stats {
        uint64_t segs_from_guest = 0;
        uint64_t segs_to_guest = 0;
        uint64_t bytes_to_host = 0;    // guest payload the kernel accepted
        uint64_t bytes_to_guest = 0;   // host payload sent (retransmissions included)
        uint64_t flows_outbound = 0;   // guest SYNs that got a host socket
        uint64_t flows_inbound = 0;    // port-forwarded connections taken
        uint64_t flows_established = 0;
        uint64_t flows_closed = 0;     // freed, whatever the reason
        uint64_t refused_limit = 0;    // a NatLimits bound said no (RST)
        uint64_t syn_dropped_half_open = 0;  // SYN dropped: too many connect()s pending
        uint64_t connect_refused = 0;  // ECONNREFUSED -> RST
        uint64_t connect_unreachable = 0;  // -> ICMP destination unreachable
        uint64_t connect_failed = 0;   // other connect errors -> RST
        uint64_t connect_abandoned = 0;  // the guest stopped retransmitting its SYN
        uint64_t connect_evicted = 0;  // pending kHalfOpenEvictMs, taken for a new SYN (ICMP)
        uint64_t keepalives_enabled = 0;  // guest keepalive probes that turned on SO_KEEPALIVE
        uint64_t resets_to_guest = 0;  // every RST we sent
        uint64_t resets_from_guest = 0;  // RSTs accepted (seq == rcv_nxt)
        uint64_t refused_by_guest_icmp = 0;  // forwarded SYNs the guest answered with ICMP
        uint64_t resets_no_flow = 0;   // RFC 9293 reset generation for unknown segments
        uint64_t challenge_acks = 0;   // RFC 5961: in-window RST, SYN on a live flow
        uint64_t dropped_malformed = 0;  // header or checksum
        uint64_t dropped_out_of_window = 0;  // answered with an ACK
        uint64_t out_of_order = 0;     // beyond rcv_nxt: held if possible, duplicate ACK
        uint64_t out_of_order_dropped = 0;  // ... not held (no queue free, or no room in it)
        uint64_t reassembled_bytes = 0;  // held bytes the kernel took once the hole filled
        uint64_t partial_writes = 0;   // the kernel took less than the segment's new bytes
        uint64_t retransmits_rto = 0;  // timeouts that rewound a flow
        uint64_t retransmits_fast = 0; // third duplicate ACK (and NewReno partial ACKs)
        uint64_t retransmits_sack = 0; // holes below the guest's SACK blocks, in recovery
        uint64_t retransmits_lost = 0; // ... whose retransmissions were lost: all open again
        uint64_t tail_loss_probes = 0; // no ACK for 2 SRTT: a segment resent (SACK: the last)
        uint64_t spurious_retransmits = 0;  // undone: the timestamp echo showed no loss
        uint64_t zero_window_probes = 0;
        uint64_t gave_up = 0;          // too many timeouts: reset both ways
        uint64_t acks_coalesced = 0;   // end-of-batch ACKs that were needed
        uint64_t acks_delayed = 0;     // short segments and FINs whose ACK waited (kDelAckMs)
        uint64_t acks_piggybacked = 0; // ... and went out on our data before the wait ended
    };

    explicit TcpNat(Nat& nat);
    ~TcpNat();
    TcpNat(const TcpNat&) = delete;
    TcpNat& operator=(const TcpNat&) = delete;

    // A TCP segment a guest routed through the gateway (pkt.proto == 6).
    void from_guest(const gw::GuestPacket& pkt);

    // A host connection accepted by a port forward: opens a flow toward
    // guest:guest_port that appears to come from peer:peer_port (already
    // mapped for the guest's view). Takes ownership of fd: connected,
    // non-blocking, with TCP_NODELAY and SO_OOBINLINE (accepted from a
    // listener that has both: Linux copies them). Returns false, and
    // closes fd with a RST, when limits (or a clash with a live flow of
    // the same addresses) refuse it.
    bool open_inbound(int fd, const wire::IpAddr& peer, uint16_t peer_port,
                      const wire::IpAddr& guest, uint16_t guest_port);

    // The guest answered a segment we sent with an ICMP destination
    // unreachable (ICMPv6 too) quoting it: key is the flow as in that
    // segment (guest = its destination), seq its sequence number. A
    // forwarded connection still waiting for the guest's SYN-ACK is
    // refused at once (the host client sees a reset), as a kernel's
    // connect() fails on any such error in SYN-SENT (RFC 1122 4.2.3.9
    // allows it; Linux does it); later, an error is soft and ignored.
    void guest_unreachable(const tcp::FlowKey& key, uint32_t seq);

    // Resets (toward the host) every flow of the guests behind a switch
    // port that has gone away.
    void drop_port(uint32_t port);

    // Live flows, lingering ones included.
    size_t flow_count() const { return flows_.size(); }
    // Whether a live flow (not one lingering after its close) has this key.
    // Calls fn with every live flow (listings: libslirp's connection info).
    void for_each_flow(const std::function<void(const tcp::FlowState&)>& fn) const;
    bool has_flow(const tcp::FlowKey& key) const {
        auto it = flows_.find(key);
        return it != flows_.end() && it->second->st.phase != tcp::Phase::linger;
    }
    const Stats& stats() const { return stats_; }
    // Whether the kernel lets MSG_PEEK start at SO_PEEK_OFF on TCP sockets
    // (Linux 6.9+); without it peeks start at 0 into a discard area.
    bool peek_offset_supported() const { return peek_off_ok_; }

private:
    friend struct tcp::Flow;
    using Flow = tcp::Flow;
    using FlowKey = tcp::FlowKey;

    // A flow that entered syn_pending, with the generation it had then:
    // stale once the flow left syn_pending or was reused (the pool never
    // frees a Flow).
    struct PendingConnect {
        Flow* f = nullptr;
        uint32_t gen = 0;
        core::Millis since = 0;
    };
    struct GuestCounts {
        uint32_t flows = 0;
        uint32_t half_open = 0;
        // Its pending connects, oldest first (stale entries are skipped
        // at the front, and swept out when they pile up).
        std::deque<PendingConnect> pending;
        // Flows that sent data in the current and the previous second
        // (window_cap() shares the window budget among these, not among
        // the idle ones).
        uint32_t active_epoch = 0;
        uint32_t active_cur = 0;
        uint32_t active_prev = 0;
        uint32_t ooo_queues = 0;  // out-of-order queues its flows hold
    };
    void note_active(Flow& f);

    // Setup and teardown.
    void open_outbound(const gw::GuestPacket& pkt, const wire::TcpView& seg, const FlowKey& key);
    Flow* alloc_flow(const FlowKey& key, uint32_t port);
    void leave_syn_pending(Flow& f);
    Flow* stale_pending(GuestCounts& g);
    void free_flow(Flow& f);
    void reset_flow(Flow& f, bool rst_guest);
    void finish_flow(Flow& f);
    void maybe_finish(Flow& f);
    void evict_oldest_lingering();
    void uncount_guest_flow(Flow& f);
    void abort_socket(int fd);

    // Handshakes.
    void on_connected(Flow& f);
    void syn_pending_retransmit(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg);
    void take_syn_options(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg);
    void syn_rcvd_options(Flow& f);
    void enable_host_keepalive(Flow& f);
    void connect_failed(Flow& f, int err);
    uint16_t sending_mss(const Flow& f, uint16_t guest_mss) const;
    bool send_syn(Flow& f, bool with_ack);
    void establish(Flow& f);

    // Segments from the guest.
    void input(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg);
    void input_syn_rcvd(Flow& f, const gw::GuestPacket& pkt, const wire::TcpView& seg);
    void input_syn_sent(Flow& f, const wire::TcpView& seg);
    void input_synchronized(Flow& f, const wire::TcpView& seg);
    void process_ack(Flow& f, const wire::TcpView& seg, uint32_t ts_ecr, bool sacked_new);
    void write_payload(Flow& f, const wire::TcpView& seg, tcp::NewData nd);
    void flush_stage(bool answer, std::span<const iovec> tail = {});
    void hold_out_of_order(Flow& f, const wire::TcpView& seg);
    int take_held(Flow& f, iovec out[2]);
    void drain_held(Flow& f);
    void tidy_held(Flow& f);
    void release_held(Flow& f);
    void accept_guest_fin(Flow& f);

    // Toward the guest.
    void send_pending(Flow& f);
    bool host_data_waiting(Flow& f);
    uint32_t host_queued(Flow& f);
    void retransmit_head(Flow& f, uint32_t segs = 1);
    void expect_dups_behind_head(Flow& f);
    uint32_t resend(Flow& f, uint32_t offset, uint32_t len);
    uint32_t sack_pipe(const tcp::FlowState& s) const;
    void fill_holes(Flow& f, bool first);
    void probe_tail(Flow& f);
    uint32_t attachment_room(Flow& f, bool at_least_one);
    void enter_recovery(Flow& f);
    void rewind(Flow& f);
    long peek(Flow& f, uint32_t offset, uint8_t* dst, size_t len);
    bool set_peek_offset(Flow& f, uint32_t off);
    bool settle(Flow& f);
    void queue_tx(Flow& f);
    bool emit(Flow& f, uint32_t seq, uint8_t flags, size_t payload_len, int window_field = -1,
              size_t at = 0);
    size_t write_header(Flow& f, uint8_t* p, uint32_t seq, uint8_t flags, uint16_t wnd,
                        bool pure);
    size_t write_sack(Flow& f, uint8_t* o, size_t olen);
    size_t data_header_len(const Flow& f) const;
    uint32_t ts_now(const Flow& f) const;
    void send_ack_now(Flow& f, bool skip_identical = false);
    void send_window_update(Flow& f);
    void queue_ack(Flow& f, bool force = false);
    uint16_t cached_window_field(Flow& f);
    uint32_t socket_send_room(Flow& f, bool* low = nullptr);
    uint32_t window_cap(const Flow& f) const;
    void update_interest(Flow& f, bool want_out);
    void arm_rto(Flow& f);
    uint32_t dupack_threshold(const Flow& f) const;
    void send_reset_reply(const gw::GuestPacket& pkt, const wire::TcpView& seg);
    void send_rst(const FlowKey& key, uint32_t seq, uint32_t ack, bool with_ack);
    void send_icmp_unreachable(const FlowKey& key, uint32_t guest_seq, uint8_t code);
    uint32_t segment_limit(const Flow& f) const;

    // Events.
    void on_io(Flow& f, uint32_t events);
    void on_timer(Flow& f);
    void run_deferred() override;

    uint64_t keyed_hash(std::initializer_list<uint64_t> words) const;
    uint32_t initial_seq(const FlowKey& k) const;
    uint32_t ts_origin(const FlowKey& k) const;

    Nat& nat_;
    core::EventLoop& loop_;
    gw::Gateway& gw_;
    std::unordered_map<FlowKey, Flow*, tcp::FlowKeyHash> flows_;
    std::unordered_map<uint32_t, GuestCounts> per_guest_;  // by switch port
    uint32_t half_open_ = 0;  // connect()s pending, all guests together
    std::vector<std::unique_ptr<Flow>> pool_;  // every flow ever allocated
    std::vector<Flow*> free_;                  // reusable
    std::vector<Flow*> dead_;                  // freed this batch, reusable after it
    std::vector<Flow*> ack_list_;              // flows owing an ACK at the end of the batch
    std::vector<Flow*> tx_list_;               // flows to discard and send for at the end
    std::vector<Flow*> ack_running_;
    struct LingerEntry {
        Flow* flow;
        uint32_t gen;
    };
    static bool is_lingering(const LingerEntry& e) {
        return e.flow->gen == e.gen && e.flow->st.phase == tcp::Phase::linger;
    }
    std::deque<LingerEntry> linger_queue_;      // closed flows, oldest first
    // Flows whose ACK of a short guest segment waits (run_deferred), for
    // the host's answer to carry it; on_delack() sends what is still owed.
    static constexpr core::Millis kDelAckMs = 1;
    std::vector<LingerEntry> delack_list_;
    core::Timer delack_timer_{[this] { on_delack(); }};
    void delay_ack(Flow& f);
    void on_delack();
    size_t lingering_ = 0;
    std::unique_ptr<uint8_t[]> discard_;       // peek-from-0 fallback only
    static constexpr size_t kLocalSinkSize = 64 * 1024;
    static constexpr int kLocalSndBuf = 4 << 20;  // unix-socket host sides (guest forwards)
    std::unique_ptr<uint8_t[]> local_sink_;    // settle() of local flows, on first use
    // One peek of several segments for a guest without offload, cut into
    // frames by send_pending().
    // Guest data of one flow waiting for its send() (write_payload), and
    // flows whose socket failed while their ACK was on its way (reset at
    // the end of the batch).
    static constexpr size_t kStageSize = 256 * 1024;
    // A segment this large (a TSO guest's, from a TAP) is worth its own
    // send(): copying it into the stage would cost more than the call.
    static constexpr uint32_t kDirectWrite = 8 * 1024;
    std::unique_ptr<uint8_t[]> stage_;
    size_t stage_len_ = 0;
    Flow* staged_flow_ = nullptr;
    std::vector<Flow*> doomed_;
    // Out-of-order queues (tcp_ooo.hpp): allocated on first need, up to
    // kOooQueues in all and kOooQueuesPerGuest per guest, then reused.
    static constexpr size_t kOooQueues = 32;
    static constexpr uint32_t kOooQueuesPerGuest = 8;
    struct OooSlot {
        std::unique_ptr<uint8_t[]> ring;
        tcp::OooQueue queue;
    };
    std::vector<std::unique_ptr<OooSlot>> ooo_pool_;
    std::vector<uint8_t> ooo_free_;  // indices into ooo_pool_
    static_assert(kOooQueues < tcp::kNoOoo);
    tcp::OooQueue* held_queue(const tcp::FlowState& s) {
        return s.ooo == tcp::kNoOoo ? nullptr : &ooo_pool_[s.ooo]->queue;
    }
    bool peek_off_ok_ = true;
    uint64_t key_[2] = {};  // for ISNs and timestamp origins
    Stats stats_;
};

}  // namespace usernet::nat
