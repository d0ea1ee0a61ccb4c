// The stream attachment over TCP: QEMU `-netdev stream,addr.type=inet` and
// the older `-netdev socket,connect=` / `listen=`.
//
// On the wire it is the unix stream attachment's protocol (stream_port.hpp):
// a 4-byte big-endian length, then the Ethernet frame. Each connection is a
// StreamClient, a port of its own on the switch; this file only makes the
// connections.
//
// Theory of operation:
// - TcpStreamListener (usernet --listen) binds HOST:PORT and accepts any
//   number of QEMUs (up to a cap; those beyond it are closed at once and
//   counted). Each accepted connection gets TCP_NODELAY (frames are whole
//   messages; Nagle would hold a guest's ACKs) and becomes a new port; when
//   it goes, only its port goes. A QEMU that restarts, or reconnects with
//   reconnect=, simply gets a new port.
// - TcpStreamConnector (usernet --connect) connects out to one QEMU that
//   listens. The connect is non-blocking (bounded by kConnectTimeoutMs);
//   when it fails, or the connection later drops, it tries again after a
//   delay that starts at 100 ms and doubles up to 5 s (Backoff), forever;
//   the delay starts again at 100 ms only after a connection that held
//   kStableMs without a framing error, so a peer that accepts and closes
//   (a wrong port) is not hammered. A connection to itself (the kernel
//   chose the target port as the source) is a failure. It logs when its
//   state changes (connected, lost, a new reason for failing), not every
//   attempt.
// - The peer is as hostile as any guest: the framing is StreamClient's, with
//   its bounded buffers and its protocol-error close.
//
// TCP carries the LAN in the clear, and anyone who can reach the port is on
// it: listen on loopback (the default) unless the network is trusted.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.hpp"
#include "ports/acceptor.hpp"
#include "ports/stream_port.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"

namespace usernet::ports {

struct TcpEndpoint {
    wire::IpAddr addr = wire::IpAddr::v4(0x7f000001);
    uint16_t port = 0;
    friend bool operator==(const TcpEndpoint&, const TcpEndpoint&) = default;
};

// "127.0.0.1:5555", "[::1]:5555".
std::string to_string(const TcpEndpoint& ep);

// The QEMU options that attach a NIC's netdev (id net0) to usernet
// listening at ep: the -netdev stream form (QEMU 7.2 and later) and the
// -netdev socket form (any QEMU; IPv4 only, so empty for an IPv6 ep). A
// wildcard address is replaced by the loopback one.
std::string qemu_stream_client_options(const TcpEndpoint& ep);
std::string qemu_socket_client_options(const TcpEndpoint& ep);
// The options QEMU listens with for usernet --connect ep, in both forms
// (the socket form empty for IPv6).
std::string qemu_stream_server_options(const TcpEndpoint& ep);
std::string qemu_socket_server_options(const TcpEndpoint& ep);

// Retry delays: first, then doubling, never above max. Pure.
class Backoff {
public:
    explicit Backoff(core::Millis first = 100, core::Millis max = 5000)
        : first_(first), max_(max), next_(first) {}
    // The delay to wait now; the one after it doubles.
    core::Millis next();
    void reset() { next_ = first_; }
    // The delay next() will return, without doubling it.
    core::Millis peek() const { return next_; }

private:
    core::Millis first_;
    core::Millis max_;
    core::Millis next_;
};

struct TcpListenerStats {
    uint64_t accepted = 0;
    uint64_t refused = 0;          // over the cap
    uint64_t protocol_errors = 0;  // clients closed for bad framing
};

class TcpStreamListener final : public core::IoHandler {
public:
    static constexpr size_t kMaxClients = 64;

    // Binds and listens at ep (port 0: any free port, see endpoint()); each
    // client attaches to sw with L3 MTU mtu. Throws std::runtime_error
    // ("<what>"): address in use, not on this host, ...
    TcpStreamListener(core::EventLoop& loop, sw::Switch& sw, const TcpEndpoint& ep,
                      uint32_t mtu, size_t max_clients = kMaxClients);
    // Closes every client; safe at any time (as StreamListener's).
    ~TcpStreamListener();
    TcpStreamListener(const TcpStreamListener&) = delete;
    TcpStreamListener& operator=(const TcpStreamListener&) = delete;

    void on_io(uint32_t events) override;

    // The address bound (the real port when 0 was asked for).
    const TcpEndpoint& endpoint() const { return ep_; }
    size_t client_count() const { return clients_.size(); }
    const std::vector<std::unique_ptr<StreamClient>>& clients() const { return clients_; }
    const TcpListenerStats& stats() const { return stats_; }
    // ,mac=LANMAC: every client accepted from now on shows the LAN lan_mac
    // (mac_translator.hpp), as StreamListener::set_client_mac.
    void set_client_mac(const wire::MacAddr& lan_mac) { client_mac_ = lan_mac; }

private:
    void accept_clients();
    void reap(StreamClient& c);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    TcpEndpoint ep_;
    std::string where_;  // to_string(ep_), for logs
    uint32_t mtu_;
    size_t max_clients_;
    int fd_ = -1;
    uint64_t next_client_ = 1;
    std::vector<std::unique_ptr<StreamClient>> clients_;
    std::optional<wire::MacAddr> client_mac_;
    TcpListenerStats stats_;
    Acceptor acceptor_{loop_, this};  // after loop_
};

struct TcpConnectorStats {
    uint64_t attempts = 0;
    uint64_t connects = 0;
    uint64_t drops = 0;            // established connections that ended
    uint64_t protocol_errors = 0;  // of which closed for bad framing
    uint64_t self_connects = 0;    // connected to itself, dropped (nothing listened)
};

class TcpStreamConnector final : public core::IoHandler {
public:
    static constexpr core::Millis kConnectTimeoutMs = 5000;
    // A connection that lasted this long without a framing error restarts
    // the retry wait from its shortest when it drops.
    static constexpr core::Millis kStableMs = 2000;
    enum class State { connecting, connected, waiting };

    // Starts connecting to ep at once; never throws for the peer's absence
    // (it retries), only for a socket that cannot be created at all.
    TcpStreamConnector(core::EventLoop& loop, sw::Switch& sw, const TcpEndpoint& ep,
                       uint32_t mtu, Backoff backoff = Backoff());
    ~TcpStreamConnector();
    TcpStreamConnector(const TcpStreamConnector&) = delete;
    TcpStreamConnector& operator=(const TcpStreamConnector&) = delete;

    void on_io(uint32_t events) override;

    const TcpEndpoint& endpoint() const { return ep_; }
    State state() const { return state_; }
    // The connection's port while connected, else null.
    StreamClient* client() const { return client_.get(); }
    const TcpConnectorStats& stats() const { return stats_; }
    // The wait before the attempt after the next.
    core::Millis next_wait() const { return backoff_.peek(); }
    // ,mac=LANMAC: the connection shows the LAN lan_mac, and so does each
    // one after a reconnect.
    void set_client_mac(const wire::MacAddr& lan_mac) {
        client_mac_ = lan_mac;
        if (client_) client_->set_mac_translation(lan_mac);
    }

private:
    void attempt();
    void on_connected();
    void fail(const std::string& why);
    void on_timer();
    void on_client_closed(StreamClient& c);

    core::EventLoop& loop_;
    sw::Switch& sw_;
    TcpEndpoint ep_;
    std::string where_;
    uint32_t mtu_;
    Backoff backoff_;
    State state_ = State::waiting;
    int fd_ = -1;  // the socket while connecting
    std::string last_failure_;  // logged once until the state changes
    core::Millis connected_at_ = 0;
    uint64_t next_client_ = 1;
    std::unique_ptr<StreamClient> client_;
    std::optional<wire::MacAddr> client_mac_;
    TcpConnectorStats stats_;
    core::Timer timer_{[this] { on_timer(); }};
};

}  // namespace usernet::ports
