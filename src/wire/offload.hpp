// Checksum and segmentation offload: what a virtio-net header (the one a TAP
// opened with IFF_VNET_HDR puts in front of every frame) says about a frame,
// and the software fallback for a receiver that cannot take such a frame.
//
// Theory of operation. With offload on, the guest's kernel skips work it
// would otherwise do per packet: it leaves the L4 checksum partial (only the
// pseudo-header sum is in the checksum field, to be completed over the
// bytes from csum_start on; "NEEDS_CSUM") and hands over TCP segments of up
// to 64 KiB whatever the MTU, to be cut into gso_size pieces of payload
// ("GSO"). usernet's own stack takes such frames as they are: the gateway
// needs neither the checksum (the frame never crossed a wire) nor the
// segmentation (a host socket takes any length). Toward the guest usernet
// does the same in reverse. Only a frame switched to a port that cannot take
// offload (a QEMU socket, say) is finished in software here: the checksum
// completed, the segment cut to the MTU. That is what the Linux kernel does
// in skb_checksum_help() and its TCP GSO, the wire format is virtio's
// (virtio 1.2, 5.1.6).
//
// Every offset comes from the guest and is checked before use: a frame whose
// offload fields do not describe it is rejected (the functions return false)
// and must be dropped. The switch runs validate_offload() on every frame
// that carries offload before it goes anywhere, so a frame passed as it is
// to another guest's offload TAP carries nothing usernet would not take
// itself.
//
// Amplification. Segmentation turns one frame into many: a 64 KiB frame
// with gso_size 1 would become ~65,000 one-byte segments per port without
// offload, a flood that stalls the loop. No frame is cut into more than
// kMaxGsoSegments pieces (the MTU of the port it goes to taken into
// account); a frame that would need more is dropped there, and only
// there: the NAT takes a GSO frame whole, whatever its gso_size (a guest
// whose MSS is small, iperf3 -M 400, still uploads at full speed).
#pragma once

#include <cstddef>
#include <cstdint>

#include "wire/bytes.hpp"

namespace usernet::wire {

struct Offload {
    enum Gso : uint8_t { gso_none = 0, gso_tcp4 = 1, gso_tcp6 = 4 };  // virtio's numbers

    bool csum_partial = false;  // the L4 checksum holds the pseudo-header sum only
    bool csum_valid = false;    // the L4 checksum is known good (DATA_VALID)
    uint8_t gso_type = gso_none;
    uint16_t csum_start = 0;    // from the start of the Ethernet frame
    uint16_t csum_offset = 0;   // of the checksum field, from csum_start
    uint16_t gso_size = 0;      // payload bytes per segment
    uint16_t hdr_len = 0;       // Ethernet + IP + TCP header bytes (a hint)

    bool any() const { return csum_partial || gso_type != gso_none; }
    // A receiver may skip verifying the L4 checksum.
    bool trusted() const { return csum_partial || csum_valid; }
};

// The smallest payload per segment (gso_size) usernet itself sends as GSO
// to a guest. 536 is the IPv4 default MSS (RFC 9293 3.7.1) less 40 bytes of
// TCP options. Frames from guests may carry any gso_size from 1.
inline constexpr uint16_t kMinGsoSize = 536 - 40;
// The most pieces one frame may be cut into: 64 KiB of payload in 64-byte
// pieces (1024). Linux's smallest MSS (88, less 12 bytes of timestamps)
// gives 863. A frame that needs more is dropped rather than turned into a
// flood.
inline constexpr size_t kMaxGsoSegments = 1024;

// The virtio-net header (struct virtio_net_hdr, 10 bytes, native byte order
// as a TAP without TUNSETVNETLE/BE uses it).
inline constexpr size_t kVnetHdrLen = 10;
namespace vnet {
inline constexpr uint8_t f_needs_csum = 1;
inline constexpr uint8_t f_data_valid = 2;
inline constexpr uint8_t gso_ecn = 0x80;
}  // namespace vnet

// Parses a virtio-net header in front of `frame` (frame_len bytes follow
// it). False if it is malformed: unknown flags or GSO types (UDP
// fragmentation offload is never enabled), a checksum field outside the
// frame, GSO without a checksum to complete or with gso_size 0.
bool parse_vnet_hdr(const uint8_t* hdr, size_t frame_len, Offload& out);
// Writes the header for `off` at hdr (kVnetHdrLen bytes).
void write_vnet_hdr(uint8_t* hdr, const Offload& off);

// Whether `off` describes `frame`: the checksum field inside the frame and,
// for GSO, the headers parse as the GSO type says (IPv4 or IPv6 with TCP,
// not a fragment, IP length the frame's, csum_start at the TCP header and
// csum_offset its checksum field) and gso_size not 0. The check every
// frame with offload passes on entering the switch; the cap on pieces is
// segment_tcp()'s, where a frame is cut.
bool validate_offload(Bytes frame, const Offload& off);

// Completes a partial checksum in place: sums frame[csum_start..] (the
// field already holds the pseudo-header sum) and stores the result. False
// if the offsets do not fit the frame.
bool complete_checksum(MutBytes frame, const Offload& off);

// Cuts a GSO TCP frame (IPv4 or IPv6, no IPv6 extension headers) into
// frames whose IP packets fit `mtu`, each with complete checksums, writing
// them one after another into `scratch` and calling emit(frame) for each
// before writing the next (so scratch need only hold one: the headers plus
// the largest piece). The checksum in `frame` may be partial or complete.
// False, with nothing emitted, if the headers are malformed or do not
// agree with `off`, or the frame would become more than kMaxGsoSegments
// pieces at this MTU.
template <typename Emit>
bool segment_tcp(Bytes frame, const Offload& off, uint32_t mtu, MutBytes scratch, Emit&& emit);

// --- implementation of the template -------------------------------------------

struct TcpSegmentPlan {
    size_t l3 = 0;       // IP header offset
    size_t l4 = 0;       // TCP header offset
    size_t hdrs = 0;     // bytes of headers, up to the payload
    size_t payload = 0;  // payload bytes in all
    size_t piece = 0;    // payload bytes per output frame
    bool v6 = false;
    size_t pieces() const { return payload == 0 ? 1 : (payload + piece - 1) / piece; }
};
// Checks the headers and works out the pieces (at most kMaxGsoSegments).
bool plan_tcp_segments(Bytes frame, const Offload& off, uint32_t mtu, size_t scratch_len,
                       TcpSegmentPlan& plan);
// Writes piece i (headers fixed up, checksums computed) into scratch and
// returns its length.
size_t build_tcp_segment(Bytes frame, const TcpSegmentPlan& plan, size_t i, uint8_t* scratch);

template <typename Emit>
bool segment_tcp(Bytes frame, const Offload& off, uint32_t mtu, MutBytes scratch, Emit&& emit) {
    TcpSegmentPlan plan;
    if (!plan_tcp_segments(frame, off, mtu, scratch.size(), plan)) return false;
    size_t n = plan.pieces();
    for (size_t i = 0; i < n; i++) {
        size_t len = build_tcp_segment(frame, plan, i, scratch.data());
        emit(Bytes(scratch.data(), len));
    }
    return true;
}

}  // namespace usernet::wire
