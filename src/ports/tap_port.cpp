// The TAP attachment (see the header for the theory of operation).
#include "ports/tap_port.hpp"

#include <fcntl.h>
#include <net/if.h>  // before linux/if.h: libc-compat then skips the duplicates
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "wire/ethernet.hpp"
#include "wire/offload.hpp"

namespace usernet::ports {

int tap_open(const std::string& ifname, std::string* actual_ifname, bool offload) {
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) return -ENAMETOOLONG;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (offload) {
        int hdr = static_cast<int>(wire::kVnetHdrLen);
        unsigned long features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || ioctl(fd, TUNSETOFFLOAD, features) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    } else {
        // A persistent TAP keeps the offloads its last user set; without
        // the header, a large or partially checksummed frame could not be
        // told from a plain one.
        ioctl(fd, TUNSETOFFLOAD, 0UL);
    }
    if (actual_ifname) actual_ifname->assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
    return fd;
}

int open_existing_tap(const std::string& ifname, bool offload) {
    if (ifname.empty() || ifname.size() >= IFNAMSIZ)
        throw std::runtime_error("invalid TAP name '" + ifname + "' (1 to " +
                                 std::to_string(IFNAMSIZ - 1) + " characters)");
    // TUNSETIFF would create a missing device; --tap means an existing one.
    if (if_nametoindex(ifname.c_str()) == 0)
        throw std::runtime_error("TAP device '" + ifname +
                                 "' does not exist (create it with: ip tuntap add dev " + ifname +
                                 " mode tap user $USER)");
    int fd = tap_open(ifname, nullptr, offload);
    if (fd >= 0) return fd;
    int e = -fd;
    switch (e) {
    case EINVAL:
        throw std::runtime_error("'" + ifname +
                                 "' is not a TAP device usernet can attach to (it must be a "
                                 "single-queue TAP, not multi_queue)");
    case EPERM:
    case EACCES:
        throw std::runtime_error("cannot attach to TAP '" + ifname + "': " + std::strerror(e) +
                                 " (the device belongs to another user or group; recreate it "
                                 "with: ip tuntap add dev " + ifname + " mode tap user $USER)");
    case EBUSY:
        throw std::runtime_error("TAP '" + ifname + "' is in use by another process");
    case ENOENT:
    case ENODEV:
        throw std::runtime_error("cannot attach to TAP '" + ifname +
                                 "': /dev/net/tun is missing (load the tun module)");
    default:
        throw std::runtime_error("cannot attach to TAP '" + ifname + "': " + std::strerror(e));
    }
}

TapPort::TapPort(core::EventLoop& loop, sw::Switch& sw, int fd, std::string name, uint32_t mtu,
                 bool offload)
    : loop_(loop), sw_(sw), fd_(fd), name_(std::move(name)), mtu_(mtu), offload_(offload),
      buf_(std::make_unique_for_overwrite<uint8_t[]>(kBufferSize)) {
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
    sw_.attach(*this);
    spdlog::debug("attached {} (MTU {}, fd {}, offload {})", describe(), mtu_, fd_,
                  offload_ ? "on" : "off");
}

TapPort::~TapPort() {
    sw_.detach(*this);
    // Leave a persistent TAP (--tap) as a reader without the header needs it.
    if (offload_) ioctl(fd_, TUNSETOFFLOAD, 0UL);
    if (!failed_) loop_.remove(fd_, this);
    close(fd_);
}

void TapPort::fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    loop_.remove(fd_, this);
    if (on_failure_) {
        spdlog::debug("{} failed: {}; no longer reading from it", describe(), why);
        on_failure_(why);  // the owner reports it
    } else {
        spdlog::error("{} failed: {}; no longer reading from it", describe(), why);
    }
}

void TapPort::on_io(uint32_t events) {
    if (failed_) return;
    if ((events & EPOLLIN) == 0 && (events & (EPOLLERR | EPOLLHUP))) {
        fail("the device was removed");
        return;
    }
    for (int i = 0; i < kMaxFramesPerWakeup; i++) {
        ssize_t n = read(fd_, buf_.get(), kBufferSize);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            if (errno == EBADFD || errno == EIO || errno == ENODEV) {
                fail(std::strerror(errno));
                return;
            }
            stats().rx_dropped++;
            spdlog::debug("{}: read: {}", describe(), std::strerror(errno));
            return;
        }
        if (n == 0) return;
        size_t len = static_cast<size_t>(n);
        if (!offload_) {
            if (xlat_) translate_in(wire::MutBytes(buf_.get(), len), {});
            sw_.input(id(), wire::Bytes(buf_.get(), len));
            continue;
        }
        wire::Offload off;
        if (len < wire::kVnetHdrLen ||
            !wire::parse_vnet_hdr(buf_.get(), len - wire::kVnetHdrLen, off)) {
            stats().rx_dropped++;
            continue;
        }
        wire::MutBytes frame(buf_.get() + wire::kVnetHdrLen, len - wire::kVnetHdrLen);
        if (xlat_) translate_in(frame, off);
        sw_.input(id(), frame, off);
    }
}

void TapPort::set_mac_translation(const wire::MacAddr& lan_mac) {
    xlat_ = std::make_unique<MacTranslator>(lan_mac);
    spdlog::info("{}: MAC translation on, the LAN sees {}", describe(), lan_mac.to_string());
}

void TapPort::translate_in(wire::MutBytes frame, const wire::Offload& off) {
    log_guest_mac(describe(), id(), xlat_->to_lan(frame, off), *xlat_);
}

// The guest's MAC is its TAP's: read it (at most every 100 ms) so that
// frames toward a guest whose MAC was changed and which has not spoken
// since (an idle server behind a forward) still reach it.
void TapPort::refresh_guest_mac() {
    const core::Millis now = loop_.now();
    if (hwaddr_read_ && now - hwaddr_checked_ < 100) return;
    hwaddr_read_ = true;
    hwaddr_checked_ = now;
    ifreq ifr{};
    if (ioctl(fd_, SIOCGIFHWADDR, &ifr) < 0) return;
    const auto* b = reinterpret_cast<const uint8_t*>(ifr.ifr_hwaddr.sa_data);
    log_guest_mac(describe(), id(), xlat_->set_guest_mac(wire::MacAddr::from(b)), *xlat_);
}

void TapPort::deliver(wire::Bytes frame, const sw::FrameMeta& meta) {
    if (failed_) {
        lost_tx(1, frame.size());
        return;
    }
    static constexpr uint8_t kZeros[wire::kEthMinFrame] = {};
    if (xlat_) refresh_guest_mac();
    MacTranslator::Out out =
        xlat_ ? xlat_->to_guest(frame, meta.off) : MacTranslator::Out{frame, {}};
    size_t len = out.size();
    // [virtio-net header] frame head, tail, zero padding to 60 bytes (some
    // emulated NICs behind a bridged TAP drop runts).
    uint8_t hdr[wire::kVnetHdrLen];
    iovec iov[4];
    int n_iov = 0;
    if (offload_) {
        wire::write_vnet_hdr(hdr, meta.off);
        iov[n_iov++] = {hdr, sizeof hdr};
    }
    iov[n_iov++] = {const_cast<uint8_t*>(out.head.data()), out.head.size()};
    if (!out.tail.empty()) iov[n_iov++] = {const_cast<uint8_t*>(out.tail.data()), out.tail.size()};
    if (len < wire::kEthMinFrame)
        iov[n_iov++] = {const_cast<uint8_t*>(kZeros), wire::kEthMinFrame - len};
    for (;;) {
        ssize_t n = writev(fd_, iov, n_iov);
        if (n >= 0) return;
        if (errno == EINTR) continue;
        lost_tx(1, frame.size());
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EIO || errno == ENOBUFS) {
            // Queue full, or the link is down in the namespace.
            spdlog::debug("{}: dropped a {}-byte frame: {}", describe(), len, std::strerror(errno));
            return;
        }
        if (errno == EBADFD) {
            fail(std::strerror(errno));
            return;
        }
        spdlog::debug("{}: write: {}", describe(), std::strerror(errno));
        return;
    }
}

}  // namespace usernet::ports
