// The serial line attachment: a guest with no NIC at all dials in over an
// emulated UART with PPP or SLIP, as it did with the original slirp.
//
// Transports (one peer at a time, as on a real line):
//   pty[:LINK]        usernet opens a pseudo-terminal (posix_openpt, raw
//                     mode) and prints its /dev/pts path (LINK: also a
//                     symlink to it); QEMU -serial /dev/pts/N, or pppd /
//                     slattach on it directly. usernet keeps the slave open
//                     itself, so a peer can come and go.
//   unix:PATH         a unix stream socket usernet listens on: QEMU
//                     -serial unix:PATH (or -chardev socket,path=PATH).
//   tcp:[HOST:]PORT   a TCP listener (HOST defaults to 127.0.0.1): QEMU
//                     -serial tcp:HOST:PORT, Bochs com1: mode=socket-client.
// A second connection while one is up is refused; when the peer hangs up,
// its link ends and the next connection starts a new one.
//
// The peer on the switch. A PPP or SLIP peer speaks IP, the LAN speaks
// Ethernet, so this port is the peer's Ethernet side: a virtual host with
// a MAC of its own (02:53 and four bytes hashed from the transport, stable
// across restarts) that holds the peer's IPv4 address on the LAN.
//   - Its address: a DHCP lease that the port takes from the gateway as that
//     MAC, through the switch, like any guest (DISCOVER/REQUEST, renewed
//     at T1), so the gateway's source guard, lease limits and forwards work
//     unchanged; or a fixed addr= (which the daemon reserves for this port).
//     PPP hands it to the peer by IPCP; SLIP peers are configured with it.
//   - Toward the LAN: an IP packet from the peer must come from that
//     address (anything else is dropped, counted). Its next hop is its
//     destination when that lies in the subnet (another guest; the DNS
//     address, which the gateway answers ARP for), the gateway otherwise
//     (and for the limited or subnet broadcast, ff:ff:ff:ff:ff:ff). The
//     next hop's MAC comes from a small ARP cache (kArpEntries, refreshed
//     after kArpFreshMs); while a request is out, one packet per next hop
//     waits (a DNS query is not lost to the first ARP), others are dropped.
//     The frame is the packet behind an Ethernet header from our MAC.
//   - From the LAN: the port answers ARP requests for the peer's address
//     with its MAC, learns the MACs of hosts that ask or answer it, takes
//     its own DHCP replies, and passes unicast IPv4 to the peer's address
//     (switch-completed checksums; no offload) to the line. Broadcasts and
//     IPv6 are not passed on (PPP here negotiates IPv4 only).
//   - Frames it sends in answer to a frame it is handed (ARP replies, the
//     packet that waited for that ARP reply) go out at the end of the loop
//     batch, never from inside the switch's delivery.
// Output to the line goes through a bounded ring (kTxRing) flushed at the
// end of the batch (writev on a pty, sendmsg with MSG_NOSIGNAL on a
// socket); a full ring drops whole packets, and IP packets never take its
// last kTxReserve bytes, which are the link's own frames' (LCP, IPCP: a
// UDP stream faster than the line must not starve the echo replies that
// keep pppd from hanging up). A line is slow (QEMU's UART moves 50
// KiB/s), so the TCP translator keeps within tx_room(): the ring's free
// bytes, less kTxReserve, halved because PPP's and SLIP's escaping can
// double a packet. A long download then waits in the host socket instead
// of losing the tail of a window here. Packets dropped either way are
// the port's tx_dropped (lost_tx); bad frames from the line, malformed
// packets and packets from another source its rx_dropped.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "core/unix_listener.hpp"
#include "ports/ppp.hpp"
#include "ports/serial_config.hpp"
#include "ports/slip.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::ports {

struct SerialStats {
    uint64_t connections = 0;
    uint64_t refused = 0;        // a second peer while one is connected
    uint64_t rx_packets = 0;     // IP packets from the peer onto the LAN
    uint64_t tx_packets = 0;     // IP packets from the LAN to the peer
    uint64_t dropped_spoofed = 0;   // from the peer with another source address
    uint64_t dropped_malformed = 0; // not an IPv4 packet, or over the MTU
    uint64_t dropped_no_arp = 0;    // next hop unresolved and its slot busy
    uint64_t dropped_no_link = 0;   // toward the peer while no link is up
    uint64_t dropped_ring_full = 0; // toward the peer, output ring full (IP: all but kTxReserve)
    uint64_t dropped_line = 0;      // frames the line's decoder refused (FCS, escape, length)
    uint64_t dhcp_leases = 0;       // DHCP ACKs taken
};

class SerialPort final : public sw::Port, public core::Deferred, private ppp::PppHost {
public:
    static constexpr size_t kTxRing = 256 * 1024;
    static constexpr size_t kTxReserve = 8 * 1024;
    static constexpr size_t kArpEntries = 8;
    static constexpr core::Millis kArpFreshMs = 120'000;
    static constexpr core::Millis kArpRetryMs = 1000;
    static constexpr core::Millis kLoopedQuietMs = 10'000;
    static constexpr size_t kReadChunk = 16 * 1024;
    static constexpr int kMaxReadsPerWakeup = 4;

    // Opens the transport. Throws std::runtime_error (path in use, cannot
    // bind, no pty).
    SerialPort(core::EventLoop& loop, sw::Switch& sw, const SerialConfig& cfg);
    ~SerialPort() override;
    SerialPort(const SerialPort&) = delete;
    SerialPort& operator=(const SerialPort&) = delete;

    // sw::Port
    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    // Once LCP is open, no more than the peer's MRU (RFC 1661 6.1: 1500
    // unless it asked otherwise): larger packets are fragmented by the
    // gateway, or bounded by the TCP translator's segment size.
    uint32_t mtu() const override;
    size_t tx_room() const override;
    std::string describe() const override { return name_; }
    void run_deferred() override;

    // Where the peer attaches: the pty's path, the socket path, HOST:PORT
    // (the bound port when 0 was asked).
    const std::string& location() const { return location_; }
    // What to tell the user: emulator options and the guest's commands.
    std::vector<std::string> usage() const;
    const wire::MacAddr& mac() const { return mac_; }
    // The peer's address (0 until the lease is taken).
    wire::Ipv4 peer_addr() const { return addr_; }
    bool peer_connected() const { return conn_fd_ >= 0; }
    bool link_up() const;
    const SerialStats& serial_stats() const { return stats_; }
    // Bytes waiting in the output ring.
    size_t queued_bytes() const { return kTxRing - ring_free(); }
    const ppp::PppLink* ppp_link() const { return ppp_.get(); }

private:
    struct FdHandler final : core::IoHandler {
        SerialPort* self = nullptr;
        void (SerialPort::*fn)(uint32_t) = nullptr;
        void on_io(uint32_t events) override { (self->*fn)(events); }
    };
    struct Neighbor {
        wire::Ipv4 ip = 0;
        wire::MacAddr mac;
        bool resolved = false;
        core::Millis seen = 0;    // resolved at
        core::Millis asked = 0;   // last ARP request
        uint32_t pending_len = 0; // a packet waiting for the answer
        bool flush = false;       // resolved with a packet waiting: send it at the batch end
    };
    enum class Dhcp : uint8_t { off, selecting, requesting, bound, renewing };

    void open_pty();
    void open_unix();
    void open_tcp();
    void on_listener(uint32_t events);
    void on_conn(uint32_t events);
    void attach_peer(int fd, const std::string& peer);
    void close_peer(const std::string& why);
    void start_link();
    void flush_ring();
    bool ring_push(wire::Bytes bytes);
    size_t ring_free() const { return kTxRing - static_cast<size_t>(ring_tail_ - ring_head_); }

    // From the peer.
    void from_peer(wire::Bytes packet);
    void emit(const wire::MacAddr& dst, wire::Bytes packet);
    Neighbor* neighbor(wire::Ipv4 ip);
    Neighbor& neighbor_slot(wire::Ipv4 ip);
    void send_arp_request(wire::Ipv4 target);
    // From the LAN.
    void handle_arp(wire::Bytes payload);
    void learn(wire::Ipv4 ip, const wire::MacAddr& mac);
    void to_peer(wire::Bytes packet);
    void queue_lan_frame(wire::Bytes frame);
    // DHCP on the peer's behalf.
    void dhcp_send();
    bool dhcp_reply(wire::Bytes udp_payload);
    void dhcp_timeout();
    void set_addr(wire::Ipv4 a, const char* how);

    // ppp::PppHost
    void ppp_write(wire::Bytes bytes) override;
    bool ppp_write_ip(wire::Bytes bytes) override;
    void count_line_errors();
    uint64_t line_errors_ = 0;  // the current decoder's drops already counted
    void ppp_ip_input(wire::Bytes packet) override { from_peer(packet); }
    void ppp_ip_up(wire::Ipv4 peer) override;
    void ppp_ip_down() override;
    void ppp_arm_timer(int which, uint32_t ms) override;
    void ppp_cancel_timer(int which) override;
    uint32_t ppp_random() override;
    void ppp_looped() override { looped_ = true; }
    void on_looped();

    bool in_subnet(wire::Ipv4 a) const;
    wire::Ipv4 broadcast() const;

    core::EventLoop& loop_;
    sw::Switch& sw_;
    SerialConfig cfg_;
    std::string name_;
    std::string location_;
    std::string link_path_;  // pty: our symlink, removed at exit
    wire::MacAddr mac_;
    wire::Ipv4 addr_ = 0;
    int listen_fd_ = -1;
    int conn_fd_ = -1;
    int pty_slave_fd_ = -1;
    std::unique_ptr<core::UnixListener> unix_listener_;  // unix: the listening socket
    std::string peer_name_;
    FdHandler listen_h_;
    FdHandler conn_h_;
    bool waiting_out_ = false;
    bool stopping_ = false;

    std::unique_ptr<ppp::PppLink> ppp_;
    std::unique_ptr<slip::SlipDecoder> slip_rx_;
    core::Timer start_timer_;
    core::Timer lcp_timer_;
    core::Timer ipcp_timer_;

    // The output ring toward the line.
    std::unique_ptr<uint8_t[]> ring_;
    uint64_t ring_head_ = 0, ring_tail_ = 0;
    std::unique_ptr<uint8_t[]> enc_;  // one encoded SLIP packet
    std::unique_ptr<uint8_t[]> rd_;   // kReadChunk
    // Frames onto the LAN: the peer's packets, and (separately) those sent
    // at the end of a batch.
    std::unique_ptr<uint8_t[]> frame_;
    std::array<Neighbor, kArpEntries> arp_{};
    std::unique_ptr<uint8_t[]> pending_;  // kArpEntries x mtu
    static constexpr size_t kLanQueue = 8;
    std::array<std::array<uint8_t, 64>, kLanQueue> lan_q_{};
    size_t lan_q_len_ = 0;

    // DHCP client state.
    Dhcp dhcp_ = Dhcp::off;
    uint32_t xid_ = 0;
    wire::Ipv4 offered_ = 0;
    wire::Ipv4 server_ = 0;
    int dhcp_tries_ = 0;
    core::Timer dhcp_timer_;
    std::array<uint8_t, 14 + 20 + 8 + 576> dhcp_buf_{};

    bool looped_ = false;            // set by ppp_looped(), acted on after input()
    core::Millis quiet_until_ = 0;   // a looped pty: its bytes are ignored until then
    SerialStats stats_;
    SerialStats at_attach_;  // stats_ when the current peer came
};

}  // namespace usernet::ports
