// Fuzzes Ipv4View and the views of its payload: UDP, TCP with its options,
// ICMP and the IPv4 header an ICMP error quotes.
#include <cstddef>
#include <cstdint>

#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_ipv4(s, in);
    return 0;
}
