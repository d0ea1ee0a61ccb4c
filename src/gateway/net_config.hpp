// The virtual network's addresses and the gateway's limits: plain data,
// filled by the application from the command line (QEMU's defaults).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wire/addr.hpp"

namespace usernet::gw {

struct HostPort {
    wire::IpAddr addr;
    uint16_t port = 53;
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
    // The gateway's own MAC (QEMU's slirp uses 52:55:0a:00:02:02).
    wire::MacAddr gw_mac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
    // The address the gateway maps to the host's loopback (--no-map-gw clears).
    bool map_gateway_to_loopback = true;
    // Whether guests may reach 169.254.0.0/16 on the host's side (cloud
    // metadata services live there): off unless --allow-link-local.
    bool allow_link_local = false;
    // Upstream resolvers for the DNS address, in order of preference.
    std::vector<HostPort> dns_upstreams;

    wire::Ipv4 netmask() const {
        return prefix_len == 0 ? 0 : ~wire::Ipv4{0} << (32 - prefix_len);
    }
    bool in_subnet(wire::Ipv4 a) const { return (a & netmask()) == (net & netmask()); }
    wire::Ipv4 broadcast() const { return net | ~netmask(); }
};

}  // namespace usernet::gw
