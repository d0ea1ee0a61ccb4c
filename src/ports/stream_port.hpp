// The stream attachment: QEMU `-netdev stream` / `-netdev socket`, passt's
// socket, gvisor-tap-vsock's "qemu" mode.
//
// On the wire (QEMU net/stream.c, passt tap.c): a SOCK_STREAM socket carries
// each Ethernet frame (no FCS, no vnet header) as a 4-byte big-endian length
// followed by that many bytes. A frame is at least an Ethernet header (14)
// and at most 65535 bytes; frames we send are zero-padded to 60 bytes.
//
// Theory of operation:
// - StreamListener binds an AF_UNIX stream socket at a path and accepts any
//   number of clients (up to kMaxClients). A path that a live process is
//   listening on is refused; a stale socket file left by a crash is
//   replaced; any other file is refused. The socket file is created owner
//   only (umask 077 around bind(): srwx------), so only the same user (or
//   root) can connect: run QEMU as the user that runs usernet. The destructor
//   unlinks the path if it is still ours.
// - Each accepted connection is a StreamClient, a port of its own on the
//   switch; when it disconnects, or breaks the framing, it is detached and
//   destroyed, and nothing else is affected. QEMU's reconnect-ms simply
//   connects again and gets a new port.
// - Receiving: read() into a bounded per-client buffer (StreamFrameParser),
//   hand every complete frame to the switch in place, keep the partial one.
//   A length below 14 or above 65535 is a protocol error: the peer is
//   broken or hostile, and its connection is closed (counted).
// - Sending: deliver() appends [length][frame, padded] to a bounded
//   per-client ring (StreamTxQueue, allocated once at connect) and queues a
//   core::Deferred; at the end of the event-loop batch all queued frames go
//   out in one sendmsg() (two iovecs when the ring wraps). A partial write
//   keeps the rest; a full socket waits for EPOLLOUT; a full ring drops
//   whole frames and counts them (TCP toward the guest recovers).
// No allocation and no exceptions per frame.
//
// Over TCP (--listen, --connect): stream_tcp.hpp makes the connections and
// hands each to a StreamClient. Not done here: vsock, the datagram variants
// (-netdev dgram: one frame per datagram, another port).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.hpp"
#include "core/unix_listener.hpp"
#include "ports/acceptor.hpp"
#include "ports/mac_translator.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"
#include "wire/bytes.hpp"
#include "wire/ethernet.hpp"

namespace usernet::ports {

inline constexpr size_t kStreamLenBytes = 4;
inline constexpr size_t kStreamMaxFrame = 65535;
inline constexpr size_t kStreamMinFrame = wire::kEthHeaderLen;

// Reassembles length-prefixed frames from a byte stream, in one buffer
// allocated at construction. Use: read() into writable(), commit() what was
// read, drain() the complete frames. Pure: no I/O.
class StreamFrameParser {
public:
    static constexpr size_t kDefaultCapacity = 256 * 1024;
    static constexpr size_t kMinCapacity = kStreamLenBytes + kStreamMaxFrame;

    explicit StreamFrameParser(size_t capacity = kDefaultCapacity);

    // Free space after the buffered bytes; never empty after a successful
    // drain(). Moves a partial frame to the front when the tail is short.
    wire::MutBytes writable();
    void commit(size_t n) { end_ += n; }

    // Calls on_frame(wire::MutBytes) for each complete frame, in order; the
    // span is valid only during the call (and may be rewritten in place). Returns false, and stops for good,
    // on a length outside [kStreamMinFrame, kStreamMaxFrame].
    template <class F>
    bool drain(F&& on_frame) {
        if (error_) return false;
        while (end_ - start_ >= kStreamLenBytes) {
            uint32_t len = wire::load32(&buf_[start_]);
            if (len < kStreamMinFrame || len > kStreamMaxFrame) {
                error_ = true;
                bad_length_ = len;
                return false;
            }
            if (end_ - start_ - kStreamLenBytes < len) break;
            on_frame(wire::MutBytes(&buf_[start_ + kStreamLenBytes], len));
            start_ += kStreamLenBytes + len;
        }
        if (start_ == end_) start_ = end_ = 0;
        return true;
    }

    size_t buffered() const { return end_ - start_; }
    bool error() const { return error_; }
    uint32_t bad_length() const { return bad_length_; }

private:
    std::unique_ptr<uint8_t[]> buf_;
    size_t cap_;
    size_t start_ = 0;
    size_t end_ = 0;
    bool error_ = false;
    uint32_t bad_length_ = 0;
};

// A byte ring of framed output, allocated once. push() appends
// [length][frame][zero padding to 60] whole or not at all.
class StreamTxQueue {
public:
    static constexpr size_t kDefaultCapacity = 4 * 1024 * 1024;

    // capacity is rounded up to a power of two.
    explicit StreamTxQueue(size_t capacity = kDefaultCapacity);

    // False (nothing queued) if the frame is empty, over kStreamMaxFrame, or
    // does not fit. A frame may come in two pieces, head then tail.
    bool push(wire::Bytes frame, wire::Bytes tail = {});
    size_t size() const { return static_cast<size_t>(tail_ - head_); }
    bool empty() const { return head_ == tail_; }
    size_t capacity() const { return cap_; }
    // Describes the queued bytes from the head in one or two iovecs;
    // returns how many.
    int peek(iovec out[2]) const;
    // Drops n bytes (n <= size()) from the head: what the socket took.
    void consume(size_t n) { head_ += n; }

private:
    void put(const uint8_t* p, size_t n);
    void put_zeros(size_t n);

    std::unique_ptr<uint8_t[]> buf_;
    size_t cap_;
    uint64_t head_ = 0;  // free-running byte counters; index = counter & (cap_ - 1)
    uint64_t tail_ = 0;
};

// One connected stream peer as a port of the switch. Takes ownership of a
// connected, non-blocking SOCK_STREAM descriptor (unix or TCP). When the
// peer goes away or breaks the framing, the client detaches itself from the
// switch and the loop, closes the descriptor, and later (from the loop's
// deferred work, when nothing refers to it any more) calls on_closed, which
// may destroy it.
class StreamClient : public sw::Port, public core::IoHandler, public core::Deferred {
public:
    static constexpr int kMaxReadsPerWakeup = 4;

    StreamClient(core::EventLoop& loop, sw::Switch& sw, int fd, std::string name, uint32_t mtu,
                 std::function<void(StreamClient&)> on_closed);
    ~StreamClient() override;
    StreamClient(const StreamClient&) = delete;
    StreamClient& operator=(const StreamClient&) = delete;

    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    uint32_t mtu() const override { return mtu_; }
    // What the output queue can still take (the socket's buffer is in
    // front of it and not counted: the queue is what overflows).
    size_t tx_room() const override { return txq_.capacity() - txq_.size(); }
    std::string describe() const override { return name_; }
    void on_io(uint32_t events) override;
    void run_deferred() override;

    bool closed() const { return fd_ < 0; }
    int descriptor() const { return fd_; }  // -1 once closed
    uint64_t protocol_errors() const { return protocol_errors_; }
    // ,mac=LANMAC: the LAN sees lan_mac whatever MAC the guest uses
    // (mac_translator.hpp).
    void set_mac_translation(const wire::MacAddr& lan_mac);
    const MacTranslator* mac_translator() const { return xlat_.get(); }
    size_t queued_bytes() const { return txq_.size(); }
    // The source MAC of the first frame, once one arrived.
    std::optional<wire::MacAddr> mac() const {
        return mac_known_ ? std::optional<wire::MacAddr>(mac_) : std::nullopt;
    }

    // Detaches and closes now (idempotent); on_closed follows from the loop.
    void close_connection(const char* why);

    // For an owner about to destroy the client: detaches and closes now.
    // Returns true if the loop still holds it in its deferred work, in which
    // case it must not be destroyed yet: the caller hands it over with
    // set_on_closed() (e.g. a deleter) and the loop's run finishes it.
    bool shut_down(const char* why);
    void set_on_closed(std::function<void(StreamClient&)> fn) { on_closed_ = std::move(fn); }

private:
    void defer_self();
    void on_readable();
    void flush();
    void note_mac(wire::Bytes frame);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    int fd_;
    std::string name_;
    uint32_t mtu_;
    std::function<void(StreamClient&)> on_closed_;
    bool waiting_out_ = false;
    bool defer_pending_ = false;  // queued in the loop's deferred work
    uint64_t protocol_errors_ = 0;
    bool mac_known_ = false;
    wire::MacAddr mac_;
    StreamFrameParser rx_;
    StreamTxQueue txq_;
    std::unique_ptr<MacTranslator> xlat_;
};

struct StreamListenerStats {
    uint64_t accepted = 0;
    uint64_t refused = 0;          // over kMaxClients
    uint64_t protocol_errors = 0;  // clients closed for bad framing
};

class StreamListener final : public core::IoHandler {
public:
    static constexpr size_t kMaxClients = 64;

    // Binds and listens at `path`; every client attaches to `sw` with L3
    // MTU `mtu`. Throws std::runtime_error (path in use, not a socket, too
    // long, cannot bind).
    StreamListener(core::EventLoop& loop, sw::Switch& sw, std::string path, uint32_t mtu);
    // Closes every client and unlinks the path if it is still ours. Safe at
    // any time, even from the loop's own callbacks: a client still queued in
    // the loop's deferred work is left to free itself when that work runs.
    ~StreamListener();
    StreamListener(const StreamListener&) = delete;
    StreamListener& operator=(const StreamListener&) = delete;

    void on_io(uint32_t events) override;

    const std::string& path() const { return sock_.path(); }
    size_t client_count() const { return clients_.size(); }
    // Every client accepted from now on translates to lan_mac (,mac=).
    // Several clients at once would share it: meant for one VM at a time.
    void set_client_mac(const wire::MacAddr& lan_mac) { client_mac_ = lan_mac; }
    const StreamListenerStats& stats() const { return stats_; }

private:
    void accept_clients();
    void reap(StreamClient& c);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    core::UnixListener sock_;
    uint32_t mtu_;
    uint64_t next_client_ = 1;
    std::vector<std::unique_ptr<StreamClient>> clients_;
    std::optional<wire::MacAddr> client_mac_;
    StreamListenerStats stats_;
    // Out of descriptors: stop polling the listener for a while instead of
    // spinning on a connection that cannot be accepted.
    Acceptor acceptor_{loop_, this};  // after loop_
};

}  // namespace usernet::ports
