// ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861) messages.
//
// Icmp6View::parse() checks the 4-byte header and, for the message types
// usernet reads, their fixed part (echo 8 bytes, router solicitation 8,
// neighbor solicitation and advertisement 24). The checksum covers the IPv6
// pseudo-header and is verified separately. NdpOptions walks the options
// after a message's fixed part (RFC 4861 4.6): an option of length 0, or
// one that runs past the message, makes the message malformed (RFC 4861
// 6.1 and 7.1.1 say to drop it).
#pragma once

#include <optional>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace usernet::wire {

namespace icmp6type {
inline constexpr uint8_t dest_unreach = 1;
inline constexpr uint8_t packet_too_big = 2;
inline constexpr uint8_t time_exceeded = 3;
inline constexpr uint8_t param_problem = 4;
inline constexpr uint8_t echo_request = 128;
inline constexpr uint8_t echo_reply = 129;
inline constexpr uint8_t mld_query = 130;
inline constexpr uint8_t router_solicit = 133;
inline constexpr uint8_t router_advert = 134;
inline constexpr uint8_t neighbor_solicit = 135;
inline constexpr uint8_t neighbor_advert = 136;
inline constexpr uint8_t redirect = 137;
inline constexpr uint8_t mld2_report = 143;
}  // namespace icmp6type

namespace icmp6code {
inline constexpr uint8_t no_route = 0;
inline constexpr uint8_t admin_prohibited = 1;
inline constexpr uint8_t addr_unreach = 3;
inline constexpr uint8_t port_unreach = 4;
inline constexpr uint8_t reject_route = 6;
}  // namespace icmp6code

namespace ndopt {
inline constexpr uint8_t source_lla = 1;
inline constexpr uint8_t target_lla = 2;
inline constexpr uint8_t prefix_info = 3;
inline constexpr uint8_t mtu = 5;
inline constexpr uint8_t rdnss = 25;  // RFC 8106
inline constexpr uint8_t dnssl = 31;  // RFC 8106
}  // namespace ndopt

inline constexpr size_t kIcmp6HeaderLen = 4;
inline constexpr size_t kNdFixedLen = 24;  // NS and NA: header, flags, target

// Error messages are types 0-127 (RFC 4443 2.1).
inline bool is_icmp6_error(uint8_t type) { return type < 128; }

class Icmp6View {
public:
    static std::optional<Icmp6View> parse(Bytes msg) {
        if (msg.size() < kIcmp6HeaderLen) return std::nullopt;
        size_t fixed = kIcmp6HeaderLen;
        switch (msg[0]) {
        case icmp6type::echo_request:
        case icmp6type::echo_reply:
        case icmp6type::router_solicit:
            fixed = 8;
            break;
        case icmp6type::router_advert:
            fixed = 16;
            break;
        case icmp6type::neighbor_solicit:
        case icmp6type::neighbor_advert:
            fixed = kNdFixedLen;
            break;
        default:
            break;
        }
        if (msg.size() < fixed) return std::nullopt;
        Icmp6View v;
        v.msg_ = msg;
        v.fixed_ = fixed;
        return v;
    }
    uint8_t type() const { return msg_[0]; }
    uint8_t code() const { return msg_[1]; }
    uint16_t checksum() const { return load16(&msg_[2]); }
    // Echo identifier and sequence; the first word after the header.
    uint16_t echo_id() const { return load16(&msg_[4]); }
    uint16_t echo_seq() const { return load16(&msg_[6]); }
    // The target of a neighbor solicitation or advertisement.
    IpAddr nd_target() const { return IpAddr::v6_from(&msg_[8]); }
    // Neighbor advertisement flags (RFC 4861 4.4).
    bool na_router() const { return (msg_[4] & 0x80) != 0; }
    bool na_solicited() const { return (msg_[4] & 0x40) != 0; }
    bool na_override() const { return (msg_[4] & 0x20) != 0; }
    Bytes message() const { return msg_; }
    // What follows the fixed part: echo data, or NDP options.
    Bytes body() const { return msg_.subspan(fixed_); }
    bool checksum_ok(const IpAddr& src, const IpAddr& dst) const {
        return csum_fold(csum_partial(msg_, csum_pseudo(src, dst, 58, static_cast<uint32_t>(
                                                                           msg_.size())))) == 0;
    }

private:
    Icmp6View() = default;
    Bytes msg_;
    size_t fixed_ = kIcmp6HeaderLen;
};

// The options of a neighbor discovery message.
class NdpOptions {
public:
    struct Option {
        uint8_t type;
        Bytes data;  // the whole option, type and length bytes included
    };
    // nullopt: an option of length 0 or past the end.
    static std::optional<NdpOptions> parse(Bytes opts) {
        for (size_t i = 0; i < opts.size();) {
            if (opts.size() - i < 2 || opts[i + 1] == 0) return std::nullopt;
            size_t len = size_t{opts[i + 1]} * 8;
            if (len > opts.size() - i) return std::nullopt;
            i += len;
        }
        NdpOptions o;
        o.opts_ = opts;
        return o;
    }
    // The first option of a type, if any.
    std::optional<Option> find(uint8_t type) const {
        for (size_t i = 0; i < opts_.size();) {
            size_t len = size_t{opts_[i + 1]} * 8;
            if (opts_[i] == type) return Option{type, opts_.subspan(i, len)};
            i += len;
        }
        return std::nullopt;
    }
    // The link-layer address in a source or target link-layer option
    // (RFC 4861 4.6.1; 8 bytes on Ethernet).
    std::optional<MacAddr> lla(uint8_t type) const {
        auto o = find(type);
        if (!o || o->data.size() != 8) return std::nullopt;
        return MacAddr::from(o->data.data() + 2);
    }

private:
    NdpOptions() = default;
    Bytes opts_;
};

// Fills the ICMPv6 checksum of msg_len bytes at p (type, code and body in
// place; the checksum field is overwritten).
inline void finish_icmp6(uint8_t* p, size_t msg_len, const IpAddr& src, const IpAddr& dst) {
    store16(p + 2, 0);
    uint32_t ph = csum_pseudo(src, dst, 58, static_cast<uint32_t>(msg_len));
    store16(p + 2, csum_fold(csum_partial(Bytes(p, msg_len), ph)));
}

}  // namespace usernet::wire
