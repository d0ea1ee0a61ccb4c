// The virtual network's addresses and the gateway's limits: plain data,
// filled by the application from the command line (QEMU's defaults).
#pragma once

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/sockaddr.hpp"
#include "wire/addr.hpp"
#include "wire/dns.hpp"

namespace usernet::gw {

struct HostPort {
    wire::IpAddr addr;
    uint16_t port = 53;
    // The interface of a link-local IPv6 address (fe80::1%eth0); 0: none.
    uint32_t scope = 0;
    bool operator==(const HostPort&) const = default;
};

struct NetConfig {
    // IPv4 network 10.0.2.0/24 with QEMU's well-known addresses.
    wire::Ipv4 net = 0x0a000200;
    uint8_t prefix_len = 24;
    wire::Ipv4 gateway = 0x0a000202;
    wire::Ipv4 dns = 0x0a000203;
    wire::Ipv4 dhcp_start = 0x0a00020f;
    uint32_t dhcp_count = 16;  // addresses handed out from dhcp_start on
    uint32_t lease_seconds = 86400;
    uint32_t dhcp_leases_per_port = 4;  // live offers and leases one attachment may hold
    // How long a MAC without a lease keeps its claim on an address after
    // its last frame from it (the IP source guard, gateway.hpp).
    uint64_t claim_hold_ms = 60'000;
    std::string domain;        // DHCP option 15, empty: none
    std::string tftp_root;     // --tftp: the directory served at the gateway, empty: none
    // --bootfile: what network-booting clients load (DHCP option 67, the
    // BOOTP file field, DHCPv6 boot-file-url): a name on our TFTP server,
    // or a URL (scheme://...) for clients that fetch URLs. Empty: none.
    std::string bootfile;
    bool bootfile_is_url() const { return bootfile.find("://") != std::string::npos; }
    // --tftp-server-name: DHCP option 66 with the boot file (QEMU's
    // tftp-server-name=), for a boot file on another server. Empty: the
    // gateway's address.
    std::string tftp_server_name;
    // Names the DNS address answers itself, before asking upstream: the
    // host's (the gateway addresses, while they reach the host's
    // loopback), --dns-host NAME=ADDR entries, and every guest's DHCP host
    // name, bare and under `domain`. Lower case, no trailing dot.
    std::string host_alias = "host.usernet.internal";
    std::vector<std::pair<std::string, wire::IpAddr>> dns_hosts;
    // DHCP: the host name given to guests (option 12; a static lease's
    // name wins), the DNS search list (option 119, DHCPv6 24, RA DNSSL;
    // empty: the domain alone), static leases (--dhcp-host), and classless
    // static routes (option 121; the default route via the gateway is
    // added to them, as RFC 3442 clients then ignore option 3).
    std::string hostname;
    std::vector<std::string> dns_search;
    struct StaticLease {
        wire::MacAddr mac;
        wire::Ipv4 ip = 0;
        std::string name;  // a DNS label, lower case; empty: none
    };
    std::vector<StaticLease> dhcp_hosts;
    struct Route {
        wire::Ipv4 net = 0;
        uint8_t prefix_len = 0;
        wire::Ipv4 via = 0;
    };
    std::vector<Route> dhcp_routes;

    // What guests may reach through the NAT (Nat::host_target): with
    // `restrict`, nothing (the gateway's own services, DNS at the DNS
    // address included, and port forwards still work); with no_tcp/no_udp/
    // no_icmp, no new outbound flows of that protocol; then the rules: a
    // destination a deny rule matches is refused; when there are allow
    // rules, one of them must match (an allow list); else it is allowed.
    // Matched against the destination the guest used.
    bool restrict = false;
    bool no_tcp = false, no_udp = false, no_icmp = false;
    struct PolicyRule {
        bool allow = false;
        wire::IpAddr net;          // IPv4 or IPv6, host bits clear
        uint8_t prefix_len = 0;    // of that family
        bool any_port = true;      // else TCP and UDP to ports lo..hi only
        uint16_t port_lo = 0, port_hi = 65535;
    };
    std::vector<PolicyRule> policy;
    // Whether a new flow to dst (port for TCP and UDP) may go out.
    bool policy_allows(const wire::IpAddr& dst, uint16_t port, uint8_t proto) const;
    // The search list as DHCP and RA options carry it: names in DNS wire
    // form, one after another (at most 255 bytes; the options parser
    // checks).
    std::vector<uint8_t> search_wire() const;
    // The same list for DHCPv4 option 119, compressed (RFC 3397: pointers
    // into the option's own data), so that names with a common suffix fit
    // its 255 bytes; as many names as fit. *all: whether every one did.
    std::vector<uint8_t> search_wire4(bool* all = nullptr) const;
    // Addresses of the LAN that exist only as usernet's services: guest
    // forwards (--guestfwd) and the SMB server (--smb, 10.0.2.4). The
    // gateway answers ARP and neighbor solicitations for them as for its
    // own, DHCP never hands them out, and what guests send there goes to
    // the NAT (Nat::host_target), which knows their ports.
    std::vector<wire::IpAddr> service_addrs;
    bool is_service_addr(const wire::IpAddr& a) const {
        return std::find(service_addrs.begin(), service_addrs.end(), a) != service_addrs.end();
    }
    // The gateway's own MAC (QEMU's slirp uses 52:55:0a:00:02:02).
    wire::MacAddr gw_mac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
    // Port forwards: whether a client off the host keeps its own address in
    // the guest's eyes (--forward-source client, the default), or every
    // client appears as the gateway (--forward-source gateway, as QEMU's
    // own clients on the host's loopback do), each with a source port of
    // its own (forward.hpp).
    bool forward_keep_client = true;
    // The address the gateway maps to the host's loopback (--no-map-gw clears).
    bool map_gateway_to_loopback = true;
    // Whether guests may reach 169.254.0.0/16 on the host's side (cloud
    // metadata services live there): off unless --allow-link-local.
    bool allow_link_local = false;
    // Upstream resolvers for the DNS address, in order of preference.
    std::vector<HostPort> dns_upstreams;
    // Whether the DNS address answers DNS (the libslirp drop-in's
    // disable_dns clears it): when off, what guests send to its port 53 is
    // refused like any other port there. DHCP and RA still name it, as
    // libslirp's do.
    bool dns_service = true;
    // Whether the DHCPv4 server answers (--no-dhcp clears, as pasta's
    // --no-dhcp; libslirp's disable_dhcp).
    bool dhcp4 = true;
    // --outbound-addr: the host address the NAT's sockets (TCP, UDP, ping,
    // the DNS forwarder's) leave from, per family, as slirp4netns's
    // --outbound-addr and pasta's --outbound; unspecified (::): the
    // kernel's choice.
    wire::IpAddr outbound4, outbound6;
    // Binds a NAT socket of family (AF_INET, AF_INET6) to that family's
    // outbound address, if one is set: true, or false with errno set.
    bool bind_outbound(int fd, int family) const {
        const wire::IpAddr& a = family == AF_INET ? outbound4 : outbound6;
        if (a.is_unspecified()) return true;
        const sockaddr_storage ss = core::to_sockaddr(a, 0);
        return bind(fd, reinterpret_cast<const sockaddr*>(&ss), core::sockaddr_len(ss)) == 0;
    }

    // IPv6 (--no-ipv6 clears): the prefix fec0::/64 that router
    // advertisements give for SLAAC, with QEMU's gateway fec0::2 and DNS
    // fec0::3. The gateway also answers on fe80:: with gateway6's interface
    // identifier (Gateway::link_local(): fe80::2, as in libslirp), which is
    // where its advertisements come from.
    bool ipv6 = true;
    wire::IpAddr prefix6 = *wire::IpAddr::parse("fec0::");
    uint8_t prefix6_len = 64;
    wire::IpAddr gateway6 = *wire::IpAddr::parse("fec0::2");
    wire::IpAddr dns6 = *wire::IpAddr::parse("fec0::3");
    // Router advertisements' lifetimes (RFC 4861 6.2.1's defaults).
    uint32_t ra_router_lifetime_s = 1800;
    uint32_t ra_valid_lifetime_s = 86400;
    uint32_t ra_preferred_lifetime_s = 14400;
    // Unsolicited advertisements, on average (RFC 4861 MaxRtrAdvInterval
    // 600 s, MinRtrAdvInterval a third of it).
    uint32_t ra_interval_s = 200;

    wire::Ipv4 netmask() const {
        return prefix_len == 0 ? 0 : ~wire::Ipv4{0} << (32 - prefix_len);
    }
    bool in_subnet(wire::Ipv4 a) const { return (a & netmask()) == (net & netmask()); }
    wire::Ipv4 broadcast() const { return net | ~netmask(); }
    // Whether a is an address a guest of this network may have: inside it,
    // not its network or broadcast address, not the gateway's or DNS's.
    bool is_guest_addr(const wire::IpAddr& a) const {
        if (a.is_v4()) {
            const wire::Ipv4 v = a.as_v4();
            return in_subnet(v) && v != (net & netmask()) && v != broadcast() && v != gateway &&
                   v != dns;
        }
        return ipv6 && in_prefix6(a) && a != prefix6 && a != gateway6 && a != dns6;
    }

    bool in_prefix6(const wire::IpAddr& a) const {
        if (a.is_v4()) return false;
        size_t full = prefix6_len / 8;
        if (std::memcmp(a.b.data(), prefix6.b.data(), full) != 0) return false;
        size_t rest = prefix6_len % 8;
        if (rest == 0) return true;
        uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
        return (a.b[full] & mask) == (prefix6.b[full] & mask);
    }
    // The IPv6 address that goes with IPv4 address v4 of this network: the
    // prefix with v4's host part (fec0::f for 10.0.2.15). --config-net
    // gives it to a namespace, DHCPv6 to the guest holding v4's lease. When
    // that is one of the gateway's own (10.0.2.2's fec0::2 is the gateway
    // with a --gateway of .1), PREFIX::ffff:0:HOST instead, outside
    // DHCPv6's pool (PREFIX::1:0:k).
    wire::IpAddr v6_of(wire::Ipv4 v4) const {
        wire::IpAddr a = prefix6;
        wire::store32(&a.b[12], v4 & ~netmask());
        if (a == gateway6 || a == dns6 || (!service_addrs.empty() && is_service_addr(a)))
            wire::store16(&a.b[10], 0xffff);
        return a;
    }
};

inline std::vector<uint8_t> NetConfig::search_wire() const {
    std::vector<uint8_t> out;
    std::vector<std::string> names = dns_search;
    if (names.empty() && !domain.empty()) names.push_back(domain);
    for (const std::string& n : names) {
        uint8_t buf[wire::kDnsMaxNameLen];
        const size_t len = wire::dns_encode_name(n, buf, sizeof buf);
        if (len == 0 || out.size() + len > 255) break;
        out.insert(out.end(), buf, buf + len);
    }
    return out;
}

inline std::vector<uint8_t> NetConfig::search_wire4(bool* all) const {
    std::vector<uint8_t> out;
    std::vector<std::string> names = dns_search;
    if (names.empty() && !domain.empty()) names.push_back(domain);
    if (all) *all = true;
    // Each suffix written so far (by its wire form) and where it starts.
    std::vector<std::pair<std::vector<uint8_t>, uint16_t>> seen;
    for (const std::string& n : names) {
        uint8_t buf[wire::kDnsMaxNameLen];
        const size_t len = wire::dns_encode_name(n, buf, sizeof buf);
        if (len == 0) continue;
        std::vector<uint8_t> enc;
        std::vector<std::pair<std::vector<uint8_t>, uint16_t>> fresh;
        size_t at = 0;
        bool pointer = false;
        while (buf[at] != 0) {
            std::vector<uint8_t> suffix(buf + at, buf + len);
            auto hit = std::find_if(seen.begin(), seen.end(),
                                    [&](const auto& e) { return e.first == suffix; });
            if (hit != seen.end()) {
                enc.push_back(static_cast<uint8_t>(0xc0 | (hit->second >> 8)));
                enc.push_back(static_cast<uint8_t>(hit->second));
                pointer = true;
                break;
            }
            fresh.emplace_back(std::move(suffix), static_cast<uint16_t>(out.size() + enc.size()));
            enc.insert(enc.end(), buf + at, buf + at + 1 + buf[at]);
            at += 1 + buf[at];
        }
        if (!pointer) enc.push_back(0);
        if (out.size() + enc.size() > 255) {
            if (all) *all = false;
            break;
        }
        out.insert(out.end(), enc.begin(), enc.end());
        for (auto& f : fresh) seen.push_back(std::move(f));
    }
    return out;
}

inline bool NetConfig::policy_allows(const wire::IpAddr& dst, uint16_t port, uint8_t proto) const {
    if (restrict) return false;
    const bool tcp = proto == 6, udp = proto == 17;
    if ((tcp && no_tcp) || (udp && no_udp) || ((proto == 1 || proto == 58) && no_icmp))
        return false;
    auto matches = [&](const PolicyRule& r) {
        if (r.net.is_v4() != dst.is_v4()) return false;
        if (!r.any_port && (!(tcp || udp) || port < r.port_lo || port > r.port_hi)) return false;
        // The first prefix_len bits (of the 16-byte form; IPv4 is mapped).
        const size_t bits = r.prefix_len + (dst.is_v4() ? 96u : 0u);
        for (size_t i = 0; i < 16; i++) {
            const size_t take = bits > i * 8 ? std::min<size_t>(8, bits - i * 8) : 0;
            const uint8_t mask = static_cast<uint8_t>(0xff00u >> take);
            if (((dst.b[i] ^ r.net.b[i]) & mask) != 0) return false;
        }
        return true;
    };
    bool any_allow = false, allowed = false;
    for (const PolicyRule& r : policy) {
        if (!r.allow && matches(r)) return false;
        any_allow |= r.allow;
        allowed |= r.allow && matches(r);
    }
    return allowed || !any_allow;
}

}  // namespace usernet::gw
