// The C API (include/usernet.h) over embed::Engine. No exception crosses
// it: each entry point catches and sets the thread's last error.
#include "usernet.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "embed/engine.hpp"
#include "nat/guest_forward.hpp"

#ifndef USERNET_VERSION
#define USERNET_VERSION "0"
#endif

using usernet::embed::Engine;
using usernet::embed::EngineConfig;
using usernet::embed::LogLevel;
namespace wire = usernet::wire;

struct usernet_net {
    explicit usernet_net(EngineConfig cfg) : engine(std::move(cfg)) {}
    Engine engine;
};

struct usernet_nic {
    usernet_t* net = nullptr;
    usernet::embed::Nic* nic = nullptr;
};

namespace {

thread_local std::string t_error;

void set_error(std::string msg) { t_error = std::move(msg); }

template <class F>
auto guarded(F&& f, decltype(f()) on_error) -> decltype(f()) {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        set_error("out of memory");
    } catch (const std::exception& e) {
        set_error(e.what());
    }
    return on_error;
}

// The structure's size in version 1 of the header (up to log_level, with
// the padding a pointer after it gets) and in version 2 (all of it).
constexpr size_t kConfigV1Size = offsetof(usernet_config, outbound_addr);
constexpr size_t kConfigV2Size = sizeof(usernet_config);
static_assert(kConfigV1Size == offsetof(usernet_config, log_level) + sizeof(int) + 4 ||
              kConfigV1Size == offsetof(usernet_config, log_level) + sizeof(int));

[[noreturn]] void bad(const std::string& field, const std::string& why) {
    throw std::invalid_argument(field + ": " + why);
}

wire::IpAddr parse_ip(const char* field, const char* text) {
    auto a = wire::IpAddr::parse(text);
    if (!a) bad(field, std::string("'") + text + "' is not an IP address");
    return *a;
}

wire::Ipv4 parse_v4(const char* field, const char* text) {
    auto a = wire::ipv4_parse(text);
    if (!a) bad(field, std::string("'") + text + "' is not an IPv4 address");
    return *a;
}

// "ADDR/LEN" into address and prefix length (max_len: 32 or 128).
std::pair<std::string, uint8_t> split_prefix(const char* field, const char* text, unsigned max_len) {
    std::string s = text;
    auto slash = s.find('/');
    if (slash == std::string::npos) bad(field, "'" + s + "' has no /prefix length");
    unsigned len = 0;
    auto [p, ec] = std::from_chars(s.data() + slash + 1, s.data() + s.size(), len);
    if (ec != std::errc{} || p != s.data() + s.size() || len > max_len)
        bad(field, "'" + s + "' has a bad prefix length");
    return {s.substr(0, slash), static_cast<uint8_t>(len)};
}

uint16_t parse_port(const char* field, std::string_view s) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535)
        bad(field, "'" + std::string(s) + "' is not a port");
    return static_cast<uint16_t>(v);
}

// "ADDR", "ADDR:PORT" or "[V6]:PORT".
usernet::gw::HostPort parse_upstream(const char* text) {
    std::string s = text;
    usernet::gw::HostPort hp;
    std::string addr = s;
    if (s.starts_with('[')) {
        auto close = s.find(']');
        if (close == std::string::npos) bad("dns_upstreams", "'" + s + "' lacks ']'");
        addr = s.substr(1, close - 1);
        if (close + 1 < s.size()) {
            if (s[close + 1] != ':') bad("dns_upstreams", "'" + s + "' is not [V6]:PORT");
            hp.port = parse_port("dns_upstreams", std::string_view(s).substr(close + 2));
        }
    } else if (std::count(s.begin(), s.end(), ':') == 1) {
        auto colon = s.find(':');
        addr = s.substr(0, colon);
        hp.port = parse_port("dns_upstreams", std::string_view(s).substr(colon + 1));
    }
    hp.addr = parse_ip("dns_upstreams", addr.c_str());
    return hp;
}

EngineConfig to_engine_config(const usernet_config* c) {
    if (!c) bad("config", "NULL");
    if (c->version < 1 || c->size < offsetof(usernet_config, log_level) + sizeof(c->log_level))
        bad("config", "call usernet_config_init() on it first");
    if (c->version > USERNET_API_VERSION)
        bad("config", "version " + std::to_string(c->version) +
                          " is newer than this library's (" +
                          std::to_string(USERNET_API_VERSION) + "); link a newer libusernet");
    EngineConfig e;
    usernet::gw::NetConfig& n = e.net;
    if (c->network) {
        auto [a, len] = split_prefix("network", c->network, 32);
        if (len < 8 || len > 30) bad("network", "the prefix length must be 8..30");
        n.prefix_len = len;
        n.net = parse_v4("network", a.c_str()) & n.netmask();
        // QEMU's addresses in another network: .2, .3 and .15.
        n.gateway = n.net | 2;
        n.dns = n.net | 3;
        n.dhcp_start = n.net | 15;
    }
    if (c->gateway) n.gateway = parse_v4("gateway", c->gateway);
    if (c->dns) n.dns = parse_v4("dns", c->dns);
    if (c->dhcp_start) n.dhcp_start = parse_v4("dhcp_start", c->dhcp_start);
    for (auto [name, a] : {std::pair{"gateway", n.gateway}, {"dns", n.dns}, {"dhcp_start", n.dhcp_start}}) {
        if (!n.in_subnet(a)) bad(name, "not inside the network");
        if (a == n.net || a == n.broadcast())
            bad(name, "the network's own or broadcast address, which no host may have");
    }
    // As the daemon's options (app/options.cpp) refuse them.
    if (n.gateway == n.dns) bad("dns", "the same address as the gateway");
    if (n.dhcp_start == n.gateway || n.dhcp_start == n.dns)
        bad("dhcp_start", "the gateway's or the DNS address");
    n.ipv6 = c->ipv6 != 0;
    if (c->prefix6) {
        auto [a, len] = split_prefix("prefix6", c->prefix6, 128);
        if (len != 64) bad("prefix6", "SLAAC needs a /64");
        n.prefix6 = parse_ip("prefix6", a.c_str());
        if (n.prefix6.is_v4()) bad("prefix6", "not an IPv6 prefix");
        if (n.prefix6.b[0] == 0 || n.prefix6.b[0] == 0xff ||
            (n.prefix6.b[0] == 0xfe && (n.prefix6.b[1] & 0xc0) == 0x80))
            bad("prefix6", "not a unicast prefix a LAN can use (::/8, multicast, link-local)");
        n.prefix6_len = len;
        n.gateway6 = n.prefix6;
        n.gateway6.b[15] = 2;
        n.dns6 = n.prefix6;
        n.dns6.b[15] = 3;
    }
    if (c->gateway6) n.gateway6 = parse_ip("gateway6", c->gateway6);
    if (c->dns6) n.dns6 = parse_ip("dns6", c->dns6);
    if (n.ipv6 && (!n.in_prefix6(n.gateway6) || !n.in_prefix6(n.dns6)))
        bad("gateway6", "the IPv6 gateway and DNS addresses must be inside prefix6");
    if (n.ipv6 && n.gateway6 == n.dns6) bad("dns6", "the same address as gateway6");
    if (c->domain) n.domain = c->domain;
    if (c->hostname) n.hostname = c->hostname;
    if (c->dns_search)
        for (const char* const* p = c->dns_search; *p; p++) n.dns_search.emplace_back(*p);
    if (c->dns_upstreams) {
        for (const char* const* p = c->dns_upstreams; *p; p++) n.dns_upstreams.push_back(parse_upstream(*p));
        e.system_resolvers = false;
    }
    if (c->tftp_root) {
        struct stat st {};
        if (stat(c->tftp_root, &st) != 0 || !S_ISDIR(st.st_mode))
            bad("tftp_root", std::string(c->tftp_root) + " is not a directory");
        n.tftp_root = c->tftp_root;
    }
    if (c->bootfile) n.bootfile = c->bootfile;
    n.restrict = c->restrict_guest != 0;
    n.map_gateway_to_loopback = c->map_gateway_to_loopback != 0;
    if (c->log) {
        usernet_log_fn fn = c->log;
        void* opaque = c->log_opaque;
        e.log = [fn, opaque](LogLevel l, std::string_view msg) {
            std::string line(msg);
            fn(opaque, static_cast<usernet_log_level>(l), line.c_str());
        };
    }
    // Read as the int it is: a value outside the enumeration is no enum.
    int level = 0;
    std::memcpy(&level, &c->log_level, sizeof level);
    e.log_level = static_cast<LogLevel>(std::clamp(level, 0, 3));
    // Version 2's fields, when the caller's struct has them.
    if (c->version >= 2 && c->size >= offsetof(usernet_config, dns_enabled) + sizeof(c->dns_enabled)) {
        if (c->outbound_addr) {
            n.outbound4 = parse_ip("outbound_addr", c->outbound_addr);
            if (!n.outbound4.is_v4()) bad("outbound_addr", "not an IPv4 address");
        }
        if (c->outbound_addr6) {
            n.outbound6 = parse_ip("outbound_addr6", c->outbound_addr6);
            if (n.outbound6.is_v4()) bad("outbound_addr6", "not an IPv6 address");
        }
        n.dhcp4 = c->dhcp_enabled != 0;
        n.dns_service = c->dns_enabled != 0;
    }
    return e;
}

}  // namespace

extern "C" {

void usernet_config_init_sized(usernet_config* cfg, size_t size) {
    if (!cfg) return;
    // Never past the caller's structure (an older header's is shorter),
    // never past ours (a newer header's fields are not ours to set).
    size = std::min(size, sizeof *cfg);
    if (size < kConfigV1Size) return;  // not even version 1: nothing to fill
    std::memset(cfg, 0, size);
    cfg->size = static_cast<uint32_t>(size);
    cfg->version = size >= kConfigV2Size ? USERNET_API_VERSION : 1;
    cfg->ipv6 = 1;
    cfg->map_gateway_to_loopback = 1;
    cfg->log_level = USERNET_LOG_WARN;
    if (size >= kConfigV2Size) {
        cfg->dhcp_enabled = 1;
        cfg->dns_enabled = 1;
    }
}

void(usernet_config_init)(usernet_config* cfg) { usernet_config_init_sized(cfg, kConfigV1Size); }

usernet_t* usernet_new(const usernet_config* cfg) {
    return guarded([&]() -> usernet_t* { return new usernet_net(to_engine_config(cfg)); }, nullptr);
}

void usernet_free(usernet_t* net) { delete net; }

const char* usernet_last_error(void) { return t_error.c_str(); }

const char* usernet_version(void) { return "usernet " USERNET_VERSION; }

int usernet_fd(const usernet_t* net) { return net->engine.fd(); }

int usernet_timeout(const usernet_t* net) { return net->engine.timeout_ms(); }

void usernet_poll(usernet_t* net) {
    guarded([&] {
        net->engine.poll();
        return 0;
    }, -1);
}

usernet_nic_t* usernet_nic_new(usernet_t* net, usernet_send_fn send, void* opaque, uint32_t mtu) {
    return guarded([&]() -> usernet_nic_t* {
        if (!send) bad("send", "a NIC needs a send function");
        auto* n = new usernet_nic;
        n->net = net;
        try {
            n->nic = &net->engine.add_nic(
                [send, opaque](wire::Bytes f) { send(opaque, f.data(), f.size()); },
                mtu ? mtu : 1500);
        } catch (...) {
            delete n;
            throw;
        }
        return n;
    }, nullptr);
}

void usernet_nic_free(usernet_nic_t* nic) {
    if (!nic) return;
    nic->net->engine.remove_nic(*nic->nic);
    delete nic;
}

void usernet_nic_input(usernet_nic_t* nic, const void* frame, size_t len) {
    guarded([&] {
        nic->net->engine.input(*nic->nic, wire::Bytes(static_cast<const uint8_t*>(frame), len));
        return 0;
    }, -1);
}

int usernet_add_hostfwd(usernet_t* net, char proto, const char* host_addr, uint16_t host_port,
                        const char* guest_addr, uint16_t guest_port) {
    return guarded([&] {
        if (proto != 't' && proto != 'u') bad("proto", "'t' (TCP) or 'u' (UDP)");
        if (host_port == 0 || guest_port == 0) bad("port", "ports must not be 0");
        usernet::nat::ForwardSpec spec;
        spec.proto = proto;
        if (host_addr && *host_addr) spec.bind_addr = parse_ip("host_addr", host_addr);
        spec.host_first = spec.host_last = host_port;
        spec.guest_first = spec.guest_last = guest_port;
        if (guest_addr && *guest_addr) {
            spec.guest_addr = parse_ip("guest_addr", guest_addr);
            // As the daemon's -t/-u and --api-socket: a guest's address,
            // not one outside the network, its network or broadcast
            // address, or the gateway's own.
            if (net->engine.has_gateway() && !net->engine.config().is_guest_addr(*spec.guest_addr))
                bad("guest_addr", std::string(guest_addr) + " is not a guest address of the network");
        }
        net->engine.add_forward(spec);
        return 0;
    }, -1);
}

int usernet_remove_hostfwd(usernet_t* net, char proto, const char* host_addr, uint16_t host_port) {
    return guarded([&] {
        std::optional<wire::IpAddr> addr;
        if (host_addr && *host_addr) addr = parse_ip("host_addr", host_addr);
        if (net->engine.remove_forward(proto, addr, host_port) == 0)
            bad("hostfwd", "no such forward");
        return 0;
    }, -1);
}

int usernet_add_guestfwd(usernet_t* net, const char* guest_addr, uint16_t guest_port,
                         const char* target) {
    return guarded([&] {
        if (!guest_addr || !target) bad("guestfwd", "an address and a target are needed");
        wire::IpAddr a = parse_ip("guest_addr", guest_addr);
        std::string text = "tcp:" + (a.is_v4() ? a.to_string() : "[" + a.to_string() + "]") + ":" +
               std::to_string(guest_port) + "-" + target;
        std::string why;
        auto spec = usernet::nat::parse_guestfwd(text, &why);
        if (!spec) bad("guestfwd", why);
        net->engine.add_guest_forward(*spec);
        return 0;
    }, -1);
}

int usernet_remove_guestfwd(usernet_t* net, const char* guest_addr, uint16_t guest_port) {
    return guarded([&] {
        if (!guest_addr) bad("guest_addr", "NULL");
        if (!net->engine.remove_guest_forward(parse_ip("guest_addr", guest_addr), guest_port))
            bad("guestfwd", "no such guest forward");
        return 0;
    }, -1);
}

void usernet_get_stats(const usernet_t* net, usernet_stats* out) {
    const auto s = net->engine.stats();
    out->rx_frames = s.nic_rx_frames;
    out->rx_bytes = s.nic_rx_bytes;
    out->tx_frames = s.nic_tx_frames;
    out->tx_bytes = s.nic_tx_bytes;
    out->dropped = s.dropped;
    out->tcp_flows = s.tcp_flows;
    out->udp_flows = s.udp_flows;
    out->icmp_flows = s.icmp_flows;
}

}  // extern "C"
