// Address value types: MacAddr and the family-agnostic IpAddr.
//
// IpAddr always holds 16 bytes; an IPv4 address is stored IPv4-mapped
// (::ffff:a.b.c.d) as passt does, so flow tables, forwards and the NAT are
// written once for both families.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "wire/bytes.hpp"

namespace usernet::wire {

struct MacAddr {
    std::array<uint8_t, 6> b{};

    static MacAddr from(const uint8_t* p) {
        MacAddr m;
        std::memcpy(m.b.data(), p, 6);
        return m;
    }
    void store(uint8_t* p) const { std::memcpy(p, b.data(), 6); }
    bool is_multicast() const { return (b[0] & 1) != 0; }  // includes broadcast
    bool is_broadcast() const {
        return b == std::array<uint8_t, 6>{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    }
    bool is_zero() const { return b == std::array<uint8_t, 6>{}; }
    static MacAddr broadcast() { return MacAddr{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }

    std::string to_string() const;
    static std::optional<MacAddr> parse(std::string_view s);

    friend bool operator==(const MacAddr&, const MacAddr&) = default;
};

// A 32-bit IPv4 address in host byte order, for the places that are v4-only
// (DHCPv4, ARP, the IPv4 header builder).
using Ipv4 = uint32_t;

struct IpAddr {
    std::array<uint8_t, 16> b{};

    static IpAddr v4(Ipv4 a) {
        IpAddr r;
        r.b[10] = 0xff;
        r.b[11] = 0xff;
        store32(&r.b[12], a);
        return r;
    }
    static IpAddr v4_from(const uint8_t* p) { return v4(load32(p)); }
    static IpAddr v6_from(const uint8_t* p) {
        IpAddr r;
        std::memcpy(r.b.data(), p, 16);
        return r;
    }
    bool is_v4() const {
        static constexpr std::array<uint8_t, 12> prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return std::memcmp(b.data(), prefix.data(), 12) == 0;
    }
    Ipv4 as_v4() const { return load32(&b[12]); }
    bool is_unspecified() const { return is_v4() ? as_v4() == 0 : b == std::array<uint8_t, 16>{}; }
    bool is_loopback() const;

    std::string to_string() const;
    // Accepts dotted quad or RFC 4291 text (with or without brackets).
    static std::optional<IpAddr> parse(std::string_view s);

    friend bool operator==(const IpAddr&, const IpAddr&) = default;
    friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
};

std::string ipv4_to_string(Ipv4 a);
std::optional<Ipv4> ipv4_parse(std::string_view s);

struct MacAddrHash {
    size_t operator()(const MacAddr& m) const noexcept {
        uint64_t v = 0;
        for (uint8_t c : m.b) v = (v << 8) | c;
        return std::hash<uint64_t>{}(v * 0x9e3779b97f4a7c15ULL);
    }
};

struct IpAddrHash {
    size_t operator()(const IpAddr& a) const noexcept {
        uint64_t x, y;
        std::memcpy(&x, a.b.data(), 8);
        std::memcpy(&y, a.b.data() + 8, 8);
        return std::hash<uint64_t>{}(x * 0x9e3779b97f4a7c15ULL ^ y);
    }
};

}  // namespace usernet::wire
