// A loopback port where nothing listens, for tests that expect a refusal.
//
// A port taken from the kernel (bind to port 0) and closed again is not
// enough: it comes from the ephemeral range, and with tests running in
// parallel the kernel soon hands the same port to another test's socket
// (a DNS forwarder's upstream socket, a NAT flow), which then swallows the
// datagram that should have drawn ICMP port unreachable. A port below that
// range is never picked by the kernel, and no test binds one by number.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <random>

namespace usernet::testing {

inline uint16_t closed_port(int type) {
    unsigned low = 32768, high = 60999;
    if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        if (std::fscanf(f, "%u %u", &low, &high) != 2) low = 32768;
        std::fclose(f);
    }
    const unsigned first = 10000;
    if (low <= first + 100) low = first + 100;  // an odd range: still below 65536
    std::random_device rd;
    std::uniform_int_distribution<unsigned> pick(first, low - 1);
    for (int attempt = 0; attempt < 256; attempt++) {
        const auto port = static_cast<uint16_t>(pick(rd));
        int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        if (fd < 0) break;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        const bool free = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        close(fd);
        if (free) return port;
    }
    return 0;
}

}  // namespace usernet::testing
