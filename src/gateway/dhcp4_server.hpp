// The DHCPv4 server of the virtual network (RFC 2131, options RFC 2132).
//
// Two parts. Dhcp4Leases is the lease table and nothing else: which client
// holds which address until when, driven by plain calls (offer, bind,
// release, decline) with the time passed in, so tests can drive it without
// packets. Dhcp4Server reads requests the gateway hands it, asks the table,
// and answers through the gateway's tx buffer.
//
// Leases are keyed by the client identifier (option 61) when the client
// sends one, else by its hardware address (RFC 2131 4.2). The pool is
// cfg.dhcp_start .. +dhcp_count, minus the network, broadcast, gateway and
// DNS addresses. A client gets its previous address back while nobody else
// has taken it; a free address is picked from never-used ones first, then
// from the one that has been free the longest, so returning clients keep
// their address as long as possible. Leases expire (libslirp's never do);
// an address some live neighbor with another MAC still uses is not handed
// out. Offers are held for kOfferHoldMs; a declined address rests for
// kDeclineHoldMs.
//
// One MAC holds one address, whatever client identifiers it sends: the
// gateway's IP source guard lets a MAC use one address at a time, so a
// second lease for it would be a lease nobody could use. A client that
// comes with another identifier on the same MAC (firmware without option
// 61, then an OS with a DUID; two DHCP clients on one interface) gets the
// address the MAC holds, which passes to that identifier; a request from
// the identifier before is still granted it (libslirp, keyed by MAC alone,
// behaves the same). Taking another address lets the MAC's previous one
// go.
//
// A hostile guest must not drain the pool or cancel others' leases:
// - One MAC holds one live offer or lease (above), whatever client
//   identifiers it makes up.
// - Every lease records the switch port (attachment) it was handed out on,
//   and one port holds at most `per_port` of them (NetConfig::
//   dhcp_leases_per_port). A port at its quota that needs another address
//   recycles its own least recently heard idle lease (an offer, or a lease
//   whose holder has been silent for kIdleMs), never another port's; when
//   it has none, the client gets no offer. A port with a whole network
//   behind it (an uplink) is given a larger quota (set_port_quota); with
//   the pool exhausted, a guest's port takes back such a port's oldest
//   offer nobody requested (the real network's hosts may be asking their
//   own DHCP server, and their discovers must not hold the pool).
// - A client identifier of type 1 carrying the client's own MAC (what
//   udhcpc and systemd send) is the same key as that MAC, so a DISCOVER
//   without option 61 finds the lease taken with it, as dnsmasq does.
// - DECLINE and RELEASE count only from the MAC and port holding the lease
//   (client identifiers travel in broadcasts every guest sees).
// - The gateway rate-limits DHCP messages per port (Gateway::kDhcpBurst).
//
// Replies go out per RFC 2131 4.1: NAK always broadcast; a client with a
// ciaddr (renewing, INFORM) gets unicast unless it set the broadcast flag;
// everything else is broadcast (a client without an address may not accept
// unicast).
//
// A BOOTREQUEST without option 53 is a BOOTP client's (RFC 951, RFC 1542;
// U-Boot's bootp, bootpc, old systems), with or without the RFC 1497 vendor
// options: it is given its lease at once, as a DISCOVER and REQUEST
// together, and answered with a BOOTREPLY that carries the same
// configuration options as an ACK but none of DHCP's own (53, 54, and the
// lease times: a BOOTP client does not renew; it keeps the address while
// it is heard from, as any guest does). Not supported: relay agents
// (giaddr != 0 is dropped), option 82.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/net_config.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/dhcp4.hpp"

namespace usernet::gw {

class Gateway;

// Who a lease belongs to: option 61's bytes, or the chaddr MAC. Held
// inline; identifiers longer than fits keep their head and a hash of the
// whole (RFC 4361 DUID-based ids are at most 1+4+130 bytes).
struct Dhcp4ClientKey {
    static constexpr size_t kMaxLen = 64;
    enum class Kind : uint8_t { none, mac, client_id };
    Kind kind = Kind::none;
    uint8_t len = 0;
    std::array<uint8_t, kMaxLen> bytes{};

    static Dhcp4ClientKey from_mac(const wire::MacAddr& mac);
    static Dhcp4ClientKey from_client_id(wire::Bytes id);
    bool empty() const { return kind == Kind::none; }
    friend bool operator==(const Dhcp4ClientKey&, const Dhcp4ClientKey&) = default;
};

class Dhcp4Leases {
public:
    static constexpr core::Millis kOfferHoldMs = 60'000;
    static constexpr core::Millis kDeclineHoldMs = 600'000;

    static constexpr core::Millis kIdleMs = 60'000;
    using PortId = uint32_t;
    static constexpr PortId kNoPort = UINT32_MAX;

    enum class State : uint8_t { free, offered, bound, declined };
    struct Lease {
        wire::Ipv4 ip = 0;
        Dhcp4ClientKey key;  // the last holder; kept after expiry for reuse
        wire::MacAddr mac;
        State state = State::free;
        PortId port = kNoPort;     // the attachment it was handed out on
        bool departed = false;     // that attachment has gone (port_gone)
        core::Millis expires = 0;  // offer/lease end, decline rest end
        core::Millis granted = 0;  // when it was last offered or bound
        // The client's host name (option 12) as a DNS label, lower case;
        // empty when it gave none that is one. Cleared when the address
        // changes hands.
        std::array<char, 64> hostname{};
        // A static lease (--dhcp-host): only this MAC gets the address.
        std::optional<wire::MacAddr> static_mac;
        std::string_view name() const { return std::string_view(hostname.data()); }
    };
    // True when ip is in use by some live host other than mac, or reserved
    // for another attachment than port (the IP source guard's view).
    using BusyCheck =
        std::function<bool(wire::Ipv4 ip, const wire::MacAddr& mac, PortId port)>;
    // When mac was last heard from on the LAN (0: unknown).
    using HeardCheck = std::function<core::Millis(const wire::MacAddr& mac)>;

    explicit Dhcp4Leases(const NetConfig& cfg);

    void set_busy_check(BusyCheck f) { busy_ = std::move(f); }
    void set_heard_check(HeardCheck f) { heard_ = std::move(f); }

    // DISCOVER: the address to offer (held for kOfferHoldMs), preferring
    // the client's previous address, then `requested`; nothing when the
    // pool is exhausted.
    std::optional<wire::Ipv4> offer(const Dhcp4ClientKey& key, const wire::MacAddr& mac,
                                    std::optional<wire::Ipv4> requested, core::Millis now,
                                    PortId port = kNoPort);
    // REQUEST: binds ip to the client for the lease time (renewing an
    // existing lease too). False means the client must be NAKed.
    bool bind(const Dhcp4ClientKey& key, const wire::MacAddr& mac, wire::Ipv4 ip,
              core::Millis now, PortId port = kNoPort);
    // REQUEST naming another server: our offer to this client lapses.
    void withdraw_offer(const Dhcp4ClientKey& key);
    // RELEASE: the client gives ip back. False if it did not hold it (the
    // key, the MAC and the port must all be the holder's).
    bool release(const Dhcp4ClientKey& key, wire::Ipv4 ip, core::Millis now,
                 const wire::MacAddr& mac, PortId port = kNoPort);
    // DECLINE: ip is in use by someone else; it rests for kDeclineHoldMs.
    // Only the client the address was offered or leased to may decline it,
    // from its own MAC and port. A port has at most quota(port) addresses
    // resting; past that its oldest is free again.
    bool decline(const Dhcp4ClientKey& key, wire::Ipv4 ip, core::Millis now,
                 const wire::MacAddr& mac, PortId port = kNoPort);
    // A port detached: its leases stay (a guest that comes back gets its
    // address again) but count against no port any more.
    void port_gone(PortId port);
    // Live offers and leases handed out on port.
    size_t port_count(PortId port, core::Millis now) const;
    size_t per_port() const { return per_port_; }
    // The quota of one port instead of per_port() (an uplink, whose LAN
    // has many hosts), until the port is gone.
    void set_port_quota(PortId port, size_t n);
    size_t quota(PortId port) const;

    // Records the host name the client bound to ip sent (option 12): its
    // first label, if that is a valid DNS label (RFC 1123: letters, digits,
    // hyphens, 1-63), in lower case; otherwise none.
    void set_hostname(wire::Ipv4 ip, std::string_view name);
    // The address bound now to a client that called itself `label` (case
    // does not matter), if any.
    std::optional<wire::Ipv4> find_hostname(std::string_view label, core::Millis now) const;
    // Calls f(address, name) for each lease bound now under a host name.
    template <class F>
    void each_named(core::Millis now, F&& f) const {
        for (const Lease& l : pool_)
            if (l.state == State::bound && live(l, now) && !l.name().empty()) f(l.ip, l.name());
    }
    // The address currently offered or leased to key, if any.
    std::optional<wire::Ipv4> lookup(const Dhcp4ClientKey& key, core::Millis now) const;
    bool in_pool(wire::Ipv4 ip) const { return slot_of(ip) != nullptr; }
    const Lease* lease_at(wire::Ipv4 ip) const { return slot_of(ip); }
    size_t pool_size() const { return pool_.size(); }
    core::Millis lease_ms() const { return lease_ms_; }

private:
    Lease* slot_of(wire::Ipv4 ip);
    const Lease* slot_of(wire::Ipv4 ip) const;
    Lease* slot_of_key(const Dhcp4ClientKey& key);
    const Lease* slot_of_key(const Dhcp4ClientKey& key) const;
    bool live(const Lease& l, core::Millis now) const;
    // The static lease of mac, if it has one.
    const Lease* static_of(const wire::MacAddr& mac) const;
    bool available(const Lease& l, const wire::MacAddr& mac, PortId port, core::Millis now) const;
    bool busy(wire::Ipv4 ip, const wire::MacAddr& mac, PortId port) const {
        return busy_ && busy_(ip, mac, port);
    }
    // The live offer or lease of mac (none static), if any.
    Lease* live_of_mac(const wire::MacAddr& mac, core::Millis now);
    void take(Lease& l, const Dhcp4ClientKey& key, const wire::MacAddr& mac, State st,
              core::Millis expires, PortId port, core::Millis now);
    // Frees port's least recently heard idle lease; false when it has none.
    bool recycle_for(PortId port, core::Millis now);
    // With the pool exhausted: frees the least recently heard lease whose
    // attachment has gone and whose holder has been silent for kIdleMs.
    bool recycle_departed(core::Millis now);
    bool recycle_network_offer(PortId asking, core::Millis now);
    void free_slot(Lease& l, core::Millis now);

    std::vector<Lease> pool_;  // sorted by address
    core::Millis lease_ms_;
    size_t per_port_;
    std::vector<std::pair<PortId, size_t>> quotas_;  // set_port_quota(); few
    BusyCheck busy_;
    HeardCheck heard_;
};

struct Dhcp4Stats {
    uint64_t discovers = 0;
    uint64_t requests = 0;
    uint64_t releases = 0;
    uint64_t declines = 0;
    uint64_t informs = 0;
    uint64_t offers = 0;
    uint64_t acks = 0;
    uint64_t naks = 0;
    uint64_t pool_exhausted = 0;     // DISCOVER with no address to offer
    uint64_t recycled = 0;           // idle leases a port at its quota gave up
    uint64_t bootp = 0;              // BOOTREQUESTs without option 53 (BOOTP clients)
    uint64_t names_refused = 0;      // option 12 names a static lease's or another guest's
    uint64_t bootp_replies = 0;
    uint64_t dropped_malformed = 0;  // not a parseable BOOTREQUEST
    uint64_t dropped_ignored = 0;    // relayed, foreign chaddr, unknown type, REQUEST to another server
    uint64_t send_failed = 0;        // the reply could not be built or sent
    uint64_t options_left_out = 0;   // replies sent without options that did not fit
};

class Dhcp4Server {
public:
    explicit Dhcp4Server(Gateway& gw);

    // The payload of a UDP datagram to port 67 (already checked at IP and
    // UDP level). src_mac is the Ethernet source, ingress_mtu the L3 MTU of
    // the guest's attachment (announced as option 26).
    void handle(wire::Bytes dhcp, const wire::MacAddr& src_mac, uint32_t port,
                uint32_t ingress_mtu);
    void port_gone(uint32_t port) { leases_.port_gone(port); }

    Dhcp4Leases& leases() { return leases_; }
    const Dhcp4Leases& leases() const { return leases_; }
    const Dhcp4Stats& stats() const { return stats_; }

private:
    enum class Reply : uint8_t { offer, ack, nak, inform_ack, bootp };
    // The network boot options (--bootfile) for this client, if any.
    // The boot file's fields and options (66, 67), the options only if all
    // fit; left_out names them otherwise.
    // The name the lease at ip (mac's) is answered by in DNS: a static
    // lease's for its MAC, else the one the client sent (sent, option 12)
    // unless a static lease or another live lease has it (then "", which
    // clears it); nullopt leaves the lease's name as it is.
    std::optional<std::string_view> lease_name(const wire::MacAddr& mac, wire::Ipv4 ip,
                                               std::optional<std::string_view> sent,
                                               core::Millis now);
    void add_boot(wire::Dhcp4Builder& b, const wire::Dhcp4View& req,
                  std::vector<const char*>& left_out);
    void reply(const wire::Dhcp4View& req, Reply kind, wire::Ipv4 yiaddr, uint32_t mtu,
               uint32_t port = UINT32_MAX);

    Gateway& gw_;
    Dhcp4Leases leases_;
    Dhcp4Stats stats_;
    core::Millis last_exhausted_log_ = 0;  // "no free address", said once a minute
};

}  // namespace usernet::gw
