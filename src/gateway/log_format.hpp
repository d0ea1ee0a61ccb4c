// Formatting of addresses in log messages, done only when a message is
// actually logged: spdlog::debug("... {}", V4{ip}) costs nothing (and
// allocates nothing) when debug logging is off, unlike ipv4_to_string();
// a wire::IpAddr argument likewise.
#pragma once

#include <spdlog/spdlog.h>

#include "wire/addr.hpp"

namespace usernet::gw {

// An IPv4 address (host byte order) for a log message.
struct V4 {
    wire::Ipv4 a;
};

}  // namespace usernet::gw

template <>
struct fmt::formatter<usernet::gw::V4> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const usernet::gw::V4& v, Ctx& ctx) const {
        return fmt::format_to(ctx.out(), "{}.{}.{}.{}", v.a >> 24, (v.a >> 16) & 0xff,
                              (v.a >> 8) & 0xff, v.a & 0xff);
    }
};

// An IPv4 or IPv6 address, formatted only when the message is logged.
template <>
struct fmt::formatter<usernet::wire::IpAddr> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const usernet::wire::IpAddr& a, Ctx& ctx) const {
        return fmt::format_to(ctx.out(), "{}", a.to_string());
    }
};

template <>
struct fmt::formatter<usernet::wire::MacAddr> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const usernet::wire::MacAddr& m, Ctx& ctx) const {
        return fmt::format_to(ctx.out(), "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m.b[0],
                              m.b[1], m.b[2], m.b[3], m.b[4], m.b[5]);
    }
};
