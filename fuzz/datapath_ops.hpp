// The operation encoding of fuzz_datapath's input, shared with the seed
// generator (tools/make_seeds.cpp) so that seeds stay valid when it changes.
//
//   op byte % kCount, then per op:
//   frame        flags(port | fix_csum | vnet) len16 [vnet header 10] bytes
//   advance      v16: v ms, or (v & 0x7fff) seconds when the top bit is set
//   poll         n: n % 8 + 1 event-loop rounds with timeout 0
//   tcp_reply    port flags window16 seq_delta(int8) len8 payload
//   host_tcp     sub: (index << 2) | tcp_*; tcp_write takes len16 bytes
//   host_forward sub: bit 0 set: len8 bytes as a datagram to the UDP forward;
//                clear: a TCP connect to the TCP forward
//   host_udp     sub (udp_fuzzed: len8 bytes answer instead of an echo)
//   upstream_dns flags(dns_patch_id) len16 bytes
#pragma once

#include <cstddef>
#include <cstdint>

namespace usernet::fuzz::op {

inline constexpr uint8_t frame = 0;
inline constexpr uint8_t advance = 1;
inline constexpr uint8_t poll = 2;
inline constexpr uint8_t tcp_reply = 3;
inline constexpr uint8_t host_tcp = 4;
inline constexpr uint8_t host_forward = 5;
inline constexpr uint8_t host_udp = 6;
inline constexpr uint8_t upstream_dns = 7;
inline constexpr uint8_t kCount = 8;

inline constexpr uint8_t port_mask = 0x03;
inline constexpr uint8_t frame_fix_csum = 0x04;
inline constexpr uint8_t frame_vnet = 0x08;
inline constexpr size_t kOffloadPort = 1;

inline constexpr uint8_t tcp_write = 0;
inline constexpr uint8_t tcp_read = 1;
inline constexpr uint8_t tcp_shutdown = 2;
inline constexpr uint8_t tcp_reset = 3;

inline constexpr uint8_t udp_fuzzed = 0x01;
inline constexpr uint8_t dns_patch_id = 0x01;

}  // namespace usernet::fuzz::op
