#include "wire/addr.hpp"

#include <arpa/inet.h>

#include <cstdio>

namespace usernet::wire {

std::string MacAddr::to_string() const {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                  b[5]);
    return buf;
}

std::optional<MacAddr> MacAddr::parse(std::string_view s) {
    if (s.size() != 17) return std::nullopt;
    MacAddr m;
    for (size_t i = 0; i < 6; i++) {
        if (i > 0 && s[i * 3 - 1] != ':' && s[i * 3 - 1] != '-') return std::nullopt;
        unsigned v = 0;
        for (size_t k = 0; k < 2; k++) {
            char c = s[i * 3 + k];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
            else return std::nullopt;
        }
        m.b[i] = static_cast<uint8_t>(v);
    }
    return m;
}

bool IpAddr::is_loopback() const {
    if (is_v4()) return (as_v4() >> 24) == 127;
    static constexpr std::array<uint8_t, 16> lo{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return b == lo;
}

std::string ipv4_to_string(Ipv4 a) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff,
                  a & 0xff);
    return buf;
}

std::optional<Ipv4> ipv4_parse(std::string_view s) {
    if (s.empty() || s.size() > 15) return std::nullopt;
    std::string str(s);
    in_addr a{};
    if (inet_pton(AF_INET, str.c_str(), &a) != 1) return std::nullopt;
    return ntohl(a.s_addr);
}

std::string IpAddr::to_string() const {
    if (is_v4()) return ipv4_to_string(as_v4());
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
    return buf;
}

std::optional<IpAddr> IpAddr::parse(std::string_view s) {
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    if (auto v4a = ipv4_parse(s)) return v4(*v4a);
    if (s.empty() || s.size() >= INET6_ADDRSTRLEN) return std::nullopt;
    std::string str(s);
    IpAddr r;
    if (inet_pton(AF_INET6, str.c_str(), r.b.data()) != 1) return std::nullopt;
    return r;
}

}  // namespace usernet::wire
