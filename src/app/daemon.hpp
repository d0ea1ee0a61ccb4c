// The Daemon: builds the network a Config describes and runs it.
//
// Construction is the whole start-up, in this order: the event loop, the
// switch (with the pcap observer), the gateway and the NAT, the port
// forwards, then the attachments, then the pid file. Anything that fails
// throws StartupError, whose message says what went wrong and what to do;
// whatever was built so far is torn down by the destructors. Destruction is
// the shutdown, in reverse: attachments first (socket files unlinked, TAPs
// closed), then the NAT and gateway, then the capture is flushed.
//
// Nothing here parses text or touches signals or stdout: the same object
// can be driven by main() or, later, by a control API. The library pieces
// (Gateway, Nat, ports) do the work; this file only wires them together.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/options.hpp"
#include "core/event_loop.hpp"
#include "gateway/gateway.hpp"
#include "nat/nat.hpp"
#include "switch/switch.hpp"

namespace usernet::wire {
class PcapWriter;
}
namespace usernet::ports {
class TapPort;
class StreamListener;
class WsListener;
class NetnsWatch;
}  // namespace usernet::ports

namespace usernet::app {

// A start-up failure: "<what was wrong>; <what to do>".
class StartupError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Daemon : private core::Deferred {
public:
    // Builds everything cfg describes. Throws StartupError.
    explicit Daemon(const Config& cfg);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Runs the event loop until stop() (or loop().stop()).
    void run();
    void stop() { loop_.stop(); }

    core::EventLoop& loop() { return loop_; }
    sw::Switch& lan() { return switch_; }
    gw::Gateway& gateway() { return *gateway_; }
    nat::Nat& nat() { return *nat_; }
    const Config& config() const { return cfg_; }

    // The Unix socket paths QEMU can connect to, absolute.
    std::vector<std::string> socket_paths() const;
    // The ws:// URLs v86 takes as network_relay_url, one per --websocket.
    std::vector<std::string> websocket_urls() const;
    // True when no attachment was given and the default socket is used.
    bool using_default_socket() const { return default_socket_; }

private:
    void open_pcap();
    void resolve_dns_upstreams();
    void add_forwards();
    void attach(const Attachment& a);
    void attach_default_socket();
    void write_pid_file();
    void log_summary() const;
    // A TAP that failed for good is removed after the current batch.
    void on_tap_failure(ports::TapPort* port, const std::string& why);
    void detach_tap(ports::TapPort* port);
    void run_deferred() override;

    Config cfg_;
    core::EventLoop loop_;
    std::unique_ptr<wire::PcapWriter> pcap_;
    core::Timer pcap_flush_;
    sw::Switch switch_;
    std::unique_ptr<gw::Gateway> gateway_;
    // Nat has virtual functions and a non-virtual destructor; deleting it
    // as a member of a plain struct keeps clang's -Wdelete-non-virtual-dtor quiet.
    std::unique_ptr<nat::Nat> nat_;
    std::vector<std::unique_ptr<ports::TapPort>> taps_;
    std::vector<ports::TapPort*> failed_taps_;
    // What named each --netns attachment's namespace, watched for its end.
    std::vector<std::pair<ports::TapPort*, std::unique_ptr<ports::NetnsWatch>>> netns_watches_;
    std::vector<std::unique_ptr<ports::StreamListener>> listeners_;
    std::vector<std::unique_ptr<ports::WsListener>> ws_listeners_;
    bool default_socket_ = false;
    std::string pid_written_;
};

// Where to listen when no attachment is given: $XDG_RUNTIME_DIR/usernet.socket
// if that directory is writable, else /tmp/usernet-UID.socket; "-1", "-2"...
// are added before ".socket" while a path is taken by a live listener or by
// something that is not a socket.
std::string default_socket_path();

// The QEMU options that attach a virtio-net NIC to a usernet socket.
std::string qemu_command_line(const std::string& socket_path);

}  // namespace usernet::app
