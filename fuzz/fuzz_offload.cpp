// Fuzzes what a TAP with offload hands usernet: a virtio-net header and the
// frame behind it, through parse_vnet_hdr(), complete_checksum() and, for a
// GSO frame, segment_tcp() to a small and a large MTU (as the switch does
// for a port without offload), after validate_offload() (as the switch
// does on input). Every piece must fit the MTU it was cut for, and no frame
// may become more than kMaxGsoSegments pieces.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "wire/ethernet.hpp"
#include "wire/offload.hpp"

using namespace usernet::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < kVnetHdrLen) return 0;
    size_t frame_len = size - kVnetHdrLen;
    Offload off;
    if (!parse_vnet_hdr(data, frame_len, off)) return 0;
    // A copy of exactly the frame's length, so ASan sees any overread.
    std::vector<uint8_t> frame(data + kVnetHdrLen, data + size);
    static std::vector<uint8_t> scratch(kEthMaxFrame + kVlanTagLen);
    validate_offload(Bytes(frame.data(), frame.size()), off);
    if (off.gso_type != Offload::gso_none) {
        for (uint32_t mtu : {68u, 1500u, 65520u}) {
            size_t pieces = 0;
            segment_tcp(Bytes(frame.data(), frame.size()), off, mtu,
                        MutBytes(scratch.data(), scratch.size()), [&](Bytes piece) {
                            if (piece.size() > mtu + kEthHeaderLen + kVlanTagLen) std::abort();
                            if (++pieces > kMaxGsoSegments) std::abort();
                        });
        }
    } else {
        complete_checksum(MutBytes(frame.data(), frame.size()), off);
    }
    return 0;
}
