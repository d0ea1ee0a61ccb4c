// A port of the virtual switch: anything that moves Ethernet frames.
//
// Attachments (TAP, QEMU stream, ...) and the gateway are all ports. A port
// hands received frames to Switch::input(); the switch calls deliver() on
// the port(s) a frame goes out of. deliver() must not keep the span: it
// writes the frame out now, or copies it into its own bounded queue and
// flushes at the end of the event-loop batch. Frames a port cannot take are
// dropped and counted; TCP toward a guest recovers them by retransmission.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "wire/bytes.hpp"
#include "wire/offload.hpp"

namespace usernet::sw {

using PortId = uint32_t;
inline constexpr PortId kNoPort = UINT32_MAX;
// Source MACs the switch learns behind one port, unless it says otherwise.
inline constexpr size_t kDefaultMaxMacs = 64;

struct PortStats {
    uint64_t rx_frames = 0;  // from the attachment into the switch
    uint64_t rx_bytes = 0;
    uint64_t tx_frames = 0;  // from the switch out of the attachment (sent or queued)
    uint64_t tx_bytes = 0;
    uint64_t rx_dropped = 0;  // malformed or over limits on the way in
    uint64_t tx_dropped = 0;  // too big, queue full or write error on the way out
};

// What the switch tells the egress port about a frame.
struct FrameMeta {
    PortId ingress = kNoPort;
    uint32_t ingress_mtu = 1500;  // L3 MTU of the port the frame came from
    bool ingress_offload = false; // ... and whether it takes offloaded frames
    // The frame's checksum and segmentation state. Only a port whose
    // takes_offload() is true sees a frame with off.any(); for the others
    // the switch completes the checksum and cuts the segment first.
    wire::Offload off;
    // Which frame the switch took in (its count of frames so far): the same
    // for every port a flood hands it to, another for the next frame even
    // when its bytes are the same (a port that serves several switch ports
    // through one socket sends a flood once, and every frame).
    uint64_t seq = 0;
};

class Port {
public:
    virtual ~Port() = default;
    virtual void deliver(wire::Bytes frame, const FrameMeta& meta) = 0;
    // The L3 MTU of this attachment (IP packet size, without Ethernet header).
    virtual uint32_t mtu() const = 0;
    virtual std::string describe() const = 0;
    // Whether deliver() accepts frames with a partial checksum and TCP
    // segments larger than mtu() (wire::Offload), and sends such frames.
    virtual bool takes_offload() const { return false; }
    // How many source MACs the switch learns behind this port: a guest has
    // a few; an uplink to a real network has a LAN's worth.
    virtual size_t max_macs() const { return kDefaultMaxMacs; }
    // Bytes of frames (with the port's own framing) deliver() can still
    // queue before it drops: what a sender that can wait (the TCP
    // translator, whose data stays in the host socket) keeps within, so
    // that a slow reader is met by flow control and not by a tail drop of
    // a whole window. SIZE_MAX: the port does not queue (a TAP's write()
    // is the guest's receive path).
    virtual size_t tx_room() const { return std::numeric_limits<size_t>::max(); }
    // The same in frames, for a port whose queue is a ring of whole frames
    // (a datagram or VDE attachment: one frame per datagram, however
    // small): what it can still take before it drops. SIZE_MAX: no such
    // bound.
    virtual size_t tx_frame_room() const { return std::numeric_limits<size_t>::max(); }
    // Whether the guest's NIC loses a frame that arrives right behind
    // another (QEMU's NE2000, emulated on its vCPU thread): the TCP
    // translator then lets the host's answer carry the ACK of a short guest
    // segment instead of sending a pure ACK just before it (docs/tcp.md).
    virtual bool small_ring() const { return false; }

    PortId id() const { return id_; }
    PortStats& stats() { return stats_; }
    // Frames the switch handed to deliver() (and counted in tx_frames)
    // that the attachment then lost (queue full, write error, peer gone):
    // counted as dropped instead, so that tx_frames is what went out.
    void lost_tx(uint64_t frames, uint64_t bytes = 0) {
        stats_.tx_frames -= std::min(frames, stats_.tx_frames);
        stats_.tx_bytes -= std::min(bytes, stats_.tx_bytes);
        stats_.tx_dropped += frames;
    }
    const PortStats& stats() const { return stats_; }

private:
    friend class Switch;
    PortId id_ = kNoPort;
    PortStats stats_;
};

}  // namespace usernet::sw
