// The datagram attachment: one raw Ethernet frame per datagram, no header.
//
// Speaks QEMU `-netdev dgram` (inet or unix, unicast or multicast), QEMU's
// older `-netdev socket,udp=` and `socket,mcast=`, and Bochs's
// `ethmod=socket` (which binds port N and sends to N+1): all of them put
// exactly one Ethernet frame (no FCS, no vnet header, no length) in each
// datagram of a SOCK_DGRAM socket (QEMU net/dgram.c and net/socket.c;
// Bochs iodev/network/eth_socket.cc).
//
// Theory of operation:
// - One DgramPort is one switch port over one datagram "link": a UDP socket
//   (IPv4 or IPv6) or an AF_UNIX datagram socket bound to a local address,
//   sending to a fixed remote address, or, when none is given, to the
//   source of the datagrams it receives (the peer is learned, and
//   re-learned when it changes). With a fixed remote, datagrams from any
//   other source are dropped and counted (a UDP port on a host can be sent
//   to by anyone); peer_only = false turns that off.
// - Multicast (DgramKind::mcast, IPv4 as in QEMU): the receiving socket is
//   bound to GROUP:PORT with SO_REUSEADDR and SO_REUSEPORT, as every QEMU
//   on the group binds it, and joins the group. Those QEMUs all send from
//   GROUP's port, so a frame usernet sent could not be told from theirs if
//   it sent from that socket too; usernet therefore sends from a second
//   socket, connected to GROUP:PORT with IP_MULTICAST_LOOP on (the QEMUs on
//   this host hear it), whose own address (source address and ephemeral
//   port) is exact. The group loops every datagram back to every member,
//   usernet included: a datagram whose source is that address is usernet's
//   own, and is dropped (counted as own_echo) before the switch sees it.
// - Multicast, one port per guest: every QEMU on the group sends from the
//   same address, so the guests are told apart by their source MAC. Each
//   new MAC (up to kMaxGroupGuests) gets a switch port of its own (a
//   Member), so that the per-attachment limits (DHCP leases, flows, MACs)
//   count per guest as they do for a stream client; frames from MACs
//   beyond that enter through the DgramPort itself, sharing its limits.
//   Every copy the switch hands to any of these ports goes out once: a
//   frame that came in from the group is never sent back to it (the group
//   carried it to every member already), and a flooded frame, handed to
//   each member port in turn, is sent only the first time.
// - Receiving: recvmmsg() in batches of kRxBatch into buffers allocated
//   once (each the port's MTU plus an Ethernet header and one 802.1Q tag),
//   at most kMaxFramesPerWakeup per wakeup, so one busy peer cannot starve
//   the other ports (epoll is level-triggered and comes back). Each frame
//   goes to the switch at once, in place. A 0-byte datagram is nothing (QEMU
//   takes one as the end of the connection; we do not end anything); a
//   datagram shorter than an Ethernet header, or longer than the buffer
//   (MSG_TRUNC), is dropped and counted.
// - Sending: deliver() copies the frame, zero-padded to 60 bytes (Bochs's
//   and QEMU's NE2000 drop runts), into a bounded ring of slots allocated
//   once (at most kMaxTxQueueBytes, kMaxTxSlots frames) and queues a
//   core::Deferred; at the end of the loop batch the queued frames go out
//   with one sendmmsg(). A full ring drops the frame (counted); the TCP
//   translator keeps within tx_frame_room() (the free slots, less a
//   reserve for ARP, DHCP and ACKs), as its data can wait in the host
//   socket, so that a burst of many flows does not overrun the ring and
//   cost it a loss recovery. A receiver that is full (EAGAIN: an AF_UNIX peer
//   holds only net.unix.max_dgram_qlen datagrams, 10 by default) keeps the
//   rest queued and retries after kRetryMs or with the next batch; a peer
//   that is not there (ENOENT, ECONNREFUSED: QEMU not started yet) drops
//   the queue, counted. Errors are logged once per kind, not per frame.
// - A unix socket path usernet binds is created owner only (umask 077);
//   a stale socket file at that path is replaced, one a live process has
//   bound is refused, anything else is refused; the destructor unlinks the
//   path if it is still ours.
// - Visibility: the port logs its addresses when created, its peer when
//   learned or changed, and each guest MAC the first time a frame from it
//   arrives (up to kMaxMacLogs), and its counters when destroyed.
// No allocation and no exceptions per frame.
//
// Lifetime: destroy a DgramPort only while the event loop is not running a
// batch (it may be queued in the loop's deferred work); the daemon owns
// its ports for its whole life.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"

struct mmsghdr;

namespace usernet::ports {

// A socket address: IPv4, IPv6 or an AF_UNIX path.
struct SockAddr {
    sockaddr_storage ss{};
    socklen_t len = 0;

    static SockAddr inet(const wire::IpAddr& addr, uint16_t port);
    // Nothing if the path is empty or longer than sun_path holds.
    static std::optional<SockAddr> unix_path(std::string_view path);
    // From a kernel-filled address (recvmsg, getsockname).
    static SockAddr from(const sockaddr* sa, socklen_t len);

    int family() const { return ss.ss_family; }
    bool is_inet() const { return family() == AF_INET || family() == AF_INET6; }
    wire::IpAddr ip() const;     // inet only
    uint16_t port() const;       // inet only
    std::string path() const;    // unix only
    // "1.2.3.4:5", "[::1]:5", "/path".
    std::string to_string() const;
    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }

    // Same family, address and port (inet) or path (unix).
    bool same(const sockaddr* other, socklen_t other_len) const;
    bool operator==(const SockAddr& o) const { return same(o.sa(), o.len); }
};

enum class DgramKind {
    udp,    // UDP unicast, IPv4 or IPv6
    unix_dgram,  // AF_UNIX SOCK_DGRAM
    mcast,  // UDP to an IPv4 multicast group
};

struct DgramConfig {
    DgramKind kind = DgramKind::udp;
    // udp: the address and port to bind (port not 0); unix: the path to
    // bind; mcast: the group and its port (IPv4 multicast).
    SockAddr local;
    // udp, unix: where frames go. Empty: to the source of the datagrams
    // received (learned). mcast: ignored (frames go to the group).
    std::optional<SockAddr> remote;
    // unix: the remote path as given, when that was relative (remote holds
    // it made absolute): a peer that bound it relative from usernet's
    // directory sends from this name, and is the same peer.
    std::optional<SockAddr> remote_alias;
    // mcast: the interface address to join on and send from (QEMU's
    // localaddr=); empty: the kernel's choice by route.
    std::optional<wire::Ipv4> mcast_if;
    // With a fixed remote: drop datagrams from other sources (counted).
    bool peer_only = true;
    // L3 MTU of the attachment; frames up to mtu + 18 bytes are taken.
    uint32_t mtu = 1500;
    // For logs; empty: "dgram udp LOCAL" and the like.
    std::string name;
};

struct DgramStats {
    uint64_t empty = 0;        // 0-byte datagrams (ignored)
    uint64_t too_short = 0;    // under an Ethernet header
    uint64_t too_long = 0;     // over the receive buffer (truncated)
    uint64_t trimmed = 0;      // over it, an IP packet and junk: cut to the packet
    uint64_t foreign = 0;      // from a source other than the fixed remote
    uint64_t own_echo = 0;     // multicast: our own datagrams looped back
    uint64_t tx_queue_full = 0;
    uint64_t tx_no_peer = 0;   // nowhere to send yet (learned peer unknown)
    uint64_t tx_errors = 0;    // frames the kernel refused (peer absent, ...)
    uint64_t tx_retries = 0;   // EAGAIN: receiver full, retried later
    uint64_t peer_changes = 0; // learned peer set or changed
    uint64_t group_local = 0;  // multicast: frames between guests on the group, not re-sent
    uint64_t flood_copies = 0; // multicast: further copies of one flooded frame, not re-sent
};

class DgramPort final : public sw::Port, public core::IoHandler, public core::Deferred {
public:
    static constexpr unsigned kRxBatch = 32;
    static constexpr int kMaxFramesPerWakeup = 256;
    static constexpr size_t kMaxTxSlots = 256;
    static constexpr size_t kMinTxSlots = 64;
    static constexpr size_t kTxReserveSlots = 16;
    static constexpr size_t kMaxTxQueueBytes = 4 * 1024 * 1024;
    static constexpr core::Millis kRetryMs = 1;
    static constexpr size_t kMaxMacLogs = 64;
    static constexpr size_t kMaxGroupGuests = 32;
    // With kMaxGroupGuests ports taken, a new MAC takes over the port of
    // the guest silent longest, once it has been silent this long (a guest
    // that left; its flows are reset, its leases go back to the pool).
    static constexpr core::Millis kMemberIdleMs = 300'000;

    // Creates and binds the socket(s) and attaches to the switch. Throws
    // std::runtime_error with one sentence (address in use, path held by a
    // live process, no route to the group, ...).
    DgramPort(core::EventLoop& loop, sw::Switch& sw, DgramConfig cfg);
    ~DgramPort() override;
    DgramPort(const DgramPort&) = delete;
    DgramPort& operator=(const DgramPort&) = delete;

    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    uint32_t mtu() const override { return cfg_.mtu; }
    std::string describe() const override { return name_; }
    void on_io(uint32_t events) override;
    void run_deferred() override;

    const DgramConfig& config() const { return cfg_; }
    const DgramStats& dgram_stats() const { return dstats_; }
    // The address actually bound (port 0 resolved) for receiving.
    const SockAddr& local_address() const { return bound_; }
    // Multicast: the address frames are sent from (own echoes carry it).
    const SockAddr& send_address() const { return tx_bound_; }
    // Where frames go now: the fixed remote, the learned peer, or nothing.
    std::optional<SockAddr> peer() const;
    size_t queued_frames() const { return tx_count_; }
    // Free slots of the send ring, less kTxReserveSlots kept for what
    // cannot wait (ARP, DHCP, ACKs): a TCP sender fills the rest at most.
    size_t tx_frame_room() const override {
        size_t free = tx_slots_ - tx_count_;
        return free > kTxReserveSlots ? free - kTxReserveSlots : 0;
    }
    // Largest frame taken in and sent out: mtu + 14 + 4.
    size_t frame_capacity() const { return slot_size_; }
    // Multicast: the switch ports of the guests seen on the group.
    size_t member_count() const { return members_.size(); }
    std::vector<sw::PortId> member_ports() const;

private:
    // A guest on the multicast group, as a switch port of its own.
    class Member final : public sw::Port {
    public:
        Member(DgramPort& owner, const wire::MacAddr& mac) : owner_(owner), mac_(mac) {}
        void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override {
            owner_.deliver(frame, meta);
        }
        uint32_t mtu() const override { return owner_.mtu(); }
        // A member's frames go into the link's one ring.
        size_t tx_frame_room() const override { return owner_.tx_frame_room(); }
        std::string describe() const override {
            return owner_.describe() + " guest " + mac_.to_string();
        }
        const wire::MacAddr& mac() const { return mac_; }
        core::Millis last_seen = 0;  // its last frame from the group

    private:
        DgramPort& owner_;
        wire::MacAddr mac_;
    };

    sw::PortId member_for(const uint8_t* frame);
    bool own_port(sw::PortId p) const;
    void open_unicast();
    void open_unix();
    void open_mcast();
    void on_readable();
    void handle(const uint8_t* buf, size_t len, int flags, const sockaddr* from, socklen_t from_len);
    void note_mac(const uint8_t* frame);
    void flush();
    void log_tx_error(int err);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    DgramConfig cfg_;
    std::string name_;
    int fd_ = -1;     // receives (and sends, unless multicast)
    int tx_fd_ = -1;  // sends; == fd_ except for multicast
    SockAddr bound_;
    SockAddr tx_bound_;
    std::optional<SockAddr> learned_;
    bool attached_ = false;
    bool defer_pending_ = false;
    bool unix_bound_ = false;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    size_t slot_size_ = 0;

    // Receive side: kRxBatch buffers of slot_size_.
    std::unique_ptr<uint8_t[]> rx_buf_;
    std::unique_ptr<mmsghdr[]> rx_msgs_;
    std::unique_ptr<struct iovec[]> rx_iov_;
    std::unique_ptr<sockaddr_storage[]> rx_from_;

    // Send side: a ring of tx_slots_ slots of slot_size_ bytes.
    size_t tx_slots_ = 0;
    std::unique_ptr<uint8_t[]> tx_buf_;
    std::unique_ptr<uint32_t[]> tx_len_;
    std::unique_ptr<mmsghdr[]> tx_msgs_;
    std::unique_ptr<struct iovec[]> tx_iov_;
    size_t tx_head_ = 0;
    size_t tx_count_ = 0;
    core::Timer retry_timer_{[this] { flush(); }};

    // Guest MACs seen (logged once each, up to kMaxMacLogs).
    std::array<wire::MacAddr, 8> macs_{};
    size_t mac_count_ = 0;
    size_t mac_logs_ = 0;
    wire::MacAddr last_mac_{};
    uint32_t tx_error_logged_ = 0;  // a bit per kind already logged
    std::vector<std::unique_ptr<Member>> members_;
    bool full_warned_ = false;
    size_t last_member_ = 0;               // index of the last member found
    uint64_t last_tx_seq_ = 0;  // the last frame queued (FrameMeta::seq, length),
    size_t last_tx_len_ = 0;    // to recognise a flood's copies
    DgramStats dstats_;
};

}  // namespace usernet::ports
