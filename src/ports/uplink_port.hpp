// The uplink: a host network interface as a port of the switch
// (--uplink IFACE), so that usernet's LAN is bridged onto a physical or
// virtual network (a NIC, a veth pair, a bridge's port).
//
// Theory of operation. An AF_PACKET SOCK_RAW socket is bound to the
// interface for every ethertype (ETH_P_ALL; created with protocol 0 and
// bound afterwards, so it never sees another interface's frames) and puts
// the interface in promiscuous mode with PACKET_ADD_MEMBERSHIP
// (PACKET_MR_PROMISC), which the kernel undoes when the socket closes, so
// the promiscuity is usernet's only while it runs. Frames the interface
// receives enter the switch as from one port; frames the switch sends to
// that port leave on the interface. Frames the host itself sends on the
// interface (PACKET_OUTGOING) are not taken (PACKET_IGNORE_OUTGOING, and
// the packet type is checked as well), and what usernet sends is never
// looped back to its own socket: nothing comes back in that it put out.
//
// Batching and offload. Input: recvmmsg() of up to kBatch frames at a time,
// at most kMaxFramesPerWakeup per wakeup (fairness; epoll is level-
// triggered), into buffers allocated once. Output: deliver() copies the
// frame into a preallocated arena and the whole batch leaves in one
// sendmmsg() at the end of the event-loop batch (core::Deferred). The
// socket has PACKET_VNET_HDR: each frame carries a virtio-net header both
// ways, so the GRO/GSO segments the kernel hands over (up to 64 KiB, the
// checksum partial) are passed on with their offload state like a TAP's,
// and usernet's large TCP segments go out whole for the kernel (or the NIC)
// to cut. An mmap()ed TPACKET_V3 ring was considered: it wakes the reader
// per retired block, not per frame (at least the block timeout, 1 ms or
// more, of latency on a quiet link), and TPACKET_V2's fixed slots would
// have to be 64 KiB each to hold a GRO segment; two syscalls per batch cost
// less than either.
//
// 802.1Q: the kernel strips VLAN tags into metadata (PACKET_AUXDATA tells);
// usernet's LAN is untagged, so a frame that arrived tagged belongs to
// another network and is dropped (counted). Bridge a VLAN through its
// subinterface (eth0.100) instead.
//
// The interface going away. ENETDOWN on the socket (the interface was set
// down or deleted) is logged once; the port stays on the switch, frames to
// it are dropped (counted), and every kRetryMs the interface is looked up
// again: the same interface up again resumes by itself (the kernel
// re-hooks the socket); a new interface of the same name (a veth re-created,
// a USB NIC plugged in again) gets a new socket. Nothing is given up: an
// uplink is configured infrastructure, and usernet keeps it until it stops.
//
// Privileges: AF_PACKET needs CAP_NET_RAW (root, or setcap cap_net_raw+ep);
// EPERM says so. The switch accepts up to kMaxMacs source MACs from this
// port (a real LAN has more hosts than a guest has MACs).
#pragma once

#include <linux/if_packet.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/event_loop.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"
#include "wire/ethernet.hpp"
#include "wire/offload.hpp"

namespace usernet::ports {

struct UplinkStats {
    uint64_t outgoing_ignored = 0;  // PACKET_OUTGOING frames seen (and not taken)
    uint64_t truncated = 0;         // larger than a receive buffer
    uint64_t tagged = 0;            // arrived with an 802.1Q tag
    uint64_t bad_vnet = 0;          // a virtio-net header usernet does not take
    uint64_t down = 0;              // times the interface went down or away
    uint64_t reopened = 0;          // new sockets on a re-created interface
};

class UplinkPort : public sw::Port, public core::IoHandler, public core::Deferred {
public:
    static constexpr int kBatch = 32;
    static constexpr int kMaxFramesPerWakeup = 256;
    static constexpr size_t kFrameCapacity = wire::kEthMaxFrame + wire::kVlanTagLen;
    static constexpr size_t kSlot = wire::kVnetHdrLen + kFrameCapacity;
    static constexpr size_t kTxArena = 1 << 20;
    static constexpr size_t kMaxMacs = 4096;
    static constexpr core::Millis kRetryMs = 1000;

    // Opens the socket on interface `ifname` and attaches to the switch.
    // mtu 0: the interface's own MTU. Throws std::runtime_error with one
    // sentence (no such interface, not Ethernet, no CAP_NET_RAW).
    UplinkPort(core::EventLoop& loop, sw::Switch& sw, std::string ifname, uint32_t mtu = 0);
    ~UplinkPort() override;
    UplinkPort(const UplinkPort&) = delete;
    UplinkPort& operator=(const UplinkPort&) = delete;

    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return "uplink " + ifname_; }
    bool takes_offload() const override { return vnet_; }
    size_t max_macs() const override { return kMaxMacs; }
    void on_io(uint32_t events) override;
    void run_deferred() override;

    const std::string& ifname() const { return ifname_; }
    // The socket is open and the interface was up when last looked at.
    bool up() const { return fd_ >= 0 && !down_; }
    const UplinkStats& uplink_stats() const { return ustats_; }

private:
    // Opens and binds a socket on ifname_ (sets fd_, ifindex_, mtu_ if not
    // fixed, vnet_); returns whether the interface is up. Throws
    // std::runtime_error.
    bool open_socket();
    void close_socket();
    void receive();
    void flush();
    void went_down(int err);
    void check_link();

    core::EventLoop& loop_;
    sw::Switch& sw_;
    std::string ifname_;
    uint32_t mtu_;
    bool mtu_fixed_;
    int fd_ = -1;
    int ifindex_ = 0;
    bool vnet_ = false;
    bool down_ = false;
    bool gone_logged_ = false;
    UplinkStats ustats_;
    core::Timer retry_{[this] { check_link(); }};

    // Receive: kBatch slots of kSlot bytes.
    std::unique_ptr<uint8_t[]> rx_buf_;
    std::unique_ptr<mmsghdr[]> rx_msgs_;
    std::unique_ptr<iovec[]> rx_iov_;
    std::unique_ptr<sockaddr_ll[]> rx_addr_;
    std::unique_ptr<uint8_t[]> rx_ctl_;
    // Send: frames (header and padded frame each) back to back in the arena.
    std::unique_ptr<uint8_t[]> tx_buf_;
    std::unique_ptr<mmsghdr[]> tx_msgs_;
    std::unique_ptr<iovec[]> tx_iov_;
    size_t tx_used_ = 0;
    int tx_count_ = 0;
    bool tx_deferred_ = false;
};

}  // namespace usernet::ports
