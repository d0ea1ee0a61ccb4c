// ICMP echo NAT: guests' pings to host and remote addresses, and the ICMP
// errors the other translators send to guests.
//
// Theory of operation
// - A flow is a guest's echo "session": (guest address, echo identifier,
//   destination). The echo request goes out of a host socket; the reply
//   comes back to the guest from the address it pinged, with its own
//   identifier and the sequence number unchanged.
// - Preferred: one unprivileged ICMP socket per flow (SOCK_DGRAM,
//   IPPROTO_ICMP). The kernel replaces the identifier with the socket's
//   "port" and hands us only the replies for that socket.
// - Where net.ipv4.ping_group_range forbids those (Debian's default "1 0"
//   forbids them even to root, and every new network namespace starts with
//   it), fall back, as libslirp does, to one shared raw ICMP socket when we
//   have CAP_NET_RAW. A raw socket sees every ICMP message reaching the
//   host, so: ICMP_FILTER lets only echo replies and errors in; each flow
//   gets a distinct host-side identifier (no clash between guests that use
//   the same one); a reply must match a flow's identifier, its destination
//   address and an outstanding sequence number, anything else is ignored.
// - Failing both, one warning in the log says why (ping_group_range) and
//   how to allow it, and echo requests beyond the gateway are dropped. The
//   mode is chosen at the first echo request, so a daemon that never sees
//   a ping never probes or warns.
// - Destinations go through Nat::host_target(dst, 0, ICMP): the gateway
//   address is the host's loopback. Errors for a flow (IP_RECVERR on ping
//   sockets; quoted echo requests on the raw socket) become ICMP errors to
//   the guest quoting its request. A guest TTL below 64 is passed on, so
//   traceroute -I and mtr work through the NAT.
// - Flows expire after limits.icmp_idle_ms (a sweep each second while any
//   exist); limits.icmp_flows bounds them, evicting the least recently used.
// - send_error() is the one place ICMP errors toward guests are built,
//   through the gateway's ICMP error token bucket, which its time-exceeded
//   messages share, so a guest cannot make usernet flood it (RFC 1812
//   4.3.2.8).
//
// ICMPv6 echo goes the same way: through ICMPv6 echo sockets (the same
// ping_group_range allows them), else through a second raw socket,
// IPPROTO_ICMPV6, with the same rules (ICMP6_FILTER passes echo replies
// and the errors, identifiers our own, a reply must match identifier,
// source and an outstanding sequence number; an error must quote one of
// our requests). The kernel fills an ICMPv6 raw socket's checksums both
// ways (RFC 3542 3.1). A host without IPv6 has no such socket: then an
// IPv6 guest's echo requests are dropped and counted (dropped_unavailable).
// Not done: echo requests with a code other than 0; ICMP messages from
// guests other than echo requests (errors a guest sends are dropped and
// counted).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "core/sockaddr.hpp"
#include "gateway/gateway.hpp"
#include "nat/udp_nat.hpp"  // FlowLru
#include "wire/addr.hpp"

namespace usernet::nat {

class Nat;

// --- helpers shared by the datagram translators (UDP and ICMP) ---

// One error read from a socket's error queue (IP_RECVERR).
struct QueuedError {
    uint8_t origin = 0;  // SO_EE_ORIGIN_*
    uint8_t type = 0;    // ICMP type and code (ICMP origins)
    uint8_t code = 0;
    uint32_t err = 0;             // errno meaning of the error
    uint32_t info = 0;            // e.g. the next-hop MTU
    sockaddr_storage dest{};      // where the offending datagram was going
    sockaddr_storage offender{};  // who reported it (AF_UNSPEC: nobody / local)
    size_t payload_len = 0;       // bytes of the quoted payload read into the buffer
};
// Reads one queued error of fd, its quoted payload (after the transport
// header for UDP, the ICMP header onward for ping sockets) into buf.
// Returns false when the queue is empty.
bool read_queued_error(int fd, wire::MutBytes buf, QueuedError& out);

// An ICMPv4 error to give a guest for a queued error: type, code and the
// header's second word. Nothing for errors with no ICMPv4 meaning.
struct Icmp4Error {
    uint8_t type;
    uint8_t code;
    uint32_t rest;
};
std::optional<Icmp4Error> icmp4_error_for(const QueuedError& e);
// The destination-unreachable code for a local sendto() failure (no route,
// firewall), if there is one.
std::optional<uint8_t> unreach_code_for_errno(int err);

// sendmsg() of one datagram without blocking; a guest TTL below 64 is passed
// on, less the gateway's hop, with IP_TTL / IPV6_HOPLIMIT (traceroute).
ssize_t send_datagram(int fd, wire::Bytes data, const sockaddr_storage& to, uint8_t guest_ttl);
// A message of the one buffer *iov to `to`, without control data yet.
inline msghdr datagram_msg(const sockaddr_storage& to, iovec* iov) {
    msghdr m{};
    m.msg_name = const_cast<sockaddr_storage*>(&to);
    m.msg_namelen = core::sockaddr_len(to);
    m.msg_iov = iov;
    m.msg_iovlen = 1;
    return m;
}

// False for broadcast, multicast, unspecified and (v4) the subnet's
// broadcast address: destinations the NAT never translates or answers.
bool is_unicast(const wire::IpAddr& a, const gw::NetConfig& cfg);

struct IcmpStats {
    uint64_t echo_requests = 0;  // sent to the host for guests
    uint64_t echo_replies = 0;   // delivered to guests
    uint64_t flows_created = 0;
    uint64_t flows_expired = 0;
    uint64_t flows_evicted = 0;
    uint64_t dropped_malformed = 0;  // short header
    uint64_t dropped_checksum = 0;
    uint64_t dropped_unsupported = 0;  // not an echo request (or code != 0)
    uint64_t guest_unreachables = 0;   // destination unreachables from guests (to TcpNat)
    uint64_t dropped_unavailable = 0;  // no ping or raw socket allowed (for the family)
    uint64_t dropped_unreachable = 0;  // no host mapping for the destination
    uint64_t dropped_socket = 0;       // could not open a ping socket
    uint64_t dropped_send = 0;         // sendto() failed
    uint64_t dropped_too_big = 0;      // reply over 65535 bytes as an IP packet
    uint64_t raw_ignored = 0;          // raw socket messages that match no flow
    uint64_t errors_sent = 0;          // ICMP errors sent to guests (all sources)
    uint64_t errors_rate_limited = 0;
};

class IcmpNat {
public:
    enum class Mode { undecided, ping_socket, raw_socket, unavailable };

    explicit IcmpNat(Nat& nat);
    ~IcmpNat();
    IcmpNat(const IcmpNat&) = delete;
    IcmpNat& operator=(const IcmpNat&) = delete;

    // An ICMP message a guest routed through the gateway.
    void from_guest(const gw::GuestPacket& pkt);
    // Closes every echo flow of the guests behind a switch port.
    void drop_port(uint32_t port);

    // Sends an ICMP error (ICMPv4 type, code, and the header's second word,
    // e.g. the next-hop MTU for "fragmentation needed") from `from` to
    // `guest`, quoting `quote` (the IP header and the start of its payload,
    // as the guest sent it; cut to keep the error within 576 bytes, or
    // 1280 for IPv6). Toward an IPv6 guest the ICMPv6 equivalent goes
    // (RFC 7915 4.2's mapping the other way: unreachable codes, packet too
    // big, time exceeded, parameter problem). Never sent about an ICMP
    // error, to or from a non-unicast address, or beyond the rate limit.
    // Returns whether it went out.
    bool send_error(const wire::IpAddr& from, const wire::IpAddr& guest, uint8_t type,
                    uint8_t code, uint32_t rest, wire::Bytes quote);

    Mode mode() const { return mode_; }
    const IcmpStats& stats() const { return stats_; }
    size_t flow_count() const { return flows_.size(); }

    // Sweeps idle flows now (the timer does this each second).
    void expire_idle();
    // Out of descriptors elsewhere: closes the least recently used echo flow
    // that holds a ping socket, counted as evicted. False when there is none.
    bool release_oldest();

    struct Flow;
    struct RawSock;

private:
    bool send_error6(const wire::IpAddr& from, const wire::IpAddr& guest, uint8_t type,
                     uint8_t code, uint32_t rest, wire::Bytes quote);
    struct FlowKey {
        wire::IpAddr guest;
        wire::IpAddr dst;
        uint16_t id;
        friend bool operator==(const FlowKey&, const FlowKey&) = default;
    };
    struct KeyHash {
        size_t operator()(const FlowKey& k) const noexcept;
    };

    friend struct Flow;
    friend struct RawSock;

    bool decide_mode();
    bool guest_error(const gw::GuestPacket& pkt, bool v6, wire::Bytes msg);
    Flow* flow_for(const gw::GuestPacket& pkt, uint16_t id, const sockaddr_storage& target);
    void destroy_flow(Flow& f);
    void ping_read(Flow& f);
    void ping_errors(Flow& f);
    std::unique_ptr<RawSock> open_raw(int family);
    void raw_read();
    void raw_read6();
    void raw_error(const wire::IpAddr& from, uint8_t type, uint8_t code, uint32_t rest,
                   wire::Bytes quoted);
    void raw_error6(const wire::IpAddr& from, uint8_t type, uint8_t code, uint32_t info,
                    wire::Bytes quoted);
    // Whether echo requests of this family can go out now.
    bool can_echo(bool v6) const {
        return mode_ == Mode::ping_socket || (mode_ == Mode::raw_socket && (v6 ? raw6_ : raw_));
    }
    void deliver_reply(Flow& f, uint16_t seq, wire::Bytes payload);
    void quote_error(Flow& f, const wire::IpAddr& from, uint8_t type, uint8_t code, uint32_t rest,
                     uint16_t seq, wire::Bytes echo_payload);
    uint16_t alloc_raw_id();
    void arm_sweep();

    Nat& nat_;
    core::EventLoop& loop_;
    gw::Gateway& gw_;
    Mode mode_ = Mode::undecided;
    std::unique_ptr<RawSock> raw_;   // raw mode: IPPROTO_ICMP
    std::unique_ptr<RawSock> raw6_;  // raw mode: IPPROTO_ICMPV6, if the host has IPv6
    std::unordered_map<FlowKey, std::unique_ptr<Flow>, KeyHash> flows_;
    std::unordered_map<uint16_t, Flow*> by_raw_id_;
    uint16_t next_raw_id_;
    FlowLru lru_;
    core::Timer sweep_;
    IcmpStats stats_;

    std::vector<uint8_t> buf_;  // one received message / one raw request
    std::array<uint8_t, 512> cmsg_{};
};

}  // namespace usernet::nat
