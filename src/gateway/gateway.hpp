// The virtual router: the switch port that answers for the gateway and DNS
// addresses and hands routed traffic to the NAT.
//
// deliver() receives every frame the switch sends to the gateway's MAC, plus
// broadcasts. It answers ARP for its own addresses, runs the local
// services (DHCPv4, DNS forwarding, ICMP echo of its own addresses), and
// passes every other IPv4 packet routed through it to the IpSink (the NAT),
// tagged with the switch port it came from: every per-guest limit in the
// NAT and the services is keyed on that port, never on a claimed address.
//
// IP source guard (what a managed switch does with DHCP snooping and IP
// source guard / dynamic ARP inspection). The gateway is the switch's
// IngressGuard: before the switch learns or forwards a frame, admit() looks
// at the IPv4 source (or the ARP sender) and lets it on the LAN only if the
// sending MAC may use that address:
//   - a MAC holding a DHCP lease sends only from the lease's address;
//   - a MAC without one (a statically configured guest) may use one address
//     inside the subnet that no other MAC holds, first come; the claim
//     lapses after NetConfig::claim_hold_ms (60 s) without traffic, and the
//     MAC may then move to another address;
//   - an address reserved for an attachment (--config-net) is used only from
//     that attachment; one reserved for any (--guest-addr) is held like a
//     lease by the MAC that first uses it, while it keeps using it;
//   - 0.0.0.0 only for DHCP (UDP to port 67), and ARP probes (RFC 5227);
//   - an ARP sender speaks only for its own MAC (no proxy ARP on this LAN);
//   - anything else, inside the subnet or outside it, is dropped and
//     counted (GatewayStats::dropped_spoofed).
// IPv6 (gateway6.cpp) has the same guard, with the rules of its own
// neighbor discovery (RFC 4861):
//   - a MAC may use up to kMaxV6PerMac addresses, link-local or in the
//     prefix, that no other MAC has used within claim_hold_ms (SLAAC, the
//     kernel's temporary addresses and a link-local address at once); its
//     idlest one makes room for a new one;
//   - :: only for duplicate address detection (a neighbor solicitation to
//     a solicited-node group), router solicitations and MLD reports;
//   - a neighbor advertisement speaks only for an address its sender may
//     hold, and a link-layer address option only for the sender's MAC;
//   - router advertisements and redirects from guests are dropped (RA
//     guard, RFC 6105): the gateway is the LAN's only router.
// Other ethertypes pass as plain L2 between guests; the gateway itself
// does not route them.
//
// Toward guests, services and the NAT build an L4 message at tx_l4() and
// call send_ip(): the gateway writes the IP and Ethernet headers into the
// headroom in front of it and puts the frame on the switch. One scratch
// buffer, no allocation. A destination whose MAC is not known yet gets an
// ARP request instead, and the packet is dropped and counted (TCP resends).
//
// The neighbor table (guest IPv4 -> MAC, port, MTU of its attachment) is the
// source guard's binding table: entries are made by admit() and by DHCP
// acknowledgements, never by overwriting another MAC's live claim. An
// entry unseen for kNeighborIdleMs is forgotten unless a lease or a
// reservation holds it; the table holds at most kMaxNeighbors entries (the
// idlest unheld one goes). When a port detaches, its entries go and the
// IpSink is told (port_gone), so its flows are reset.
// Every ICMP error toward a guest (time exceeded here, the NAT's errors)
// takes a token from its attachment's bucket (burst kIcmpErrorBurst, 1000 a
// second: the kernel's icmp_msgs_burst and icmp_msgs_per_sec) and from one
// shared by all (four times that), so a guest that provokes errors as fast
// as it can uses up its own, not the port unreachables and Packet Too Bigs
// the other guests are waiting for.
// For IPv6 the gateway answers neighbor solicitations for its addresses
// (gateway6, dns6 and its link-local address, from which it also
// solicits), sends router advertisements (on a router solicitation and
// every NetConfig::ra_interval_s, each port's with its MTU) with the
// prefix for SLAAC, the MTU and the DNS server (RDNSS) and domain
// (DNSSL, RFC 8106), and answers echo requests to its addresses.
// Fragments from guests are reassembled (reassembly.hpp) before anything
// else looks at them; packets toward a guest that exceed its attachment's
// MTU go out as fragments (IPv4, and IPv6 with a fragment header), unless
// they carry offload (TSO: the attachment's MTU covers them).
// Not supported here: relayed DHCP, several IPv4 addresses on one MAC,
// ICMP errors other than time exceeded.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "core/token_bucket.hpp"
#include "gateway/net_config.hpp"
#include "gateway/reassembly.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/offload.hpp"

namespace usernet::gw {

// An IP packet from a guest, routed through the gateway. Views are valid
// only during the call.
struct GuestPacket {
    wire::IpAddr src;
    wire::IpAddr dst;
    uint8_t proto = 0;
    uint8_t ttl = 0;
    wire::Bytes ip_packet;  // the whole IP packet, for quoting in ICMP errors
    wire::Bytes l4;         // the transport header and payload
    uint32_t ingress_mtu = 1500;  // L3 MTU of the guest's attachment
    wire::MacAddr src_mac;
    // The switch port (attachment) the packet came from: what per-guest
    // limits are keyed on.
    sw::PortId port = sw::kNoPort;
    // The L4 checksum need not be verified: the attachment vouches for it
    // (a TAP with offload: partial or already checked). l4 may then also
    // be a TCP segment larger than the MTU.
    bool l4_csum_trusted = false;
};

class IpSink {
public:
    virtual void from_guest(const GuestPacket& pkt) = 0;
    // A port detached: whatever belongs to its guests is to be dropped
    // (flows reset toward the host).
    virtual void port_gone(sw::PortId port) = 0;

protected:
    ~IpSink() = default;
};

struct GatewayStats {
    uint64_t arp_replies = 0;
    uint64_t icmp_echo_replies = 0;
    uint64_t dropped_malformed = 0;    // failed a wire parse or a checksum
    uint64_t fragments_sent = 0;       // fragments of packets larger than a guest's MTU
    uint64_t dropped_no_neighbor = 0;  // toward a guest whose MAC is unknown
    uint64_t held_for_neighbor = 0;    // held while ARP/NDP asked for the MAC
    uint64_t held_sent = 0;            // of those, sent once the MAC was known
    uint64_t held_expired = 0;         // of those, never answered in kHoldMs
    uint64_t dropped_unsupported = 0;  // ethertypes / protocols not handled
    uint64_t dropped_ttl = 0;          // TTL expired on a routed packet (time exceeded sent)
    uint64_t dropped_too_big = 0;      // toward a guest, larger than its MTU
    uint64_t dropped_martian = 0;      // impossible source address (multicast, ours, ...)
    uint64_t dropped_spoofed = 0;      // a source address the sending MAC may not use
    uint64_t dropped_rate = 0;         // over a port's rate limit (DHCP)
    uint64_t dropped_not_for_us = 0;   // broadcast / multicast / other guests' unicast
    uint64_t arp_requests = 0;         // ARP requests sent for unknown guests
    uint64_t routed = 0;               // packets handed to the IpSink
    uint64_t icmp_rate_limited = 0;    // time exceeded not sent: ICMP error bucket empty
    uint64_t icmp6_param_problems = 0;  // IPv6 packets answered with a Parameter Problem
    uint64_t neighbor_adverts = 0;     // IPv6 neighbor advertisements sent
    uint64_t router_adverts = 0;       // IPv6 router advertisements sent
    uint64_t neighbor_solicits = 0;    // IPv6 neighbor solicitations sent for unknown guests
};

class Dhcp4Server;
class Dhcp6Server;
class TftpServer;
class DnsForwarder;
class DnsTcpService;

class Gateway : public sw::Port, private sw::IngressGuard {
public:
    // Room in front of tx_l4() for Ethernet + the largest IP header.
    static constexpr size_t kHeadroom = 14 + 40 + 8;  // + an IPv6 fragment header
    static constexpr size_t kTxCapacity = 65535;
    static constexpr size_t kMaxNeighbors = 4096;
    static constexpr core::Millis kNeighborIdleMs = 600'000;
    static constexpr core::Millis kArpRetryMs = 1000;
    // Packets held while ARP or NDP asks for a guest's MAC (see held_).
    static constexpr size_t kHeldSlots = 4;
    static constexpr size_t kHeldMax = 2048;
    static constexpr core::Millis kHoldMs = 3000;
    // DHCP messages a port may send: a burst and a rate per second.
    static constexpr uint32_t kDhcpBurst = 16;
    static constexpr uint32_t kDhcpPerSecond = 4;

    Gateway(core::EventLoop& loop, sw::Switch& sw, NetConfig cfg);
    ~Gateway() override;

    // sw::Port
    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "gateway"; }
    bool takes_offload() const override { return true; }

    void set_ip_sink(IpSink* sink) { sink_ = sink; }

    // --- sending toward guests ---
    uint8_t* tx_l4() { return tx_.data() + kHeadroom; }
    // The largest L4 message send_ip() takes: 65535 bytes (an IPv6
    // payload's most; IPv4's total length limit is send_ip()'s own check),
    // so the largest datagram and echo of either family fit.
    static constexpr size_t tx_l4_capacity() { return kTxCapacity; }
    // The TCP translator's bound for one segment, with room for any IP
    // header within IPv4's 65535-byte total.
    static constexpr size_t tx_l4_tcp_capacity() { return kTxCapacity - 40; }
    // Wraps l4_len bytes at tx_l4() (checksum already filled) in IP and
    // Ethernet headers and puts the frame on the switch (padded to 60
    // bytes). The limited or subnet broadcast goes to ff:ff:ff:ff:ff:ff.
    // Returns false, counting the drop, when the destination MAC is unknown
    // (an ARP request went out instead, at most one a second per address),
    // the packet exceeds the guest's MTU, or an address is not IPv4.
    //
    // With `off` (the L4 checksum partial, possibly a TCP segment larger
    // than the MTU with gso_size bytes per piece; csum_start and hdr_len
    // relative to tx_l4(), the gateway adds the headers in front), the
    // frame goes out that way; the switch finishes it in software for an
    // attachment without offload. Only gso_size plus headers must then fit
    // the MTU.
    //
    // With `at`, the message starts at tx_l4() + at instead: one of several
    // laid end to end (the TCP translator peeks a run of segments' payload
    // in one read). Its headers go in front of it, over the tail of the
    // message before, which must have been sent already; at + l4_len must
    // fit tx_l4_capacity().
    bool send_ip(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto, size_t l4_len,
                 uint8_t ttl = 64, const wire::Offload* off = nullptr, size_t at = 0);
    // The L3 MTU toward guest address dst (its attachment's MTU), 1500 when
    // the guest is unknown.
    uint32_t path_mtu(const wire::IpAddr& dst) const;
    // Whether dst's attachment takes offloaded frames (send_ip's `off`).
    bool offload_to(const wire::IpAddr& dst) const;
    // What the attachment of guest dst can still queue: bytes
    // (sw::Port::tx_room) and frames (sw::Port::tx_frame_room), each
    // SIZE_MAX when it does not bound it or the guest is unknown.
    struct TxRoom {
        size_t bytes = std::numeric_limits<size_t>::max();
        size_t frames = std::numeric_limits<size_t>::max();
    };
    TxRoom tx_room_to(const wire::IpAddr& dst) const;
    // Whether the attachment of guest dst says its NIC has a small ring
    // (sw::Port::small_ring); false when the guest is unknown.
    bool small_ring_to(const wire::IpAddr& dst) const;
    bool knows_guest(const wire::IpAddr& guest) const;
    // A guest's address as bound by DHCP or learned; used by port forwards
    // when no --guest-addr is given. Unspecified when there is no guest yet.
    wire::IpAddr first_guest_v4() const;
    // An IPv6 address in the prefix of the guest at IPv4 address v4: for an
    // address --config-net gave an attachment, the IPv6 address it gave it
    // too (NetConfig::v6_of) if the namespace took it; else the one v4's
    // MAC used last. With v4
    // unspecified, that of the guest heard from last. Unspecified when there
    // is none.
    wire::IpAddr guest_v6_of(const wire::IpAddr& v4) const;

    const NetConfig& config() const { return cfg_; }
    // Makes a an address the gateway answers for (NetConfig::service_addrs)
    // at run time: an embedder's guest forward. The DHCP pool was made
    // without it; the caller keeps it out of the pool's range.
    void add_service_addr(const wire::IpAddr& a) {
        if (!cfg_.is_service_addr(a)) cfg_.service_addrs.push_back(a);
    }
    // And no longer: ARP and neighbor solicitations for a go unanswered.
    void remove_service_addr(const wire::IpAddr& a) { std::erase(cfg_.service_addrs, a); }
    const GatewayStats& gw_stats() const { return stats_; }
    const ReassemblyStats& reassembly_stats() const { return reasm_.stats(); }
    core::EventLoop& loop() { return loop_; }

    // Records that guest ip lives at mac behind a port with the given MTU,
    // as admit() does for a frame from it (false: the source guard refuses).
    bool learn_neighbor(wire::Ipv4 ip, const wire::MacAddr& mac, uint32_t mtu,
                        sw::PortId port = sw::kNoPort);
    // The same for a DHCP lease: the entry is kept (not aged out) until
    // `until` (loop time), and becomes the first_guest_v4(). The lease is
    // then the only address mac may send from.
    void bind_lease(wire::Ipv4 ip, const wire::MacAddr& mac, uint32_t mtu, core::Millis until,
                    sw::PortId port = sw::kNoPort);
    // Reserves ip for the guest behind `port` (kNoPort: for the first MAC
    // that uses it, held like a lease while it is used): --config-net and
    // --guest-addr addresses.
    // v6: the attachment was given NetConfig::v6_of(ip) as well (a guest
    // forward's IPv6 clients go there; otherwise to whatever IPv6 address
    // the guest is seen using, or over IPv4).
    void reserve(wire::Ipv4 ip, sw::PortId port, bool v6 = false);
    // The port a guest address lives behind, kNoPort when unknown.
    sw::PortId port_of(const wire::IpAddr& guest) const;
    // When mac (behind port) was last heard from, from any of its frames
    // the gateway saw; 0 when never or when it lives elsewhere.
    core::Millis last_heard(const wire::MacAddr& mac) const;
    // The lease on ip ended (RELEASE, DECLINE): the entry ages out normally.
    void unbind_lease(wire::Ipv4 ip);
    // Drops the entry for ip if it points at mac (the guest released it).
    void forget_neighbor(wire::Ipv4 ip, const wire::MacAddr& mac);
    // The MAC of a live neighbor at ip, if any (DHCP uses it to avoid
    // handing out an address some guest is still using).
    std::optional<wire::MacAddr> neighbor_mac(wire::Ipv4 ip) const;
    // Whether DHCP must not give ip to mac behind port: a neighbor with
    // another MAC holds it (a lease, or traffic within the claim hold),
    // or it is reserved for another attachment.
    bool address_taken(wire::Ipv4 ip, const wire::MacAddr& mac, sw::PortId port) const;
    size_t neighbor_count() const { return neighbors_.size(); }
    // Calls fn(ip, mac) for each IPv4 neighbor (listings).
    template <class F>
    void for_each_neighbor4(F&& fn) const {
        for (const auto& [ip, n] : neighbors_) fn(wire::IpAddr::v4(ip), n.mac);
    }
    // Our own IPv4 addresses (gateway, DNS, and the service addresses).
    bool is_own_v4(wire::Ipv4 a) const {
        return a == cfg_.gateway || a == cfg_.dns ||
               (!cfg_.service_addrs.empty() && cfg_.is_service_addr(wire::IpAddr::v4(a)));
    }
    // Our own IPv6 addresses (gateway6, dns6, the link-local one, and the
    // service addresses in the prefix).
    bool is_own_v6(const wire::IpAddr& a) const {
        return cfg_.ipv6 && (a == cfg_.gateway6 || a == cfg_.dns6 || a == link_local_ ||
                             (!cfg_.service_addrs.empty() && cfg_.is_service_addr(a)));
    }
    const wire::IpAddr& link_local() const { return link_local_; }
    size_t neighbor6_count() const { return neighbors6_.size(); }
    static constexpr size_t kMaxV6PerMac = 8;
    static constexpr size_t kMaxNeighbors6 = 4096;
    // Router solicitations a port may send answered: a burst and a rate.
    static constexpr uint32_t kRsBurst = 4;
    static constexpr uint32_t kRsPerSecond = 1;

    Dhcp4Server& dhcp() { return *dhcp_; }
    Dhcp6Server& dhcp6() { return *dhcp6_; }
    // The TFTP server (--tftp), null without one.
    TftpServer* tftp() { return tftp_.get(); }
    // The IPv4 address mac holds (its lease or claim), 0 when none.
    wire::Ipv4 v4_of_mac(const wire::MacAddr& mac) const {
        auto it = mac_ip_.find(mac);
        return it == mac_ip_.end() ? 0 : it->second;
    }
    // Whether another MAC than mac holds IPv6 address a (the guard's
    // binding, within NetConfig::claim_hold_ms).
    bool address6_taken(const wire::IpAddr& a, const wire::MacAddr& mac) const;
    // A port with up to `hosts` hosts behind it (an uplink onto a real
    // LAN) rather than one guest: that many DHCP leases, and a DHCP
    // message budget that many times a guest's (up to the pool's size).
    void set_hosts_behind(sw::PortId port, size_t hosts);
    DnsForwarder& dns() { return *dns_; }
    DnsTcpService& dns_tcp() { return *dns_tcp_; }
    // NetConfig::search_wire() and search_wire4(), made once.
    wire::Bytes search_wire() const { return search_wire_; }
    wire::Bytes search_wire4() const { return search_wire4_; }
    // The addresses of a name the DNS address answers itself (lower-case
    // dotted text, no trailing dot; NetConfig::host_alias): false when the
    // name is not one of ours and goes upstream. A name of ours may have
    // no address of the family asked (an answer without records).
    bool local_addresses(std::string_view name, std::vector<wire::IpAddr>& out) const;
    // The local name of addr, for a reverse lookup (PTR): the host's alias
    // for the gateway addresses, a --dns-host name, a guest's DHCP host name
    // (under --domain when there is one) for its lease's address and its
    // IPv6 partner; false if addr has none.
    bool local_name(const wire::IpAddr& addr, std::string& out) const;
    // Whether an ICMP error may go to a guest now: the one token bucket all
    // of usernet's ICMP errors pass (core/token_bucket.hpp).
    // Whether an ICMP error may go to guest address `to` now (takes the
    // tokens; see above).
    bool icmp_error_allowed(const wire::IpAddr& to);
    static constexpr uint32_t kIcmpErrorBurst = 50;  // refilled at one per ms
    static constexpr uint32_t kIcmpErrorShare = 4;   // all ports: this many ports' worth

private:
    struct Neighbor {
        wire::MacAddr mac;
        uint32_t mtu;
        core::Millis seen;
        core::Millis bound_until = 0;  // DHCP lease end; 0: not bound
        sw::PortId port = sw::kNoPort;
        bool offload = false;          // its attachment takes offloaded frames
    };
    struct Neighbor6 {
        wire::MacAddr mac;
        uint32_t mtu;
        core::Millis seen;
        sw::PortId port;
        bool offload;
    };
    using Neighbors6 = std::unordered_map<wire::IpAddr, Neighbor6, wire::IpAddrHash>;
    uint32_t mtu_of(const Neighbor& n) const;
    struct Reservation {
        wire::Ipv4 ip;
        sw::PortId port;  // kNoPort: any port
        bool v6 = false;  // the attachment has v6_of(ip) too
    };
    enum class Claim : uint8_t { ok, spoofed };
    struct ArpAttempt {
        wire::Ipv4 ip = 0;
        core::Millis at = 0;
    };
    // sw::IngressGuard
    bool admit(sw::PortId from, wire::Bytes frame) override;
    bool claim(sw::PortId port, const wire::MacAddr& mac, wire::Ipv4 ip);
    size_t pool_claims(sw::PortId port, core::Millis now) const;
    bool held(wire::Ipv4 ip, const Neighbor& n, core::Millis now) const;
    const Reservation* reservation(wire::Ipv4 ip) const;
    Neighbor* bind(wire::Ipv4 ip, const wire::MacAddr& mac, sw::PortId port, uint32_t mtu,
                   bool offload);
    void drop_binding(std::unordered_map<wire::Ipv4, Neighbor>::iterator it);
    void on_port_detached(sw::PortId port);
    bool dhcp_allowed(sw::PortId port);
    void handle_arp(wire::Bytes payload, const wire::MacAddr& src_mac, const sw::FrameMeta& meta);
    void handle_ipv4(wire::Bytes payload, const wire::MacAddr& dst_mac,
                     const wire::MacAddr& src_mac, const sw::FrameMeta& meta);
    void handle_icmp_echo(const wire::Ipv4View& ip);
    // ICMP time exceeded about ip: code 0 (TTL) or 1 (fragment reassembly).
    void send_time_exceeded(const wire::Ipv4View& ip, uint8_t code = 0);
    void send_icmp4_error(const wire::Ipv4View& ip, uint8_t type, uint8_t code, wire::Ipv4 from);
    void send_arp_request(wire::Ipv4 target);
    void send_frame(size_t off, size_t len);
    bool send_fragments4(wire::Ipv4 src, wire::Ipv4 dst, uint8_t proto, size_t l4_len,
                         uint8_t ttl, const wire::MacAddr& mac, uint32_t mtu);
    bool send_fragments6(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto,
                         size_t l4_len, uint8_t hop_limit, const wire::MacAddr& mac, uint32_t mtu);
    bool may_learn(wire::Ipv4 ip, const wire::MacAddr& mac) const;
    const Neighbor* live_neighbor(wire::Ipv4 ip) const;
    bool neighbor_live(wire::Ipv4 ip, const Neighbor& n) const;
    bool make_room();
    // IPv6 (gateway6.cpp)
    void handle_ipv6(wire::Bytes payload, const wire::MacAddr& dst_mac,
                     const wire::MacAddr& src_mac, const sw::FrameMeta& meta);
    bool admit6(sw::PortId from, const wire::MacAddr& src, bool to_gateway, wire::Bytes payload);
    bool admit_first_fragment6(const wire::Ipv6View& ip, const wire::MacAddr& mac);
    static bool carries_ip_under_llc(uint16_t type, wire::Bytes llc);
    bool claim6(sw::PortId port, const wire::MacAddr& mac, const wire::IpAddr& ip);
    bool may_learn6(const wire::IpAddr& ip, const wire::MacAddr& mac) const;
    const Neighbor6* live_neighbor6(const wire::IpAddr& ip) const;
    bool send_ip6(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto,
                  size_t l4_len, uint8_t hop_limit, const wire::Offload* off, size_t at = 0);
    void route(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto, uint8_t ttl,
               wire::Bytes packet, wire::Bytes l4, const wire::MacAddr& src_mac,
               const sw::FrameMeta& meta);
    void send_nd(uint8_t type, uint8_t flags, const wire::IpAddr& target,
                 const wire::IpAddr& from, const wire::IpAddr& to, const wire::MacAddr& to_mac);
    void send_neighbor_advert(const wire::IpAddr& target, const wire::IpAddr& to,
                              const wire::MacAddr& to_mac, bool solicited);
    void send_neighbor_solicit(const wire::IpAddr& target);
    void send_router_advert(sw::PortId port, const wire::MacAddr& to_mac,
                            const wire::IpAddr& to);
    void advertise_to_all();
    void send_time_exceeded6(const wire::Ipv6View& ip, uint8_t code = 0);
    void send_param_problem6(const wire::Ipv6View& ip, const wire::Ipv6Problem& pp);
    void send_icmp6_error(const wire::Ipv6View& ip, uint8_t type, uint8_t code, uint32_t param,
                          const wire::IpAddr& from);
    // Fragments whose datagram ran out of time: ICMP time exceeded, code 1.
    void arm_reassembly_timer();
    void reassembly_expired();
    bool rs_allowed(sw::PortId port);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    NetConfig cfg_;
    IpSink* sink_ = nullptr;
    std::unique_ptr<Dhcp4Server> dhcp_;
    std::unique_ptr<Dhcp6Server> dhcp6_;
    std::unique_ptr<TftpServer> tftp_;
    std::vector<uint8_t> search_wire_;
    std::vector<uint8_t> search_wire4_;
    Reassembler reasm_;
    core::Timer reasm_timer_{[this] { reassembly_expired(); }};
    uint32_t frag_id6_ = 0;
    std::unique_ptr<DnsForwarder> dns_;
    std::unique_ptr<DnsTcpService> dns_tcp_;
    std::unordered_map<wire::Ipv4, Neighbor> neighbors_;
    // The one address each MAC is bound to (its lease, or its claim).
    std::unordered_map<wire::MacAddr, wire::Ipv4, wire::MacAddrHash> mac_ip_;
    std::vector<Reservation> reserved_;
    std::vector<core::TokenBucket> dhcp_budget_;  // by port id
    GatewayStats stats_;
    core::TokenBucket icmp_errors_{kIcmpErrorBurst * kIcmpErrorShare, 1000 * kIcmpErrorShare};
    // By port id + 1 (0: a guest of no known port), grown as ports appear.
    std::vector<core::TokenBucket> icmp_port_errors_;
    Neighbors6 neighbors6_;
    wire::IpAddr link_local_;
    core::Timer ra_timer_{[this] { advertise_to_all(); }};
    // RFC 4861 6.2.4: MAX_INITIAL_RTR_ADVERTISEMENTS and their interval.
    static constexpr uint32_t kInitialRas = 3;
    static constexpr core::Millis kInitialRaIntervalMs = 16'000;
    uint32_t initial_ras_ = 0;
    // Packets toward a guest whose MAC is being asked for (ARP, NDP): a
    // few, held for kHoldMs as a kernel's neighbor queue holds them, so a
    // forwarded UDP datagram to a guest heard from long ago (or never, a
    // --config-net namespace) is not lost while the gateway asks. Sent from
    // the loop once the answer came (never from inside the caller that
    // learned it: tx_l4() may hold that caller's message).
    struct HeldPacket {
        bool used = false;
        core::Millis at = 0;
        wire::IpAddr src, dst;
        uint8_t proto = 0, ttl = 0;
        uint16_t len = 0;
        std::array<uint8_t, kHeldMax> l4{};
    };
    std::array<HeldPacket, kHeldSlots> held_{};
    size_t held_n_ = 0;  // slots in use: the per-frame check is this one load
    core::Timer held_timer_{[this] { send_held(); }};
    size_t to_front(size_t at, size_t l4_len);
    // Keeps the l4_len bytes at tx_l4() (false if they are too many).
    bool hold(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto, size_t l4_len,
              uint8_t ttl);
    // After a neighbor was learned or heard from: sends what waited for
    // it, from the loop.
    void neighbor_known(const wire::IpAddr& ip) {
        if (held_n_ != 0) neighbor_known_slow(ip);
    }
    void neighbor_known_slow(const wire::IpAddr& ip);
    void send_held();
    std::vector<core::TokenBucket> rs_budget_;  // by port id
    std::array<uint8_t, 512> nd_buf_{};  // room for a 255-byte DNS search list
    struct NsAttempt {
        wire::IpAddr ip;
        core::Millis at = 0;
    };
    std::array<NsAttempt, 256> ns_attempts_{};
    alignas(64) std::array<uint8_t, kHeadroom + kTxCapacity> tx_{};
    std::array<uint8_t, 128> arp_buf_{};
    // Rate limit of ARP requests, a small direct-mapped cache by address.
    std::array<ArpAttempt, 256> arp_attempts_{};
    uint16_t ip_id_ = 0;
    wire::Ipv4 last_guest_ = 0;  // most recent lease or newly learned neighbor
};

}  // namespace usernet::gw
