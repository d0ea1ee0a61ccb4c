// The uplink (see the header for the theory of operation).
#include "ports/uplink_port.hpp"

#include <arpa/inet.h>
#include <net/if.h>  // before linux/if.h: libc-compat then skips the duplicates
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace usernet::ports {
namespace {

constexpr size_t kCtlLen = CMSG_SPACE(sizeof(tpacket_auxdata));
constexpr int kSocketBuffer = 4 << 20;

std::string errstr(int e) { return std::strerror(e); }

// Deep socket buffers: SO_*BUFFORCE with CAP_NET_ADMIN, else as far as
// rmem_max / wmem_max allow.
void set_buffers(int fd) {
    int v = kSocketBuffer;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

}  // namespace

UplinkPort::UplinkPort(core::EventLoop& loop, sw::Switch& sw, std::string ifname, uint32_t mtu)
    : loop_(loop), sw_(sw), ifname_(std::move(ifname)), mtu_(mtu), mtu_fixed_(mtu != 0),
      rx_buf_(std::make_unique_for_overwrite<uint8_t[]>(kSlot * kBatch)),
      rx_msgs_(std::make_unique<mmsghdr[]>(kBatch)),
      rx_iov_(std::make_unique<iovec[]>(kBatch)),
      rx_addr_(std::make_unique<sockaddr_ll[]>(kBatch)),
      rx_ctl_(std::make_unique<uint8_t[]>(kCtlLen * kBatch)),
      tx_buf_(std::make_unique_for_overwrite<uint8_t[]>(kTxArena)),
      tx_msgs_(std::make_unique<mmsghdr[]>(kBatch)),
      tx_iov_(std::make_unique<iovec[]>(kBatch)) {
    bool is_up = open_socket();
    sw_.attach(*this);
    spdlog::info("uplink {} (port {}): bridged, MTU {}, promiscuous, offload {}", ifname_, id(),
                 mtu_, vnet_ ? "on" : "off");
    if (!is_up) {
        spdlog::warn("uplink {} is down: usernet uses it once it is up (ip link set {} up)",
                     ifname_, ifname_);
        went_down(ENETDOWN);
    }
}

UplinkPort::~UplinkPort() {
    loop_.cancel(retry_);
    const sw::PortStats& s = stats();
    spdlog::info("uplink {} (port {}) closed: rx {} frames ({} dropped), tx {} frames ({} "
                 "dropped), {} tagged frames refused",
                 ifname_, id(), s.rx_frames, s.rx_dropped, s.tx_frames, s.tx_dropped,
                 ustats_.tagged);
    sw_.detach(*this);
    close_socket();
}

bool UplinkPort::open_socket() {
    if (ifname_.empty() || ifname_.size() >= IFNAMSIZ)
        throw std::runtime_error("invalid interface name '" + ifname_ + "'");
    unsigned idx = if_nametoindex(ifname_.c_str());
    if (idx == 0)
        throw std::runtime_error("interface '" + ifname_ + "' does not exist");
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        if (e == EPERM || e == EACCES)
            throw std::runtime_error(
                "cannot open a packet socket for --uplink " + ifname_ + ": " + errstr(e) +
                " (usernet needs CAP_NET_RAW for --uplink: run it as root, or give the binary "
                "the capability with setcap cap_net_raw+ep)");
        throw std::runtime_error("cannot open a packet socket for --uplink " + ifname_ + ": " +
                                 errstr(e));
    }
    auto fail = [&](const std::string& what) {
        int e = errno;
        close(fd);
        throw std::runtime_error(what + ": " + errstr(e));
    };
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname_.data(), ifname_.size());
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) fail("cannot read the type of " + ifname_);
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        close(fd);
        throw std::runtime_error("interface '" + ifname_ + "' is not an Ethernet interface (" +
                                 "link type " + std::to_string(ifr.ifr_hwaddr.sa_family) +
                                 "); an uplink carries Ethernet frames");
    }
    if (!mtu_fixed_) {
        if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) fail("cannot read the MTU of " + ifname_);
        mtu_ = static_cast<uint32_t>(std::max(ifr.ifr_mtu, 68));
    }
    int on = 1;
    vnet_ = setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on) == 0;
    if (!vnet_) spdlog::warn("uplink {}: no PACKET_VNET_HDR ({}); offload off", ifname_,
                             errstr(errno));
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &on, sizeof on);  // 4.20+; checked anyway
    if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &on, sizeof on) < 0)
        fail("cannot ask for packet metadata on " + ifname_);
    set_buffers(fd);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(idx);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&sll), sizeof sll) < 0)
        fail("cannot bind a packet socket to " + ifname_);
    packet_mreq mr{};
    mr.mr_ifindex = static_cast<int>(idx);
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
        fail("cannot put " + ifname_ + " in promiscuous mode");
    try {
        loop_.add(fd, EPOLLIN, this);
    } catch (...) {
        close(fd);
        throw;
    }
    fd_ = fd;
    ifindex_ = static_cast<int>(idx);
    return ioctl(fd, SIOCGIFFLAGS, &ifr) != 0 || (ifr.ifr_flags & IFF_UP);
}

void UplinkPort::close_socket() {
    if (fd_ < 0) return;
    loop_.remove(fd_, this);
    close(fd_);
    fd_ = -1;
    tx_used_ = 0;
    tx_count_ = 0;
}

void UplinkPort::went_down(int err) {
    if (!down_) {
        down_ = true;
        ustats_.down++;
        spdlog::warn("uplink {} (port {}): {}; frames to it are dropped until it is back "
                     "(checked every {} ms)",
                     ifname_, id(), err == ENETDOWN ? "the interface is down or gone" : errstr(err),
                     kRetryMs);
    }
    if (!retry_.armed()) loop_.arm(retry_, kRetryMs);
}

// Every kRetryMs while down: the same interface up again, or a new one of
// the same name.
void UplinkPort::check_link() {
    unsigned idx = if_nametoindex(ifname_.c_str());
    if (idx == 0) {
        if (fd_ >= 0) close_socket();
        if (!gone_logged_) {
            gone_logged_ = true;
            spdlog::warn("uplink {} (port {}): the interface is gone; waiting for one of that "
                         "name", ifname_, id());
        }
        loop_.arm(retry_, kRetryMs);
        return;
    }
    if (static_cast<int>(idx) != ifindex_ || fd_ < 0) {
        close_socket();
        bool is_up = false;
        try {
            is_up = open_socket();
        } catch (const std::exception& e) {
            spdlog::debug("uplink {}: {}", ifname_, e.what());
            loop_.arm(retry_, kRetryMs);
            return;
        }
        ustats_.reopened++;
        gone_logged_ = false;
        spdlog::info("uplink {} (port {}): a new interface of that name (index {}){}", ifname_,
                     id(), ifindex_, is_up ? "; bridging again" : ", down for now");
        if (is_up) down_ = false;
        else loop_.arm(retry_, kRetryMs);
        return;
    }
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname_.data(), ifname_.size());
    if (ioctl(fd_, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP)) {
        down_ = false;
        spdlog::info("uplink {} (port {}): the interface is up again", ifname_, id());
        return;
    }
    loop_.arm(retry_, kRetryMs);
}

void UplinkPort::on_io(uint32_t events) {
    if (fd_ < 0) return;
    if (events & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
            if (err == ENETDOWN || err == ENXIO || err == ENODEV) went_down(err);
            else spdlog::debug("uplink {}: {}", ifname_, errstr(err));
        }
    }
    if (events & EPOLLIN) receive();
}

void UplinkPort::receive() {
    for (int i = 0; i < kBatch; i++) {
        rx_iov_[i] = {rx_buf_.get() + size_t(i) * kSlot, kSlot};
        msghdr& mh = rx_msgs_[i].msg_hdr;
        mh = msghdr{};
        mh.msg_name = &rx_addr_[i];
        mh.msg_namelen = sizeof(sockaddr_ll);
        mh.msg_iov = &rx_iov_[i];
        mh.msg_iovlen = 1;
        mh.msg_control = rx_ctl_.get() + size_t(i) * kCtlLen;
        mh.msg_controllen = kCtlLen;
    }
    for (int done = 0; done < kMaxFramesPerWakeup && fd_ >= 0;) {
        int n = recvmmsg(fd_, rx_msgs_.get(), kBatch, MSG_DONTWAIT, nullptr);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == ENETDOWN || errno == ENXIO || errno == ENODEV) {
                went_down(errno);
                return;
            }
            // One frame the kernel could not describe (EINVAL from the
            // virtio-net header of an unusual GSO type): it is gone.
            stats().rx_dropped++;
            spdlog::debug("uplink {}: recvmmsg: {}", ifname_, errstr(errno));
            done++;
            continue;
        }
        if (down_) {
            // Frames again before the timer noticed: the kernel re-hooked us.
            down_ = false;
            loop_.cancel(retry_);
            spdlog::info("uplink {} (port {}): the interface is up again", ifname_, id());
        }
        for (int i = 0; i < n && fd_ >= 0; i++) {
            msghdr& mh = rx_msgs_[i].msg_hdr;
            size_t len = rx_msgs_[i].msg_len;
            uint8_t* buf = rx_buf_.get() + size_t(i) * kSlot;
            bool tagged = false;
            for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA ||
                    c->cmsg_len < CMSG_LEN(sizeof(tpacket_auxdata)))
                    continue;
                tpacket_auxdata aux;
                std::memcpy(&aux, CMSG_DATA(c), sizeof aux);
                tagged = (aux.tp_status & TP_STATUS_VLAN_VALID) != 0 || aux.tp_vlan_tci != 0;
            }
            // Restore the lengths recvmmsg shortened, for the next call.
            mh.msg_namelen = sizeof(sockaddr_ll);
            mh.msg_controllen = kCtlLen;
            if (rx_addr_[i].sll_pkttype == PACKET_OUTGOING) {
                ustats_.outgoing_ignored++;
                continue;
            }
            if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
                ustats_.truncated++;
                stats().rx_dropped++;
                continue;
            }
            if (tagged) {
                ustats_.tagged++;
                stats().rx_dropped++;
                continue;
            }
            wire::Offload off;
            if (vnet_) {
                if (len < wire::kVnetHdrLen ||
                    !wire::parse_vnet_hdr(buf, len - wire::kVnetHdrLen, off)) {
                    ustats_.bad_vnet++;
                    stats().rx_dropped++;
                    continue;
                }
                buf += wire::kVnetHdrLen;
                len -= wire::kVnetHdrLen;
            }
            sw_.input(id(), wire::Bytes(buf, len), off);
        }
        done += n;
        if (n < kBatch) return;
    }
}

void UplinkPort::deliver(wire::Bytes frame, const sw::FrameMeta& meta) {
    // The LAN is untagged toward the real network as from it: a guest's
    // 802.1Q frame would reach a VLAN of a trunk the host is on.
    if (fd_ < 0 || (frame.size() >= 14 && wire::load16(frame.data() + 12) == wire::ethertype::vlan)) {
        lost_tx(1, frame.size());
        return;
    }
    size_t len = std::max(frame.size(), wire::kEthMinFrame);
    size_t need = (vnet_ ? wire::kVnetHdrLen : 0) + len;
    if (tx_count_ == kBatch || kTxArena - tx_used_ < need) flush();
    if (fd_ < 0 || kTxArena - tx_used_ < need) {
        lost_tx(1, frame.size());
        return;
    }
    uint8_t* p = tx_buf_.get() + tx_used_;
    if (vnet_) wire::write_vnet_hdr(p, meta.off);
    uint8_t* f = p + (vnet_ ? wire::kVnetHdrLen : 0);
    std::memcpy(f, frame.data(), frame.size());
    // Padded to 60 bytes, as every port does (emulated NICs drop runts).
    if (frame.size() < len) std::memset(f + frame.size(), 0, len - frame.size());
    tx_iov_[tx_count_] = {p, need};
    tx_count_++;
    tx_used_ += need;
    if (!tx_deferred_) {
        tx_deferred_ = true;
        loop_.defer(*this);
    }
}

void UplinkPort::run_deferred() {
    tx_deferred_ = false;
    flush();
}

void UplinkPort::flush() {
    int n = tx_count_;
    for (int i = 0; i < n; i++) {
        msghdr& mh = tx_msgs_[i].msg_hdr;
        mh = msghdr{};
        mh.msg_iov = &tx_iov_[i];
        mh.msg_iovlen = 1;
    }
    int i = 0;
    while (i < n && fd_ >= 0) {
        int r = sendmmsg(fd_, tx_msgs_.get() + i, static_cast<unsigned>(n - i), MSG_DONTWAIT);
        if (r > 0) {
            i += r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        int e = r < 0 ? errno : EIO;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            // The device queue is full: what is left is dropped (TCP resends).
            lost_tx(static_cast<uint64_t>(n - i));
            spdlog::debug("uplink {}: dropped {} frames: {}", ifname_, n - i, errstr(e));
            break;
        }
        if (e == ENETDOWN || e == ENXIO || e == ENODEV) {
            lost_tx(static_cast<uint64_t>(n - i));
            went_down(e);
            break;
        }
        // This frame alone (EMSGSIZE: larger than the device takes).
        lost_tx(1);
        spdlog::debug("uplink {}: a {}-byte frame was refused: {}", ifname_,
                      tx_iov_[i].iov_len, errstr(e));
        i++;
    }
    tx_count_ = 0;
    tx_used_ = 0;
}

}  // namespace usernet::ports
