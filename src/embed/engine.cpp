// See engine.hpp.
#include "embed/engine.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <stdexcept>

#include "gateway/gateway.hpp"
#include "gateway/dns_forwarder.hpp"
#include "gateway/resolv_conf.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/tcp_nat.hpp"
#include "nat/udp_nat.hpp"

namespace usernet::embed {

namespace {

thread_local const Engine* t_current = nullptr;

// spdlog's default logger, in a process of engines: each message goes to
// the engine running on this thread (none: dropped).
class DispatchSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        const Engine* e = t_current;
        if (!e) return;
        LogLevel lvl = msg.level <= spdlog::level::debug ? LogLevel::debug
                       : msg.level == spdlog::level::info ? LogLevel::info
                       : msg.level == spdlog::level::warn ? LogLevel::warn
                                                          : LogLevel::error;
        e->log(lvl, std::string_view(msg.payload.data(), msg.payload.size()));
    }
    void flush_() override {}
};

spdlog::level::level_enum to_spdlog(LogLevel l) {
    switch (l) {
    case LogLevel::debug: return spdlog::level::debug;
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warn: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
    }
    return spdlog::level::warn;
}

// Installs the dispatching logger once per process, and lowers its level to
// what the most talkative engine asks for (never raised again: a level
// check is all a quieter engine pays).
void install_logger(LogLevel want) {
    static std::mutex m;
    static std::shared_ptr<spdlog::logger> logger;
    std::lock_guard lock(m);
    if (!logger) {
        logger = std::make_shared<spdlog::logger>("usernet", std::make_shared<DispatchSink>());
        logger->set_level(spdlog::level::off);
        spdlog::set_default_logger(logger);
    }
    const auto lvl = to_spdlog(want);
    if (lvl < logger->level()) logger->set_level(lvl);
}

}  // namespace

Engine::Scope::Scope(const Engine* e) : prev_(t_current) { t_current = e; }
Engine::Scope::~Scope() { t_current = prev_; }

// The switch counts the port's frames both ways (rx, tx and drops).
void Nic::deliver(wire::Bytes frame, const sw::FrameMeta&) {
    if (send_) send_(frame);
}

Engine::Engine(EngineConfig cfg)
    : log_(std::move(cfg.log)),
      log_level_(cfg.log_level),
      own_loop_(std::make_unique<core::EventLoop>()),
      loop_(*own_loop_),
      sw_(loop_) {
    install_logger(log_ ? log_level_ : LogLevel::error);
    build(cfg);
}

Engine::Engine(EngineConfig cfg, core::EventLoop& loop)
    : log_level_(cfg.log_level), loop_(loop), sw_(loop_) {
    build(cfg);
}

void Engine::need_gateway() const {
    if (!gw_) throw std::runtime_error("this LAN has no gateway, so no forwards");
}

void Engine::build(EngineConfig& cfg) {
    if (!cfg.gateway) return;
    Scope scope(this);
    gw::NetConfig& n = cfg.net;
    if (n.prefix_len > 30 || !n.in_subnet(n.gateway) || !n.in_subnet(n.dns) ||
        !n.in_subnet(n.dhcp_start))
        throw std::runtime_error("the gateway, DNS and DHCP start addresses must be inside the "
                                 "network, whose prefix must be /30 or shorter");
    bool follow = cfg.follow_resolv_conf;
    if (n.dns_upstreams.empty() && cfg.system_resolvers) {
        n.dns_upstreams = gw::load_system_resolvers();
        follow = true;
    }
    config_service_addrs_ = n.service_addrs;
    gw_ = std::make_unique<gw::Gateway>(loop_, sw_, n);
    if (follow) gw_->dns().follow_resolv_conf("/etc/resolv.conf");
    nat_ = std::make_unique<nat::Nat>(loop_, *gw_, cfg.limits);
    gw_->set_ip_sink(nat_.get());
}

Engine::~Engine() {
    Scope scope(this);
    for (auto& nic : nics_) sw_.detach(*nic);
    nics_.clear();
    if (gw_) gw_->set_ip_sink(nullptr);
    nat_.reset();
    gw_.reset();
}

void Engine::poll() {
    if (depth_ > 0) return;
    Scope scope(this);
    Running run(*this);
    loop_.run_once(0);
}

void Engine::run_pending() {
    if (depth_ > 0) return;
    Scope scope(this);
    Running run(*this);
    loop_.run_pending();
}

Engine::Running::~Running() {
    if (e_.depth_ == 1 && e_.deferred_count_ > 0) e_.run_deferred();
    e_.depth_--;
}

void Engine::defer(Nic& nic, wire::Bytes frame) {
    if (deferred_.empty()) deferred_.resize(kMaxDeferred);
    if (deferred_count_ == kMaxDeferred) {
        deferred_dropped_++;
        return;
    }
    Deferred& d = deferred_[(deferred_head_ + deferred_count_) % kMaxDeferred];
    d.nic = &nic;
    d.frame.assign(frame.begin(), frame.end());  // keeps its capacity: no allocation once warm
    deferred_count_++;
}

// The frames handed in while the engine ran, in order; what they answer may
// bring more (the guest's NIC transmits again as it receives), handled in
// the same way until none is left. A frame's slot stays taken while the
// switch reads it.
void Engine::run_deferred() {
    while (deferred_count_ > 0) {
        while (deferred_count_ > 0) {
            Deferred& d = deferred_[deferred_head_];
            if (d.nic) {
                try {
                    sw_.input(d.nic->id(), wire::Bytes(d.frame.data(), d.frame.size()));
                } catch (const std::exception& e) {
                    log(LogLevel::error, e.what());
                }
            }
            deferred_head_ = (deferred_head_ + 1) % kMaxDeferred;
            deferred_count_--;
        }
        try {
            loop_.run_pending();
        } catch (const std::exception& e) {
            log(LogLevel::error, e.what());
        }
    }
}

Nic& Engine::add_nic(Nic::SendFn send, uint32_t mtu) {
    if (mtu < 68 || mtu > 65521) throw std::invalid_argument("a NIC's MTU must be 68..65521");
    Scope scope(this);
    auto nic = std::unique_ptr<Nic>(new Nic(std::move(send), mtu, "nic" + std::to_string(nic_serial_++)));
    Nic& ref = *nic;
    nics_.push_back(std::move(nic));
    sw_.attach(ref);
    return ref;
}

void Engine::remove_nic(Nic& nic) {
    Scope scope(this);
    Running run(*this);  // the NAT resets the NIC's flows
    for (size_t i = 0; i < deferred_count_; i++) {
        Deferred& d = deferred_[(deferred_head_ + i) % kMaxDeferred];
        if (d.nic == &nic) d.nic = nullptr;
    }
    sw_.detach(nic);
    std::erase_if(nics_, [&](const auto& p) { return p.get() == &nic; });
}

void Engine::input(Nic& nic, wire::Bytes frame, bool flush) {
    Scope scope(this);
    if (depth_ > 0) {
        defer(nic, frame);
        return;
    }
    Running run(*this);
    sw_.input(nic.id(), frame);
    // What the frame queued (ACKs, a port's flush) goes now, unless the
    // embedder wakes its loop for it.
    if (flush) loop_.run_pending();
}

// The calls below may send (a removed forward's flows are reset): as
// input(), frames handed in meanwhile wait for them to return.
void Engine::add_forward(const nat::ForwardSpec& spec) {
    Scope scope(this);
    Running run(*this);
    need_gateway();
    nat_->add_forward(spec);
}

size_t Engine::remove_forward(char proto, const std::optional<wire::IpAddr>& bind_addr,
                              uint16_t host_port) {
    Scope scope(this);
    Running run(*this);
    need_gateway();
    return nat_->forwarder().remove(proto, bind_addr, host_port);
}

void Engine::add_guest_forward(const nat::GuestForwardSpec& spec, bool in_dhcp_range) {
    Scope scope(this);
    Running run(*this);
    need_gateway();
    const gw::NetConfig& n = gw_->config();
    const wire::IpAddr& a = spec.addr;
    if (spec.port == 0) throw std::invalid_argument("a guest forward needs a port");
    wire::Ipv4 host = 0;
    if (a.is_v4()) {
        host = a.as_v4();
        if (!n.in_subnet(host) || host == (n.net & n.netmask()) || host == n.broadcast())
            throw std::invalid_argument(a.to_string() + " is not a host address of the network");
        if (host == n.gateway || host == n.dns)
            throw std::invalid_argument(a.to_string() + " is the gateway or DNS address");
    } else {
        if (!n.ipv6 || !n.in_prefix6(a) || a == n.prefix6 || a == n.gateway6 || a == n.dns6)
            throw std::invalid_argument(a.to_string() + " is not a host address of the IPv6 prefix");
        host = (n.net & n.netmask()) | (wire::load32(&a.b[12]) & ~n.netmask());
    }
    // An address of the DHCP range, where allowed, is taken out of it
    // (DHCP never leases the gateway's addresses, Gateway::address_taken).
    if (host - n.dhcp_start < n.dhcp_count) {
        if (!in_dhcp_range) throw std::invalid_argument(a.to_string() + " is in the DHCP range");
        if (gw_->address_taken(host, wire::MacAddr{}, sw::kNoPort))
            throw std::invalid_argument(a.to_string() + " is used by a guest");
    }
    for (const nat::GuestForwardSpec& g : nat_->guest_forwards())
        if (g.addr == a && g.port == spec.port)
            throw std::invalid_argument(a.to_string() + " port " + std::to_string(spec.port) +
                                        " is forwarded already");
    gw_->add_service_addr(a);
    nat_->add_guest_forward(spec);
}

bool Engine::remove_guest_forward(const wire::IpAddr& addr, uint16_t port) {
    Scope scope(this);
    Running run(*this);
    need_gateway();
    if (!nat_->remove_guest_forward(addr, port)) return false;
    // The address was the gateway's only for its forwards: with the last
    // one gone, it stops answering ARP, as a vanished host would.
    for (const nat::GuestForwardSpec& g : nat_->guest_forwards())
        if (g.addr == addr) return true;
    if (std::find(config_service_addrs_.begin(), config_service_addrs_.end(), addr) ==
        config_service_addrs_.end())
        gw_->remove_service_addr(addr);
    return true;
}

EngineStats Engine::stats() const {
    EngineStats s;
    for (const auto& nic : nics_) {
        s.nic_rx_frames += nic->stats().rx_frames;
        s.nic_rx_bytes += nic->stats().rx_bytes;
        s.nic_tx_frames += nic->stats().tx_frames;
        s.nic_tx_bytes += nic->stats().tx_bytes;
    }
    // The switch's drops include each NIC's rx_dropped: not added twice.
    const sw::SwitchStats& sw = sw_.stats();
    s.dropped += deferred_dropped_;
    s.dropped += sw.dropped_runt + sw.dropped_giant + sw.dropped_bad_src + sw.dropped_mac_limit +
                 sw.dropped_bad_offload + sw.dropped_guard;
    if (!nat_) return s;
    const nat::NatStats& ns = nat_->stats();
    s.dropped += ns.dropped_malformed + ns.dropped_unreachable + ns.dropped_forbidden +
                 ns.dropped_policy + ns.dropped_limit + ns.dropped_proto;
    s.dropped += gw_->gw_stats().dropped_malformed;
    s.tcp_flows = nat_->tcp().flow_count();
    s.udp_flows = nat_->udp().flow_count();
    s.icmp_flows = nat_->icmp().flow_count();
    return s;
}

}  // namespace usernet::embed
