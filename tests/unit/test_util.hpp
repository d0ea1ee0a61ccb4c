// Small helpers shared by the wire unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "wire/bytes.hpp"

namespace usernet::testutil {

using wire::Bytes;

inline constexpr size_t kEth = 14;       // untagged Ethernet header
inline constexpr size_t kEthIp = 14 + 20;  // Ethernet + option-less IPv4

template <typename Array>
Bytes bytes(const Array& a) {
    return Bytes(a.data(), a.size());
}

template <typename Array>
std::vector<uint8_t> vec(const Array& a) {
    return std::vector<uint8_t>(a.begin(), a.end());
}

inline std::vector<uint8_t> vec(std::initializer_list<uint8_t> l) { return std::vector<uint8_t>(l); }

inline Bytes bytes(const std::vector<uint8_t>& v) { return Bytes(v.data(), v.size()); }

// The IPv4 packet inside an untagged Ethernet frame.
template <typename Array>
Bytes ip_of(const Array& frame) {
    return bytes(frame).subspan(kEth);
}

}  // namespace usernet::testutil
