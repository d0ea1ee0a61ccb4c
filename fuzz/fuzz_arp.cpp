// Fuzzes ArpView.
#include <cstddef>
#include <cstdint>

#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_arp(s, in);
    return 0;
}
