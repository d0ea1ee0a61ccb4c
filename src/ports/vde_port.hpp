// The VDE attachment: usernet is a vde_switch (vde_plug, QEMU -netdev vde,
// VirtualBox's VDE driver, anything built on libvdeplug).
//
// On the wire (vde-2 src/vde_switch/datasock.c is the switch, libvdeplug's
// "vde" module the client; ANCHORS.md 2.3):
// - The switch is a directory DIR holding an AF_UNIX stream socket DIR/ctl.
// - A client binds a datagram socket of its own (DIR/.PID-N, or in /tmp
//   and friends when it cannot bind in DIR), connects to DIR/ctl and sends
//   one request, in host byte order, packed:
//     v3: u32 magic 0xfeedface, u32 version 3, u32 type,
//         struct sockaddr_un sock (110 bytes: the client's datagram socket),
//         description (up to 128 bytes, sent without its NUL)
//     v1: u32 magic, u32 type (0 or 1), u8 mac[6], struct sockaddr_un,
//         description
//   type's low byte is 0 (a new port) or 1 (port 0, management); the bits
//   above it ask for a port number, which usernet does not honour (any port
//   is as good as another here).
// - The switch creates a datagram socket of its own, binds it in DIR,
//   connects it to the client's socket and writes back its sockaddr_un
//   (110 bytes). The client connects its datagram socket there. Nothing
//   else ever crosses the control stream: libvdeplug sends nothing more,
//   and closing it (the client exited or died) is how a port leaves.
// - Data: one raw Ethernet frame per datagram, both ways, no header.
//
// Theory of operation:
// - VdeSwitch creates DIR (0700) if it does not exist, or uses an existing
//   directory of our own user; binds DIR/ctl (srw-------). A DIR/ctl that
//   a live switch answers on is refused; a stale one (left by a crash) is
//   removed, with the dead port sockets of the crashed switch. At exit it
//   removes every file it created, DIR/ctl, and DIR itself if it created
//   it and it is empty.
// - Each accepted control connection is a VdeClient. Until its request has
//   arrived it is not a port; the request must arrive within 5 s, complete
//   and valid (parse_vde_request: magic, version, type, AF_UNIX, an
//   absolute NUL-terminated path, at most 128 description bytes), and its
//   path must be a socket owned by the connecting process's user
//   (SO_PEERCRED), so a client cannot make usernet send frames into
//   someone else's socket. A bad request closes that connection (counted).
// - After the handshake the client is a switch port: its datagram socket is
//   DIR/NNN.S (NNN its VDE port number, S a serial), connected to the
//   client's, so the kernel delivers to it only what the client sends.
//   Closing the control stream detaches the port and unlinks DIR/NNN.S at
//   once.
// - Receiving: recvmmsg() of up to kRxBatch datagrams per wakeup into one
//   buffer the VdeSwitch shares among its clients (each frame goes through
//   the switch before the next recvmmsg()), so one busy client cannot
//   starve the others and nothing is allocated per client for input. A
//   datagram shorter than an Ethernet header, or longer than the buffer's
//   slot (MTU + 18), is dropped and counted, unless the slot holds a whole
//   IP packet followed by junk (QEMU's i82559er): that is cut to the packet.
// - Sending: deliver() copies the frame, zero-padded to 60 bytes, into the
//   client's bounded VdeTxQueue and queues a core::Deferred; at the end of
//   the loop batch the queued frames leave with sendmmsg(). A full socket
//   waits for EPOLLOUT; a full queue drops frames (counted); a client whose
//   datagram socket is gone (ECONNREFUSED) is closed.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.hpp"
#include "ports/acceptor.hpp"
#include "ports/mac_translator.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"
#include "wire/bytes.hpp"

namespace usernet::ports {

inline constexpr uint32_t kVdeMagic = 0xfeedface;
inline constexpr size_t kVdeSockaddrLen = sizeof(sockaddr_un);   // 110 on Linux
inline constexpr size_t kVdeSunPathLen = sizeof(sockaddr_un{}.sun_path);  // 108
inline constexpr size_t kVdeDescrMax = 128;
// magic, version, type, sockaddr_un
inline constexpr size_t kVdeV3Fixed = 4 + 4 + 4 + kVdeSockaddrLen;
// magic, type, mac, sockaddr_un
inline constexpr size_t kVdeV1Fixed = 4 + 4 + 6 + kVdeSockaddrLen;
inline constexpr size_t kVdeMaxRequest = kVdeV1Fixed + kVdeDescrMax;

struct VdeRequest {
    int version = 3;        // 1 or 3
    uint32_t type = 0;      // low byte: 0 new port, 1 port 0 (management)
    uint32_t port = 0;      // the port number asked for (type >> 8); 0: any
    std::string path;       // the client's datagram socket, absolute
    std::string description;  // printable ASCII, non-printable bytes as '?'
};

struct VdeParse {
    enum Status { need_more, ok, bad } status = need_more;
    VdeRequest req;
    const char* error = nullptr;  // for bad: what was wrong
};

// Parses the bytes a client has sent on its control stream so far (pure; no
// I/O). need_more: not yet the fixed part of a request (the caller waits for
// more, up to its timeout); ok: a complete, valid request, whose
// description is whatever followed the fixed part; bad: never valid
// however much follows.
VdeParse parse_vde_request(wire::Bytes buf);

// Builds a v3 request as libvdeplug sends it (tests, fuzz seeds): the fixed
// part and the description without its NUL.
std::vector<uint8_t> make_vde_request_v3(const std::string& path, const std::string& descr,
                                         uint32_t type = 0);

// The bounded output queue of one client: whole frames (zero-padded to 60)
// in a byte ring, with a ring of lengths beside it; allocated once.
class VdeTxQueue {
public:
    // byte_capacity is rounded up to a power of two (at least one largest
    // frame); at most max_frames frames are queued.
    VdeTxQueue(size_t byte_capacity, size_t max_frames);

    // False (nothing queued) if the frame is empty, larger than 65535 bytes
    // or does not fit. A frame may come in two pieces, head then tail.
    bool push(wire::Bytes frame, wire::Bytes tail = {});
    size_t frames() const { return static_cast<size_t>(ftail_ - fhead_); }
    size_t bytes() const { return static_cast<size_t>(tail_ - head_); }
    bool empty() const { return ftail_ == fhead_; }
    // What push() can still take: bytes, and frames.
    size_t byte_room() const { return cap_ - bytes(); }
    size_t frame_room() const { return max_frames_ - frames(); }

    // Describes up to max of the oldest frames as msghdrs (each one or two
    // iovecs of iov[2 * i .. 2 * i + 1]); returns how many.
    size_t peek(mmsghdr* msgs, iovec* iov, size_t max) const;
    // Drops the n oldest frames (n <= frames()).
    void pop(size_t n);

private:
    std::unique_ptr<uint8_t[]> buf_;
    size_t cap_;
    std::unique_ptr<uint32_t[]> lens_;
    size_t max_frames_;
    uint64_t head_ = 0, tail_ = 0;    // bytes, free-running
    uint64_t fhead_ = 0, ftail_ = 0;  // frames, free-running
};

// The receive buffer a VdeSwitch shares among its clients.
struct VdeRxBatch {
    static constexpr size_t kRxBatch = 64;
    explicit VdeRxBatch(size_t slot_size);
    size_t slot;
    std::unique_ptr<uint8_t[]> buf;
    mmsghdr msgs[kRxBatch];
    iovec iov[kRxBatch];
};

struct VdeSwitchStats {
    uint64_t accepted = 0;        // control connections
    uint64_t refused = 0;         // over kMaxClients
    uint64_t bad_requests = 0;    // handshakes refused (bad request, bad socket)
    uint64_t timeouts = 0;        // no complete request in time
    uint64_t ports = 0;           // handshakes that became ports
};

class VdeSwitch;

// One control connection, and after its handshake a port of the switch.
class VdeClient : public sw::Port, public core::IoHandler, public core::Deferred {
public:
    static constexpr core::Millis kHandshakeMs = 5000;
    static constexpr size_t kTxBytes = 1 << 20;
    static constexpr size_t kTxFrames = 1024;
    static constexpr size_t kTxBatch = 64;

    // Takes the accepted control descriptor (non-blocking). peer_uid/pid
    // from SO_PEERCRED (-1 when unknown).
    VdeClient(VdeSwitch& owner, int ctl_fd, uid_t peer_uid, pid_t peer_pid, uint64_t serial);
    ~VdeClient() override;
    VdeClient(const VdeClient&) = delete;
    VdeClient& operator=(const VdeClient&) = delete;

    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    // The output queue's room, for a TCP sender to keep within.
    size_t tx_room() const override { return txq_ ? txq_->byte_room() : 0; }
    size_t tx_frame_room() const override { return txq_ ? txq_->frame_room() : 0; }
    uint32_t mtu() const override;
    std::string describe() const override { return name_; }
    void on_io(uint32_t events) override;  // the control stream
    void run_deferred() override;

    bool is_port() const { return data_fd_ >= 0; }
    bool closed() const { return ctl_fd_ < 0; }
    unsigned vde_port() const { return vde_port_; }
    const std::string& data_path() const { return data_path_; }
    const std::string& client_path() const { return req_.path; }
    const std::string& description() const { return req_.description; }
    size_t queued_frames() const { return txq_ ? txq_->frames() : 0; }
    // ,mac=LANMAC (mac_translator.hpp); the switch sets it on every client.
    void set_mac_translation(const wire::MacAddr& lan_mac);
    const MacTranslator* mac_translator() const { return xlat_.get(); }

    // Closes (idempotent): detaches, closes both sockets, unlinks the data
    // socket's file. Returns true if the loop still holds the client in its
    // deferred work (then it must not be destroyed yet; see StreamClient).
    bool shut_down(const char* why);
    void close_connection(const char* why);
    void set_on_closed(std::function<void(VdeClient&)> fn) { on_closed_ = std::move(fn); }

private:
    struct DataIo final : core::IoHandler {
        VdeClient* c;
        void on_io(uint32_t events) override { c->on_data(events); }
    };
    void on_ctl_readable();
    void handshake();
    bool open_data_socket(std::string& why);
    void on_data(uint32_t events);
    void flush();
    void defer_self();

    VdeSwitch& owner_;
    int ctl_fd_;
    int data_fd_ = -1;
    uid_t peer_uid_;
    pid_t peer_pid_;
    uint64_t serial_;
    unsigned vde_port_ = 0;
    std::string name_;
    std::string data_path_;
    dev_t data_dev_ = 0;
    ino_t data_ino_ = 0;
    VdeRequest req_;
    uint8_t ctl_buf_[kVdeMaxRequest + 1];
    size_t ctl_len_ = 0;
    size_t ctl_after_ = 0;  // bytes received after the handshake
    bool waiting_out_ = false;
    bool defer_pending_ = false;
    bool mac_logged_ = false;
    DataIo data_io_;
    std::unique_ptr<VdeTxQueue> txq_;  // allocated at the handshake
    std::unique_ptr<MacTranslator> xlat_;
    std::function<void(VdeClient&)> on_closed_;
    core::Timer handshake_timer_;
};

class VdeSwitch final : public core::IoHandler {
public:
    static constexpr size_t kMaxClients = 64;

    // Makes (or takes) the switch directory `dir` and listens on dir/ctl;
    // every port gets L3 MTU `mtu`. Throws std::runtime_error with one
    // sentence (the directory or ctl unusable, a live switch there).
    VdeSwitch(core::EventLoop& loop, sw::Switch& sw, const std::string& dir, uint32_t mtu);
    // Closes every client (unlinking its socket), unlinks ctl, and removes
    // the directory if usernet created it and it is empty.
    ~VdeSwitch();
    VdeSwitch(const VdeSwitch&) = delete;
    VdeSwitch& operator=(const VdeSwitch&) = delete;

    void on_io(uint32_t events) override;

    const std::string& dir() const { return dir_; }
    const std::string& ctl_path() const { return ctl_path_; }
    uint32_t mtu() const { return mtu_; }
    size_t client_count() const { return clients_.size(); }
    size_t port_count() const;
    const VdeSwitchStats& stats() const { return stats_; }
    // ,mac=LANMAC: every client that connects from now on shows the LAN
    // lan_mac whatever MAC it uses (give it only when one guest at a time
    // connects: all would present the same MAC).
    void set_client_mac(const wire::MacAddr& lan_mac) { client_mac_ = lan_mac; }
    template <class F>
    void for_each_client(F&& f) const {
        for (const auto& c : clients_) f(*c);
    }

private:
    friend class VdeClient;
    void accept_clients();
    void reap(VdeClient& c);
    unsigned free_vde_port() const;
    void remove_stale_ports();

    core::EventLoop& loop_;
    sw::Switch& sw_;
    std::string dir_;
    std::string ctl_path_;
    uint32_t mtu_;
    bool created_dir_ = false;
    int fd_ = -1;
    dev_t ctl_dev_ = 0;
    ino_t ctl_ino_ = 0;
    uint64_t next_serial_ = 1;
    std::vector<std::unique_ptr<VdeClient>> clients_;
    std::optional<wire::MacAddr> client_mac_;
    VdeRxBatch rx_;
    VdeSwitchStats stats_;
    // Out of descriptors: stop polling ctl for a second instead of spinning
    // on a connection that cannot be accepted.
    Acceptor acceptor_{loop_, this};  // after loop_
};

}  // namespace usernet::ports
