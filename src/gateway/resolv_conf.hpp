// The host's resolvers, from resolv.conf (resolv.conf(5)).
//
// Only `nameserver` lines matter here: IPv4 or IPv6 addresses (a
// link-local one's zone, %eth0 or %3, kept as its interface index),
// comment lines (# or ;) and trailing text ignored. glibc uses the first three; usernet keeps every one, in order,
// without duplicates, since the forwarder fails over through all of them.
// A loopback resolver (systemd-resolved's 127.0.0.53) is kept: usernet's
// sockets live on the host side and reach it. 0.0.0.0 and :: mean "this
// host" (as glibc reads them) and become 127.0.0.1 and ::1.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gateway/net_config.hpp"

namespace usernet::gw {

// The interface index of an IPv6 zone: a number, or an interface name
// (0 if there is none of that name).
uint32_t scope_of(std::string_view zone);

// The nameservers in resolv.conf text, port 53.
std::vector<HostPort> parse_resolv_conf(std::string_view text);

// The nameservers of the file at path; empty when it cannot be read or
// names none (the caller decides what to say about that).
std::vector<HostPort> load_system_resolvers(const std::string& path = "/etc/resolv.conf");

}  // namespace usernet::gw
