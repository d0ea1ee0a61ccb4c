// The Internet checksum (RFC 1071), pseudo-headers (RFC 768/793/8200) and
// incremental update (RFC 1624).
//
// csum_partial() returns an unfolded 32-bit accumulator so that a header, a
// pseudo-header and a payload in separate buffers can be summed in turn and
// folded once at the end. It sums 16 bytes per step in native order and
// swaps once (the sum does not depend on byte order, RFC 1071).
#pragma once

#include <cstdint>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::wire {

// Adds the 16-bit big-endian words of `data` into `sum` (unfolded).
// An odd trailing byte is padded with zero as the RFC requires; only the
// last buffer of a sum may have odd length.
uint32_t csum_partial(Bytes data, uint32_t sum = 0);

// Folds an accumulator to 16 bits and complements it: the value to store.
uint16_t csum_fold(uint32_t sum);

// Pseudo-header sum for TCP/UDP/ICMPv6 over IPv4 or IPv6 (chosen by src).
uint32_t csum_pseudo(const IpAddr& src, const IpAddr& dst, uint8_t proto, uint32_t l4_len);

// The pseudo-header sum folded but not complemented: what the checksum
// field of a partially checksummed segment holds (offload.hpp), for the
// receiver to complete over the rest.
uint16_t csum_pseudo_partial(const IpAddr& src, const IpAddr& dst, uint8_t proto,
                             uint32_t l4_len);

// Checksum of an L4 segment (header with its checksum field zeroed, plus
// payload), ready to store. UDP callers map 0 to 0xffff themselves.
uint16_t csum_l4(const IpAddr& src, const IpAddr& dst, uint8_t proto, Bytes segment);

// RFC 1624 eqn. 3: the new checksum when one 16-bit word changes.
uint16_t csum_update16(uint16_t old_csum, uint16_t old_word, uint16_t new_word);
// The same for a 32-bit field (two words).
uint16_t csum_update32(uint16_t old_csum, uint32_t old_val, uint32_t new_val);

}  // namespace usernet::wire
