// UDP NAT: a guest's datagrams leave through host UDP sockets, one flow per
// guest (address, port).
//
// Theory of operation
// - A flow is keyed by the guest's source address and port and owns one
//   unconnected, non-blocking host socket per address family, opened on
//   first use. Whatever destinations the guest addresses from that port are
//   sent with sendto() from the same socket, so the host port stays the same
//   for every destination: endpoint-independent mapping (RFC 4787 REQ-1),
//   which STUN, games and DNS clients rely on. Filtering is endpoint-
//   independent as well: whatever arrives on a flow's socket goes to the
//   guest (as QEMU/slirp and passt do).
// - Destinations go through Nat::host_target (the gateway address is the
//   host's loopback, the DNS address the upstream resolver); no mapping
//   means an ICMP destination unreachable to the guest. Broadcast and
//   multicast destinations are dropped without an error (RFC 1122 3.2.2).
// - Replies are read with recvmmsg() in batches into buffers allocated once,
//   and written to the guest from Nat::guest_visible(peer) (or from the
//   guest-side address the guest used, when host_target mapped it elsewhere,
//   e.g. the DNS address). A datagram that does not fit the guest's MTU
//   reaches it as IP fragments (Gateway::send_ip); one whose IP packet
//   would pass 65535 bytes is dropped and counted.
// - IP_RECVERR: ICMP errors for a flow's datagrams queue on its socket.
//   They are read from the error queue (EPOLLERR) and become ICMPv4 errors
//   to the guest quoting a rebuilt copy of the guest's datagram (guest
//   address and port -> original destination), so a connected socket in the
//   guest sees ECONNREFUSED for a closed port and traceroute sees its hops
//   (a guest TTL below 64 is passed on with IP_TTL).
// - Flows expire after limits.udp_idle_ms without traffic either way
//   (udp_dns_idle_ms when the flow only ever talked to port 53), checked by
//   one sweep timer each second while flows exist. Limits udp_flows and
//   udp_flows_per_guest do not refuse: the least recently used flow (the
//   guest's own when it is at its limit) is evicted, and counted.
// - Port forwards (-u): Forwarder hands UdpNat a bound host socket per
//   port. A datagram from client C becomes a datagram from
//   forward_peer_for_guest(C) to the guest's port; the pair is remembered
//   as a "forward peer", and the guest's datagrams from that port to that
//   peer go back out of the listening socket to C, so C sees the reply come
//   from the port it sent to. Forward peers are checked before flows, expire
//   like flows and are bounded by the same limits.
//
// A guest's fragmented datagrams arrive here whole (the gateway reassembles
// them). Not done: UDP-Lite.
// Nothing on the datagram path allocates; flows allocate when created.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/gateway.hpp"
#include "nat/forward.hpp"
#include "wire/addr.hpp"

namespace usernet::nat {

class Nat;

// Recency order of flows, over all flows and per owner (the switch port of
// the guest that made them: limits follow the attachment, not an address a
// guest could choose), and
// the choice of the flow to evict when a limit is reached. Pure bookkeeping
// over intrusive links, no allocation except the first flow of an owner.
class FlowLru {
    struct OwnerList;

public:
    // Embedded in (or a base of) a flow; linked while the flow is in the table.
    using Owner = uint32_t;
    class Entry {
    public:
        Entry() = default;
        Entry(const Entry&) = delete;
        Entry& operator=(const Entry&) = delete;
        Owner owner() const { return owner_; }
        core::Millis last_used() const { return last_used_; }
        bool linked() const { return list_ != nullptr; }

    private:
        friend class FlowLru;
        Owner owner_ = 0;
        core::Millis last_used_ = 0;
        Entry* prev_ = nullptr;  // toward the most recently used
        Entry* next_ = nullptr;  // toward the least recently used
        Entry* owner_prev_ = nullptr;
        Entry* owner_next_ = nullptr;
        OwnerList* list_ = nullptr;
    };

    // Limits below 1 count as 1.
    FlowLru(uint32_t max_total, uint32_t max_per_owner);
    ~FlowLru();
    FlowLru(const FlowLru&) = delete;
    FlowLru& operator=(const FlowLru&) = delete;

    // The entry to evict before an entry of `owner` may be added: the
    // owner's least recently used entry when the owner is at its limit, else
    // the least recently used of all when the table is full; nullptr when
    // there is room.
    Entry* victim_for(Owner owner) const;
    // Links e as the most recently used entry of owner.
    void insert(Entry& e, Owner owner, core::Millis now);
    // Some entry of owner (its least recently used), nullptr when none.
    Entry* any_of(Owner owner) const;
    // Marks e used now (most recent).
    void touch(Entry& e, core::Millis now);
    void erase(Entry& e);

    // Least recently used of all, nullptr when empty; walk toward the
    // present with newer().
    Entry* oldest() const { return tail_; }
    static Entry* newer(const Entry& e) { return e.prev_; }
    size_t size() const { return count_; }
    size_t owner_size(Owner owner) const;
    size_t owners() const { return owners_.size(); }
    uint32_t max_total() const { return max_total_; }
    uint32_t max_per_owner() const { return max_per_owner_; }

private:
    std::unordered_map<Owner, std::unique_ptr<OwnerList>> owners_;
    Entry* head_ = nullptr;
    Entry* tail_ = nullptr;
    size_t count_ = 0;
    uint32_t max_total_;
    uint32_t max_per_owner_;
};

struct UdpStats {
    uint64_t to_host = 0;   // datagrams sent for guests
    uint64_t to_guest = 0;  // datagrams delivered to guests
    uint64_t flows_created = 0;
    uint64_t flows_expired = 0;
    uint64_t flows_evicted = 0;      // LRU eviction at a limit (or out of fds)
    uint64_t dropped_malformed = 0;  // short header, bad length, port 0
    uint64_t dropped_checksum = 0;
    uint64_t dropped_broadcast = 0;    // broadcast / multicast destination
    uint64_t dropped_unreachable = 0;  // no host mapping (ICMP error sent)
    uint64_t dropped_socket = 0;       // could not open a host socket
    uint64_t dropped_send = 0;         // sendto() failed (buffer full, local error)
    uint64_t dropped_too_big = 0;      // truncated, or over 65535 bytes as an IP packet
    uint64_t dropped_no_guest = 0;     // forwarded datagram with no guest to go to
    uint64_t dropped_policy = 0;       // from a peer the policy refuses (Nat::inbound_allowed)
    uint64_t icmp_errors = 0;          // socket errors turned into ICMP to a guest
    uint64_t errors_untranslated = 0;  // queued errors with no ICMPv4 equivalent
    uint64_t fwd_to_guest = 0;         // forwarded datagrams in
    uint64_t fwd_to_host = 0;          // replies out through a forward listener
    uint64_t fwd_peers_created = 0;
    uint64_t fwd_peers_expired = 0;
    uint64_t fwd_peers_evicted = 0;
};

class UdpNat {
public:
    explicit UdpNat(Nat& nat);
    ~UdpNat();
    UdpNat(const UdpNat&) = delete;
    UdpNat& operator=(const UdpNat&) = delete;

    // A UDP datagram a guest routed through the gateway.
    void from_guest(const gw::GuestPacket& pkt);
    // Closes every flow and forward peer of the guests behind a switch port.
    void drop_port(uint32_t port);

    // Takes ownership of fd, a bound non-blocking UDP socket of a -u forward:
    // its datagrams go to guest_port of guest_addr (or of the current guest).
    void add_forward_socket(int fd, uint16_t guest_port, std::optional<wire::IpAddr> guest_addr);
    // Closes a forward socket add_forward_socket() took, and forgets its
    // clients (their replies have nowhere to go).
    void remove_forward_socket(int fd);

    const UdpStats& stats() const { return stats_; }
    size_t flow_count() const { return flows_.size(); }
    size_t forward_peer_count() const { return peers_.size(); }
    // The idle time after which a flow expires (dns_only: it only ever
    // talked to port 53).
    uint32_t idle_ms_for(bool dns_only) const;

    // Sweeps idle flows now (the timer does this each second).
    void expire_idle();
    // Out of descriptors elsewhere (a TCP connection could not get a
    // socket): closes the least recently used flow, counted as evicted.
    // False when there is none.
    bool release_oldest();

    struct Flow;
    struct FlowSock;
    struct Listener;
    struct Peer;

private:
    struct FlowKey {
        wire::IpAddr addr;
        uint16_t port;
        friend bool operator==(const FlowKey&, const FlowKey&) = default;
    };
    struct PeerKey {
        wire::IpAddr guest;
        wire::IpAddr peer;
        uint16_t guest_port;
        uint16_t peer_port;
        friend bool operator==(const PeerKey&, const PeerKey&) = default;
    };
    // A forwarded client as it really is, on one listener.
    struct ClientKey {
        const Listener* listener = nullptr;
        wire::IpAddr addr;
        uint16_t port = 0;
        friend bool operator==(const ClientKey&, const ClientKey&) = default;
    };
    struct KeyHash {
        size_t operator()(const FlowKey& k) const noexcept;
        size_t operator()(const PeerKey& k) const noexcept;
        size_t operator()(const ClientKey& k) const noexcept;
    };

    friend struct FlowSock;
    friend struct Listener;

    Flow* flow_for(const wire::IpAddr& guest, uint16_t port, FlowLru::Owner owner,
                   core::Millis now);
    void destroy_flow(Flow& f);
    void destroy_peer(Peer& p);
    bool open_sock(Flow& f, FlowSock& s, int family);
    void flow_io(Flow& f, FlowSock& s, uint32_t events);
    void flow_read(Flow& f, FlowSock& s);
    void flow_errors(Flow& f, FlowSock& s);
    void listener_read(Listener& l);
    bool send_to_host(Flow& f, FlowSock& s, const sockaddr_storage& to, const gw::GuestPacket& pkt,
                      wire::Bytes payload);
    bool send_to_guest(const wire::IpAddr& src, uint16_t sport, const wire::IpAddr& dst,
                       uint16_t dport, wire::Bytes payload);
    void unreachable(const gw::GuestPacket& pkt, uint8_t code);
    void arm_sweep();
    // with_local: also the address each datagram was sent to (a forward
    // listener's IP_PKTINFO / IPV6_PKTINFO, in rx_ctrl_).
    int recv_batch(int fd, bool with_local = false);

    Nat& nat_;
    core::EventLoop& loop_;
    gw::Gateway& gw_;
    std::unordered_map<FlowKey, std::unique_ptr<Flow>, KeyHash> flows_;
    std::unordered_map<PeerKey, std::unique_ptr<Peer>, KeyHash> peers_;
    // Forward peers of IPv6 guests by (client, ports) alone: a guest with
    // several IPv6 addresses may answer from another one than the
    // datagram went to (a server that does not reply from the address it
    // was sent to). The latest peer of a key is the one kept.
    std::unordered_map<PeerKey, Peer*, KeyHash> peers_by_client_;
    // Forward peers that appear as the gateway, by the client they stand
    // for: each client has its own (ForwardPortPicker gives it a port of
    // its own when its port is taken).
    std::unordered_map<ClientKey, Peer*, KeyHash> peers_by_host_client_;
    ForwardPortPicker peer_ports_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    FlowLru lru_;
    FlowLru peer_lru_;
    core::Timer sweep_;
    UdpStats stats_;

    // recvmmsg batch, allocated once.
    static constexpr unsigned kBatch = 32;
    static constexpr size_t kBufSize = 65536;
    std::unique_ptr<uint8_t[]> rx_bufs_;  // kBatch * kBufSize, touched only as used
    std::vector<mmsghdr> rx_msgs_;
    std::vector<iovec> rx_iov_;
    std::vector<sockaddr_storage> rx_names_;
    struct alignas(8) CtrlBuf {
        uint8_t b[64];  // one IP_PKTINFO or IPV6_PKTINFO message
    };
    std::vector<CtrlBuf> rx_ctrl_;
};

}  // namespace usernet::nat
