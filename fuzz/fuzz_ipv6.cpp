// Fuzzes Ipv6View (the extension header chain and its options) and the
// views of its payload: UDP, TCP with its options, ICMPv6 with neighbor
// discovery options, and the IPv6 packet an ICMPv6 error quotes.
#include <cstddef>
#include <cstdint>

#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_ipv6(s, in);
    return 0;
}
