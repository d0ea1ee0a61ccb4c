// The TAP attachment: a Linux TAP device (IFF_TAP | IFF_NO_PI) as a port.
//
// Theory of operation: a TAP descriptor gives one Ethernet frame per read()
// and takes one per write(), with no packet information and no FCS. With
// offload (the default for the TAPs usernet creates), the device is opened
// with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM, TSO4, TSO6): every frame then
// has a 10-byte virtio-net header in front, and the guest's kernel, seeing
// a device with checksum and segmentation offload, sends TCP segments of up
// to 64 KiB with the checksum left partial, whatever the MTU. The port
// passes the header's meaning on with the frame (wire::Offload), so the
// gateway takes such a segment whole; toward the guest it writes the header
// the switch hands it, so usernet's large segments reach the guest's TCP
// whole as well (as a GRO'd packet would). That one header is what makes
// MTU 1500 cost about what MTU 65520 does. On EPOLLIN the port reads frames until EAGAIN,
// at most kMaxFramesPerWakeup per wakeup so that a busy namespace cannot
// starve the other ports (epoll is level-triggered and wakes it again), into
// one preallocated buffer (64 KiB and a bit), and hands each frame to the
// switch at once: the switch and everything behind it finish with the frame
// before the next read() reuses the buffer. deliver() writes the frame straight to the
// device, zero-padded to 60 bytes (some emulated NICs behind a bridged TAP
// drop runts). A full device queue (EAGAIN), or a device that is down (EIO),
// drops the frame and counts it; TCP toward the guest recovers. No
// allocation per frame, no exceptions after construction.
//
// Where the descriptor comes from: open_tap_in_netns() (netns.hpp) creates
// the device inside a guest namespace; open_existing_tap() attaches to one
// the user created (ip tuntap add dev NAME mode tap user USER).
//
// Not supported: multiqueue, UDP segmentation offload.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/event_loop.hpp"
#include "ports/mac_translator.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"

namespace usernet::ports {

// Opens /dev/net/tun (O_RDWR | O_NONBLOCK | O_CLOEXEC) and binds it to TAP
// `ifname` (IFF_TAP | IFF_NO_PI, and with `offload` IFF_VNET_HDR plus
// TUNSETOFFLOAD) in the calling thread's network namespace, creating the
// device if it does not exist. Returns the descriptor, or -errno.
// actual_ifname (optional) receives the kernel's name for it.
int tap_open(const std::string& ifname, std::string* actual_ifname = nullptr,
             bool offload = false);

// --tap NAME: attaches to an existing TAP device in the current namespace;
// its configuration (addresses, link state) is left to the user. Returns
// the descriptor (O_NONBLOCK | O_CLOEXEC). Throws std::runtime_error with
// one sentence if it does not exist, is not a TAP, is busy or not allowed.
int open_existing_tap(const std::string& ifname, bool offload = false);

class TapPort : public sw::Port, public core::IoHandler {
public:
    static constexpr int kMaxFramesPerWakeup = 256;
    // A virtio-net header and a whole frame at the largest MTU a TAP takes
    // (65535) plus a tag.
    static constexpr size_t kBufferSize = 65536 + 4096;

    // Takes ownership of fd (closed by the destructor), registers it with
    // the loop and attaches to the switch. `name` is for logs ("tap0 in
    // netns foo"); mtu is the device's L3 MTU; offload says that fd was
    // opened with it (tap_open()).
    TapPort(core::EventLoop& loop, sw::Switch& sw, int fd, std::string name, uint32_t mtu,
            bool offload = false);
    ~TapPort() override;
    TapPort(const TapPort&) = delete;
    TapPort& operator=(const TapPort&) = delete;

    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return "TAP " + name_; }
    bool takes_offload() const override { return offload_; }
    void on_io(uint32_t events) override;

    // Called once when the device fails for good (it was deleted, its
    // namespace torn down); the port has stopped reading by then. It may be
    // called from inside deliver(), in the middle of the switch's work: it
    // must not destroy the port (stop the loop, or defer the teardown).
    void set_on_failure(std::function<void(const std::string& why)> fn) {
        on_failure_ = std::move(fn);
    }
    bool failed() const { return failed_; }
    int fd() const { return fd_; }

    // ,mac=LANMAC: the LAN sees lan_mac whatever MAC the guest uses
    // (mac_translator.hpp).
    void set_mac_translation(const wire::MacAddr& lan_mac);
    const MacTranslator* mac_translator() const { return xlat_.get(); }

private:
    void fail(const std::string& why);
    void translate_in(wire::MutBytes frame, const wire::Offload& off);
    void refresh_guest_mac();

    core::EventLoop& loop_;
    sw::Switch& sw_;
    int fd_;
    std::string name_;
    uint32_t mtu_;
    bool offload_;
    bool failed_ = false;
    std::unique_ptr<uint8_t[]> buf_;
    std::unique_ptr<MacTranslator> xlat_;
    bool hwaddr_read_ = false;          // the TAP's address read at least once (xlat_)
    core::Millis hwaddr_checked_ = 0;   // ... and when, last
    std::function<void(const std::string&)> on_failure_;
};

}  // namespace usernet::ports
