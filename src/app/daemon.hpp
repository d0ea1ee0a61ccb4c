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
// can be driven by main() or, later, by a control API. The library does the
// work: each LAN is an embed::Engine (switch, gateway, NAT) on the daemon's
// loop, the attachments are ports on its switch; this file only wires them
// together and adds what a daemon has and an embedder does not (captures,
// the pid file, SMB, exiting when the last attachment goes).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/options.hpp"
#include "app/smb_share.hpp"
#include "core/event_loop.hpp"
#include "embed/engine.hpp"
#include "gateway/gateway.hpp"
#include "nat/nat.hpp"
#include "switch/switch.hpp"

namespace usernet::wire {
class PcapWriter;
}
namespace usernet::ports {
class TapPort;
class StreamListener;
class BochsAttachment;
class DgramPort;
struct DgramConfig;
class SerialPort;
class WsListener;
class NetnsWatch;
class TcpStreamListener;
class TcpStreamConnector;
class VdeSwitch;
class UplinkPort;
}  // namespace usernet::ports

namespace usernet::app {

class ControlServer;

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
    // The default LAN's pieces (the LAN of the attachments before any --lan).
    sw::Switch& lan() { return lans_.front()->sw(); }
    gw::Gateway& gateway() { return lans_.front()->engine->gateway(); }
    nat::Nat& nat() { return lans_.front()->engine->nat(); }
    // LAN i: 0 the default, k the k-th --lan.
    size_t lan_count() const { return lans_.size(); }
    sw::Switch& lan(size_t i) { return lans_.at(i)->sw(); }
    gw::Gateway& gateway(size_t i) { return lans_.at(i)->engine->gateway(); }
    // LAN i's engine and name ("default" for 0).
    embed::Engine& engine(size_t i = 0) { return *lans_.at(i)->engine; }
    const std::string& lan_name(size_t i) const { return lans_.at(i)->name; }
    // Whether the LANs have a gateway and a NAT (not with --no-gateway).
    bool has_gateway() const { return lans_.front()->engine->has_gateway(); }
    const Config& config() const { return cfg_; }

    // The Unix socket paths QEMU can connect to, absolute.
    std::vector<std::string> socket_paths() const;
    // For --listen and --connect: what QEMU must run with, one block of
    // lines per attachment, for the start-up banner.
    std::vector<std::string> tcp_attach_hints() const;
    // Per --bochs instance, what to put in its bochsrc: a heading line
    // ("Bochs instance 0 (of --bochs 40000,count=2): bochsrc lines:")
    // followed by the lines themselves.
    std::vector<std::vector<std::string>> bochs_hints() const;
    // Per --dgram/--mcast: a heading and the QEMU command lines (indented),
    // or one line saying QEMU cannot open an IPv6 link.
    std::vector<std::vector<std::string>> dgram_hints() const;
    // The VDE switch directories (--vde), absolute.
    std::vector<std::string> vde_dirs() const;
    // Per --serial attachment: where it is and what to type in the emulator
    // and the guest (the banner prints them).
    std::vector<std::string> serial_usage() const;
    // The ws:// URLs v86 takes as network_relay_url, one per --websocket.
    std::vector<std::string> websocket_urls() const;
    // True when no attachment was given and the default socket is used.
    bool using_default_socket() const { return default_socket_; }

private:
    // One isolated LAN: an engine (a switch with its gateway -- ARP, DHCP,
    // DNS -- and NAT) and its capture. Nothing is shared with another LAN
    // but the loop.
    struct Lan {
        Lan(std::string name, const gw::NetConfig& net, std::string pcap_path);
        std::string name;
        gw::NetConfig net;
        std::string pcap_path;
        std::unique_ptr<wire::PcapWriter> pcap;
        core::Timer pcap_flush;
        std::unique_ptr<embed::Engine> engine;
        sw::Switch& sw() { return engine->lan(); }
        // Null with --no-gateway.
        gw::Gateway* gateway() { return engine->has_gateway() ? &engine->gateway() : nullptr; }
        const gw::Gateway* gateway() const {
            return engine->has_gateway() ? &engine->gateway() : nullptr;
        }
    };

    void build_lan(const std::string& name, const gw::NetConfig& net,
                   const std::string& pcap_path);
    void close_lan(Lan& lan);
    void open_pcap(Lan& lan);
    void resolve_dns_upstreams();
    void add_forwards();
    void attach(const Attachment& a);
    void attach_default_socket();
    void write_pid_file();
    void log_summary(const Lan& lan) const;
    // A TAP that failed for good is removed after the current batch.
    void on_tap_failure(ports::TapPort* port, const std::string& why);
    void detach_tap(ports::TapPort* port);
    void run_deferred() override;

    Config cfg_;
    bool resolvers_from_system_ = false;  // /etc/resolv.conf's: followed
    core::EventLoop loop_;
    // --smb's state: removed after the LANs (whose NATs stop the smbds).
    std::unique_ptr<SmbShare> smb_;
    std::vector<std::unique_ptr<Lan>> lans_;  // [0]: the default LAN
    std::vector<std::unique_ptr<ports::TapPort>> taps_;
    std::vector<ports::TapPort*> failed_taps_;
    // What named each --netns attachment's namespace, watched for its end.
    std::vector<std::pair<ports::TapPort*, std::unique_ptr<ports::NetnsWatch>>> netns_watches_;
    std::vector<std::unique_ptr<ports::StreamListener>> listeners_;
    std::vector<std::unique_ptr<ports::TcpStreamListener>> tcp_listeners_;
    std::vector<std::unique_ptr<ports::TcpStreamConnector>> tcp_connectors_;
    std::vector<std::unique_ptr<ports::BochsAttachment>> bochs_;
    std::vector<std::unique_ptr<ports::DgramPort>> dgrams_;  // --dgram, --mcast
    std::vector<std::unique_ptr<ports::VdeSwitch>> vde_switches_;
    std::vector<std::unique_ptr<ports::SerialPort>> serials_;
    std::vector<std::unique_ptr<ports::UplinkPort>> uplinks_;
    std::vector<std::unique_ptr<ports::WsListener>> ws_listeners_;
    bool default_socket_ = false;
    std::string pid_written_;
    // --api-socket; goes first (it uses everything above).
    std::unique_ptr<ControlServer> control_;
};

// Where to listen when no attachment is given: $XDG_RUNTIME_DIR/usernet.socket
// if that directory is writable, else /tmp/usernet-UID.socket; "-1", "-2"...
// are added before ".socket" while a path is taken by a live listener or by
// something that is not a socket.
std::string default_socket_path();

// The QEMU options that attach a virtio-net NIC to a usernet socket.
std::string qemu_command_line(const std::string& socket_path);
// The same for a VDE switch directory (-netdev vde), and the vde_plug
// command that bridges a TAP onto it.
std::string qemu_vde_command_line(const std::string& dir);
std::string vde_plug_command_line(const std::string& dir);

// The QEMU options that match a --dgram or --mcast attachment: the
// -netdev dgram form, then (udp and mcast) the older -netdev socket form.
std::vector<std::string> qemu_dgram_options(const ports::DgramConfig& c);

}  // namespace usernet::app
