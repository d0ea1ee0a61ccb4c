// Configuring a link through rtnetlink (libmnl), in the current network
// namespace.
//
// Theory of operation: usernet creates its TAP inside the guest's network
// namespace and, when asked (--config-net), gives it what the DHCP server
// would have handed out: an IPv4 address, a default route via the gateway,
// and the MTU. This is done with three rtnetlink requests, each acknowledged
// by the kernel (RTM_NEWLINK for MTU, queue length and IFF_UP; RTM_NEWADDR;
// RTM_NEWROUTE), the same messages `ip link set`, `ip addr add` and
// `ip route add default` send. The loopback device is brought up as well,
// as pasta does: a fresh namespace starts with `lo` down, and programs in it
// expect 127.0.0.1 to work.
//
// Every function here acts on the namespace the calling thread is in; the
// caller (netns.cpp) enters the target namespace first. All of this runs at
// start-up, so errors are exceptions (std::runtime_error, one sentence).
//
// With IPv6, an address in the prefix (without duplicate address detection,
// so that it works at once) and a default route via the IPv6 gateway; the
// kernel's own SLAAC adds its address and route from the gateway's router
// advertisements next to them.
//
// Not done here: anything on the host side.
#pragma once

#include <cstdint>
#include <string>

#include "wire/addr.hpp"

namespace usernet::ports {

// What --config-net puts on the TAP in the guest namespace.
struct TapNetConfig {
    wire::Ipv4 addr = 0x0a00020f;     // 10.0.2.15
    uint8_t prefix_len = 24;
    wire::Ipv4 gateway = 0x0a000202;  // 10.0.2.2; 0: no default route
    uint32_t mtu = 0;                 // 0: the MTU given to open_tap_in_netns()
    wire::IpAddr addr6{};             // unspecified: no IPv6 address
    uint8_t prefix6_len = 64;
    wire::IpAddr gateway6{};          // unspecified: no IPv6 default route
};

// The TAP's transmit queue (frames the namespace sends toward usernet):
// deeper than the tun driver's 500 so a burst from the namespace does not
// overflow while usernet is busy elsewhere in the batch.
inline constexpr uint32_t kTapTxQueueLen = 5000;

// Sets MTU (0: leave), txqueuelen (0: leave) and brings `ifname` up, in the
// current namespace. Throws std::runtime_error.
void netlink_link_up(const std::string& ifname, uint32_t mtu, uint32_t txqueuelen);

// Adds addr/prefix_len to `ifname` and, if cfg.gateway != 0, a default route
// via cfg.gateway. An address or route that already exists is not an error
// (a warning for the route). Throws std::runtime_error.
void netlink_configure_ipv4(const std::string& ifname, const TapNetConfig& cfg);

// Adds cfg.addr6/prefix6_len (no DAD) to `ifname` and, if cfg.gateway6 is
// set, a default route via it; nothing when addr6 is unspecified. The same
// rules as netlink_configure_ipv4.
void netlink_configure_ipv6(const std::string& ifname, const TapNetConfig& cfg);

// The interface the current namespace's routes send dst out of (RTM_GETROUTE,
// as `ip route get`); 0 when there is no route or netlink fails.
unsigned netlink_route_oif_v4(wire::Ipv4 dst);

}  // namespace usernet::ports
