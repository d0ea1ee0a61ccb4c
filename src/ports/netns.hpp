// Entering a network namespace, and creating usernet's TAP inside it.
//
// Theory of operation: a TAP device lives in the network namespace of the
// task that opened /dev/net/tun (the tun file's socket is created there),
// and the rtnetlink socket that configures it must be in that namespace
// too. So usernet, like pasta, briefly moves its thread into the target
// namespace: it opens the target's namespace file, keeps a descriptor to
// its own (/proc/thread-self/ns/net), calls setns(target), opens
// /dev/net/tun, creates the TAP (IFF_TAP | IFF_NO_PI) and configures it by
// netlink, then calls setns(own) to return. The return happens on every
// path, errors included (a scope guard); if it ever fails, usernet aborts
// rather than keep running with its host sockets inside the guest's
// namespace. The TAP's descriptor keeps working after the return: it stays
// bound to the device and its namespace (which it also keeps alive).
//
// A namespace is named as `ip netns` does (NAME -> /run/netns/NAME), by an
// absolute path (anything with a '/'), or by a PID (-> /proc/PID/ns/net).
//
// Not done: joining the target's user namespace. Entering a namespace needs
// CAP_SYS_ADMIN in the user namespace that owns it, creating a TAP there
// CAP_NET_ADMIN; run usernet inside that user namespace (or as root) when
// the target belongs to an unprivileged user namespace.
#pragma once

#include <cstdint>
#include <string>

#include "ports/netlink_config.hpp"

namespace usernet::ports {

// The namespace file for NAME, PATH or PID (see above).
std::string netns_path(const std::string& netns);

// Creates TAP `ifname` (IFF_TAP | IFF_NO_PI; "tap%d" picks a free name) in
// network namespace `netns`, sets its MTU and transmit queue length, brings
// it (and lo) up, and if config is non-null adds its IPv4 address and a
// default route, and its IPv6 ones where the namespace can take them
// (*ipv6_set, if given, says whether it could). Returns the TAP's descriptor (O_NONBLOCK | O_CLOEXEC); the
// device disappears when it is closed. If actual_ifname is non-null it
// receives the name the kernel gave the device. Throws std::runtime_error
// with one clear sentence on failure.
// With `offload` the TAP has a virtio-net header and checksum and TCP
// segmentation offload (tap_open()).
int open_tap_in_netns(const std::string& netns, const std::string& ifname, uint32_t mtu,
                      const TapNetConfig* config, std::string* actual_ifname = nullptr,
                      bool offload = false, bool* ipv6_set = nullptr);

}  // namespace usernet::ports
