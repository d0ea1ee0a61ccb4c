// Command lines shown to the user (the start-up banner's emulator options,
// the serial hints) and run by /bin/sh -c.
#pragma once

#include <string>
#include <string_view>

namespace usernet::core {

// A word the shell reads back as it was: quoted only when it holds
// something the shell would split or expand, so that the common case stays
// readable.
inline std::string shell_word(std::string_view s) {
    auto plain = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.' || c == '/' || c == ',' || c == '=' || c == ':' ||
               c == '@' || c == '%' || c == '+';
    };
    bool quote = s.empty();
    for (char c : s) quote = quote || !plain(c);
    if (!quote) return std::string(s);
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') q += "'\\''";
        else q += c;
    }
    return q + "'";
}

// A value inside a QEMU option (-netdev, -chardev, -serial unix:): QEMU's
// option syntax reads a comma as the end of the value unless it is doubled.
inline std::string qemu_value(std::string_view v) {
    std::string out;
    for (char ch : v) {
        out += ch;
        if (ch == ',') out += ',';
    }
    return out;
}

}  // namespace usernet::core
