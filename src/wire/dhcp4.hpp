// DHCPv4 messages over BOOTP (RFC 2131, options RFC 2132).
//
// Dhcp4View checks the fixed 236-byte BOOTP header and the magic cookie;
// options are then walked on demand, every code/length pair bounded by the
// area it sits in. A message of at least kDhcp4MinLen bytes without the
// cookie is a plain BOOTP one (RFC 951: its vendor area holds no options)
// and reads as having none. Option overload (52) is honoured: the file and sname
// fields are walked after the options field, in RFC 2131 4.1 order.
// Not supported: RFC 3396 concatenation of split long options when reading
// (find() returns the first instance; the builder does split long ones),
// and any interpretation of sname/file beyond overload.
//
// Dhcp4Builder writes a message into a caller buffer. It never writes past
// the capacity: the first option that does not fit marks the builder
// failed, and finish() then returns 0, so a half-built message is never
// sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::wire {

inline constexpr size_t kDhcp4FixedLen = 236;       // op .. file
inline constexpr size_t kDhcp4OptionsOffset = 240;  // after the magic cookie
inline constexpr size_t kDhcp4MinLen = 300;         // BOOTP minimum (RFC 1542 2.1)
inline constexpr uint32_t kDhcp4MagicCookie = 0x63825363;  // 99.130.83.99
inline constexpr uint16_t kDhcp4ServerPort = 67;
inline constexpr uint16_t kDhcp4ClientPort = 68;
inline constexpr uint16_t kDhcp4FlagBroadcast = 0x8000;

namespace dhcp4op {
inline constexpr uint8_t boot_request = 1;
inline constexpr uint8_t boot_reply = 2;
}  // namespace dhcp4op

// Option 53 values (RFC 2132 9.6).
namespace dhcp4msg {
inline constexpr uint8_t discover = 1;
inline constexpr uint8_t offer = 2;
inline constexpr uint8_t request = 3;
inline constexpr uint8_t decline = 4;
inline constexpr uint8_t ack = 5;
inline constexpr uint8_t nak = 6;
inline constexpr uint8_t release = 7;
inline constexpr uint8_t inform = 8;
}  // namespace dhcp4msg

namespace dhcp4opt {
inline constexpr uint8_t pad = 0;
inline constexpr uint8_t subnet_mask = 1;
inline constexpr uint8_t router = 3;
inline constexpr uint8_t dns_server = 6;
inline constexpr uint8_t hostname = 12;
inline constexpr uint8_t domain_name = 15;
inline constexpr uint8_t mtu = 26;
inline constexpr uint8_t broadcast_addr = 28;
inline constexpr uint8_t requested_ip = 50;
inline constexpr uint8_t lease_time = 51;
inline constexpr uint8_t overload = 52;
inline constexpr uint8_t message_type = 53;
inline constexpr uint8_t server_id = 54;
inline constexpr uint8_t param_request_list = 55;
inline constexpr uint8_t message = 56;
inline constexpr uint8_t max_message_size = 57;
inline constexpr uint8_t renewal_time = 58;    // T1
inline constexpr uint8_t rebinding_time = 59;  // T2
inline constexpr uint8_t vendor_class = 60;
inline constexpr uint8_t client_id = 61;
inline constexpr uint8_t tftp_server_name = 66;
inline constexpr uint8_t bootfile_name = 67;
inline constexpr uint8_t user_class = 77;  // RFC 3004; iPXE sends "iPXE"

inline constexpr uint8_t domain_search = 119;  // RFC 3397
inline constexpr uint8_t classless_route = 121;  // RFC 3442
inline constexpr uint8_t end = 255;
}  // namespace dhcp4opt

struct Dhcp4Option {
    uint8_t code = 0;
    Bytes data;
};

// Walks the option areas of a message: the options field, then (if option
// 52 says so) file and sname. Pad is skipped; END or a truncated option
// ends the current area.
class Dhcp4OptionIter {
public:
    Dhcp4OptionIter() = default;
    // Returns false when there are no more options.
    bool next(Dhcp4Option& out);

private:
    friend class Dhcp4View;
    static constexpr size_t kMaxAreas = 3;
    Bytes areas_[kMaxAreas];
    size_t n_areas_ = 0;
    size_t area_ = 0;
    size_t pos_ = 0;
};

class Dhcp4View {
public:
    static std::optional<Dhcp4View> parse(Bytes msg);

    uint8_t op() const { return msg_[0]; }
    uint8_t htype() const { return msg_[1]; }
    uint8_t hlen() const { return msg_[2]; }
    uint8_t hops() const { return msg_[3]; }
    uint32_t xid() const { return load32(&msg_[4]); }
    uint16_t secs() const { return load16(&msg_[8]); }
    uint16_t flags() const { return load16(&msg_[10]); }
    bool broadcast() const { return (flags() & kDhcp4FlagBroadcast) != 0; }
    Ipv4 ciaddr() const { return load32(&msg_[12]); }
    Ipv4 yiaddr() const { return load32(&msg_[16]); }
    Ipv4 siaddr() const { return load32(&msg_[20]); }
    Ipv4 giaddr() const { return load32(&msg_[24]); }
    // The whole 16-byte chaddr field.
    Bytes chaddr_raw() const { return msg_.subspan(28, 16); }
    // The client's MAC, for Ethernet (htype 1, hlen 6) only.
    std::optional<MacAddr> chaddr() const {
        if (htype() != 1 || hlen() != 6) return std::nullopt;
        return MacAddr::from(&msg_[28]);
    }
    Bytes sname() const { return msg_.subspan(44, 64); }
    Bytes file() const { return msg_.subspan(108, 128); }
    Bytes message() const { return msg_; }
    // The options field proper (after the cookie), without overload areas;
    // empty in a message without the cookie.
    Bytes options_field() const {
        return has_cookie_ ? msg_.subspan(kDhcp4OptionsOffset) : Bytes{};
    }
    bool has_cookie() const { return has_cookie_; }

    Dhcp4OptionIter options() const;
    // The data of the first option with this code (never pad or end).
    std::optional<Bytes> find(uint8_t code) const;

    std::optional<uint8_t> message_type() const;   // 53, length 1
    std::optional<Ipv4> requested_ip() const;      // 50, length 4
    std::optional<Ipv4> server_id() const;         // 54, length 4
    std::optional<uint16_t> max_message_size() const;  // 57, length 2
    std::optional<Bytes> client_id() const;        // 61, length >= 1 (raw)
    std::optional<Bytes> param_request_list() const;  // 55 (raw codes)
    // Option 12 as raw text with trailing NULs removed. Not sanitised:
    // callers decide which characters they accept.
    std::optional<std::string_view> hostname() const;

private:
    Dhcp4View() = default;
    std::optional<Ipv4> find_ipv4(uint8_t code) const;
    Bytes msg_;
    bool has_cookie_ = true;
};

class Dhcp4Builder {
public:
    // Zeroes the fixed header and writes the cookie. A buffer shorter than
    // kDhcp4MinLen leaves the builder failed.
    explicit Dhcp4Builder(MutBytes buf);

    bool ok() const { return ok_; }

    void set_op(uint8_t op);
    void set_xid(uint32_t xid);
    void set_secs(uint16_t secs);
    void set_flags(uint16_t flags);
    void set_hops(uint8_t hops);
    void set_ciaddr(Ipv4 a);
    void set_yiaddr(Ipv4 a);
    void set_siaddr(Ipv4 a);
    void set_giaddr(Ipv4 a);
    // Sets htype 1, hlen 6 and the MAC.
    void set_chaddr(const MacAddr& mac);
    // The BOOTP file field (a boot file name): false, leaving it empty,
    // when name does not fit its 128 bytes with a NUL.
    bool set_file(std::string_view name);
    // A reply's copy of the request: op BOOTREPLY, htype/hlen/chaddr (all
    // 16 bytes), xid, flags and giaddr, as RFC 2131 table 3 asks.
    void reply_to(const Dhcp4View& request);

    // Appends an option. Data longer than 255 bytes is split into several
    // instances of the option (RFC 3396). Returns false (and fails the
    // builder) if it does not fit with room left for END.
    bool add_option(uint8_t code, Bytes data);
    bool add_u8(uint8_t code, uint8_t v);
    bool add_u16(uint8_t code, uint16_t v);
    bool add_u32(uint8_t code, uint32_t v);
    bool add_ipv4(uint8_t code, Ipv4 a);
    bool add_ipv4_list(uint8_t code, std::span<const Ipv4> list);
    bool add_string(uint8_t code, std::string_view s);

    // The bytes an option of `data_len` bytes takes (RFC 3396 chunks of 255
    // included), and the bytes options can still take (END's kept aside).
    static size_t option_size(size_t data_len);
    size_t room() const;

    // Writes END and zero padding up to kDhcp4MinLen; returns the message
    // length, or 0 if the builder failed. No option can be added after it.
    size_t finish();

private:
    MutBytes buf_;
    size_t len_ = 0;
    bool ok_ = false;
    bool done_ = false;
};

}  // namespace usernet::wire
