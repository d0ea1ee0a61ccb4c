// TFTP messages (RFC 1350) with the option extension (RFC 2347): bounded
// views and builders.
//
// A request (RRQ, WRQ) is an opcode and NUL-terminated strings: the file
// name, the mode, then option name/value pairs. TftpRequest::parse finds
// every string inside the message (a string without its NUL refuses the
// request), takes at most kTftpMaxOptions pairs (more refuse it; a real
// client sends fewer than eight) and names of at most kTftpMaxName bytes.
// After that the views hold only checked bytes. ACK, DATA and ERROR are
// fixed headers with a length check. Builders write into a caller's
// buffer and return the length, 0 when it does not fit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "wire/bytes.hpp"

namespace usernet::wire {

inline constexpr uint16_t kTftpPort = 69;
inline constexpr size_t kTftpHeaderLen = 4;  // DATA and ACK: opcode, block
inline constexpr size_t kTftpDefaultBlksize = 512;
inline constexpr size_t kTftpMaxOptions = 16;
inline constexpr size_t kTftpMaxName = 255;  // file name, mode, option names and values

namespace tftpop {
inline constexpr uint16_t rrq = 1;
inline constexpr uint16_t wrq = 2;
inline constexpr uint16_t data = 3;
inline constexpr uint16_t ack = 4;
inline constexpr uint16_t error = 5;
inline constexpr uint16_t oack = 6;
}  // namespace tftpop

namespace tftperr {
inline constexpr uint16_t undefined = 0;
inline constexpr uint16_t not_found = 1;
inline constexpr uint16_t access = 2;
inline constexpr uint16_t disk_full = 3;
inline constexpr uint16_t illegal = 4;
inline constexpr uint16_t unknown_tid = 5;
inline constexpr uint16_t exists = 6;
inline constexpr uint16_t no_user = 7;
inline constexpr uint16_t bad_option = 8;  // RFC 2347
}  // namespace tftperr

inline bool tftp_name_equals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) {
        auto fold = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c; };
        if (fold(a[i]) != fold(b[i])) return false;
    }
    return true;
}

// A decimal option value (blksize, tsize, timeout, windowsize): digits
// only, at most 10 of them.
inline std::optional<uint64_t> tftp_decimal(std::string_view s) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
}

struct TftpOption {
    std::string_view name;
    std::string_view value;
};

class TftpRequest {
public:
    static std::optional<TftpRequest> parse(Bytes msg) {
        if (msg.size() < 2) return std::nullopt;
        TftpRequest r;
        r.opcode_ = load16(msg.data());
        if (r.opcode_ != tftpop::rrq && r.opcode_ != tftpop::wrq) return std::nullopt;
        size_t at = 2;
        // The next NUL-terminated string, or nothing when it has no NUL or
        // is too long.
        auto next = [&](std::string_view& out) {
            const uint8_t* start = msg.data() + at;
            const size_t left = msg.size() - at;
            const void* nul = std::memchr(start, 0, left);
            if (!nul) return false;
            const size_t len = static_cast<size_t>(static_cast<const uint8_t*>(nul) - start);
            if (len > kTftpMaxName) return false;
            out = std::string_view(reinterpret_cast<const char*>(start), len);
            at += len + 1;
            return true;
        };
        if (!next(r.filename_) || r.filename_.empty() || !next(r.mode_) || r.mode_.empty())
            return std::nullopt;
        while (at < msg.size()) {
            TftpOption o;
            if (!next(o.name)) {
                // Trailing NUL padding after the last pair (some PXE ROMs).
                for (size_t i = at; i < msg.size(); i++)
                    if (msg[i] != 0) return std::nullopt;
                break;
            }
            if (o.name.empty()) continue;  // padding: a lone NUL
            if (r.n_options_ == kTftpMaxOptions || !next(o.value)) return std::nullopt;
            r.options_[r.n_options_++] = o;
        }
        return r;
    }

    uint16_t opcode() const { return opcode_; }
    std::string_view filename() const { return filename_; }
    std::string_view mode() const { return mode_; }
    size_t option_count() const { return n_options_; }
    const TftpOption& option(size_t i) const { return options_[i]; }
    // The value of the first option with this name (case-insensitive, as
    // RFC 2347 says), if any.
    std::optional<std::string_view> find(std::string_view name) const {
        for (size_t i = 0; i < n_options_; i++)
            if (tftp_name_equals(options_[i].name, name)) return options_[i].value;
        return std::nullopt;
    }

private:
    TftpRequest() = default;
    uint16_t opcode_ = 0;
    std::string_view filename_, mode_;
    std::array<TftpOption, kTftpMaxOptions> options_{};
    size_t n_options_ = 0;
};

// ACK: the block acknowledged. Also the opcode of any message, for
// dispatching (0 when too short).
inline uint16_t tftp_opcode(Bytes msg) { return msg.size() >= 2 ? load16(msg.data()) : 0; }
inline std::optional<uint16_t> tftp_ack_block(Bytes msg) {
    if (msg.size() < kTftpHeaderLen || load16(msg.data()) != tftpop::ack) return std::nullopt;
    return load16(msg.data() + 2);
}

// ERROR: code and message (the message without its NUL, possibly empty;
// a message without a NUL is cut at the end of the datagram).
struct TftpError {
    uint16_t code;
    std::string_view message;
};
inline std::optional<TftpError> tftp_error(Bytes msg) {
    if (msg.size() < kTftpHeaderLen || load16(msg.data()) != tftpop::error) return std::nullopt;
    const char* s = reinterpret_cast<const char*>(msg.data() + 4);
    const size_t left = msg.size() - 4;
    const void* nul = std::memchr(s, 0, left);
    const size_t len = nul ? static_cast<size_t>(static_cast<const char*>(nul) - s) : left;
    return TftpError{load16(msg.data() + 2), std::string_view(s, len)};
}

// DATA header for block `block`; the caller puts the data after it.
inline void tftp_data_header(uint8_t* out, uint16_t block) {
    store16(out, tftpop::data);
    store16(out + 2, block);
}

// ERROR with a message; 0 when it does not fit.
inline size_t tftp_build_error(MutBytes out, uint16_t code, std::string_view message) {
    const size_t len = 4 + message.size() + 1;
    if (len > out.size()) return 0;
    store16(out.data(), tftpop::error);
    store16(out.data() + 2, code);
    std::memcpy(out.data() + 4, message.data(), message.size());
    out[4 + message.size()] = 0;
    return len;
}

// OACK with the given options; 0 when it does not fit.
inline size_t tftp_build_oack(MutBytes out, const TftpOption* opts, size_t n) {
    size_t len = 2;
    for (size_t i = 0; i < n; i++) len += opts[i].name.size() + 1 + opts[i].value.size() + 1;
    if (len > out.size()) return 0;
    store16(out.data(), tftpop::oack);
    size_t at = 2;
    for (size_t i = 0; i < n; i++) {
        for (std::string_view s : {opts[i].name, opts[i].value}) {
            std::memcpy(out.data() + at, s.data(), s.size());
            at += s.size();
            out[at++] = 0;
        }
    }
    return at;
}

}  // namespace usernet::wire
