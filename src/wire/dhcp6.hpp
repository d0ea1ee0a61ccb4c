// DHCPv6 messages (RFC 8415): bounded views and a builder.
//
// A client/server message is a 1-byte type, a 3-byte transaction id and a
// list of options, each a 2-byte code, a 2-byte length and that many bytes
// (section 21.1). Some options nest options of their own (IA_NA, IAADDR).
// Dhcp6Options::parse walks a list once and refuses it when an option runs
// past the end or the list has more than kMaxDhcp6Options options; after
// that, find() and iteration read only checked bytes. Relay messages
// (RELAY-FORW, RELAY-REPL) are recognised and not parsed: usernet is the
// only server on its link.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::wire {

inline constexpr uint16_t kDhcp6ClientPort = 546;
inline constexpr uint16_t kDhcp6ServerPort = 547;
inline constexpr size_t kDhcp6HeaderLen = 4;
// Options in one list: a real client sends fewer than 15.
inline constexpr size_t kMaxDhcp6Options = 64;
// A DUID is at most 128 bytes after its 2-byte type (RFC 8415 11.1).
inline constexpr size_t kMaxDuidLen = 130;

namespace dhcp6type {
inline constexpr uint8_t solicit = 1;
inline constexpr uint8_t advertise = 2;
inline constexpr uint8_t request = 3;
inline constexpr uint8_t confirm = 4;
inline constexpr uint8_t renew = 5;
inline constexpr uint8_t rebind = 6;
inline constexpr uint8_t reply = 7;
inline constexpr uint8_t release = 8;
inline constexpr uint8_t decline = 9;
inline constexpr uint8_t reconfigure = 10;
inline constexpr uint8_t information_request = 11;
inline constexpr uint8_t relay_forw = 12;
inline constexpr uint8_t relay_repl = 13;
}  // namespace dhcp6type

namespace dhcp6opt {
inline constexpr uint16_t client_id = 1;
inline constexpr uint16_t server_id = 2;
inline constexpr uint16_t ia_na = 3;
inline constexpr uint16_t ia_ta = 4;
inline constexpr uint16_t iaaddr = 5;
inline constexpr uint16_t oro = 6;
inline constexpr uint16_t preference = 7;
inline constexpr uint16_t elapsed_time = 8;
inline constexpr uint16_t status_code = 13;
inline constexpr uint16_t rapid_commit = 14;
inline constexpr uint16_t dns_servers = 23;
inline constexpr uint16_t domain_list = 24;
inline constexpr uint16_t ia_pd = 25;
inline constexpr uint16_t information_refresh_time = 32;
inline constexpr uint16_t bootfile_url = 59;  // RFC 5970
}  // namespace dhcp6opt

namespace dhcp6status {
inline constexpr uint16_t success = 0;
inline constexpr uint16_t unspec_fail = 1;
inline constexpr uint16_t no_addrs_avail = 2;
inline constexpr uint16_t no_binding = 3;
inline constexpr uint16_t not_on_link = 4;
inline constexpr uint16_t use_multicast = 5;
}  // namespace dhcp6status

struct Dhcp6Option {
    uint16_t code = 0;
    Bytes data;
};

// A checked option list (a message's, or one nested in IA_NA or IAADDR).
class Dhcp6Options {
public:
    static std::optional<Dhcp6Options> parse(Bytes b) {
        size_t off = 0;
        size_t count = 0;
        while (off < b.size()) {
            if (b.size() - off < 4 || ++count > kMaxDhcp6Options) return std::nullopt;
            const size_t len = load16(&b[off + 2]);
            if (b.size() - off - 4 < len) return std::nullopt;
            off += 4 + len;
        }
        return Dhcp6Options(b);
    }

    // Visits options in order; f(const Dhcp6Option&).
    template <class F>
    void for_each(F&& f) const {
        size_t off = 0;
        while (off < b_.size()) {
            const size_t len = load16(&b_[off + 2]);
            f(Dhcp6Option{load16(&b_[off]), b_.subspan(off + 4, len)});
            off += 4 + len;
        }
    }
    // The first option with this code.
    std::optional<Bytes> find(uint16_t code) const {
        std::optional<Bytes> r;
        for_each([&](const Dhcp6Option& o) {
            if (!r && o.code == code) r = o.data;
        });
        return r;
    }
    size_t count(uint16_t code) const {
        size_t n = 0;
        for_each([&](const Dhcp6Option& o) { n += o.code == code; });
        return n;
    }
    Bytes bytes() const { return b_; }

private:
    explicit Dhcp6Options(Bytes b) : b_(b) {}
    Bytes b_;
};

// A client or server message (not a relay message).
class Dhcp6View {
public:
    static std::optional<Dhcp6View> parse(Bytes b) {
        if (b.size() < kDhcp6HeaderLen) return std::nullopt;
        if (b[0] == dhcp6type::relay_forw || b[0] == dhcp6type::relay_repl || b[0] == 0)
            return std::nullopt;
        auto opts = Dhcp6Options::parse(b.subspan(kDhcp6HeaderLen));
        if (!opts) return std::nullopt;
        return Dhcp6View(b, *opts);
    }
    uint8_t type() const { return b_[0]; }
    uint32_t xid() const { return (uint32_t{b_[1]} << 16) | (uint32_t{b_[2]} << 8) | b_[3]; }
    const Dhcp6Options& options() const { return opts_; }
    Bytes bytes() const { return b_; }

private:
    Dhcp6View(Bytes b, Dhcp6Options o) : b_(b), opts_(o) {}
    Bytes b_;
    Dhcp6Options opts_;
};

// IA_NA (21.4): IAID, T1, T2, and options (IAADDR, status).
struct Dhcp6IaNa {
    uint32_t iaid = 0;
    uint32_t t1 = 0;
    uint32_t t2 = 0;
    Dhcp6Options options;

    static std::optional<Dhcp6IaNa> parse(Bytes b) {
        if (b.size() < 12) return std::nullopt;
        auto o = Dhcp6Options::parse(b.subspan(12));
        if (!o) return std::nullopt;
        return Dhcp6IaNa{load32(&b[0]), load32(&b[4]), load32(&b[8]), *o};
    }
};

// IAADDR (21.6): an address with its lifetimes, and options.
struct Dhcp6IaAddr {
    IpAddr addr;
    uint32_t preferred = 0;
    uint32_t valid = 0;

    static std::optional<Dhcp6IaAddr> parse(Bytes b) {
        if (b.size() < 24 || !Dhcp6Options::parse(b.subspan(24))) return std::nullopt;
        return Dhcp6IaAddr{IpAddr::v6_from(&b[0]), load32(&b[16]), load32(&b[20])};
    }
};

// Writes a message into a fixed buffer. Every put checks the room left; once
// one does not fit, the builder is failed and finish() returns 0. Nested
// options: begin() returns a mark, end(mark) fills in the length.
class Dhcp6Builder {
public:
    Dhcp6Builder(MutBytes out, uint8_t type, uint32_t xid) : out_(out) {
        if (out_.size() < kDhcp6HeaderLen) {
            ok_ = false;
            return;
        }
        out_[0] = type;
        out_[1] = static_cast<uint8_t>(xid >> 16);
        out_[2] = static_cast<uint8_t>(xid >> 8);
        out_[3] = static_cast<uint8_t>(xid);
        n_ = kDhcp6HeaderLen;
    }
    bool put(uint16_t code, Bytes data) {
        size_t mark = begin(code);
        if (!append(data)) return false;
        end(mark);
        return ok_;
    }
    bool put16(uint16_t code, uint16_t v) {
        uint8_t b[2];
        store16(b, v);
        return put(code, Bytes(b, 2));
    }
    bool put32(uint16_t code, uint32_t v) {
        uint8_t b[4];
        store32(b, v);
        return put(code, Bytes(b, 4));
    }
    // Status code option: code and a UTF-8 message.
    bool put_status(uint16_t status, const char* msg) {
        size_t mark = begin(dhcp6opt::status_code);
        uint8_t b[2];
        store16(b, status);
        append(Bytes(b, 2));
        append(Bytes(reinterpret_cast<const uint8_t*>(msg), std::strlen(msg)));
        end(mark);
        return ok_;
    }
    // Opens an option whose body follows; returns where its header is.
    size_t begin(uint16_t code) {
        if (!ok_ || out_.size() - n_ < 4) {
            ok_ = false;
            return 0;
        }
        const size_t mark = n_;
        store16(&out_[n_], code);
        store16(&out_[n_ + 2], 0);
        n_ += 4;
        return mark;
    }
    void end(size_t mark) {
        if (!ok_) return;
        const size_t len = n_ - mark - 4;
        if (len > 0xffff) {
            ok_ = false;
            return;
        }
        store16(&out_[mark + 2], static_cast<uint16_t>(len));
    }
    bool append(Bytes data) {
        if (!ok_ || out_.size() - n_ < data.size()) {
            ok_ = false;
            return false;
        }
        if (!data.empty()) std::memcpy(&out_[n_], data.data(), data.size());
        n_ += data.size();
        return true;
    }
    bool append32(uint32_t v) {
        uint8_t b[4];
        store32(b, v);
        return append(Bytes(b, 4));
    }
    bool ok() const { return ok_; }
    // The message's length, 0 when something did not fit.
    size_t finish() const { return ok_ ? n_ : 0; }

private:
    MutBytes out_;
    size_t n_ = 0;
    bool ok_ = true;
};

}  // namespace usernet::wire
