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

#include "app/control.hpp"
#include "core/command_text.hpp"
#include "gateway/resolv_conf.hpp"
#include "nat/forward.hpp"
#include "ports/bochs_port.hpp"
#include "ports/dgram_port.hpp"
#include "ports/netns.hpp"
#include "ports/netns_watch.hpp"
#include "ports/serial_port.hpp"
#include "ports/stream_port.hpp"
#include "ports/stream_tcp.hpp"
#include "ports/tap_port.hpp"
#include "ports/vde_port.hpp"
#include "ports/uplink_port.hpp"
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
        std::string path = base;
        if (i > 0) path.append("-").append(std::to_string(i));
        path.append(".socket");
        if (!path_taken(path)) return path;
    }
    throw StartupError("no free default socket path (" + base + ".socket to " + base +
                       "-99.socket are all in use); give one with --socket PATH");
}

using core::qemu_value;

std::vector<std::string> qemu_dgram_options(const ports::DgramConfig& c) {
    const std::string nic = " -device virtio-net-pci,netdev=n0";
    // QEMU's end of the link: host and port (a wildcard usernet binds is
    // reached on the loopback address).
    auto host = [](const ports::SockAddr& a) {
        wire::IpAddr ip = a.ip();
        if (ip.is_unspecified()) return std::string(ip.is_v4() ? "127.0.0.1" : "::1");
        return ip.to_string();
    };
    auto hostport = [&](const ports::SockAddr& a) {
        std::string h = host(a);
        if (h.find(':') != std::string::npos) h = "[" + h + "]";
        return h + ":" + std::to_string(a.port());
    };
    std::vector<std::string> out;
    switch (c.kind) {
    case ports::DgramKind::mcast: {
        std::string g = c.local.ip().to_string(), p = std::to_string(c.local.port());
        std::string local = c.mcast_if ? ",localaddr=" + wire::ipv4_to_string(*c.mcast_if) : "";
        out.push_back("-netdev socket,id=n0,mcast=" + g + ":" + p + local + nic);
        std::string dlocal = c.mcast_if ? ",local.type=inet,local.host=" +
                                              wire::ipv4_to_string(*c.mcast_if) + ",local.port=0"
                                        : "";
        out.push_back("-netdev dgram,id=n0,remote.type=inet,remote.host=" + g + ",remote.port=" +
                      p + dlocal + nic);
        break;
    }
    case ports::DgramKind::udp: {
        // QEMU's dgram and socket,udp= netdevs open IPv4 sockets only: an
        // IPv6 link is for other emulators (Bochs, a relay of one's own).
        if (!c.local.ip().is_v4()) break;
        std::string qhost = c.remote ? host(*c.remote) : host(c.local);
        std::string qport = c.remote ? std::to_string(c.remote->port()) : "PORT";
        out.push_back("-netdev dgram,id=n0,local.type=inet,local.host=" + qhost +
                      ",local.port=" + qport + ",remote.type=inet,remote.host=" + host(c.local) +
                      ",remote.port=" + std::to_string(c.local.port()) + nic);
        std::string qlocal = c.remote ? hostport(*c.remote) : qhost + ":PORT";
        out.push_back("-netdev socket,id=n0,udp=" + hostport(c.local) + ",localaddr=" + qlocal +
                      nic);
        break;
    }
    case ports::DgramKind::unix_dgram: {
        std::string mine = absolute(c.local.path());
        std::string theirs = c.remote ? absolute(c.remote->path()) : "PATH";
        const std::string opts = "dgram,id=n0,local.type=unix,local.path=" + qemu_value(theirs) +
                                 ",remote.type=unix,remote.path=" + qemu_value(mine);
        out.push_back("-netdev " + core::shell_word(opts) + nic);
        break;
    }
    }
    return out;
}

std::string qemu_command_line(const std::string& socket_path) {
    return "qemu-system-x86_64 ... -netdev " +
           core::shell_word("stream,id=net0,server=off,addr.type=unix,addr.path=" +
                            qemu_value(socket_path)) +
           " -device virtio-net-pci,netdev=net0";
}

std::string qemu_vde_command_line(const std::string& dir) {
    return "qemu-system-x86_64 ... -netdev " + core::shell_word("vde,id=net0,sock=" + qemu_value(dir)) +
           " -device virtio-net-pci,netdev=net0";
}

std::string vde_plug_command_line(const std::string& dir) {
    return "vde_plug " + core::shell_word("vde://" + dir) + " tap://tap0";
}

Daemon::Lan::Lan(std::string name_, const gw::NetConfig& net_, std::string pcap_path_)
    : name(std::move(name_)), net(net_), pcap_path(std::move(pcap_path_)), pcap_flush([this] {
          if (pcap && !pcap->flush()) spdlog::warn("cannot write to {}", pcap_path);
      }) {}

Daemon::Daemon(const Config& cfg) : cfg_(cfg) {
    loop_.set_busy_poll_us(cfg_.busy_poll_us);
    if (!cfg_.no_gateway) resolve_dns_upstreams();
    build_lan("default", cfg_.net, cfg_.pcap_path);
    for (const LanConfig& l : cfg_.lans) {
        gw::NetConfig net = l.net;
        net.dns_upstreams = cfg_.net.dns_upstreams;
        build_lan(l.name, net, l.pcap_path);
    }
    // --no-gateway: each LAN is its switch alone, with no IP source guard
    // either (that is the gateway's); the options needing it were refused.
    if (!cfg_.no_gateway) {
        // --guest-addr is held like a lease by the first guest that uses it
        // (with --config-net, attach() gives it to its namespace's port).
        if (cfg_.guest_addr) gateway().reserve(*cfg_.guest_addr, sw::kNoPort);
        add_forwards();
    }
    if (!cfg_.api_socket.empty()) {
        try {
            control_ = std::make_unique<ControlServer>(loop_, *this, cfg_.api_socket);
        } catch (const std::exception& e) {
            throw startup_error(std::string("--api-socket: ") + e.what(),
                                "give --api-socket another path (a socket a stopped usernet left "
                                "behind is replaced)");
        }
    }
    if (cfg_.attachments.empty())
        attach_default_socket();
    for (const Attachment& a : cfg_.attachments) attach(a);
    // Captures last, as the pid file: a start that fails leaves an existing
    // file (perhaps a running instance's capture) as it was. No frame has
    // moved yet: the loop has not run.
    for (const auto& lan : lans_) open_pcap(*lan);
    for (const auto& lan : lans_) log_summary(*lan);
    write_pid_file();
}

void Daemon::build_lan(const std::string& name, const gw::NetConfig& net,
                       const std::string& pcap_path) {
    auto lan = std::make_unique<Lan>(name, net, pcap_path);
    Lan& l = *lan;
    lans_.push_back(std::move(lan));
    embed::EngineConfig ec;
    ec.net = l.net;
    ec.limits = cfg_.limits;
    ec.system_resolvers = false;  // resolve_dns_upstreams() read them, and said so
    ec.follow_resolv_conf = resolvers_from_system_;
    ec.gateway = !cfg_.no_gateway;
    try {
        l.engine = std::make_unique<embed::Engine>(std::move(ec), loop_);
    } catch (const std::exception& e) {
        throw startup_error(std::string("cannot start the gateway: ") + e.what(),
                            "check the address options and usernet's file descriptor limit");
    }
}

Daemon::~Daemon() {
    control_.reset();
    if (!pid_written_.empty()) unlink(pid_written_.c_str());
    netns_watches_.clear();
    vde_switches_.clear();
    listeners_.clear();
    tcp_listeners_.clear();
    tcp_connectors_.clear();
    bochs_.clear();
    dgrams_.clear();
    serials_.clear();
    uplinks_.clear();
    ws_listeners_.clear();
    taps_.clear();
    for (auto& lan : lans_) close_lan(*lan);
}

void Daemon::close_lan(Lan& lan) {
    if (lan.engine) lan.sw().set_observer(nullptr);
    lan.engine.reset();
    if (lan.pcap) {
        loop_.cancel(lan.pcap_flush);
        if (!lan.pcap->flush() || lan.pcap->errors() != 0)
            spdlog::warn("{}: {} frames could not be written", lan.pcap_path, lan.pcap->errors());
        else
            spdlog::debug("{}: {} frames captured", lan.pcap_path, lan.pcap->frames());
    }
}

void Daemon::run() { loop_.run(); }

std::vector<std::string> Daemon::serial_usage() const {
    std::vector<std::string> lines;
    for (const auto& s : serials_) {
        lines.push_back("Attach a serial-line guest to " + s->describe() + " at " + s->location() +
                        ":");
        for (const std::string& l : s->usage()) lines.push_back("    " + l);
    }
    return lines;
}

std::vector<std::string> Daemon::socket_paths() const {
    std::vector<std::string> paths;
    for (const auto& l : listeners_) paths.push_back(absolute(l->path()));
    return paths;
}

std::vector<std::string> Daemon::tcp_attach_hints() const {
    std::vector<std::string> hints;
    for (const auto& l : tcp_listeners_) {
        const ports::TcpEndpoint& ep = l->endpoint();
        std::string h = "Attach QEMU to TCP " + ports::to_string(ep) +
                        " with (QEMU 7.2 or later):\n    qemu-system-x86_64 ... " +
                        ports::qemu_stream_client_options(ep) +
                        " -device virtio-net-pci,netdev=net0\n";
        if (std::string old = ports::qemu_socket_client_options(ep); !old.empty())
            h += "  or (any QEMU):\n    qemu-system-x86_64 ... " + old +
                 " -device virtio-net-pci,netdev=net0\n";
        hints.push_back(h);
    }
    for (const auto& c : tcp_connectors_) {
        const ports::TcpEndpoint& ep = c->endpoint();
        std::string h = "usernet connects to QEMU at TCP " + ports::to_string(ep) +
                        "; run QEMU with (QEMU 7.2 or later):\n    qemu-system-x86_64 ... " +
                        ports::qemu_stream_server_options(ep) +
                        " -device virtio-net-pci,netdev=net0\n";
        if (std::string old = ports::qemu_socket_server_options(ep); !old.empty())
            h += "  or (any QEMU):\n    qemu-system-x86_64 ... " + old +
                 " -device virtio-net-pci,netdev=net0\n";
        hints.push_back(h);
    }
    return hints;
}

std::vector<std::string> Daemon::vde_dirs() const {
    std::vector<std::string> dirs;
    for (const auto& v : vde_switches_) dirs.push_back(v->dir());
    return dirs;
}

std::vector<std::string> Daemon::websocket_urls() const {
    std::vector<std::string> urls;
    for (const auto& l : ws_listeners_) urls.push_back(l->url());
    return urls;
}

void Daemon::open_pcap(Lan& lan) {
    if (lan.pcap_path.empty()) return;
    try {
        lan.pcap = std::make_unique<wire::PcapWriter>(
            lan.pcap_path, uint64_t{cfg_.pcap_size_mb} * 1'000'000, cfg_.pcap_count);
    } catch (const std::exception& e) {
        throw startup_error(e.what(), "give --pcap a file in a directory you can write to");
    }
    // Frames are buffered; a timer pushes them to the file a second after
    // the first unflushed one, so the capture can be read while running.
    lan.sw().set_observer([this, &lan](wire::Bytes frame) {
        lan.pcap->write(frame);
        if (!lan.pcap_flush.armed()) loop_.arm(lan.pcap_flush, kPcapFlushMs);
    });
    std::string which = lans_.size() > 1 ? " on LAN " + lan.name : "";
    if (cfg_.pcap_size_mb == 0)
        spdlog::info("capturing frames{} to {}", which, lan.pcap_path);
    else
        spdlog::info("capturing frames{} to {} (a new file every {} MB, {} kept)", which,
                     lan.pcap_path, cfg_.pcap_size_mb, cfg_.pcap_count);
}

void Daemon::resolve_dns_upstreams() {
    if (!cfg_.net.dns_upstreams.empty()) return;
    resolvers_from_system_ = true;
    cfg_.net.dns_upstreams = gw::load_system_resolvers();
    if (cfg_.net.dns_upstreams.empty())
        spdlog::warn("no nameserver found in /etc/resolv.conf: the DNS address {} will answer "
                     "only local names; give resolvers with --dns-upstream ADDR",
                     wire::ipv4_to_string(cfg_.net.dns));
}

void Daemon::add_forwards() {
    for (const nat::ForwardSpec& spec : cfg_.forwards) {
        try {
            nat().add_forward(spec);
        } catch (const std::exception& e) {
            std::string what = e.what();
            auto says = [&](const char* text) { return what.find(text) != std::string::npos; };
            const char* todo =
                says("ermission denied")
                    ? "ports below 1024 need root or CAP_NET_BIND_SERVICE; forward from a higher "
                      "host port"
                : says(std::strerror(EADDRNOTAVAIL))
                    ? "the host address is not one of this host's (ip addr lists them): give one "
                      "of them, or none to listen on all"
                : says(std::strerror(ENODEV))
                    ? "no interface has that name (ip link lists them): give another after %"
                    : "choose another host port with -t/-u, or stop the program that uses it";
            throw startup_error(what, todo);
        }
        std::string target = spec.guest_addr ? spec.guest_addr->to_string()
                                             : std::string("the guest holding a lease");
        // An IPv6 client of a forward to an IPv4 guest address goes to that
        // guest's IPv6 address (forward_target_guest).
        if (cfg_.net.ipv6 && (!spec.guest_addr || spec.guest_addr->is_v4()) &&
            (!spec.bind_addr || !spec.bind_addr->is_v4()))
            target += ", or its IPv6 address for IPv6 clients";
        spdlog::info("forwarding {} to {}", spec.to_string(), target);
    }
    for (const nat::GuestForwardSpec& g : cfg_.guest_forwards) {
        nat().add_guest_forward(g);
        spdlog::info("guest forward {}", g.to_string());
    }
    if (!cfg_.smb_dir.empty()) {
        try {
            smb_ = std::make_unique<SmbShare>(cfg_.smb_dir, cfg_.smb_addr);
        } catch (const std::exception& e) {
            throw StartupError(e.what());
        }
        for (const nat::GuestForwardSpec& g : smb_->forwards()) nat().add_guest_forward(g);
        spdlog::info("sharing {} by SMB at \\\\{}\\qemu (smbd {}, state in {})", cfg_.smb_dir,
                     cfg_.smb_addr.to_string(), smb_->smbd(), smb_->state_dir());
    }
}

void Daemon::attach(const Attachment& a) {
    Lan& lan = *lans_.at(a.lan);
    if (lans_.size() > 1) spdlog::info("{} joins LAN {}", a.target, lan.name);
    switch (a.kind) {
    case AttachmentKind::netns: {
        ports::TapNetConfig net;
        if (a.address) {
            net.addr = *a.address;
            net.prefix_len = lan.net.prefix_len;
            net.gateway = lan.net.gateway;
            net.mtu = a.mtu;
            if (lan.net.ipv6) {
                net.addr6 = lan.net.v6_of(*a.address);
                net.prefix6_len = lan.net.prefix6_len;
                net.gateway6 = lan.net.gateway6;
            }
        }
        std::string ifname;
        int fd = -1;
        bool ipv6_set = false;
        try {
            fd = ports::open_tap_in_netns(a.target, a.ifname, a.mtu, a.address ? &net : nullptr,
                                          &ifname, cfg_.tap_offload, &ipv6_set);
        } catch (const std::exception& e) {
            std::string what = e.what();
            // A NAME is /run/netns/NAME, which ip netns add creates; a PATH
            // or a PID (all digits) names a namespace that must be there.
            const bool by_name = a.target.find('/') == std::string::npos &&
                                 a.target.find_first_not_of("0123456789") != std::string::npos;
            const bool by_pid = a.target.find_first_not_of("0123456789") == std::string::npos;
            std::string todo =
                what.find("not found") != std::string::npos
                    ? by_name ? "create it with 'ip netns add " + a.target +
                                    "', or give --netns a namespace PATH or a PID"
                      : by_pid ? "give the PID of a running process (its /proc/PID/ns/net), or "
                                 "a namespace NAME or PATH"
                               : "give the path of a namespace file (/run/netns/NAME, "
                                 "/proc/PID/ns/net) that exists, or a NAME 'ip netns add' made"
                : what.find("in use") != std::string::npos
                    ? "choose another --tap-name"
                    : "check --netns " + a.target + " and run usernet as root";
            throw startup_error(what, todo);
        }
        auto port = std::make_unique<ports::TapPort>(loop_, lan.sw(), fd,
                                                     ifname + " in netns " + a.netns_path, a.mtu,
                                                     cfg_.tap_offload);
        ports::TapPort* p = port.get();
        port->set_on_failure([this, p](const std::string& why) { on_tap_failure(p, why); });
        if (a.lan_mac) port->set_mac_translation(*a.lan_mac);
        taps_.push_back(std::move(port));
        // The guest's own address counts as its lease: only this attachment
        // may send from it. Its IPv6 address, if the namespace took one, is
        // where forwards take IPv6 clients.
        if (a.address && lan.gateway()) lan.gateway()->reserve(*a.address, p->id(), ipv6_set);
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
                         ifname, a.mtu, wire::ipv4_to_string(*a.address), lan.net.prefix_len,
                         wire::ipv4_to_string(lan.net.gateway));
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
        auto port = std::make_unique<ports::TapPort>(loop_, lan.sw(), fd, a.ifname, a.mtu,
                                                     cfg_.tap_offload);
        ports::TapPort* p = port.get();
        port->set_on_failure([this, p](const std::string& why) { on_tap_failure(p, why); });
        if (a.lan_mac) port->set_mac_translation(*a.lan_mac);
        taps_.push_back(std::move(port));
        spdlog::info("attached TAP {} (MTU {})", a.ifname, a.mtu);
        break;
    }
    case AttachmentKind::socket: {
        try {
            listeners_.push_back(
                std::make_unique<ports::StreamListener>(loop_, lan.sw(), a.target, a.mtu));
        } catch (const std::exception& e) {
            const std::string what = e.what();
            throw startup_error(
                what, default_socket_ ? "give a socket path with --socket PATH"
                      : what.find("in use") != std::string::npos
                          ? "stop the program using it, or give another --socket path"
                      : what.find("No such file") != std::string::npos
                          ? "create its directory, or give another --socket path"
                      : what.find("not a socket") != std::string::npos
                          ? "remove that file, or give another --socket path"
                          : "give another --socket path");
        }
        if (a.lan_mac) listeners_.back()->set_client_mac(*a.lan_mac);
        spdlog::info("listening on {} for QEMU (MTU {})", a.target, a.mtu);
        break;
    }
    case AttachmentKind::tcp_listen: {
        ports::TcpEndpoint ep{a.endpoint.addr, a.endpoint.port};
        try {
            tcp_listeners_.push_back(
                std::make_unique<ports::TcpStreamListener>(loop_, lan.sw(), ep, a.mtu));
        } catch (const std::exception& e) {
            const std::string what = e.what();
            throw startup_error(what, what.find("in use") != std::string::npos
                                          ? "stop the program using it, or give --listen another "
                                            "address or port"
                                          : "give --listen an address of this host, or another "
                                            "port");
        }
        if (a.lan_mac) tcp_listeners_.back()->set_client_mac(*a.lan_mac);
        spdlog::info("listening on TCP {} for QEMU -netdev stream/socket (MTU {})", a.target,
                     a.mtu);
        if (!ep.addr.is_loopback())
            spdlog::warn("--listen {}: anyone who can reach this address joins the LAN "
                         "(and its NAT); listen on 127.0.0.1 unless the network is trusted",
                         a.target);
        break;
    }
    case AttachmentKind::websocket: {
        ports::WsConfig wc;
        wc.name = a.target;
        wc.mtu = a.mtu;
        wc.origins = a.ws_origins;
        try {
            ws_listeners_.push_back(std::make_unique<ports::WsListener>(
                loop_, lan.sw(), a.ws_host, a.ws_port, std::move(wc)));
        } catch (const std::exception& e) {
            const std::string what = e.what();
            throw startup_error(what, what.find("assign requested address") != std::string::npos
                                          ? "give --websocket an address of this host (or "
                                            "0.0.0.0 behind a reverse proxy)"
                                          : "stop the program using that port, or give "
                                            "--websocket another port");
        }
        std::string origins;
        for (const std::string& o : a.ws_origins) origins += (origins.empty() ? "" : ", ") + o;
        spdlog::info("listening on {} for WebSocket clients (v86; MTU {}, Origins: {})",
                     ws_listeners_.back()->url(), a.mtu,
                     origins.empty() ? "this host's pages and clients that send none" : origins);
        if (auto h = wire::IpAddr::parse(a.ws_host); h && !h->is_loopback())
            spdlog::warn("--websocket {}: anyone who can reach {} joins the LAN (and its NAT); "
                         "listen on 127.0.0.1 behind a reverse proxy unless the network is trusted",
                         a.target, a.ws_host);
        break;
    }
    case AttachmentKind::uplink: {
        try {
            uplinks_.push_back(
                std::make_unique<ports::UplinkPort>(loop_, lan.sw(), a.ifname, a.mtu));
        } catch (const std::exception& e) {
            throw startup_error(e.what(), "give --uplink an existing Ethernet interface "
                                          "(ip -br link lists them)");
        }
        if (lan.gateway()) {
            // A whole network behind one port: as many leases as the
            // switch learns MACs there (up to the pool), not a guest's 4.
            const auto& up = *uplinks_.back();
            lan.gateway()->set_hosts_behind(up.id(), up.max_macs());
            spdlog::warn("uplink {}: usernet's gateway answers ARP, DHCP and DNS on {}'s "
                         "network too; give --no-gateway if that network has its own router "
                         "and DHCP server",
                         a.ifname, a.ifname);
        }
        break;
    }
    case AttachmentKind::serial: {
        ports::SerialConfig sc = a.serial;
        sc.net = lan.net.net;
        sc.prefix_len = lan.net.prefix_len;
        sc.gateway = lan.net.gateway;
        sc.dns = lan.net.dns;
        try {
            serials_.push_back(std::make_unique<ports::SerialPort>(loop_, lan.sw(), sc));
        } catch (const std::exception& e) {
            throw startup_error(e.what(), "give --serial another path or port, or stop the "
                                          "program using it");
        }
        ports::SerialPort& p = *serials_.back();
        // A fixed peer address is this attachment's, as --config-net's (a
        // serial line carries IPv4 only: forwards take IPv6 clients there
        // over IPv4).
        if (a.address && lan.gateway()) lan.gateway()->reserve(*a.address, p.id(), false);
        spdlog::info("{} at {} (switch port {}, MAC {}, MTU {}), peer address {}", p.describe(),
                     p.location(), p.id(), p.mac().to_string(), a.mtu,
                     a.address ? wire::ipv4_to_string(*a.address)
                               : std::string("by DHCP on its behalf"));
        break;
    }
    case AttachmentKind::vde: {
        try {
            vde_switches_.push_back(
                std::make_unique<ports::VdeSwitch>(loop_, lan.sw(), a.target, a.mtu));
        } catch (const std::exception& e) {
            std::string what = e.what();
            throw startup_error(what, what.find("in use") != std::string::npos
                                          ? "stop the switch using it, or give another --vde "
                                            "directory"
                                          : "give --vde a directory of your own (it is created "
                                            "if missing)");
        }
        if (a.lan_mac) vde_switches_.back()->set_client_mac(*a.lan_mac);
        spdlog::info("VDE switch at {} (MTU {})", vde_switches_.back()->dir(), a.mtu);
        break;
    }
    case AttachmentKind::tcp_connect: {
        ports::TcpEndpoint ep{a.endpoint.addr, a.endpoint.port};
        try {
            tcp_connectors_.push_back(
                std::make_unique<ports::TcpStreamConnector>(loop_, lan.sw(), ep, a.mtu));
        } catch (const std::exception& e) {
            throw startup_error(e.what(), "raise usernet's file descriptor limit");
        }
        if (a.lan_mac) tcp_connectors_.back()->set_client_mac(*a.lan_mac);
        break;
    }
    case AttachmentKind::dgram: {
        const ports::DgramConfig& c = *a.dgram;
        std::string opt = c.kind == ports::DgramKind::mcast ? "--mcast" : "--dgram";
        try {
            dgrams_.push_back(std::make_unique<ports::DgramPort>(loop_, lan.sw(), c));
        } catch (const std::exception& e) {
            std::string what = e.what();
            throw startup_error(what, what.find("in use") != std::string::npos
                                          ? "stop the program using it, or give " + opt +
                                                " another address"
                                          : "check " + opt + " " + a.target);
        }
        if (c.kind == ports::DgramKind::udp && !c.remote && !c.local.ip().is_loopback())
            spdlog::warn("--dgram {}: with no emulator address given, whoever sends to this "
                         "address takes the link (and its NAT); bind 127.0.0.1, or give the "
                         "emulator's address after a comma",
                         a.target);
        break;
    }
    case AttachmentKind::bochs: {
        ports::BochsSpec spec;
        spec.base_port = a.bochs_port;
        spec.count = a.bochs_count;
        try {
            bochs_.push_back(std::make_unique<ports::BochsAttachment>(loop_, lan.sw(), spec, a.mtu));
        } catch (const std::exception& e) {
            throw startup_error(e.what(), "stop the program using that port, or give --bochs "
                                          "another PORT (and the matching ethdev= to Bochs)");
        }
        for (uint32_t i = 0; i < a.bochs_count; ++i) {
            std::vector<std::string> lines = ports::bochsrc_lines(a.bochs_port, i);
            spdlog::info("Bochs instance {} (switch port {}), bochsrc: {} / {}", i,
                         bochs_.back()->instance(i).id(), lines[0], lines[1]);
        }
        break;
    }
    }
}

std::vector<std::vector<std::string>> Daemon::dgram_hints() const {
    std::vector<std::vector<std::string>> hints;
    for (const Attachment& a : cfg_.attachments) {
        if (a.kind != AttachmentKind::dgram) continue;
        const std::string opt = a.dgram->kind == ports::DgramKind::mcast ? "--mcast" : "--dgram";
        const std::vector<std::string> lines = qemu_dgram_options(*a.dgram);
        if (lines.empty()) {
            hints.push_back({opt + " " + a.target + " is an IPv6 link, which QEMU's dgram and "
                                                    "socket netdevs cannot open (they are IPv4 only)"});
            continue;
        }
        std::vector<std::string> h{"Attach QEMU to " + opt + " " + a.target + " with:"};
        for (size_t i = 0; i < lines.size(); ++i) {
            if (i > 0) h.push_back("or:");
            h.push_back("    qemu-system-x86_64 ... " + lines[i]);
        }
        hints.push_back(std::move(h));
    }
    return hints;
}

std::vector<std::vector<std::string>> Daemon::bochs_hints() const {
    std::vector<std::vector<std::string>> hints;
    for (const Attachment& a : cfg_.attachments) {
        if (a.kind != AttachmentKind::bochs) continue;
        for (uint32_t i = 0; i < a.bochs_count; ++i) {
            std::vector<std::string> h{"Bochs instance " + std::to_string(i) + " of --bochs " +
                                       a.target + ": bochsrc lines:"};
            for (std::string& l : ports::bochsrc_lines(a.bochs_port, i)) h.push_back(std::move(l));
            hints.push_back(std::move(h));
        }
    }
    return hints;
}

void Daemon::attach_default_socket() {
    Attachment a;
    a.kind = AttachmentKind::socket;
    a.target = default_socket_path();
    a.mtu = cfg_.default_mtu.value_or(kWireMtu);
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

void Daemon::log_summary(const Lan& lan) const {
    if (!lan.gateway()) {
        spdlog::info("no gateway (--no-gateway): the LAN is a switch only; no ARP, DHCP, DNS "
                     "or NAT answers from usernet");
        return;
    }
    const gw::NetConfig& n = lan.net;
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
    std::string which = lans_.size() > 1 ? "LAN " + lan.name + ": " : "";
    const std::string dhcp = n.dhcp4 ? "DHCP " + wire::ipv4_to_string(n.dhcp_start) + "-" +
                                           wire::ipv4_to_string(n.dhcp_start + n.dhcp_count - 1)
                                     : std::string("no DHCP");
    spdlog::info("{}network {}/{}: gateway {} ({}), DNS {} ({}), {}{}", which,
                 wire::ipv4_to_string(n.net), n.prefix_len, wire::ipv4_to_string(n.gateway),
                 n.map_gateway_to_loopback ? "the host's loopback" : "not mapped to the host",
                 wire::ipv4_to_string(n.dns), dns, dhcp,
                 n.domain.empty() ? "" : ", domain " + n.domain);
    if (n.ipv6)
        spdlog::info("{}IPv6 prefix {}/{} by router advertisement: gateway {} ({}), DNS {}", which,
                     n.prefix6.to_string(), n.prefix6_len, n.gateway6.to_string(),
                     n.map_gateway_to_loopback ? "the host's ::1" : "not mapped to the host",
                     n.dns6.to_string());
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
    if (taps_.empty() && listeners_.empty() && tcp_listeners_.empty() &&
        tcp_connectors_.empty() && dgrams_.empty() && bochs_.empty() &&
        vde_switches_.empty() && serials_.empty() &&
        uplinks_.empty() && ws_listeners_.empty()) {
        spdlog::warn("no attachment left, exiting");
        loop_.stop();
    }
}

}  // namespace usernet::app
