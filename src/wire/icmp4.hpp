// ICMPv4 (RFC 792): echo and the error messages usernet sends.
//
// parse() checks the 8-byte header; the checksum is verified separately.
// Error messages quote the offending IPv4 header plus 8 bytes of its payload
// (RFC 792), which is all usernet ever quotes.
#pragma once

#include <optional>

#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace usernet::wire {

inline constexpr size_t kIcmpHeaderLen = 8;

namespace icmptype {
inline constexpr uint8_t echo_reply = 0;
inline constexpr uint8_t dest_unreach = 3;
inline constexpr uint8_t echo_request = 8;
inline constexpr uint8_t time_exceeded = 11;
}  // namespace icmptype

namespace icmpcode {
inline constexpr uint8_t net_unreach = 0;
inline constexpr uint8_t host_unreach = 1;
inline constexpr uint8_t proto_unreach = 2;
inline constexpr uint8_t port_unreach = 3;
inline constexpr uint8_t frag_needed = 4;
inline constexpr uint8_t admin_prohibited = 13;
}  // namespace icmpcode

class Icmp4View {
public:
    static std::optional<Icmp4View> parse(Bytes msg) {
        if (msg.size() < kIcmpHeaderLen) return std::nullopt;
        Icmp4View v;
        v.msg_ = msg;
        return v;
    }
    uint8_t type() const { return msg_[0]; }
    uint8_t code() const { return msg_[1]; }
    uint16_t checksum() const { return load16(&msg_[2]); }
    // Echo identifier and sequence (meaningful for echo messages only).
    uint16_t echo_id() const { return load16(&msg_[4]); }
    uint16_t echo_seq() const { return load16(&msg_[6]); }
    uint32_t rest() const { return load32(&msg_[4]); }
    Bytes message() const { return msg_; }
    Bytes payload() const { return msg_.subspan(kIcmpHeaderLen); }
    bool checksum_ok() const { return csum_fold(csum_partial(msg_)) == 0; }

private:
    Icmp4View() = default;
    Bytes msg_;
};

// Writes an ICMP header whose payload (len bytes total with header) is
// already in place after it, and fills the checksum.
inline size_t build_icmp4(uint8_t* p, uint8_t type, uint8_t code, uint32_t rest, size_t msg_len) {
    p[0] = type;
    p[1] = code;
    store16(p + 2, 0);
    store32(p + 4, rest);
    store16(p + 2, csum_fold(csum_partial(Bytes(p, msg_len))));
    return kIcmpHeaderLen;
}

}  // namespace usernet::wire
