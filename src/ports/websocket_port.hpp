// The WebSocket attachment: v86's `network_relay_url` (websockproxy's
// protocol, the one v86's wsproxy backend speaks, as do jor1k and the
// other websockproxy clients).
//
// On the wire: an HTTP/1.1 Upgrade handshake (RFC 6455 section 4), then
// one binary WebSocket message per Ethernet frame, both ways, no header.
//
// Theory of operation:
// - WsListener listens on a TCP address (127.0.0.1 unless told otherwise)
//   and accepts up to WsLimits::max_clients connections at once; beyond
//   that the oldest connection still in its handshake is closed to make
//   room, and with none a client gets "503 Service Unavailable" and is
//   closed. At most max_handshaking connections wait in their handshake.
// - Each connection is a WsClient. It first reads the HTTP request head
//   into a bounded buffer (kWsMaxRequestHead); a head that does not end
//   within it gets 431, one not complete within handshake_timeout_ms is
//   closed. ws_check_handshake() (pure, fuzzed) validates it: GET,
//   HTTP/1.1 or later, Upgrade: websocket, Connection: Upgrade,
//   Sec-WebSocket-Version: 13 (else 426 naming 13), a Sec-WebSocket-Key of
//   16 base64-encoded bytes, a Host, and the Origin against the allow-list
//   (none configured: pages of this host and clients that send no Origin;
//   "*": any; else only those, and no Origin at all is refused, with 403).
//   A page anywhere on the web can open a WebSocket to 127.0.0.1, and a
//   guest reaches the host's loopback through the gateway: without an
//   allow-list, a page of another site must not become a guest. The answer carries Sec-WebSocket-Accept, the
//   base64 SHA-1 (nettle) of the key and RFC 6455's GUID.
// - Only after a successful handshake does the client become a port of
//   the switch (its own port: its own lease, its own NAT flows and limits);
//   it detaches when the connection ends.
// - Framing is wslay's event API (Debian's libwslay), driven from our
//   loop: on EPOLLIN we read() up to 64 KiB into our buffer and call
//   wslay_event_recv(), whose recv callback serves bytes from that buffer
//   and says "would block" when it is empty; wslay_event_send() writes
//   through a send callback into our output buffer, which goes to the
//   socket in one send() per loop batch. wslay never touches the socket:
//   no blocking, and the parsing and framing are testable without one.
// - Receiving runs wslay without message buffering: data frames reach us
//   as chunks that we assemble in one per-client buffer of the largest
//   frame (MTU + 18 bytes, at most 65535), so a data frame costs no
//   allocation. A message larger than that is answered with close 1009; a
//   text message with close 1003 (v86 sends binary only); the switch drops
//   and counts a message of fewer than 14 bytes. Ping, pong and close are
//   wslay's: it answers a ping with a pong and a close with a close.
// - Limits per client (WsLimits): frames and bytes per second from the
//   client (token buckets used as a shaper: every message is charged,
//   and while either bucket is in debt the client's socket is not read,
//   a timer resuming it when the debt is repaid: TCP's flow control slows
//   the client down, and nothing it sent is dropped); pings over rx_pings_per_sec close the
//   client (1008); at most kWsMaxReadsPerWakeup reads per
//   wakeup (fairness); the bytes queued toward the client (wslay's queue
//   plus our output buffer) are capped: a frame that would exceed the cap
//   is dropped and counted (TCP toward the guest recovers), and a client
//   that leaves even its pongs and close unread past the cap is closed.
// - Every ping_interval_ms the server pings; a client from which nothing
//   at all has arrived for idle_timeout_ms is closed (a tab that vanished
//   without a close).
// - Sending: deliver() pads a frame to 60 bytes and queues it with
//   wslay_event_queue_msg() (wslay copies it: one allocation per frame
//   toward the client, the event API's own design; see architecture.md).
//
// TLS is not here: put a reverse proxy in front (README has an nginx
// example for wss://).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "ports/acceptor.hpp"
#include "core/token_bucket.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"
#include "wire/bytes.hpp"

struct wslay_event_context;

namespace usernet::ports {

// The request line and headers together may not exceed this.
inline constexpr size_t kWsMaxRequestHead = 8192;
inline constexpr size_t kWsMaxHeaders = 64;
inline constexpr size_t kWsMaxFrame = 65535;
inline constexpr size_t kWsMinFrame = 14;
inline constexpr int kWsMaxReadsPerWakeup = 4;

// ---------------------------------------------------------------- handshake (pure)

// The length of the request head including its blank line ("\r\n\r\n";
// a bare "\n\n" is accepted too), or 0 while it is incomplete.
size_t ws_request_head_length(std::string_view buf);

struct WsHandshake {
    uint16_t status = 400;   // 101: upgrade; otherwise the HTTP error to answer
    std::string reason;      // for the log when status != 101
    std::string key;         // Sec-WebSocket-Key (valid when status == 101)
    std::string origin;      // Origin, empty if none was sent
    std::string target;      // the request target ("/")
    std::string forwarded;   // X-Forwarded-For / X-Real-IP from a reverse proxy, if any
};

// Checks a complete request head (as ws_request_head_length() delimits
// it) against RFC 6455 section 4.2.1 and the Origin allow-list (see
// ws_origin_allowed). Never reads past `head`.
WsHandshake ws_check_handshake(std::string_view head, const std::vector<std::string>& origins);

// Whether `origin` (empty: the client sent none) may connect. With an
// empty allow-list: no Origin (not a browser), or a page of this host
// (ws_origin_is_local). Else any when an entry is "*", or an ASCII
// case-insensitive match of one entry (a trailing '/' ignored).
bool ws_origin_allowed(std::string_view origin, const std::vector<std::string>& allowed);
// SCHEME://HOST[:PORT] whose HOST is localhost, a name under .localhost,
// an address of 127.0.0.0/8 or [::1]: a page served by this host. ("null",
// a file:// page's, is not: sandboxed frames of any site send it too.)
bool ws_origin_is_local(std::string_view origin);

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string ws_accept_key(std::string_view key);

// Whether `key` is the base64 encoding of 16 bytes (24 characters, "=="
// at the end, the last data character one of AQgw).
bool ws_key_valid(std::string_view key);

// The whole HTTP response for a handshake result: 101 with the accept
// key, or the error with a short text body and "Connection: close".
std::string ws_http_response(const WsHandshake& hs);

// ---------------------------------------------------------------- limits

struct WsLimits {
    size_t max_clients = 64;
    // Connections still in their handshake: beyond this, or when the
    // connections reach max_clients, the oldest of them makes room for a
    // newcomer (connections that never send a request cannot lock clients
    // out).
    size_t max_handshaking = 16;
    uint32_t handshake_timeout_ms = 10'000;
    // From the client into the switch.
    uint32_t rx_frames_per_sec = 20'000;
    uint32_t rx_frames_burst = 2'000;
    uint32_t rx_bytes_per_sec = 32 * 1024 * 1024;
    uint32_t rx_bytes_burst = 4 * 1024 * 1024;
    // Toward the client: wslay's queue plus our output buffer.
    size_t tx_queue_bytes = 1024 * 1024;
    // Pings from the client (each costs wslay an allocation and a pong);
    // beyond: closed with 1008.
    uint32_t rx_pings_per_sec = 50;
    uint32_t rx_pings_burst = 50;
    uint32_t ping_interval_ms = 30'000;
    uint32_t idle_timeout_ms = 90'000;
};

struct WsConfig {
    std::string name;                  // "HOST:PORT", for the log
    uint32_t mtu = 1500;               // L3 MTU of every client's port
    std::vector<std::string> origins;  // empty: any Origin
    WsLimits limits;
};

// Counters of one client, and (summed) of a listener.
struct WsStats {
    uint64_t handshakes_refused = 0;  // HTTP error answered
    uint64_t rate_paused = 0;         // times reading stopped: over the frame or byte rate
    uint64_t text_closed = 0;         // clients closed for a text message
    uint64_t too_big_closed = 0;      // clients closed for a message over the max frame
    uint64_t ping_flood_closed = 0;   // clients closed for pings over the rate
    uint64_t tx_full_dropped = 0;     // frames toward the client over tx_queue_bytes
};

// ---------------------------------------------------------------- client

class WsClient : public sw::Port, public core::IoHandler, public core::Deferred {
public:
    enum class State { handshake, open, closing, closed };

    // Takes a connected, non-blocking stream socket. Until the handshake
    // succeeds the client is not on the switch.
    WsClient(core::EventLoop& loop, sw::Switch& sw, int fd, std::string name,
             const WsConfig& cfg, std::function<void(WsClient&)> on_closed);
    ~WsClient() override;
    WsClient(const WsClient&) = delete;
    WsClient& operator=(const WsClient&) = delete;

    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    uint32_t mtu() const override { return cfg_.mtu; }
    size_t tx_room() const override;
    std::string describe() const override { return name_; }
    void on_io(uint32_t events) override;
    void run_deferred() override;

    State state() const { return state_; }
    bool closed() const { return state_ == State::closed; }
    bool on_switch() const { return attached_; }
    const WsStats& ws_stats() const { return ws_stats_; }
    size_t max_frame() const { return max_frame_; }

    // Detaches and closes now (idempotent); on_closed follows from the loop.
    void close_connection(const char* why);
    // usernet is stopping: a close frame with 1001 (going away, RFC 6455
    // 7.4.1), written if the socket takes it now; nothing else changes.
    void send_going_away();
    // For an owner about to destroy the client (StreamClient's contract):
    // true if the loop still holds it in its deferred work.
    bool shut_down(const char* why);
    void set_on_closed(std::function<void(WsClient&)> fn) { on_closed_ = std::move(fn); }

    // wslay callbacks (public for the C trampolines only).
    ssize_t wslay_recv(uint8_t* buf, size_t len);
    ssize_t wslay_send(const uint8_t* data, size_t len);
    void wslay_frame_start(uint8_t opcode, uint8_t fin);
    void wslay_frame_chunk(const uint8_t* data, size_t len);
    void wslay_frame_end();

private:
    void defer_self();
    void on_readable();
    void handle_handshake();
    void start_session(const WsHandshake& hs);
    void refuse(const WsHandshake& hs);
    void pump_wslay();
    void flush();
    void queue_out(std::string_view bytes);
    void message_done();
    void fail_session(uint16_t code, const char* why);
    void on_handshake_timeout();
    void on_ping_timer();
    bool pause_if_over_rate();
    void resume_reading();
    void set_interest();

    core::EventLoop& loop_;
    sw::Switch& sw_;
    int fd_;
    std::string name_;
    WsConfig cfg_;
    std::function<void(WsClient&)> on_closed_;
    State state_ = State::handshake;
    bool attached_ = false;
    bool waiting_out_ = false;
    bool rx_paused_ = false;  // over the rate: EPOLLIN off until rx_timer_
    bool defer_pending_ = false;
    bool close_after_flush_ = false;
    bool mac_logged_ = false;
    wslay_event_context* ws_ = nullptr;
    size_t max_frame_;

    // Bytes read from the socket: the request head, then WebSocket frames.
    std::unique_ptr<uint8_t[]> rx_;
    size_t rx_start_ = 0, rx_end_ = 0;
    // The data message being received.
    std::unique_ptr<uint8_t[]> msg_;
    size_t msg_len_ = 0;
    bool msg_active_ = false;  // inside a binary message
    bool msg_discard_ = false; // inside a message we drop (text, or closing)
    bool frame_fin_ = false;
    bool frame_data_ = false;  // the current frame is a data frame
    // Bytes for the socket: the HTTP response, then wslay's output.
    std::unique_ptr<uint8_t[]> out_;
    size_t out_start_ = 0, out_end_ = 0;

    core::TokenBucket frames_;
    core::TokenBucket bytes_;
    core::TokenBucket pings_;
    core::Millis last_rx_ = 0;
    WsStats ws_stats_;
    core::Timer handshake_timer_{[this] { on_handshake_timeout(); }};
    core::Timer ping_timer_{[this] { on_ping_timer(); }};
    core::Timer rx_timer_{[this] { resume_reading(); }};
};

// ---------------------------------------------------------------- listener

class WsListener final : public core::IoHandler {
public:
    // Binds and listens on host:port (an IPv4 or IPv6 literal). Throws
    // std::runtime_error (address in use, cannot bind).
    WsListener(core::EventLoop& loop, sw::Switch& sw, std::string host, uint16_t port,
               WsConfig cfg);
    ~WsListener();
    WsListener(const WsListener&) = delete;
    WsListener& operator=(const WsListener&) = delete;

    void on_io(uint32_t events) override;

    // The URL v86 takes as network_relay_url.
    std::string url() const;
    uint16_t port() const { return port_; }
    size_t client_count() const { return clients_.size(); }
    uint64_t accepted() const { return accepted_; }
    uint64_t refused() const { return refused_; }
    // Counters of the clients that have gone, plus those still here.
    WsStats stats() const;

private:
    void accept_clients();
    void reap(WsClient& c);
    static void add_stats(WsStats& into, const WsStats& s);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    std::string host_;
    uint16_t port_;
    WsConfig cfg_;
    int fd_ = -1;
    uint64_t next_client_ = 1;
    uint64_t accepted_ = 0;
    uint64_t refused_ = 0;
    WsStats gone_;
    std::vector<std::unique_ptr<WsClient>> clients_;
    Acceptor acceptor_{loop_, this};  // after loop_
};

}  // namespace usernet::ports
