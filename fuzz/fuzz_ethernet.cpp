// Fuzzes EthernetView and everything a frame leads to: ARP, IPv4 with its
// UDP/TCP/ICMP payload (and the datagram an ICMP error quotes), DHCP and DNS
// on their ports. This is the parsing of the whole receive path.
#include <cstddef>
#include <cstdint>

#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_ethernet(s, in);
    return 0;
}
