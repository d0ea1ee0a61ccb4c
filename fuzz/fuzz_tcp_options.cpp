// Fuzzes the TCP option walker on its own (any byte string as an option
// area) and TcpView over the same bytes as a whole segment.
#include <cstddef>
#include <cstdint>

#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_tcp_options(s, parse_tcp_options(in));
    touch_tcp(s, in, IpAddr::v4(0x0a00020f), IpAddr::v4(0x0a000202));
    return 0;
}
