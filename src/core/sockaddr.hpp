// Socket addresses: the one place that fills and reads sockaddr_in and
// sockaddr_in6 for an IP address and port.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "wire/addr.hpp"

namespace usernet::core {

// An AF_INET or AF_INET6 address (by a's family) with port, and for IPv6
// the interface index scope (a link-local address's; 0: none).
inline sockaddr_storage to_sockaddr(const wire::IpAddr& a, uint16_t port, uint32_t scope = 0) {
    sockaddr_storage ss{};
    if (a.is_v4()) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        std::memcpy(&s4->sin_addr, &a.b[12], 4);
    } else {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        s6->sin6_scope_id = scope;
        std::memcpy(&s6->sin6_addr, a.b.data(), 16);
    }
    return ss;
}

// The length to pass with ss to bind(), connect() or sendto(): AF_INET,
// AF_INET6, or AF_UNIX (a path; sun_path is NUL-terminated).
inline socklen_t sockaddr_len(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
        return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                      strnlen(un->sun_path, sizeof un->sun_path) + 1);
    }
    return ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

// The address and port of a sockaddr_in / sockaddr_in6 (v4-mapped IPv6
// addresses come back as IPv4).
inline std::pair<wire::IpAddr, uint16_t> from_sockaddr(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) {
        const auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
        return {wire::IpAddr::v4_from(reinterpret_cast<const uint8_t*>(&s4->sin_addr)),
                ntohs(s4->sin_port)};
    }
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    return {wire::IpAddr::v6_from(reinterpret_cast<const uint8_t*>(&s6->sin6_addr)),
            ntohs(s6->sin6_port)};
}

}  // namespace usernet::core
