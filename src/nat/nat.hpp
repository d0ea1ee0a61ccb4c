// The NAT: guests' routed TCP, UDP and ICMP echo become host sockets.
//
// Nat is the gateway's IpSink. It decides where a guest's packet goes on
// the host (address mapping below) and hands it to the protocol's
// translator: TcpNat (tcp_nat.*), UdpNat (udp_nat.*), IcmpNat (icmp_nat.*).
// Port forwards (forward.*) accept on host sockets and open flows toward a
// guest through the same translators.
//
// Address mapping, guest view -> host socket (host_target):
//   a guest forward's address and port (TCP) -> its target, whatever the
//                                  policy (guest_forward.hpp); other ports
//                                  and protocols there: unreachable
//   gateway address (10.0.2.2)  -> 127.0.0.1, unless map_gateway_to_loopback
//                                  is off (then it is unreachable)
//   DNS address (10.0.2.3)      -> TCP port 53: the gateway's DNS-over-TCP
//                                  service (local names, then upstream);
//                                  UDP port 53: the upstream resolver in
//                                  use (UDP DNS is normally answered by the
//                                  gateway's forwarder before this)
//   other addresses in the virtual subnet -> unreachable (guests reach each
//                                  other through the switch, not the NAT)
//   127/8, 0/8                   -> forbidden: the host's loopback is reached
//                                  only through the gateway address above, so
//                                  a frame crafted to 127.0.0.53 reaches
//                                  nothing (slirp4netns and pasta pass it)
//   169.254/16 (link-local, cloud metadata) -> forbidden unless
//                                  allow_link_local (--allow-link-local)
//   broadcast, multicast, 240/4  -> unreachable
//   anything else                -> itself
// and back: a reply from 127.0.0.1 appears to come from the gateway address.
// A forbidden destination gets a RST (TCP) or ICMP "communication
// administratively prohibited" (UDP, ICMP) at once and is counted in
// NatStats::dropped_forbidden.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <optional>

#include "core/event_loop.hpp"
#include "core/sockaddr.hpp"
#include "gateway/gateway.hpp"
#include "nat/guest_forward.hpp"

namespace usernet::nat {

struct NatLimits {
    uint32_t tcp_flows = 65536;            // in total
    uint32_t tcp_flows_per_guest = 16384;  // --max-flows
    uint32_t tcp_half_open_per_guest = 256;  // guest SYNs whose connect() is pending
    uint32_t tcp_half_open = 1024;           // ... in all guests together
    uint32_t udp_flows = 4096;
    uint32_t udp_flows_per_guest = 1024;   // beyond it the idlest flow is evicted
    uint32_t icmp_flows = 256;
    uint32_t icmp_flows_per_guest = 64;
    uint32_t udp_idle_ms = 180'000;        // RFC 4787 REQ-5: at least 2 minutes
    uint32_t udp_dns_idle_ms = 10'000;     // port-53 flows
    uint32_t icmp_idle_ms = 60'000;

    // Descriptors these limits may need at most: a socket per TCP flow,
    // two per UDP flow (one per family), one per ping flow; two more for
    // each DNS-over-TCP session (its socketpair end, its upstream) and for
    // each guest forward command (its pidfd, its socket's peer during the
    // spawn); plus the DNS forwarder's sockets, listeners, attachments,
    // epoll and the like.
    uint64_t descriptors_needed() const {
        constexpr uint64_t kOverhead = 512;
        constexpr uint64_t kServices = 2 * 256 + 2 * 64;  // DnsTcpService, CommandRunner
        return uint64_t{tcp_flows} + 2 * uint64_t{udp_flows} + icmp_flows + kOverhead + kServices;
    }
};

struct NatStats {
    uint64_t dropped_malformed = 0;   // bad header or checksum
    uint64_t dropped_unreachable = 0; // no host mapping for the destination
    uint64_t dropped_forbidden = 0;   // a destination policy refuses (loopback, link-local)
    uint64_t dropped_policy = 0;      // --restrict, --no-tcp/udp/icmp, --allow/--deny refuse
    uint64_t dropped_limit = 0;       // a flow limit refused a new flow
    uint64_t dropped_proto = 0;       // protocol not translated
};

// host_target's answer: a socket address, or why there is none. A guest
// forward's target may be a unix socket (addr is a sockaddr_un) or a
// command (command is set, addr unused); DNS over TCP goes to the
// gateway's service (dns_tcp is set, addr unused).
struct HostTarget {
    enum class Verdict : uint8_t { ok, unreachable, forbidden };
    Verdict verdict = Verdict::unreachable;
    sockaddr_storage addr{};
    const std::string* command = nullptr;
    // The DNS address's TCP port: the gateway's own service (dns_tcp.hpp).
    gw::DnsTcpService* dns_tcp = nullptr;
    // An embedder's guest forward (GuestForwardOpener).
    GuestForwardOpener* opener = nullptr;
    // A guest forward's target (--guestfwd): the user's own server, reached
    // from the kernel's choice of address, not from --outbound-addr.
    bool guest_forward = false;
    bool ok() const { return verdict == Verdict::ok; }
    bool forbidden() const { return verdict == Verdict::forbidden; }
};

class TcpNat;
class UdpNat;
class IcmpNat;
class Forwarder;
struct ForwardSpec;

class Nat final : public gw::IpSink {
public:
    Nat(core::EventLoop& loop, gw::Gateway& gw, NatLimits limits = {});
    ~Nat();

    void from_guest(const gw::GuestPacket& pkt) override;
    // Resets the flows of the guests behind a detached switch port.
    void port_gone(sw::PortId port) override;

    // Host-to-guest forwards. Throws std::runtime_error (with a message that
    // names the address and the reason) when a listener cannot be set up.
    void add_forward(const ForwardSpec& spec);
    // A guest forward (guest_forward.hpp). The address must be one the
    // gateway answers for (NetConfig::service_addrs).
    void add_guest_forward(const GuestForwardSpec& spec);
    // Removes the guest forward at addr:port; connections already made
    // live on. False when there is none.
    bool remove_guest_forward(const wire::IpAddr& addr, uint16_t port);
    const std::vector<GuestForwardSpec>& guest_forwards() const { return guest_fwds_; }
    CommandRunner& commands() { return commands_; }

    // Where a guest's packet to (dst, port) goes on the host. A refusal
    // counts itself in stats() (dropped_unreachable or dropped_forbidden).
    HostTarget host_target(const wire::IpAddr& dst, uint16_t port, uint8_t proto);
    // The address a guest sees for a host-side peer address.
    wire::IpAddr guest_visible(const wire::IpAddr& host_src) const;
    // Whether a datagram from (src, port), in the guest's view, may reach
    // a guest through a mapping the guest opened to someone else: the
    // policy (--deny, --allow, --no-udp...) that would refuse the guest's
    // own flow to that peer refuses the peer's datagrams too. The DNS
    // address's port 53 is the gateway's service whatever the policy.
    bool inbound_allowed(const wire::IpAddr& src, uint16_t port, uint8_t proto) const;
    // The gateway's address in guest's family: where the NAT's own ICMP
    // errors come from.
    wire::IpAddr gateway_for(const wire::IpAddr& guest) const;

    // Out of descriptors: frees one by closing the least recently used UDP
    // flow, else ping flow (each comes back with the guest's next datagram;
    // a TCP connection refused for want of a socket would not). False when
    // neither holds a socket.
    bool release_descriptor();

    core::EventLoop& loop() { return loop_; }
    gw::Gateway& gateway() { return gw_; }
    const NatLimits& limits() const { return limits_; }
    NatStats& stats() { return stats_; }
    const NatStats& stats() const { return stats_; }
    Forwarder& forwarder() { return *fwd_; }
    TcpNat& tcp() { return *tcp_; }
    UdpNat& udp() { return *udp_; }
    IcmpNat& icmp() { return *icmp_; }

private:
    core::EventLoop& loop_;
    gw::Gateway& gw_;
    NatLimits limits_;
    NatStats stats_;
    std::unique_ptr<TcpNat> tcp_;
    std::unique_ptr<UdpNat> udp_;
    std::unique_ptr<IcmpNat> icmp_;
    std::unique_ptr<Forwarder> fwd_;
    std::vector<GuestForwardSpec> guest_fwds_;
    CommandRunner commands_;
};

// sockaddr helpers shared by the translators (core/sockaddr.hpp).
using core::from_sockaddr;
using core::sockaddr_len;
using core::to_sockaddr;

}  // namespace usernet::nat
