// The DHCPv6 server of the virtual network (RFC 8415), stateful and
// stateless: addresses (IA_NA) when a client asks for them, and the DNS
// server (option 23, RFC 3646) and search list (24) to every client.
//
// Guests find the DNS server in the router advertisements (RDNSS) already;
// the advertisements set the O flag so that clients that want their other
// configuration by DHCPv6 (NetworkManager, systemd-networkd, dhclient -S)
// send an Information-Request. Addresses come by SLAAC (the A flag), and by
// DHCPv6 to a client that asks (dhclient -6, udhcpc6, Windows): the M flag
// stays clear, as with QEMU.
//
// Messages: Solicit (Advertise, or Reply with Rapid Commit when the client
// asks for it, RFC 8415 18.3.1), Request, Renew, Rebind, Confirm, Release,
// Decline, Information-Request. Messages that must carry our Server
// Identifier (Request, Renew, Release, Decline) and do not, or carry
// another's, are dropped, and so are those that must not carry one
// (Solicit, Rebind, Confirm) and do (16.2-16.11). Relay messages, IA_TA
// and IA_PD (prefix delegation) are not served: an IA_TA or IA_PD gets no
// binding, and the reply says NoAddrsAvail / NoPrefixAvail in it.
//
// Addresses. A client's address is keyed by its DUID and IAID. Its first
// IA_NA gets the IPv6 address that goes with the IPv4 address its MAC holds
// (NetConfig::v6_of: fec0::f for 10.0.2.15), so a dual-stack guest's two
// addresses match; other IAs, and guests without IPv4, get one from
// PREFIX::1:0:1 upward. An address another MAC uses (the source guard's
// binding) or another client holds is never given. Lifetimes are the
// DHCPv4 lease time's (NetConfig::lease_seconds), T1 and T2 half and 80%
// of it.
//
// A hostile guest must not drain the table: one attachment holds at most
// NetConfig::dhcp_leases_per_port bindings (its oldest goes first when it
// needs another), the table at most kMaxLeases (an expired binding makes
// room, else NoAddrsAvail), and the gateway rate-limits DHCP messages per
// attachment (Gateway::kDhcpBurst) for both versions together. Release and
// Decline count only from the attachment that holds the binding; an IA
// they name that has none gets NoBinding (18.3.7, 18.3.8). A declined
// address is in use by another host: it is given to nobody for
// kDeclineHoldMs.
#pragma once

#include <cstdint>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/net_config.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/dhcp6.hpp"

namespace usernet::gw {

class Gateway;

struct Dhcp6Stats {
    uint64_t received = 0;
    uint64_t advertises = 0;
    uint64_t replies = 0;
    uint64_t addresses_bound = 0;  // IA_NA bindings made or extended
    uint64_t no_addrs = 0;         // an IA_NA that got NoAddrsAvail
    uint64_t dropped_malformed = 0;
    uint64_t dropped_not_for_us = 0;  // another server's Server Identifier, or none where needed
};

class Dhcp6Server {
public:
    struct Lease {
        std::vector<uint8_t> duid;
        uint32_t iaid = 0;
        wire::IpAddr addr;
        core::Millis until = 0;  // loop time; 0: released
        wire::MacAddr mac;
        sw::PortId port = sw::kNoPort;
        // Declined (RFC 8415 18.3.8): another host uses addr. Nobody's
        // binding; it keeps addr from being given until `until`.
        bool declined = false;
        // Taken by a Request, Renew, Rebind or a rapid-commit Solicit; an
        // Advertise alone holds the address only kOfferHoldMs.
        bool committed = false;
    };
    static constexpr size_t kMaxLeases = 4096;
    // How long a declined address rests (as Dhcp4Leases::kDeclineHoldMs).
    static constexpr core::Millis kDeclineHoldMs = 600'000;
    // How long an advertised address waits for the client's Request (as
    // Dhcp4Leases' offers): a Solicit alone does not take a binding for the
    // whole lease time.
    static constexpr core::Millis kOfferHoldMs = 60'000;
    // IA_NAs one message may ask for.
    static constexpr size_t kMaxIasPerMessage = 4;

    Dhcp6Server(Gateway& gw, const NetConfig& cfg);

    // A message to UDP port 547 from src:sport (the client's link-local
    // address), sent by mac behind port.
    void handle(wire::Bytes msg, const wire::IpAddr& src, uint16_t sport,
                const wire::MacAddr& mac, sw::PortId port);

    // An attachment left: its bindings stay (a guest that comes back with
    // the same MAC, on whatever attachment, gets its address again) but
    // belong to no attachment until then.
    void port_gone(sw::PortId port);

    const Dhcp6Stats& stats() const { return stats_; }
    const std::vector<Lease>& leases() const { return leases_; }
    // Our DUID (DUID-LL of the gateway's MAC, RFC 8415 11.4).
    wire::Bytes duid() const { return wire::Bytes(duid_.data(), duid_.size()); }

private:
    enum class Ia { offer, bind, renew, release, decline };
    void answer(const wire::Dhcp6View& req, const wire::IpAddr& to, uint16_t port,
                const wire::MacAddr& mac, sw::PortId from);
    // Adds the reply's IA_NA for one of the request's, binding per `what`.
    void ia_na(wire::Dhcp6Builder& b, const wire::Dhcp6IaNa& ia, wire::Bytes duid,
               const wire::MacAddr& mac, sw::PortId port, Ia what);
    Lease* find(wire::Bytes duid, uint32_t iaid);
    Lease* bind(wire::Bytes duid, uint32_t iaid, const wire::MacAddr& mac, sw::PortId port);
    bool usable(const wire::IpAddr& a, const Lease* self, const wire::MacAddr& mac) const;
    bool make_room(sw::PortId port);

    Gateway& gw_;
    const NetConfig& cfg_;
    std::vector<uint8_t> duid_;
    std::vector<Lease> leases_;
    Dhcp6Stats stats_;
};

}  // namespace usernet::gw
