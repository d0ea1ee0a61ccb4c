// The engine: one usernet LAN (switch, gateway, NAT) for a program that
// runs its own event loop -- an emulator embedding usernet, the C API
// (include/usernet.h), the libslirp drop-in (src/slirp/).
//
// It owns no thread and never blocks. The embedder watches one descriptor
// (fd(), usernet's epoll set: readable when host sockets have work) and one
// deadline (timeout_ms(), the next timer), and calls poll() when either is
// due; poll() handles one batch without waiting. Guest frames come in by
// input() on a Nic and go out through the Nic's send function, called from
// inside input() or poll() (never from another thread). Forwards come and go
// at run time.
//
// The daemon (src/app/) runs each of its LANs as an engine on its own loop
// (the second constructor), with its attachments as ports on lan().
//
// Nothing here assumes it owns the process: no signal handlers, no exit,
// nothing on stderr. Library code logs through spdlog's default logger; the
// first engine in a process replaces it with one that hands each message to
// the log function of the engine running on that thread at that moment (a
// thread_local pointer set for the length of each call), so that engines
// neither share nor lose their messages. Several engines in one process are
// independent; each must be driven from one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "gateway/net_config.hpp"
#include "nat/forward.hpp"
#include "nat/guest_forward.hpp"
#include "nat/nat.hpp"
#include "switch/port.hpp"
#include "switch/switch.hpp"

namespace usernet::embed {

enum class LogLevel : int { debug = 0, info = 1, warn = 2, error = 3 };
using LogFn = std::function<void(LogLevel, std::string_view)>;

struct EngineConfig {
    gw::NetConfig net;
    nat::NatLimits limits;
    // With no net.dns_upstreams: read /etc/resolv.conf's nameservers, and
    // follow the file when it changes (DnsForwarder::follow_resolv_conf).
    bool system_resolvers = true;
    // net.dns_upstreams came from /etc/resolv.conf (the caller read it):
    // follow the file all the same.
    bool follow_resolv_conf = false;
    // Messages at `log_level` and above go to `log`; none without it.
    LogFn log;
    LogLevel log_level = LogLevel::warn;
    // Off: the LAN is its switch alone (no ARP, DHCP, DNS or NAT answers;
    // the daemon's --no-gateway, for a LAN with a router of its own).
    bool gateway = true;
};

class Engine;

// One emulated NIC on the engine's LAN.
class Nic final : public sw::Port {
public:
    using SendFn = std::function<void(wire::Bytes frame)>;
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return name_; }
    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override;
    // The embedder's NIC loses a frame that arrives right behind another
    // (sw::Port::small_ring): the libslirp drop-in says so for a NIC QEMU
    // emulates on its vCPU thread (NE2000, e1000, RTL8139).
    bool small_ring() const override { return small_ring_; }
    void set_small_ring(bool on) { small_ring_ = on; }

private:
    friend class Engine;
    Nic(SendFn send, uint32_t mtu, std::string name)
        : send_(std::move(send)), mtu_(mtu), name_(std::move(name)) {}
    SendFn send_;
    uint32_t mtu_;
    std::string name_;
    bool small_ring_ = false;
};

struct EngineStats {
    uint64_t nic_rx_frames = 0, nic_rx_bytes = 0;  // guest -> usernet, all NICs
    uint64_t nic_tx_frames = 0, nic_tx_bytes = 0;  // usernet -> guest
    uint64_t dropped = 0;        // frames the switch, gateway or NAT refused
    uint64_t tcp_flows = 0, udp_flows = 0, icmp_flows = 0;  // live now
};

class Engine {
public:
    // Builds the LAN. Throws std::runtime_error whose message says what was
    // wrong (bad addresses, no descriptors).
    explicit Engine(EngineConfig cfg);
    // The same LAN on a loop the caller owns and runs (the daemon: its LANs
    // and attachments share one loop). fd(), timeout_ms() and poll() are
    // the caller's loop's business then, and library messages stay with the
    // process's own spdlog logger (cfg.log is not used).
    Engine(EngineConfig cfg, core::EventLoop& loop);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    int fd() const { return loop_.fd(); }
    // Milliseconds until poll() is due without fd() becoming readable:
    // 0 (now), or -1 (no timer).
    int timeout_ms() const { return loop_.timeout_ms(); }
    // Handles whatever is ready, the timers that are due and the work that
    // guest frames deferred (input(..., false)); never waits. Called from
    // inside one of the engine's own calls (a send callback), it does
    // nothing: the outer call does the work.
    void poll();

    // NICs. send is called with each frame for the guest (the span is only
    // valid during the call). mtu is the guest's L3 MTU (68..65521).
    Nic& add_nic(Nic::SendFn send, uint32_t mtu = 1500);
    void remove_nic(Nic& nic);
    // A frame from the guest (Ethernet, without FCS). With flush, what it
    // queued (ACKs, a port's batch) goes out before the call returns; an
    // embedder that polls straight after each frame anyway (libslirp's
    // slirp4netns) passes false and lets that poll() send it, or holds it
    // for the next frames by not calling poll() yet, so that a burst of
    // guest frames gets one ACK, not one per frame.
    // A frame handed in while the engine is running (from a send callback:
    // an emulated NIC that transmits the guest's next frame as it receives
    // one, as QEMU's pcnet does) is copied and handled when the outermost
    // call returns, so that no translator runs inside another's work; up
    // to kMaxDeferred such frames wait, more are dropped (counted).
    void input(Nic& nic, wire::Bytes frame, bool flush = true);
    // The deferred work (ACKs, a port's batch) that input(..., false)
    // left: what slirp_socket_recv() and the like run after feeding a
    // guest forward. Inside the engine's own calls it is theirs to run.
    void run_pending();
    static constexpr size_t kMaxDeferred = 256;

    // Host-to-guest forwards (nat/forward.hpp). add throws
    // std::runtime_error ("cannot listen on ...: Address already in use").
    void add_forward(const nat::ForwardSpec& spec);
    size_t remove_forward(char proto, const std::optional<wire::IpAddr>& bind_addr,
                          uint16_t host_port);
    // Guest forwards: spec.addr must be a host address of the LAN outside
    // the DHCP pool that is not the gateway's or the DNS address; throws
    // std::invalid_argument saying which rule it breaks.
    // An address of the DHCP range is refused unless in_dhcp_range is set
    // (libslirp allows one): then DHCP stops leasing it, unless a guest
    // uses it now, which is refused either way.
    void add_guest_forward(const nat::GuestForwardSpec& spec, bool in_dhcp_range = false);
    bool remove_guest_forward(const wire::IpAddr& addr, uint16_t port);

    EngineStats stats() const;
    const gw::NetConfig& config() const { return gw_->config(); }
    core::EventLoop& loop() { return loop_; }
    sw::Switch& lan() { return sw_; }
    // Without a gateway (EngineConfig::gateway off) there is neither.
    bool has_gateway() const { return gw_ != nullptr; }
    gw::Gateway& gateway() { return *gw_; }
    nat::Nat& nat() { return *nat_; }
    // Whether the engine wants messages at lvl (to skip formatting them).
    bool logs(LogLevel lvl) const { return log_ && lvl >= log_level_; }
    void log(LogLevel lvl, std::string_view msg) const {
        if (logs(lvl)) log_(lvl, msg);
    }

    // Sets the engine whose log function receives library messages on this
    // thread for the scope's length (each public call does it itself; an
    // embedder's callbacks that call back in nest correctly).
    class Scope {
    public:
        explicit Scope(const Engine* e);
        ~Scope();
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

    private:
        const Engine* prev_;
    };

private:
    // The engine is running one of its calls: frames handed in now wait.
    class Running {
    public:
        explicit Running(Engine& e) : e_(e) { e_.depth_++; }
        ~Running();
        Running(const Running&) = delete;
        Running& operator=(const Running&) = delete;

    private:
        Engine& e_;
    };
    struct Deferred {
        Nic* nic = nullptr;  // null: its NIC was removed
        std::vector<uint8_t> frame;
    };
    void build(EngineConfig& cfg);
    void need_gateway() const;
    void defer(Nic& nic, wire::Bytes frame);
    void run_deferred();

    LogFn log_;
    LogLevel log_level_;
    std::unique_ptr<core::EventLoop> own_loop_;  // null on a borrowed loop
    core::EventLoop& loop_;
    sw::Switch sw_;
    std::unique_ptr<gw::Gateway> gw_;
    std::unique_ptr<nat::Nat> nat_;
    std::vector<std::unique_ptr<Nic>> nics_;
    uint64_t nic_serial_ = 0;
    int depth_ = 0;                   // Running scopes open
    std::vector<Deferred> deferred_;  // a ring of kMaxDeferred, made on first use
    size_t deferred_head_ = 0, deferred_count_ = 0;
    uint64_t deferred_dropped_ = 0;
    // The configuration's own service addresses (an SMB server's): they
    // stay when the last guest forward on one goes.
    std::vector<wire::IpAddr> config_service_addrs_;
};

}  // namespace usernet::embed
