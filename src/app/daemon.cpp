// See daemon.hpp.
#include "app/daemon.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>

#include "gateway/resolv_conf.hpp"
#include "nat/forward.hpp"
#include "ports/netns.hpp"
#include "ports/netns_watch.hpp"
#include "ports/stream_port.hpp"
#include "ports/tap_port.hpp"
#include "ports/websocket_port.hpp"
#include "wire/pcap.hpp"

namespace usernet::app {
namespace {

constexpr core::Millis kPcapFlushMs = 1000;

// The library's errors are one sentence, some ending in a parenthesised
// remedy ("... (create it with: ip tuntap add ...)"). An error line reads
// "<what>; <what to do>": use that remedy when there is one, else `todo`.
StartupError startup_error(const std::string& what, const std::string& todo) {
    static constexpr std::array<const char*, 4> kRemedies = {"create it", "recreate it", "load ",
                                                             "usernet needs "};
    auto open = what.rfind(" (");
    if (!what.empty() && what.back() == ')' && open != std::string::npos) {
        std::string inner = what.substr(open + 2, what.size() - open - 3);
        for (const char* r : kRemedies)
            if (inner.starts_with(r)) return StartupError(what.substr(0, open) + "; " + inner);
    }
    return StartupError(what + "; " + todo);
}

std::string errno_text(int e) { return std::strerror(e); }

std::string absolute(const std::string& path) {
    if (path.starts_with('/')) return path;
    std::array<char, 4096> cwd{};
    if (!getcwd(cwd.data(), cwd.size())) return path;
    return std::string(cwd.data()) + "/" + path;
}

// Whether something other than a stale socket file occupies path.
bool path_taken(const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) return errno != ENOENT;
    if (!S_ISSOCK(st.st_mode)) return true;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return true;
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), std::min(path.size(), sizeof sa.sun_path - 1));
    bool live = connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0 ||
                errno != ECONNREFUSED;
    close(fd);
    return live;
}

}  // namespace

std::string default_socket_path() {
    std::string base;
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg == '/') {
        struct stat st {};
        if (stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) && access(xdg, W_OK | X_OK) == 0)
            base = std::string(xdg) + "/usernet";
    }
    // Room for "-NN.socket" in sun_path.
    if (base.empty() || base.size() + 10 >= sizeof(sockaddr_un{}.sun_path))
        base = "/tmp/usernet-" + std::to_string(getuid());
    for (int i = 0; i < 100; ++i) {
        std::string path = base + (i ? "-" + std::to_string(i) : "") + ".socket";
        if (!path_taken(path)) return path;
    }
    throw StartupError("no free default socket path (" + base + ".socket to " + base +
                       "-99.socket are all in use); give one with --socket PATH");
}

std::string qemu_command_line(const std::string& socket_path) {
    return "qemu-system-x86_64 ... -netdev stream,id=net0,server=off,addr.type=unix,addr.path=" +
           socket_path + " -device virtio-net-pci,netdev=net0";
}

Daemon::Daemon(const Config& cfg)
    : cfg_(cfg), pcap_flush_([this] {
          if (pcap_ && !pcap_->flush()) spdlog::warn("cannot write to {}", cfg_.pcap_path);
      }),
      switch_(loop_) {
    loop_.set_busy_poll_us(cfg_.busy_poll_us);
    open_pcap();
    resolve_dns_upstreams();
    try {
        gateway_ = std::make_unique<gw::Gateway>(loop_, switch_, cfg_.net);
        nat_ = std::make_unique<nat::Nat>(loop_, *gateway_, cfg_.limits);
    } catch (const std::exception& e) {
        throw startup_error(std::string("cannot start the gateway: ") + e.what(),
                            "check the address options and usernet's file descriptor limit");
    }
    gateway_->set_ip_sink(nat_.get());
    // --guest-addr is held like a lease by the first guest that uses it
    // (with --config-net, attach() gives it to its namespace's port).
    if (cfg_.guest_addr) gateway_->reserve(*cfg_.guest_addr, sw::kNoPort);
    add_forwards();
    if (cfg_.attachments.empty())
        attach_default_socket();
    for (const Attachment& a : cfg_.attachments) attach(a);
    log_summary();
    write_pid_file();
}

Daemon::~Daemon() {
    if (!pid_written_.empty()) unlink(pid_written_.c_str());
    netns_watches_.clear();
    listeners_.clear();
    ws_listeners_.clear();
    taps_.clear();
    if (gateway_) gateway_->set_ip_sink(nullptr);
    nat_.reset();
    gateway_.reset();
    switch_.set_observer(nullptr);
    if (pcap_) {
        loop_.cancel(pcap_flush_);
        if (!pcap_->flush() || pcap_->errors() != 0)
            spdlog::warn("{}: {} frames could not be written", cfg_.pcap_path, pcap_->errors());
        else
            spdlog::debug("{}: {} frames captured", cfg_.pcap_path, pcap_->frames());
    }
}

void Daemon::run() { loop_.run(); }

std::vector<std::string> Daemon::socket_paths() const {
    std::vector<std::string> paths;
    for (const auto& l : listeners_) paths.push_back(absolute(l->path()));
    return paths;
}

std::vector<std::string> Daemon::websocket_urls() const {
    std::vector<std::string> urls;
    for (const auto& l : ws_listeners_) urls.push_back(l->url());
    return urls;
}

void Daemon::open_pcap() {
    if (cfg_.pcap_path.empty()) return;
    try {
        pcap_ = std::make_unique<wire::PcapWriter>(
            cfg_.pcap_path, uint64_t{cfg_.pcap_size_mb} * 1'000'000, cfg_.pcap_count);
    } catch (const std::exception& e) {
        throw startup_error(e.what(), "give --pcap a file in a directory you can write to");
    }
    // Frames are buffered; a timer pushes them to the file a second after
    // the first unflushed one, so the capture can be read while running.
    switch_.set_observer([this](wire::Bytes frame) {
        pcap_->write(frame);
        if (!pcap_flush_.armed()) loop_.arm(pcap_flush_, kPcapFlushMs);
    });
    if (cfg_.pcap_size_mb == 0)
        spdlog::info("capturing frames to {}", cfg_.pcap_path);
    else
        spdlog::info("capturing frames to {} (a new file every {} MB, {} kept)", cfg_.pcap_path,
                     cfg_.pcap_size_mb, cfg_.pcap_count);
}

void Daemon::resolve_dns_upstreams() {
    if (!cfg_.net.dns_upstreams.empty()) return;
    cfg_.net.dns_upstreams = gw::load_system_resolvers();
    if (cfg_.net.dns_upstreams.empty())
        spdlog::warn("no nameserver found in /etc/resolv.conf: the DNS address {} will not "
                     "answer; give resolvers with --dns-upstream ADDR",
                     wire::ipv4_to_string(cfg_.net.dns));
}

void Daemon::add_forwards() {
    for (const nat::ForwardSpec& spec : cfg_.forwards) {
        try {
            nat_->add_forward(spec);
        } catch (const std::exception& e) {
            std::string what = e.what();
            bool privileged = what.find("ermission denied") != std::string::npos;
            throw startup_error(what, privileged
                                          ? "ports below 1024 need root or CAP_NET_BIND_SERVICE; "
                                            "forward from a higher host port"
                                          : "choose another host port with -t/-u, or stop the "
                                            "program that uses it");
        }
        std::string target = spec.guest_addr ? spec.guest_addr->to_string()
                                             : std::string("the guest holding a lease");
        spdlog::info("forwarding {} to {}", spec.to_string(), target);
    }
}

void Daemon::attach(const Attachment& a) {
    switch (a.kind) {
    case AttachmentKind::netns: {
        ports::TapNetConfig net;
        if (a.address) {
            net.addr = *a.address;
            net.prefix_len = cfg_.net.prefix_len;
            net.gateway = cfg_.net.gateway;
            net.mtu = a.mtu;
        }
        std::string ifname;
        int fd = -1;
        try {
            fd = ports::open_tap_in_netns(a.target, a.ifname, a.mtu, a.address ? &net : nullptr,
                                          &ifname, cfg_.tap_offload);
        } catch (const std::exception& e) {
            std::string what = e.what();
            std::string todo =
                what.find("not found") != std::string::npos
                    ? "create it with 'ip netns add " + a.target +
                          "', or give --netns a namespace PATH or a PID"
                : what.find("in use") != std::string::npos
                    ? "choose another --tap-name"
                    : "check --netns " + a.target + " and run usernet as root";
            throw startup_error(what, todo);
        }
        auto port = std::make_unique<ports::TapPort>(loop_, switch_, fd,
                                                     ifname + " in netns " + a.netns_path, a.mtu,
                                                     cfg_.tap_offload);
        ports::TapPort* p = port.get();
        port->set_on_failure([this, p](const std::string& why) { on_tap_failure(p, why); });
        taps_.push_back(std::move(port));
        // The guest's own address counts as its lease: only this attachment
        // may send from it.
        if (a.address) gateway_->reserve(*a.address, p->id());
        try {
            netns_watches_.emplace_back(
                p, std::make_unique<ports::NetnsWatch>(loop_, a.netns_path, [this, p, a] {
                    spdlog::info("netns {} is gone: detaching {}", a.netns_path, p->describe());
                    detach_tap(p);
                }));
        } catch (const std::exception& e) {
            spdlog::warn("{}: usernet will not notice when the namespace goes away", e.what());
        }
        if (a.address)
            spdlog::info("attached netns {} as {} (MTU {}), address {}/{} via {}", a.netns_path,
                         ifname, a.mtu, wire::ipv4_to_string(*a.address), cfg_.net.prefix_len,
                         wire::ipv4_to_string(cfg_.net.gateway));
        else
            spdlog::info("attached netns {} as {} (MTU {})", a.netns_path, ifname, a.mtu);
        break;
    }
    case AttachmentKind::tap: {
        int fd = -1;
        try {
            fd = ports::open_existing_tap(a.ifname, cfg_.tap_offload);
        } catch (const std::exception& e) {
            throw startup_error(e.what(), "check --tap " + a.ifname +
                                              " (see ATTACHING GUESTS in usernet(1))");
        }
        auto port = std::make_unique<ports::TapPort>(loop_, switch_, fd, a.ifname, a.mtu,
                                                     cfg_.tap_offload);
        ports::TapPort* p = port.get();
        port->set_on_failure([this, p](const std::string& why) { on_tap_failure(p, why); });
        taps_.push_back(std::move(port));
        spdlog::info("attached TAP {} (MTU {})", a.ifname, a.mtu);
        break;
    }
    case AttachmentKind::socket: {
        try {
            listeners_.push_back(
                std::make_unique<ports::StreamListener>(loop_, switch_, a.target, a.mtu));
        } catch (const std::exception& e) {
            throw startup_error(e.what(), default_socket_
                                              ? "give a socket path with --socket PATH"
                                              : "stop the program using it, or give another "
                                                "--socket path");
        }
        spdlog::info("listening on {} for QEMU (MTU {})", a.target, a.mtu);
        break;
    }
    case AttachmentKind::websocket: {
        ports::WsConfig wc;
        wc.name = a.target;
        wc.mtu = a.mtu;
        wc.origins = a.ws_origins;
        try {
            ws_listeners_.push_back(std::make_unique<ports::WsListener>(
                loop_, switch_, a.ws_host, a.ws_port, std::move(wc)));
        } catch (const std::exception& e) {
            throw startup_error(e.what(), "stop the program using that port, or give "
                                          "--websocket another port");
        }
        std::string origins;
        for (const std::string& o : a.ws_origins) origins += (origins.empty() ? "" : ", ") + o;
        spdlog::info("listening on {} for WebSocket clients (v86; MTU {}, Origins: {})",
                     ws_listeners_.back()->url(), a.mtu, origins.empty() ? "any" : origins);
        break;
    }
    }
}

void Daemon::attach_default_socket() {
    Attachment a;
    a.kind = AttachmentKind::socket;
    a.target = default_socket_path();
    a.mtu = kWireMtu;
    default_socket_ = true;
    cfg_.attachments.push_back(a);  // attached by the constructor's loop
}

void Daemon::write_pid_file() {
    if (cfg_.pid_path.empty()) return;
    int fd = open(cfg_.pid_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    std::string text = std::to_string(getpid()) + "\n";
    bool ok = fd >= 0 && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int e = errno;
    if (fd >= 0) close(fd);
    if (!ok)
        throw StartupError("cannot write pid file " + cfg_.pid_path + ": " + errno_text(e) +
                           "; give --pid a file in a directory you can write to");
    pid_written_ = cfg_.pid_path;
}

void Daemon::log_summary() const {
    const gw::NetConfig& n = cfg_.net;
    std::string dns = "no upstream";
    if (!n.dns_upstreams.empty()) {
        dns = "forwarded to ";
        for (size_t i = 0; i < n.dns_upstreams.size(); ++i) {
            const gw::HostPort& u = n.dns_upstreams[i];
            std::string a = u.addr.to_string();
            if (!u.addr.is_v4()) a = "[" + a + "]";
            dns += (i ? ", " : "") + a + ":" + std::to_string(u.port);
        }
    }
    spdlog::info("network {}/{}: gateway {} ({}), DNS {} ({}), DHCP {}-{}{}",
                 wire::ipv4_to_string(n.net), n.prefix_len, wire::ipv4_to_string(n.gateway),
                 n.map_gateway_to_loopback ? "the host's loopback" : "not mapped to the host",
                 wire::ipv4_to_string(n.dns), dns, wire::ipv4_to_string(n.dhcp_start),
                 wire::ipv4_to_string(n.dhcp_start + n.dhcp_count - 1),
                 n.domain.empty() ? "" : ", domain " + n.domain);
}

void Daemon::on_tap_failure(ports::TapPort* port, const std::string& why) {
    spdlog::warn("{} failed: {}; detaching it", port->describe(), why);
    detach_tap(port);
}

// The TAP goes at the end of the batch (its guests' flows are reset when it
// leaves the switch); usernet exits when it was the last attachment.
void Daemon::detach_tap(ports::TapPort* port) {
    failed_taps_.push_back(port);
    loop_.defer(*this);
}

void Daemon::run_deferred() {
    for (ports::TapPort* p : failed_taps_) {
        std::erase_if(netns_watches_, [p](const auto& w) { return w.first == p; });
        std::erase_if(taps_, [p](const auto& t) { return t.get() == p; });
    }
    failed_taps_.clear();
    if (taps_.empty() && listeners_.empty() && ws_listeners_.empty()) {
        spdlog::warn("no attachment left, exiting");
        loop_.stop();
    }
}

}  // namespace usernet::app
