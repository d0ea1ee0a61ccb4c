// The command line: see options.hpp. CLI11 only splits argv into options
// and their raw text; every value is converted and checked here, so that
// each error names its option and says what to do about it.
#include "app/options.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/sockaddr.hpp"

#include "ports/bochs_port.hpp"
#include "gateway/resolv_conf.hpp"
#include "wire/ipv6.hpp"
#include "ports/netns.hpp"

namespace usernet::app {
namespace {

const char* const kHelpHint = "see 'usernet --help'";

// Throws "OPTION: <what>; <todo>" (the option only once).
[[noreturn]] void fail(const std::string& option, const std::string& what,
                       const std::string& todo) {
    bool named = option.empty() || what.find(option) != std::string::npos;
    throw OptionError(option, (named ? "" : option + ": ") + what + "; " + todo);
}

std::optional<uint64_t> parse_uint(std::string_view s) {
    uint64_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// A whole number from lo to hi, or fail(option, "<what>'<text>' is not a
// number<unit> from lo to hi; <todo>").
uint32_t parse_in_range(const std::string& option, std::string_view text, uint32_t lo,
                        uint32_t hi, const std::string& what, const std::string& unit,
                        const std::string& todo) {
    auto v = parse_uint(text);
    if (!v || *v < lo || *v > hi)
        fail(option, what + "'" + std::string(text) + "' is not a number" + unit + " from " +
                         std::to_string(lo) + " to " + std::to_string(hi),
             todo);
    return static_cast<uint32_t>(*v);
}

uint32_t parse_mtu(const std::string& option, std::string_view text) {
    return parse_in_range(option, text, kMinMtu, kMaxMtu, "MTU ", "",
                          "give an IP MTU such as 1500 or 65520");
}

// Everything the command line holds, as text, before checking.
struct RawOptions {
    std::vector<std::string> netns, tap, socket, listen, connect, dns_upstream, tcp, udp, lan, vde, serial,
        uplink, websocket, dns_host, dns_search, dhcp_host, dhcp_route, allow, deny, hostfwd,
        outbound_addr;
    std::vector<std::string> bochs;  // --bochs
    std::vector<std::string> dgram, mcast;  // --dgram, --mcast
    std::string tap_name = kDefaultTapName, mtu, max_flows, busy_poll, net, gateway, dns,
                net6, gateway6, dns6,
                dhcp_start, guest_addr,
                domain, tftp, bootfile, tftp_server_name, host_alias, hostname, lease_time, smb,
                smb_server, pcap, pid, api_socket;
    std::vector<std::string> guestfwd;  // --guestfwd
    std::string forward_source;         // --forward-source
    std::string pcap_size, pcap_count;  // --pcap-size, --pcap-count
    bool config_net = false, no_offload = false, no_gateway = false, no_map_gw = false,
         allow_link_local = false, no_ipv6 = false, restrict = false, no_tcp = false,
         no_udp = false, no_icmp = false, no_dhcp = false,
         debug = false, quiet = false,
         foreground = false, help = false, version = false;
};

// The CLI11 description of the command line. Help is our own text
// (help_text()), so CLI11's help and version flags are off.
void describe(CLI::App& app, RawOptions& raw) {
    app.set_help_flag();
    app.allow_extras();  // reported by parse_options with a better message
    auto repeated = [](CLI::Option* o) {
        o->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    };
    auto last_wins = [](CLI::Option* o) {
        o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    };
    // Attachments.
    repeated(app.add_option("--netns", raw.netns));
    last_wins(app.add_option("--tap-name", raw.tap_name));
    app.add_flag("--config-net", raw.config_net);
    app.add_flag("--no-offload", raw.no_offload);
    repeated(app.add_option("--tap", raw.tap));
    repeated(app.add_option("--socket", raw.socket));
    repeated(app.add_option("--listen", raw.listen));
    repeated(app.add_option("--connect", raw.connect));
    repeated(app.add_option("--vde", raw.vde));
    repeated(app.add_option("--lan", raw.lan));
    repeated(app.add_option("--bochs", raw.bochs));
    repeated(app.add_option("--dgram", raw.dgram));
    repeated(app.add_option("--mcast", raw.mcast));
    repeated(app.add_option("--serial", raw.serial));
    repeated(app.add_option("--uplink", raw.uplink));
    app.add_flag("--no-gateway", raw.no_gateway);
    repeated(app.add_option("--websocket", raw.websocket));
    last_wins(app.add_option("--mtu", raw.mtu));
    // Addresses.
    last_wins(app.add_option("--net", raw.net));
    last_wins(app.add_option("--gateway", raw.gateway));
    last_wins(app.add_option("--dns", raw.dns));
    last_wins(app.add_option("--dhcp-start", raw.dhcp_start));
    last_wins(app.add_option("--guest-addr", raw.guest_addr));
    last_wins(app.add_option("--domain", raw.domain));
    // Services.
    last_wins(app.add_option("--tftp", raw.tftp));
    last_wins(app.add_option("--bootfile", raw.bootfile));
    last_wins(app.add_option("--tftp-server-name", raw.tftp_server_name));
    repeated(app.add_option("--dns-host", raw.dns_host));
    last_wins(app.add_option("--host-alias", raw.host_alias));
    last_wins(app.add_option("--hostname", raw.hostname));
    repeated(app.add_option("--dns-search", raw.dns_search));
    last_wins(app.add_option("--lease-time", raw.lease_time));
    app.add_flag("--no-dhcp", raw.no_dhcp);
    repeated(app.add_option("--dhcp-host", raw.dhcp_host));
    repeated(app.add_option("--dhcp-route", raw.dhcp_route));
    last_wins(app.add_option("--net6", raw.net6));
    last_wins(app.add_option("--gateway6", raw.gateway6));
    last_wins(app.add_option("--dns6", raw.dns6));
    app.add_flag("--no-ipv6", raw.no_ipv6);
    // NAT.
    app.add_flag("--no-map-gw", raw.no_map_gw);
    app.add_flag("--allow-link-local", raw.allow_link_local);
    app.add_flag("--restrict", raw.restrict);
    app.add_flag("--no-tcp", raw.no_tcp);
    app.add_flag("--no-udp", raw.no_udp);
    app.add_flag("--no-icmp", raw.no_icmp);
    repeated(app.add_option("--allow", raw.allow));
    repeated(app.add_option("--deny", raw.deny));
    last_wins(app.add_option("--max-flows", raw.max_flows));
    last_wins(app.add_option("--busy-poll", raw.busy_poll));
    repeated(app.add_option("--dns-upstream", raw.dns_upstream));
    repeated(app.add_option("--outbound-addr", raw.outbound_addr));
    repeated(app.add_option("-t,--tcp-ports", raw.tcp));
    repeated(app.add_option("-u,--udp-ports", raw.udp));
    repeated(app.add_option("--hostfwd", raw.hostfwd));
    last_wins(app.add_option("--forward-source", raw.forward_source));
    repeated(app.add_option("--guestfwd", raw.guestfwd));
    last_wins(app.add_option("--smb", raw.smb));
    last_wins(app.add_option("--smb-server", raw.smb_server));
    // Operation.
    last_wins(app.add_option("--pcap", raw.pcap));
    last_wins(app.add_option("--pcap-size", raw.pcap_size));
    last_wins(app.add_option("--pcap-count", raw.pcap_count));
    last_wins(app.add_option("--pid", raw.pid));
    last_wins(app.add_option("--api-socket", raw.api_socket));
    app.add_flag("-d,--debug", raw.debug);
    app.add_flag("-q,--quiet", raw.quiet);
    app.add_flag("-f,--foreground", raw.foreground);
    // Also looked for before CLI11 runs (see parse_options).
    app.add_flag("-h,--help", raw.help);
    app.add_flag("--version", raw.version);
}

bool given(const CLI::App& app, const char* name) { return app.count(name) > 0; }

wire::Ipv4 parse_ipv4(const std::string& option, const std::string& text) {
    auto a = wire::ipv4_parse(text);
    if (!a) fail(option, "'" + text + "' is not an IPv4 address", "write it as a.b.c.d");
    return *a;
}

// A host address of the virtual network: inside it, neither its network
// nor its broadcast address.
void check_host(const gw::NetConfig& net, const std::string& option, wire::Ipv4 a,
                const std::string& net_text) {
    std::string s = wire::ipv4_to_string(a);
    if (!net.in_subnet(a))
        fail(option, s + " is outside the network " + net_text,
             "give an address inside it, or change --net");
    if (a == (net.net & net.netmask()) || a == net.broadcast())
        fail(option, s + " is the network or broadcast address of " + net_text,
             "give a host address inside it");
}

// "VALUE" followed by parameters ",mtu=N" and (but for --uplink) ",mac=MAC",
// in any order. The other attachments parse their own parameters.
struct AttachmentParams {
    std::string target;
    std::optional<uint32_t> mtu;
    std::optional<wire::MacAddr> mac;
};

AttachmentParams split_attachment(const std::string& option, const std::string& value) {
    AttachmentParams r;
    r.target = value;
    const bool takes_mac = option != "--uplink";
    const char* only = takes_mac ? "the parameters are ,mtu=N and ,mac=MAC" : "the only parameter is ,mtu=N";
    for (auto comma = r.target.rfind(','); comma != std::string::npos;
         comma = r.target.rfind(',')) {
        std::string_view param = std::string_view(r.target).substr(comma + 1);
        if (param.starts_with("mtu=") && !r.mtu) {
            r.mtu = parse_mtu(option, param.substr(4));
        } else if (param.starts_with("mac=") && takes_mac && !r.mac) {
            auto mac = wire::MacAddr::parse(param.substr(4));
            if (!mac)
                fail(option, "'" + std::string(param.substr(4)) + "' in '" + value +
                                 "' is not a MAC address",
                     "write it as six hex bytes, such as mac=52:54:00:12:34:99");
            if (mac->is_multicast() || mac->is_zero())
                fail(option, "mac=" + mac->to_string() + " in '" + value +
                                 "' is a group or all-zero address",
                     "give a unicast MAC (first byte even), such as 52:54:00:12:34:99");
            r.mac = mac;
        } else if (param.find('=') != std::string_view::npos) {
            fail(option, "unknown or repeated parameter '" + std::string(param) + "' in '" + value + "'",
                 only);
        } else {
            break;  // a comma inside the value itself
        }
        r.target.resize(comma);
    }
    if (r.target.empty())
        fail(option, "empty value",
             std::string("give a ") + (option == "--socket"   ? "path"
                                    : option == "--vde"    ? "directory"
                                    : option == "--uplink" ? "interface"
                                                           : "name"));
    return r;
}

void check_ifname(const std::string& option, const std::string& name) {
    bool bad_char = std::any_of(name.begin(), name.end(), [](unsigned char c) {
        return c == '/' || c == ':' || c <= ' ' || c >= 0x7f;
    });
    if (name.empty() || name.size() > 15 || bad_char || name == "." || name == "..")
        fail(option, "'" + name + "' is not a valid interface name",
             "use at most 15 characters, without '/', ':' or spaces");
}

void check_domain(const std::string& d, const char* option = "--domain") {
    bool ok = !d.empty() && d.size() <= 253 && d.front() != '.' && d.front() != '-';
    size_t label = 0;
    for (char c : d) {
        if (c == '.') {
            ok = ok && label > 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            ++label;
            ok = ok && label <= 63;
        } else {
            ok = false;
        }
    }
    if (!ok)
        fail(option, "'" + d + "' is not a valid domain name",
             "use letters, digits, '-' and dots, such as example.internal");
}

// --allow/--deny: ADDR[/LEN][:PORT[-PORT]], an IPv6 address in brackets
// when a port follows ([2001:db8::/32]:443).
gw::NetConfig::PolicyRule parse_policy_rule(const char* option, const std::string& text, bool allow) {
    auto bad = [&]() {
        fail(option, "'" + text + "' is not ADDRESS[/LEN][:PORT[-PORT]]",
             "give e.g. 192.0.2.0/24, 10.1.2.3:443, [2001:db8::/32]:80-89 or ::/0");
    };
    std::string addr = text, ports;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos) bad();
        addr = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') bad();
            ports = text.substr(close + 2);
            if (ports.empty()) bad();
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        addr = text.substr(0, text.find(':'));
        ports = text.substr(text.find(':') + 1);
        if (ports.empty()) bad();
    }
    gw::NetConfig::PolicyRule r;
    r.allow = allow;
    const size_t slash = addr.find('/');
    auto a = wire::IpAddr::parse(addr.substr(0, slash));
    if (!a) bad();
    const unsigned max = a->is_v4() ? 32 : 128;
    unsigned len = max;
    if (slash != std::string::npos) {
        auto l = parse_uint(std::string_view(addr).substr(slash + 1));
        if (!l || *l > max) bad();
        len = static_cast<unsigned>(*l);
    }
    r.prefix_len = static_cast<uint8_t>(len);
    // Host bits cleared, so a rule matches whatever address names it.
    r.net = *a;
    const size_t bits = len + (a->is_v4() ? 96u : 0u);
    for (size_t i = 0; i < 16; i++) {
        const size_t keep = bits > i * 8 ? std::min<size_t>(8, bits - i * 8) : 0;
        r.net.b[i] &= static_cast<uint8_t>(0xff00u >> keep);
    }
    if (!ports.empty()) {
        const size_t dash = ports.find('-');
        auto lo = parse_uint(std::string_view(ports).substr(0, dash));
        auto hi = dash == std::string::npos ? lo : parse_uint(std::string_view(ports).substr(dash + 1));
        if (!lo || !hi || *lo < 1 || *hi > 65535 || *lo > *hi) bad();
        r.any_port = false;
        r.port_lo = static_cast<uint16_t>(*lo);
        r.port_hi = static_cast<uint16_t>(*hi);
    }
    return r;
}

// A DNS name as the local names hold it: lower case, no trailing dot.
std::string dns_name(std::string d, const char* option) {
    if (!d.empty() && d.back() == '.') d.pop_back();
    check_domain(d, option);
    for (char& c : d) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    return d;
}

// Lease at most 16 addresses, stopping before the broadcast address and
// before the gateway or DNS address if they follow the first lease.
void size_pool(gw::NetConfig& net) {
    uint32_t count = 0;
    for (wire::Ipv4 a = net.dhcp_start; count < 16; ++a, ++count)
        if (a == net.broadcast() || a == net.gateway || a == net.dns) break;
    net.dhcp_count = count;
}

// "CIDR" as a network of its own, or fail(option, ...).
Cidr parse_network(const std::string& option, const std::string& text) {
    auto c = parse_cidr(text);
    if (!c)
        fail(option, "'" + text + "' is not an IPv4 network",
             "write it as a.b.c.d/len, such as 10.0.2.0/24");
    if (c->prefix_len < 1 || c->prefix_len > 28)
        fail(option, "prefix length /" + std::to_string(c->prefix_len) + " in '" + text +
                         "' leaves no room for a network",
             "use a prefix from /1 to /28, such as /24");
    uint32_t mask = ~wire::Ipv4{0} << (32 - c->prefix_len);
    if ((c->addr & mask) != c->addr)
        fail(option, "'" + text + "' has host bits set",
             "did you mean " + wire::ipv4_to_string(c->addr & mask) + "/" +
                 std::to_string(c->prefix_len) + "?");
    return *c;
}

// --dgram udp:HOST:PORT[,HOST:PORT] | unix:PATH[,PATH], and --mcast
// GROUP:PORT[,localaddr=ADDR]; either may end in ,mtu=N. The first address
// is usernet's own (bound), the second the emulator's (sent to; without it,
// learned from the first datagram).
ports::DgramConfig parse_dgram(const std::string& option, const std::string& value,
                               std::optional<uint32_t> default_mtu) {
    const bool mcast = option == "--mcast";
    const std::string form = mcast ? "GROUP:PORT[,localaddr=ADDR][,mtu=N]"
                                   : "udp:HOST:PORT[,HOST:PORT][,mtu=N] or "
                                     "unix:PATH[,PATH][,mtu=N]";
    const std::string example = mcast ? "such as 239.1.2.3:5555"
                                      : "such as udp:127.0.0.1:10001,127.0.0.1:10000";
    std::vector<std::string> parts;
    for (size_t start = 0;;) {
        size_t comma = value.find(',', start);
        parts.push_back(value.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    ports::DgramConfig c;
    std::optional<uint32_t> mtu;
    std::vector<std::string> addrs;
    for (const std::string& p : parts) {
        if (p.starts_with("mtu=")) {
            mtu = parse_mtu(option, std::string_view(p).substr(4));
        } else if (mcast && p.starts_with("localaddr=")) {
            c.mcast_if = parse_ipv4(option, p.substr(10));
        } else if (p.find('=') != std::string::npos) {
            fail(option, "unknown parameter '" + p + "' in '" + value + "'",
                 "write " + form);
        } else {
            addrs.push_back(p);
        }
    }
    if (addrs.empty() || addrs.front().empty())
        fail(option, "no address in '" + value + "'", "write " + form + ", " + example);
    if (addrs.size() > (mcast ? 1u : 2u))
        fail(option, "too many addresses in '" + value + "'", "write " + form);
    // An inet HOST:PORT with a port, or nothing.
    auto inet = [&](const std::string& text, bool own) -> ports::SockAddr {
        auto hp = parse_host_port(text);
        // "A:P" or "[V6]:P"; parse_host_port() also takes a bare address.
        bool has_port = !text.empty() && text.back() != ']' &&
                        (text.starts_with('[') ||
                         std::count(text.begin(), text.end(), ':') == 1);
        if (!hp || !has_port || hp->port == 0)
            fail(option, "'" + text + "' is not HOST:PORT", "write " + form + ", " + example);
        if (!own && hp->addr.is_unspecified())
            fail(option, "the emulator's address '" + text + "' is unspecified",
                 "give the address it binds, such as 127.0.0.1:10000");
        return ports::SockAddr::inet(hp->addr, hp->port);
    };
    std::string first = addrs.front();
    if (mcast) {
        c.kind = ports::DgramKind::mcast;
        c.local = inet(first, true);
        wire::IpAddr g = c.local.ip();
        if (!g.is_v4() || (g.as_v4() >> 28) != 0xe)
            fail(option, "'" + first + "' is not an IPv4 multicast group",
                 "give a group in 224.0.0.0/4, such as 239.1.2.3:5555");
    } else if (first.starts_with("udp:")) {
        c.kind = ports::DgramKind::udp;
        c.local = inet(first.substr(4), true);
        if (addrs.size() > 1) {
            c.remote = inet(addrs[1], false);
            if (c.remote->family() != c.local.family())
                fail(option, "'" + first.substr(4) + "' and '" + addrs[1] +
                                 "' are not of the same address family",
                     "give two IPv4 or two IPv6 addresses");
        }
        wire::IpAddr a = c.local.ip();
        if (a.is_v4() && (a.as_v4() >> 28) == 0xe)
            fail(option, "'" + first.substr(4) + "' is a multicast group",
                 "use --mcast " + first.substr(4));
        if (c.remote && c.remote->ip().is_v4() && (c.remote->ip().as_v4() >> 28) == 0xe)
            fail(option, "'" + addrs[1] + "' is a multicast group", "use --mcast " + addrs[1]);
    } else if (first.starts_with("unix:")) {
        c.kind = ports::DgramKind::unix_dgram;
        // Absolute, as the QEMU options usernet prints give them.
        auto path = [&](const std::string& text) {
            std::error_code ec;
            std::string abs = text.empty() ? text : std::filesystem::absolute(text, ec).string();
            auto a = ports::SockAddr::unix_path(ec ? text : abs);
            if (!a)
                fail(option, "path '" + text + "' is empty or longer than " +
                                 std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes",
                     "use a shorter path");
            return *a;
        };
        c.local = path(first.substr(5));
        if (addrs.size() > 1) {
            c.remote = path(addrs[1]);
            if (c.remote->path() == c.local.path())
                fail(option, "usernet's and the emulator's paths are both '" + addrs[1] + "'",
                     "give two different paths");
            if (!addrs[1].starts_with('/')) c.remote_alias = ports::SockAddr::unix_path(addrs[1]);
        }
    } else {
        fail(option, "'" + value + "' does not start with udp: or unix:",
             "write " + form + ", " + example);
    }
    // A frame is one datagram: over UDP at most 65,507 bytes (IPv4's
    // largest), so the MTU at most that less the Ethernet header.
    constexpr uint32_t kUdpMaxMtu = 65507 - 14;
    if (c.kind != ports::DgramKind::unix_dgram) {
        if (mtu && *mtu > kUdpMaxMtu)
            fail(option, "MTU " + std::to_string(*mtu) + " in '" + value +
                             "' makes frames larger than a UDP datagram can carry",
                 "give mtu=" + std::to_string(kUdpMaxMtu) + " or less");
        c.mtu = mtu.value_or(std::min(default_mtu.value_or(kWireMtu), kUdpMaxMtu));
    } else {
        c.mtu = mtu.value_or(default_mtu.value_or(kWireMtu));
    }
    return c;
}

// The addresses of the virtual network. Gateway, DNS and first lease
// default to host parts .2, .3 and .15 of --net, as in QEMU.
void resolve_addresses(const CLI::App& app, const RawOptions& raw, Config& cfg) {
    gw::NetConfig& net = cfg.net;
    std::string net_text = "10.0.2.0/24";
    if (given(app, "--net")) {
        auto c = parse_cidr(raw.net);
        if (!c)
            fail("--net", "'" + raw.net + "' is not an IPv4 network",
                 "write it as a.b.c.d/len, such as 10.0.2.0/24");
        if (c->prefix_len < 1 || c->prefix_len > 30)
            fail("--net", "prefix length /" + std::to_string(c->prefix_len) + " in '" + raw.net +
                               "' leaves no room for a network",
                 "use a prefix from /1 to /30, such as /24");
        net.prefix_len = c->prefix_len;
        wire::Ipv4 base = c->addr & net.netmask();
        if (base != c->addr)
            fail("--net", "'" + raw.net + "' has host bits set",
                 "did you mean " + wire::ipv4_to_string(base) + "/" +
                     std::to_string(c->prefix_len) + "?");
        net.net = base;
        net_text = raw.net;
        net.gateway = base + 2;
        net.dns = base + 3;
        net.dhcp_start = base + 15;
    }
    struct Host {
        const char* option;
        wire::Ipv4* addr;
        const std::string* text;
    };
    for (Host h : {Host{"--gateway", &net.gateway, &raw.gateway}, Host{"--dns", &net.dns, &raw.dns},
                   Host{"--dhcp-start", &net.dhcp_start, &raw.dhcp_start}}) {
        bool explicit_value = given(app, h.option);
        if (explicit_value) *h.addr = parse_ipv4(h.option, *h.text);
        if (!net.in_subnet(*h.addr) || *h.addr == net.broadcast()) {
            if (!explicit_value)
                fail(h.option, "the default " + wire::ipv4_to_string(*h.addr) +
                                   " does not fit in --net " + net_text,
                     std::string("give ") + h.option + " explicitly, or a larger --net");
        }
        check_host(net, h.option, *h.addr, net_text);
    }
    if (net.gateway == net.dns)
        fail(given(app, "--dns") ? "--dns" : "--gateway",
             "the gateway and the DNS address are both " + wire::ipv4_to_string(net.gateway),
             "give them different addresses");
    if (net.dhcp_start == net.gateway || net.dhcp_start == net.dns)
        fail("--dhcp-start",
             "the first DHCP address " + wire::ipv4_to_string(net.dhcp_start) +
                 " is also the gateway or DNS address",
             "give another --dhcp-start");
    size_pool(net);

    if (given(app, "--guest-addr")) {
        wire::Ipv4 g = parse_ipv4("--guest-addr", raw.guest_addr);
        check_host(net, "--guest-addr", g, net_text);
        if (g == net.gateway || g == net.dns)
            fail("--guest-addr", wire::ipv4_to_string(g) + " is the gateway or DNS address",
                 "give the guest another address");
        cfg.guest_addr = g;
    }
    if (given(app, "--domain")) net.domain = dns_name(raw.domain, "--domain");
    if (given(app, "--tftp")) {
        // Checked now, so that a daemon that cannot serve it does not start.
        char* real = realpath(raw.tftp.c_str(), nullptr);
        const int err = errno;
        struct stat st {};
        if (!real || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            free(real);
            fail("--tftp",
                 "'" + raw.tftp + "' is not a directory" +
                     (real ? std::string() : std::string(" (") + std::strerror(err) + ")"),
                 "give the directory whose files guests may read by TFTP");
        }
        net.tftp_root = real;
        free(real);
    }
    if (given(app, "--host-alias")) net.host_alias = dns_name(raw.host_alias, "--host-alias");
    for (const std::string& e : raw.dns_host) {
        const size_t eq = e.find('=');
        if (eq == std::string::npos)
            fail("--dns-host", "'" + e + "' is not NAME=ADDRESS", "give e.g. db.test=10.0.2.100");
        std::string addr = e.substr(eq + 1);
        auto a = wire::IpAddr::parse(addr);
        if (!a || a->is_unspecified())
            fail("--dns-host", "'" + addr + "' is not an IPv4 or IPv6 address",
                 "give e.g. db.test=10.0.2.100 or db.test=fec0::64");
        net.dns_hosts.emplace_back(dns_name(e.substr(0, eq), "--dns-host"), *a);
    }
    if (given(app, "--hostname")) {
        net.hostname = dns_name(raw.hostname, "--hostname");
        if (net.hostname.find('.') != std::string::npos)
            fail("--hostname", "'" + raw.hostname + "' is not a single label",
                 "give a host name without dots; --domain gives the domain");
    }
    for (const std::string& list : raw.dns_search) {
        for (size_t at = 0; at <= list.size();) {
            size_t comma = std::min(list.find(',', at), list.size());
            net.dns_search.push_back(dns_name(list.substr(at, comma - at), "--dns-search"));
            at = comma + 1;
        }
    }
    {
        // DHCPv4 carries it compressed (RFC 3397), router advertisements and
        // DHCPv6 as it is: both must hold it whole.
        size_t wire_len = 0;
        for (const std::string& n : net.dns_search) wire_len += n.size() + 2;
        if (wire_len > 255)
            fail("--dns-search", "the search list takes more than the 255 bytes DHCP carries",
                 "give fewer or shorter domains");
    }
    if (given(app, "--lease-time")) {
        uint64_t s = 0;
        auto [end, ec] = std::from_chars(raw.lease_time.data(),
                                         raw.lease_time.data() + raw.lease_time.size(), s);
        if (ec != std::errc{} || end != raw.lease_time.data() + raw.lease_time.size() || s < 60 ||
            s > 0x7fffffff)
            fail("--lease-time", "'" + raw.lease_time + "' is not a lease time in seconds",
                 "give 60 to 2147483647 seconds (default 86400)");
        net.lease_seconds = static_cast<uint32_t>(s);
    }
    for (const std::string& e : raw.dhcp_host) {
        // MAC=ADDR[,NAME]
        const size_t eq = e.find('=');
        const size_t comma = e.find(',', eq == std::string::npos ? 0 : eq);
        auto mac = wire::MacAddr::parse(e.substr(0, eq));
        auto a = eq == std::string::npos ? std::nullopt
                                         : wire::ipv4_parse(e.substr(eq + 1, comma == std::string::npos
                                                                                 ? std::string::npos
                                                                                 : comma - eq - 1));
        if (!mac || !a || mac->is_multicast() || mac->is_zero())
            fail("--dhcp-host", "'" + e + "' is not MAC=ADDRESS[,NAME]",
                 "give e.g. 52:54:00:12:34:56=10.0.2.20,web");
        check_host(net, "--dhcp-host", *a, net_text);
        if (*a == net.gateway || *a == net.dns)
            fail("--dhcp-host", wire::ipv4_to_string(*a) + " is the gateway or DNS address",
                 "give the guest another address");
        std::string name;
        if (comma != std::string::npos) {
            name = dns_name(e.substr(comma + 1), "--dhcp-host");
            if (name.find('.') != std::string::npos)
                fail("--dhcp-host", "'" + name + "' is not a single label", "give a host name without dots");
            // What DNS answers as a guest's name (Dhcp4Leases::set_hostname):
            // letters, digits and inner hyphens (RFC 952/1123), not localhost.
            if (name.find('_') != std::string::npos || name.front() == '-' ||
                name.back() == '-' || name == "localhost")
                fail("--dhcp-host", "'" + name + "' is not a host name the DNS address can answer",
                     "use letters, digits and inner hyphens, such as web-1");
        }
        for (const gw::NetConfig::StaticLease& s : net.dhcp_hosts)
            if (s.mac == *mac || s.ip == *a)
                fail("--dhcp-host", "'" + e + "' repeats a MAC or an address of another --dhcp-host",
                     "give each guest its own MAC and address");
        net.dhcp_hosts.push_back({*mac, *a, name});
    }
    for (const std::string& e : raw.dhcp_route) {
        // NET/LEN[,GATEWAY]
        const size_t comma = e.find(',');
        auto cidr = parse_cidr(std::string_view(e).substr(0, comma));
        std::optional<wire::Ipv4> via = net.gateway;
        if (comma != std::string::npos) via = wire::ipv4_parse(e.substr(comma + 1));
        if (!cidr || !via)
            fail("--dhcp-route", "'" + e + "' is not NET/LEN[,GATEWAY]",
                 "give e.g. 192.168.50.0/24 or 192.168.50.0/24,10.0.2.9");
        if (!net.in_subnet(*via))
            fail("--dhcp-route", wire::ipv4_to_string(*via) + " is not on the network " + net_text,
                 "give a router on the guests' network (default: the gateway)");
        const wire::Ipv4 mask = cidr->prefix_len ? ~wire::Ipv4{0} << (32 - cidr->prefix_len) : 0;
        for (const gw::NetConfig::Route& r : net.dhcp_routes)
            if (r.net == (cidr->addr & mask) && r.prefix_len == cidr->prefix_len)
                fail("--dhcp-route", "'" + e + "' repeats the destination of another --dhcp-route",
                     "give each destination once");
        net.dhcp_routes.push_back({cidr->addr & mask, cidr->prefix_len, *via});
    }
    // Option 121 holds 255 bytes: each route its width, the significant
    // octets of its destination and the router, and the default route.
    size_t route_bytes = 0;
    bool own_default = false;
    for (const gw::NetConfig::Route& r : net.dhcp_routes) {
        route_bytes += 1 + (r.prefix_len + 7u) / 8u + 4;
        own_default = own_default || r.prefix_len == 0;
    }
    if (!net.dhcp_routes.empty() && !own_default) route_bytes += 5;
    if (route_bytes > 255)
        fail("--dhcp-route", "the routes take " + std::to_string(route_bytes) +
                                 " bytes, more than DHCP option 121's 255",
             "give fewer routes (27 of /25 or longer fit beside the default route)");
    // DHCP options 66 and 67 hold 255 bytes; a name has no spaces or controls.
    auto dhcp_token = [](const std::string& t) {
        return !t.empty() && t.size() <= 255 &&
               std::all_of(t.begin(), t.end(), [](char ch) {
                   return static_cast<unsigned char>(ch) > ' ' && ch != 0x7f;
               });
    };
    if (given(app, "--bootfile")) {
        const std::string& b = raw.bootfile;
        if (!dhcp_token(b))
            fail("--bootfile", "'" + b + "' is not a boot file name or URL",
                 "give a file name under --tftp (1-255 characters, no spaces) or a URL");
        net.bootfile = b;
    }
    if (given(app, "--tftp-server-name")) {
        const std::string& n = raw.tftp_server_name;
        if (!dhcp_token(n))
            fail("--tftp-server-name", "'" + n + "' is not a server name",
                 "give a host name or address (1-255 characters, no spaces)");
        if (!given(app, "--bootfile") || net.bootfile_is_url())
            fail("--tftp-server-name", "option 66 goes with a --bootfile NAME, and there is none",
                 "give --bootfile NAME too");
        net.tftp_server_name = n;
    }
}

// The IPv6 addresses: the prefix router advertisements give for SLAAC,
// and the gateway and DNS addresses in it (host parts ::2 and ::3, as in
// QEMU). --no-ipv6 turns IPv6 off in the gateway.
void resolve_addresses6(const CLI::App& app, const RawOptions& raw, Config& cfg) {
    gw::NetConfig& net = cfg.net;
    if (raw.no_ipv6) {
        for (const char* opt : {"--net6", "--gateway6", "--dns6"})
            if (given(app, opt))
                fail(opt, std::string(opt) + " sets up IPv6, which --no-ipv6 turns off",
                     "drop one of them");
        net.ipv6 = false;
        return;
    }
    std::string net_text = "fec0::/64";
    if (given(app, "--net6")) {
        auto slash = raw.net6.rfind('/');
        auto a = wire::IpAddr::parse(raw.net6.substr(0, slash));
        int len = -1;
        if (slash != std::string::npos) {
            const std::string l = raw.net6.substr(slash + 1);
            if (!l.empty() && l.size() <= 3 && l.find_first_not_of("0123456789") == std::string::npos)
                len = std::stoi(l);
        }
        if (!a || a->is_v4() || slash == std::string::npos || len < 0 || len > 128)
            fail("--net6", "'" + raw.net6 + "' is not an IPv6 prefix",
                 "write it as PREFIX/64, such as fd00:1234::/64");
        if (len != 64)
            fail("--net6", "prefix length /" + std::to_string(len) + " in '" + raw.net6 +
                               "' is not /64",
                 "give a /64: stateless autoconfiguration (RFC 4862) forms the guest's "
                 "address from its 64-bit interface identifier");
        // ::/8 is reserved (RFC 4291 2.4): it holds ::, ::1 and the
        // IPv4-mapped addresses.
        if (wire::is_v6_multicast(*a) || wire::is_v6_link_local(*a) || a->b[0] == 0)
            fail("--net6", "'" + raw.net6 + "' is not a unicast prefix a LAN can use",
                 "give a global or unique-local prefix, such as fd00:1234::/64");
        wire::IpAddr base = *a;
        for (size_t i = 8; i < 16; i++) base.b[i] = 0;
        if (base != *a)
            fail("--net6", "'" + raw.net6 + "' has host bits set",
                 "did you mean " + base.to_string() + "/64?");
        net.prefix6 = base;
        net.prefix6_len = 64;
        net.gateway6 = base;
        net.gateway6.b[15] = 2;
        net.dns6 = base;
        net.dns6.b[15] = 3;
        net_text = raw.net6;
    }
    struct Host {
        const char* option;
        wire::IpAddr* addr;
        const std::string* text;
    };
    for (Host h : {Host{"--gateway6", &net.gateway6, &raw.gateway6},
                   Host{"--dns6", &net.dns6, &raw.dns6}}) {
        if (!given(app, h.option)) continue;
        auto a = wire::IpAddr::parse(*h.text);
        if (!a || a->is_v4())
            fail(h.option, "'" + *h.text + "' is not an IPv6 address",
                 "write it as in fec0::2");
        if (!net.in_prefix6(*a) || *a == net.prefix6)
            fail(h.option, a->to_string() + " is not a host address in --net6 " + net_text,
                 "give an address inside the prefix, other than the prefix itself");
        *h.addr = *a;
    }
    if (net.gateway6 == net.dns6)
        fail(given(app, "--dns6") ? "--dns6" : "--gateway6",
             "the IPv6 gateway and DNS address are both " + net.gateway6.to_string(),
             "give them different addresses");
}

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    return true;
}

// What is wrong with an origin= value, "" when it is one a browser can
// send (RFC 6454 6.1: "null", or SCHEME://HOST with a port only when it is
// not the scheme's default; one trailing "/" is tolerated, as the check
// ignores it).
std::string origin_problem(std::string_view o) {
    if (o == "null" || o == "*") return "";
    const size_t sep = o.find("://");
    if (sep == std::string_view::npos || sep == 0) return "has no SCHEME://";
    const std::string_view scheme = o.substr(0, sep);
    for (size_t i = 0; i < scheme.size(); i++) {
        const char c = scheme[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alpha && (i == 0 || !((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')))
            return "has a bad scheme";
    }
    std::string_view host = o.substr(sep + 3);
    if (host.ends_with('/')) host.remove_suffix(1);
    if (host.empty()) return "has no host";
    if (host.find_first_of("/?#@ \t*") != std::string_view::npos)
        return "has a path, a wildcard or other characters an Origin never has";
    std::string_view port;
    if (host.front() == '[') {
        const size_t close = host.find(']');
        if (close == std::string_view::npos) return "has an unclosed [";
        if (close + 1 < host.size()) {
            if (host[close + 1] != ':') return "has characters after ]";
            port = host.substr(close + 2);
        }
    } else if (const size_t colon = host.find(':'); colon != std::string_view::npos) {
        port = host.substr(colon + 1);
    }
    if (port.data() != nullptr) {
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string_view::npos)
            return "has a bad port";
        const bool https = iequals_ascii(scheme, "https") || iequals_ascii(scheme, "wss");
        const bool http = iequals_ascii(scheme, "http") || iequals_ascii(scheme, "ws");
        if ((https && port == "443") || (http && port == "80"))
            return "names the scheme's default port, which browsers leave out";
    }
    return "";
}

// --websocket [HOST:]PORT[,origin=ORIGIN]...[,mtu=N]; HOST is an IPv4
// address or a bracketed IPv6 one (default 127.0.0.1).
void parse_websocket(const std::string& value, Attachment& a, std::optional<uint32_t>& own_mtu) {
    const std::string opt = "--websocket";
    std::string_view rest = value;
    size_t comma = rest.find(',');
    std::string_view where = rest.substr(0, comma);
    if (where.empty())
        fail(opt, "empty value", "give a port, or HOST:PORT, such as 8086 or 127.0.0.1:8086");
    std::string_view host = "127.0.0.1", port = where;
    if (where.starts_with('[')) {
        auto close = where.find("]:");
        if (close == std::string_view::npos)
            fail(opt, "'" + std::string(where) + "' has no port",
                 "write [IPV6]:PORT, such as [::1]:8086");
        host = where.substr(1, close - 1);
        port = where.substr(close + 2);
    } else if (auto colon = where.rfind(':'); colon != std::string_view::npos) {
        host = where.substr(0, colon);
        port = where.substr(colon + 1);
    }
    auto addr = wire::IpAddr::parse(host);
    if (!addr || (where.starts_with('[') == addr->is_v4()))
        fail(opt, "'" + std::string(host) + "' is not an IP address to listen on",
             "write 127.0.0.1:PORT, 0.0.0.0:PORT or [::1]:PORT");
    a.ws_host = addr->to_string();
    a.ws_port = static_cast<uint16_t>(parse_in_range(opt, port, 1, 65535, "port ", "",
                                                     "give a TCP port, such as 8086"));
    a.target = std::string(where);
    while (comma != std::string_view::npos) {
        rest.remove_prefix(comma + 1);
        comma = rest.find(',');
        std::string_view param = rest.substr(0, comma);
        if (param.starts_with("origin=")) {
            std::string_view o = param.substr(7);
            if (std::string why = origin_problem(o); !why.empty())
                fail(opt, "origin '" + std::string(o) + "' in '" + value + "' " + why +
                              ": a browser's Origin header is SCHEME://HOST[:PORT]",
                     "write origin=SCHEME://HOST[:PORT], such as origin=https://example.org");
            a.ws_origins.emplace_back(o);
        } else if (param.starts_with("mtu=")) {
            own_mtu = parse_mtu(opt, param.substr(4));
        } else {
            fail(opt, "unknown parameter '" + std::string(param) + "' in '" + value + "'",
                 "the parameters are ,origin=ORIGIN (repeatable) and ,mtu=N");
        }
    }
}

// --serial TRANSPORT[,proto=ppp|slip][,addr=IP][,mtu=N]
// addr= is checked against its LAN's network later (check_fixed_addresses).
Attachment parse_serial(const std::string& value, std::optional<uint32_t> default_mtu) {
    const std::string opt = "--serial";
    Attachment a;
    a.kind = AttachmentKind::serial;
    std::string_view rest = value;
    auto comma = rest.find(',');
    a.target = std::string(rest.substr(0, comma));
    std::string err = ports::parse_serial_transport(a.target, a.serial);
    if (!err.empty())
        fail(opt, err, "write pty, pty:LINK, unix:PATH or tcp:[HOST:]PORT, then ,proto=ppp|slip");
    a.mtu = default_mtu.value_or(kWireMtu);
    while (comma != std::string_view::npos) {
        rest = rest.substr(comma + 1);
        comma = rest.find(',');
        std::string_view param = rest.substr(0, comma);
        if (param.starts_with("proto=")) {
            std::string_view p = param.substr(6);
            if (p == "ppp") a.serial.protocol = ports::SerialProtocol::ppp;
            else if (p == "slip") a.serial.protocol = ports::SerialProtocol::slip;
            else fail(opt, "unknown protocol '" + std::string(p) + "'", "give proto=ppp or proto=slip");
        } else if (param.starts_with("addr=")) {
            a.address = parse_ipv4(opt, std::string(param.substr(5)));
        } else if (param.starts_with("mtu=")) {
            a.mtu = parse_mtu(opt, param.substr(4));
        } else {
            fail(opt, "unknown parameter '" + std::string(param) + "' in '" + value + "'",
                 "the parameters are ,proto=ppp|slip ,addr=IP and ,mtu=N");
        }
    }
    a.serial.fixed_addr = a.address;
    a.serial.mtu = a.mtu;
    return a;
}

// --listen [HOST:]PORT (HOST defaults to kDefaultListenHost) and --connect
// HOST:PORT; HOST an IP address, an IPv6 one in brackets.
gw::HostPort parse_tcp_endpoint(const std::string& option, const std::string& text) {
    bool listen = option == "--listen";
    std::string full = text;
    if (listen && parse_uint(text)) full = std::string(kDefaultListenHost) + ":" + text;
    auto hp = parse_host_port(full);
    bool has_port = hp && (full.starts_with('[')
                               ? full.find("]:") != std::string::npos
                               : std::count(full.begin(), full.end(), ':') == 1);
    if (!hp || !has_port)
        fail(option, "'" + text + "' is not " + (listen ? "[HOST:]PORT" : "HOST:PORT"),
             listen ? "write a port from 1 to 65535, such as 5555, or ADDR:PORT, such as "
                      "127.0.0.1:5555 or [::1]:5555"
                    : "write ADDR:PORT with an IP address and a port from 1 to 65535, such as "
                      "127.0.0.1:5555 or [::1]:5555");
    if (!listen && hp->addr.is_unspecified())
        fail(option, "'" + text + "' is not an address to connect to",
             "give the address QEMU listens on, such as 127.0.0.1:5555");
    return *hp;
}

std::string tcp_endpoint_text(const gw::HostPort& hp) {
    std::string a = hp.addr.to_string();
    if (!hp.addr.is_v4()) a = "[" + a + "]";
    return a + ":" + std::to_string(hp.port);
}

// --bochs PORT[,count=N][,mtu=N]. Its MTU defaults to --mtu, at most 1500
// (an NE2000 takes standard frames only).
Attachment bochs_attachment(const std::string& value, std::optional<uint32_t> mtu) {
    std::string error;
    auto spec = ports::parse_bochs_spec(value, &error);
    if (!spec) {
        auto semi = error.find("; ");
        fail("--bochs", error.substr(0, semi), error.substr(semi + 2));
    }
    Attachment a;
    a.kind = AttachmentKind::bochs;
    a.target = value;
    a.bochs_port = spec->base_port;
    a.bochs_count = spec->count;
    a.mtu = spec->mtu.value_or(std::min(mtu.value_or(kWireMtu), ports::kBochsMaxMtu));
    return a;
}

// Two --bochs options must not share a UDP port.
void check_bochs_ranges(const std::vector<Attachment>& all) {
    for (size_t i = 0; i < all.size(); ++i)
        for (size_t j = 0; j < i; ++j) {
            const Attachment& a = all[i];
            const Attachment& b = all[j];
            if (a.kind != AttachmentKind::bochs || b.kind != AttachmentKind::bochs) continue;
            uint32_t a_end = a.bochs_port + 2 * a.bochs_count;  // one past the last port
            uint32_t b_end = b.bochs_port + 2 * b.bochs_count;
            if (a.bochs_port < b_end && b.bochs_port < a_end)
                fail("--bochs", "'" + a.target + "' and '" + b.target + "' use the same UDP ports",
                     "give each --bochs its own ports (instance i of PORT uses PORT+2i and "
                     "PORT+2i+1)");
        }
}

// The options that attach a guest (each occurrence, one attachment).
bool is_attachment_option(const std::string& name) {
    return name == "--netns" || name == "--tap" || name == "--socket" || name == "--listen" ||
           name == "--connect" || name == "--dgram" || name == "--mcast" ||
           name == "--bochs" || name == "--vde" ||
           name == "--serial" || name == "--uplink" ||
           name == "--websocket";
}

// The option an attachment of this kind comes from.
const char* option_of(AttachmentKind kind) {
    switch (kind) {
    case AttachmentKind::netns: return "--netns";
    case AttachmentKind::tap: return "--tap";
    case AttachmentKind::tcp_listen: return "--listen";
    case AttachmentKind::tcp_connect: return "--connect";
    case AttachmentKind::dgram: return "--dgram";
    case AttachmentKind::vde: return "--vde";
    case AttachmentKind::serial: return "--serial";
    case AttachmentKind::uplink: return "--uplink";
    case AttachmentKind::websocket: return "--websocket";
    case AttachmentKind::bochs: return "--bochs";
    case AttachmentKind::socket: return "--socket";
    }
    return "--socket";
}

// Each attachment with its MTU, in command-line order.
void resolve_attachments(const CLI::App& app, const RawOptions& raw, Config& cfg) {
    std::optional<uint32_t> mtu;
    if (given(app, "--mtu")) mtu = parse_mtu("--mtu", raw.mtu);
    cfg.default_mtu = mtu;
    check_ifname("--tap-name", raw.tap_name);

    // CLI11 keeps each option's values apart; parse_order() restores the
    // order in which attachments were given.
    std::map<const CLI::Option*, size_t> next;
    for (const CLI::Option* o : app.parse_order()) {
        std::string name = "--" + o->get_lnames().front();
        if (!is_attachment_option(name)) continue;
        if (name == "--serial") {
            size_t i = next[o]++;
            if (i < raw.serial.size())
                cfg.attachments.push_back(parse_serial(raw.serial[i], mtu));
            continue;
        }
        if (name == "--bochs") {
            size_t i = next[o]++;
            if (i < raw.bochs.size()) cfg.attachments.push_back(bochs_attachment(raw.bochs[i], mtu));
            continue;
        }
        const std::vector<std::string>& values = name == "--netns"    ? raw.netns
                                                 : name == "--tap"    ? raw.tap
                                                 : name == "--listen" ? raw.listen
                                                 : name == "--connect" ? raw.connect
                                                 : name == "--dgram"  ? raw.dgram
                                                 : name == "--mcast"  ? raw.mcast
                                                 : name == "--vde"    ? raw.vde
                                                 : name == "--uplink" ? raw.uplink
                                                 : name == "--websocket" ? raw.websocket
                                                                      : raw.socket;
        size_t i = next[o]++;
        if (i >= values.size()) continue;
        if (name == "--websocket") {
            Attachment a;
            a.kind = AttachmentKind::websocket;
            std::optional<uint32_t> own_mtu;
            parse_websocket(values[i], a, own_mtu);
            a.mtu = own_mtu.value_or(mtu.value_or(kWireMtu));
            cfg.attachments.push_back(std::move(a));
            continue;
        }
        if (name == "--dgram" || name == "--mcast") {
            Attachment a;
            a.kind = AttachmentKind::dgram;
            a.target = values[i];
            a.dgram = parse_dgram(name, values[i], mtu);
            a.mtu = a.dgram->mtu;
            for (const Attachment& b : cfg.attachments)
                if (b.dgram && b.dgram->local == a.dgram->local)
                    fail(name, "'" + a.dgram->local.to_string() + "' is given twice",
                         "give each attachment its own address");
            cfg.attachments.push_back(std::move(a));
            continue;
        }
        auto [target, own_mtu, lan_mac] = split_attachment(name, values[i]);
        Attachment a;
        a.target = target;
        a.lan_mac = lan_mac;
        if (name == "--netns") {
            a.kind = AttachmentKind::netns;
            a.netns_path = ports::netns_path(target);
            a.ifname = raw.tap_name;
            // Bridged onto a real network (--uplink on its LAN), a
            // namespace's TAP takes that network's usual MTU: frames larger
            // than the uplink's could not leave (TCP still goes in 64 KiB
            // segments with offload). resolve_lans() settles which.
            a.mtu = own_mtu.value_or(mtu.value_or(kNetnsMtu));
            a.mtu_by_default = !own_mtu && !mtu;
        } else if (name == "--uplink") {
            a.kind = AttachmentKind::uplink;
            check_ifname("--uplink", target);
            a.ifname = target;
            a.mtu = own_mtu.value_or(0);
        } else if (name == "--tap") {
            a.kind = AttachmentKind::tap;
            check_ifname("--tap", target);
            a.ifname = target;
            a.mtu = own_mtu.value_or(mtu.value_or(kWireMtu));
        } else if (name == "--listen" || name == "--connect") {
            a.kind = name == "--listen" ? AttachmentKind::tcp_listen : AttachmentKind::tcp_connect;
            a.endpoint = parse_tcp_endpoint(name, target);
            a.target = tcp_endpoint_text(a.endpoint);
            a.mtu = own_mtu.value_or(mtu.value_or(kWireMtu));
        } else if (name == "--vde") {
            a.kind = AttachmentKind::vde;
            // DIR/NNN.SERIAL must fit in sun_path (the daemon checks the
            // absolute path again).
            if (target.size() + 16 >= sizeof(sockaddr_un{}.sun_path))
                fail("--vde", "directory '" + target + "' is longer than " +
                                  std::to_string(sizeof(sockaddr_un{}.sun_path) - 17) + " bytes",
                     "use a shorter path");
            a.mtu = own_mtu.value_or(mtu.value_or(kWireMtu));
        } else {
            a.kind = AttachmentKind::socket;
            if (target.size() >= sizeof(sockaddr_un{}.sun_path))
                fail("--socket", "path '" + target + "' is longer than " +
                                     std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes",
                     "use a shorter path");
            a.mtu = own_mtu.value_or(mtu.value_or(kWireMtu));
        }
        cfg.attachments.push_back(std::move(a));
    }
    check_bochs_ranges(cfg.attachments);
    for (size_t i = 0; i < cfg.attachments.size(); ++i)
        for (size_t j = 0; j < i; ++j) {
            const Attachment& a = cfg.attachments[i];
            const Attachment& b = cfg.attachments[j];
            bool same = a.kind == b.kind && (a.kind == AttachmentKind::netns
                                                 ? a.netns_path == b.netns_path
                                             : a.kind == AttachmentKind::websocket
                                                 ? a.ws_port == b.ws_port && a.ws_host == b.ws_host
                                                 : a.target == b.target);
            const char* opt = option_of(a.kind);
            if (same)
                fail(opt, "'" + a.target + "' is given twice", "give each attachment once");
        }

}

// "NAME[,net=CIDR][,pcap=FILE]".
LanConfig parse_lan(const std::string& text, const Config& cfg) {
    LanConfig lan;
    lan.net = cfg.net;
    size_t at = text.find(',');
    lan.name = text.substr(0, at);
    bool ok_name = !lan.name.empty() && lan.name.size() <= 32 &&
                   std::all_of(lan.name.begin(), lan.name.end(), [](unsigned char c) {
                       return std::isalnum(c) || c == '-' || c == '_' || c == '.';
                   });
    if (!ok_name)
        fail("--lan", "'" + lan.name + "' is not a LAN name",
             "use up to 32 letters, digits, '-', '_' or '.'");
    if (lan.name == "default")
        fail("--lan", "'default' is the name of the LAN of the attachments before any --lan",
             "give this LAN another name");
    while (at != std::string::npos) {
        size_t next = text.find(',', at + 1);
        std::string param = text.substr(at + 1, next == std::string::npos ? next : next - at - 1);
        at = next;
        if (param.starts_with("net=")) {
            Cidr c = parse_network("--lan", param.substr(4));
            // The first lease is host 15: a /28 has the broadcast address there.
            if (c.prefix_len > 27)
                fail("--lan", "'" + param + "' in '" + text +
                                  "' leaves no DHCP pool (the first lease is host 15, the "
                                  "broadcast address of a /28)",
                     "use a prefix from /1 to /27, such as /24");
            lan.net.net = c.addr;
            lan.net.prefix_len = c.prefix_len;
            lan.net.gateway = c.addr + 2;
            lan.net.dns = c.addr + 3;
            lan.net.dhcp_start = c.addr + 15;
            size_pool(lan.net);
            // --dhcp-host and --dhcp-route name addresses of the default
            // network, not of this one.
            lan.net.dhcp_hosts.clear();
            lan.net.dhcp_routes.clear();
        } else if (param.starts_with("pcap=") && param.size() > 5) {
            lan.pcap_path = param.substr(5);
        } else {
            fail("--lan", "unknown parameter '" + param + "' in '" + text + "'",
                 "write --lan NAME[,net=CIDR][,pcap=FILE]");
        }
    }
    return lan;
}

// --lan NAME starts a LAN of its own: the attachments after it, up to the
// next --lan, join it; those before any --lan are the default LAN.
void resolve_lans(const CLI::App& app, const RawOptions& raw, Config& cfg) {
    size_t attachment = 0, lans = 0;
    std::vector<size_t> members;
    for (const CLI::Option* o : app.parse_order()) {
        std::string name = "--" + o->get_lnames().front();
        if (name == "--lan") {
            if (lans >= raw.lan.size()) continue;
            LanConfig lan = parse_lan(raw.lan[lans++], cfg);
            for (const LanConfig& l : cfg.lans) {
                if (l.name == lan.name)
                    fail("--lan", "LAN '" + lan.name + "' is given twice",
                         "give each --lan a name of its own");
                if (!lan.pcap_path.empty() && lan.pcap_path == l.pcap_path)
                    fail("--lan", "two LANs capture to " + lan.pcap_path,
                         "give each LAN its own capture file");
            }
            cfg.lans.push_back(std::move(lan));
            members.push_back(0);
        } else if (is_attachment_option(name) && attachment < cfg.attachments.size()) {
            cfg.attachments[attachment++].lan = lans;
            if (lans > 0) ++members[lans - 1];
        }
    }
    for (size_t i = 0; i < cfg.lans.size(); ++i)
        if (members[i] == 0)
            fail("--lan", "LAN '" + cfg.lans[i].name + "' has no attachment",
                 "put the attachments of a LAN after its --lan");
    // A LAN MAC (,mac=) is one guest's on its LAN: not two attachments',
    // and never the gateway's.
    for (size_t i = 0; i < cfg.attachments.size(); ++i) {
        const Attachment& a = cfg.attachments[i];
        if (!a.lan_mac) continue;
        const std::string m = a.lan_mac->to_string();
        if (*a.lan_mac == gw::NetConfig{}.gw_mac)
            fail(option_of(a.kind), "mac=" + m + " is the gateway's MAC",
                 "give the attachment another MAC");
        for (size_t j = 0; j < i; ++j)
            if (cfg.attachments[j].lan_mac == a.lan_mac && cfg.attachments[j].lan == a.lan)
                fail(option_of(a.kind), "mac=" + m + " is given to two attachments of one LAN",
                     "give each attachment a MAC of its own");
    }
    for (Attachment& a : cfg.attachments) {
        if (a.kind != AttachmentKind::netns || !a.mtu_by_default) continue;
        const bool uplink_here =
            std::any_of(cfg.attachments.begin(), cfg.attachments.end(), [&](const Attachment& b) {
                return b.kind == AttachmentKind::uplink && b.lan == a.lan;
            });
        if (uplink_here) a.mtu = kWireMtu;
    }
}

// With --config-net, the address of each namespace: in each LAN, the first
// namespace gets the first lease address (the default LAN's: --guest-addr),
// the next ones the following free addresses.
// A serial line's addr= must be a host address of its own LAN's network,
// and no other serial line's there.
void check_fixed_addresses(const Config& cfg) {
    for (size_t i = 0; i < cfg.attachments.size(); ++i) {
        const Attachment& a = cfg.attachments[i];
        if (a.kind != AttachmentKind::serial || !a.address) continue;
        const gw::NetConfig& net = a.lan == 0 ? cfg.net : cfg.lans[a.lan - 1].net;
        std::string net_text =
            wire::ipv4_to_string(net.net) + "/" + std::to_string(net.prefix_len);
        if (a.lan > 0) net_text += " (LAN " + cfg.lans[a.lan - 1].name + ")";
        const std::string ip = wire::ipv4_to_string(*a.address);
        if (!net.in_subnet(*a.address))
            fail("--serial", "addr=" + ip + " is outside the network " + net_text,
                 a.lan == 0 ? "give an address inside it, or change --net"
                            : "give an address inside it, or change that --lan's net=");
        check_host(net, "--serial", *a.address, net_text);
        if (*a.address == net.gateway || *a.address == net.dns)
            fail("--serial", ip + " is the gateway or DNS address of " + net_text,
                 "give the peer another address");
        for (size_t j = 0; j < i; ++j)
            if (cfg.attachments[j].kind == AttachmentKind::serial &&
                cfg.attachments[j].lan == a.lan && cfg.attachments[j].address == a.address)
                fail("--serial", "addr=" + ip + " is given to two serial lines of one LAN",
                     "give each peer an address of its own");
    }
}

void assign_netns_addresses(Config& cfg) {
    if (!cfg.config_net) return;
    bool any_netns = std::any_of(cfg.attachments.begin(), cfg.attachments.end(),
                                 [](const Attachment& a) {
                                     return a.kind == AttachmentKind::netns;
                                 });
    if (!any_netns)
        fail("--config-net", "there is no --netns attachment to configure",
             "add --netns NAME, or drop --config-net");
    std::vector<wire::Ipv4> next{cfg.guest_addr.value_or(cfg.net.dhcp_start)};
    for (const LanConfig& l : cfg.lans) next.push_back(l.net.dhcp_start);
    for (Attachment& a : cfg.attachments) {
        if (a.kind != AttachmentKind::netns) continue;
        const gw::NetConfig& net = a.lan == 0 ? cfg.net : cfg.lans[a.lan - 1].net;
        wire::Ipv4& addr = next[a.lan];
        // Skips the gateway, the DNS address and serial lines' addr=.
        auto taken = [&](wire::Ipv4 x) {
            if (x == net.gateway || x == net.dns) return true;
            return std::any_of(cfg.attachments.begin(), cfg.attachments.end(),
                               [&](const Attachment& b) {
                                   return b.kind == AttachmentKind::serial && b.lan == a.lan &&
                                          b.address == x;
                               });
        };
        while (taken(addr)) ++addr;
        if (!net.in_subnet(addr) || addr == net.broadcast())
            fail("--config-net", "the network has no address left for --netns " + a.target,
                 "use a larger --net or fewer namespaces");
        a.address = addr++;
    }
}

// -t and -u, in command-line order.
// The target is --guest-addr; else the first fixed address in the default
// LAN (a --config-net namespace's or a serial line's addr=, known before
// that guest says anything); else left to the NAT (the guest heard from
// last).
// A forward's own guest must be on the network it forwards into.
void check_forward_guest(const Config& cfg, const char* option, const nat::ForwardSpec& spec) {
    if (!spec.guest_addr) return;
    const wire::IpAddr& g = *spec.guest_addr;
    if (!cfg.net.is_guest_addr(g))
        fail(option, "the forward's guest " + g.to_string() + " is not a guest address of the network",
             "give an address of a guest inside --net (or --net6), not the gateway's or DNS's");
}

// The files usernet writes or binds (captures, the pid file, the control
// socket, QEMU's stream sockets) must be distinct, however they are
// spelled: two writers of one file garble it, and a socket bound where a
// capture was opened fails with a message that blames someone else.
void check_distinct_files(const Config& cfg) {
    std::vector<std::pair<std::string, std::string>> files;  // option, path
    if (!cfg.pcap_path.empty()) files.emplace_back("--pcap", cfg.pcap_path);
    for (const LanConfig& l : cfg.lans)
        if (!l.pcap_path.empty()) files.emplace_back("--lan " + l.name + ",pcap=", l.pcap_path);
    if (!cfg.pid_path.empty()) files.emplace_back("--pid", cfg.pid_path);
    if (!cfg.api_socket.empty()) files.emplace_back("--api-socket", cfg.api_socket);
    for (const Attachment& a : cfg.attachments) {
        if (a.kind == AttachmentKind::socket) files.emplace_back("--socket", a.target);
        if (a.kind == AttachmentKind::vde) files.emplace_back("--vde", a.target);
        if (a.kind == AttachmentKind::dgram && a.dgram && a.dgram->kind == ports::DgramKind::unix_dgram)
            files.emplace_back("--dgram", a.dgram->local.path());
        if (a.kind == AttachmentKind::serial && !a.serial.path.empty() &&
            a.serial.transport != ports::SerialTransport::tcp)
            files.emplace_back("--serial", a.serial.path);
    }
    std::vector<std::filesystem::path> canon;
    for (const auto& [opt, path] : files) {
        std::error_code ec;
        std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
        canon.push_back(ec ? std::filesystem::path(path) : p);
    }
    for (size_t i = 0; i < files.size(); i++)
        for (size_t j = 0; j < i; j++)
            if (canon[i] == canon[j])
                fail(files[i].first, files[j].first + " and " + files[i].first + " both name " +
                                         canon[i].string(),
                     "give each its own file");
}

// Two of usernet's own listeners on one port would fail at start-up with
// "in use by another program": say which options clash instead.
void check_port_clashes(const Config& cfg) {
    struct Bound {
        std::string option;
        bool tcp;
        std::optional<wire::IpAddr> addr;  // none: every address of both families
        uint16_t first, last;
        bool v6only = false;  // an explicit :: that takes no IPv4
    };
    std::vector<Bound> bound;
    for (const Attachment& a : cfg.attachments) {
        if (a.kind == AttachmentKind::tcp_listen)
            bound.push_back({"--listen", true, a.endpoint.addr, a.endpoint.port, a.endpoint.port});
        else if (a.kind == AttachmentKind::websocket)
            bound.push_back({"--websocket", true, wire::IpAddr::parse(a.ws_host), a.ws_port, a.ws_port});
        else if (a.kind == AttachmentKind::dgram && a.dgram && a.dgram->kind == ports::DgramKind::udp)
            bound.push_back({"--dgram", false, a.dgram->local.ip(), a.dgram->local.port(),
                             a.dgram->local.port()});
        else if (a.kind == AttachmentKind::serial &&
                 a.serial.transport == ports::SerialTransport::tcp && a.serial.port != 0)
            bound.push_back({"--serial", true, wire::IpAddr::parse(a.serial.host), a.serial.port,
                             a.serial.port});
        else if (a.kind == AttachmentKind::bochs)
            for (uint32_t i = 0; i < a.bochs_count; i++) {
                const auto p = static_cast<uint16_t>(a.bochs_port + 2 * i + 1);
                bound.push_back({"--bochs", false, wire::IpAddr::v4(0x7f000001), p, p});
            }
    }
    for (const nat::ForwardSpec& f : cfg.forwards)
        if (f.host_first != 0)
            bound.push_back({f.proto == 't' ? "-t" : "-u", f.proto == 't', f.bind_addr, f.host_first,
                             f.host_last, f.v6only});
    // Whether two bindings' addresses can take the same packets.
    auto overlap = [](const Bound& x, const Bound& y) {
        const std::optional<wire::IpAddr>& a = x.addr;
        const std::optional<wire::IpAddr>& b = y.addr;
        if (!a || !b) return true;  // every address of both families
        if (a->is_v4() != b->is_v4())  // [::] takes IPv4 too, unless IPv6 only
            return (!a->is_v4() && a->is_unspecified() && !x.v6only) ||
                   (!b->is_v4() && b->is_unspecified() && !y.v6only);
        return *a == *b || a->is_unspecified() || b->is_unspecified();
    };
    for (size_t i = 0; i < bound.size(); i++)
        for (size_t j = 0; j < i; j++) {
            const Bound& x = bound[i];
            const Bound& y = bound[j];
            if (x.tcp != y.tcp || x.first > y.last || y.first > x.last || !overlap(x, y))
                continue;
            // Forwards among themselves are checked with their own words.
            if ((x.option == "-t" || x.option == "-u") && x.option == y.option) continue;
            const uint16_t port = std::max(x.first, y.first);
            fail(x.option, std::string(x.tcp ? "TCP" : "UDP") + " port " + std::to_string(port) +
                               " is given to both " + y.option + " and " + x.option,
                 "give each its own port");
        }
}

void resolve_forwards(const CLI::App& app, const RawOptions& raw, Config& cfg) {
    std::optional<wire::Ipv4> target = cfg.guest_addr;
    for (const Attachment& a : cfg.attachments)
        if (!target && a.address && a.lan == 0) target = a.address;
    cfg.forward_target = target;
    // What the user wrote for each forward, for the messages below: one
    // -t argument may make several specs.
    std::vector<std::pair<std::string, std::string>> origin;  // option, its argument
    for (const nat::ForwardSpec& f : cfg.forwards) origin.emplace_back(f.to_string(), "");
    std::map<const CLI::Option*, size_t> next;
    for (const CLI::Option* o : app.parse_order()) {
        bool tcp = o->check_lname("tcp-ports");
        if (!tcp && !o->check_lname("udp-ports")) continue;
        const std::vector<std::string>& values = tcp ? raw.tcp : raw.udp;
        size_t i = next[o]++;
        if (i >= values.size()) continue;
        const std::string& text = values[i];
        if (text == "none" && values.size() > 1)
            fail(tcp ? "-t" : "-u", "'none' forwards nothing, yet other forwards are given too",
                 "drop 'none', or the other forwards");
        try {
            for (nat::ForwardSpec& spec : nat::parse_forward_specs(tcp ? 't' : 'u', text)) {
                check_forward_guest(cfg, tcp ? "-t" : "-u", spec);
                if (target && !spec.guest_addr) spec.guest_addr = wire::IpAddr::v4(*target);
                cfg.forwards.push_back(std::move(spec));
                origin.emplace_back(tcp ? "-t" : "-u", text);
            }
        } catch (const std::invalid_argument& e) {
            // The parser's message may carry its own remedy after "; ".
            std::string what = e.what();
            std::string todo = "write [ADDR/]PORT[-END][:GUESTPORT[-END]], such as 8080:80";
            if (auto semi = what.find("; "); semi != std::string::npos) {
                todo = what.substr(semi + 2);
                what.resize(semi);
            }
            fail(tcp ? "-t" : "-u", "bad port forward '" + text + "': " + what, todo);
        }
    }
    for (const std::string& text : raw.hostfwd) {
        nat::ForwardSpec spec;
        try {
            spec = nat::parse_hostfwd(text);
        } catch (const std::invalid_argument& e) {
            std::string what = e.what();
            const size_t semi = what.find("; ");
            fail("--hostfwd", "bad forward '" + text + "': " + what.substr(0, semi),
                 semi == std::string::npos ? "see usernet(1)" : what.substr(semi + 2));
        }
        check_forward_guest(cfg, "--hostfwd", spec);
        if (target && !spec.guest_addr) spec.guest_addr = wire::IpAddr::v4(*target);
        cfg.forwards.push_back(std::move(spec));
        origin.emplace_back("--hostfwd", text);
    }
    // Two forwards of one host port would fail at start-up with "address
    // in use", blaming another program: say it here.
    auto families = [](const nat::ForwardSpec& f) {
        if (!f.bind_addr) return 3;               // every address of both
        if (f.bind_addr->is_v4()) return 1;
        return f.bind_addr->is_unspecified() && !f.v6only ? 3 : 2;  // --hostfwd [::] takes IPv4 too
    };
    auto wild = [](const nat::ForwardSpec& f) { return !f.bind_addr || f.bind_addr->is_unspecified(); };
    auto overlap = [&](const nat::ForwardSpec& a, const nat::ForwardSpec& b) {
        if (a.proto != b.proto || a.host_last < b.host_first || b.host_last < a.host_first ||
            a.bind_ifname != b.bind_ifname || (families(a) & families(b)) == 0)
            return false;
        return wild(a) || wild(b) || *a.bind_addr == *b.bind_addr;
    };
    for (size_t i = 0; i < cfg.forwards.size(); i++)
        for (size_t j = 0; j < i; j++)
            if (overlap(cfg.forwards[i], cfg.forwards[j])) {
                const nat::ForwardSpec& a = cfg.forwards[i];
                const uint16_t port = std::max(a.host_first, cfg.forwards[j].host_first);
                auto said = [&](size_t k) {
                    return origin[k].second.empty() ? origin[k].first
                                                    : origin[k].first + " " + origin[k].second;
                };
                // A forward on every address (none given, 0.0.0.0 or ::)
                // takes the port on the specific ones too.
                const bool wildcard = wild(a) || wild(cfg.forwards[j]);
                fail(origin[i].first,
                     "host port " + std::to_string(port) + (a.proto == 't' ? "/tcp" : "/udp") +
                         " is forwarded twice (" + said(j) + " and " + said(i) + ")",
                     wildcard ? "forward each host port once: a forward without a host address "
                                "listens on all of them, so give each forward its own address"
                              : "forward each host port once, or give each a different host address");
            }
}

// A service address (a guest forward's, the SMB server's): a host address
// of the default LAN that no guest can hold.
void check_service_addr(const Config& cfg, const std::string& option, const wire::IpAddr& a) {
    const gw::NetConfig& n = cfg.net;
    const std::string s = a.to_string();
    const char* todo = "give an unused address of the LAN, such as 10.0.2.100";
    wire::Ipv4 host = 0;
    if (a.is_v4()) {
        host = a.as_v4();
        if (!n.in_subnet(host) || host == (n.net & n.netmask()) || host == n.broadcast())
            fail(option, s + " is not a host address of the LAN " +
                             wire::ipv4_to_string(n.net & n.netmask()) + "/" +
                             std::to_string(n.prefix_len), todo);
        if (host == n.gateway || host == n.dns)
            fail(option, s + " is the gateway or DNS address", todo);
        if (cfg.guest_addr && *cfg.guest_addr == host)
            fail(option, s + " is --guest-addr", todo);
        for (const Attachment& att : cfg.attachments)
            if (att.lan == 0 && att.address && *att.address == host)
                fail(option, s + " is the address of " + att.target, todo);
    } else {
        if (!n.ipv6 || !n.in_prefix6(a) || a == n.prefix6 || a == n.gateway6 || a == n.dns6)
            fail(option, s + " is not a host address of the LAN's IPv6 prefix",
                 "give an unused address of the prefix, such as fec0::100");
        // Guests' IPv6 addresses from DHCPv6 and --config-net carry the
        // host part of their IPv4 address (NetConfig::v6_of).
        host = (n.net & n.netmask()) | (wire::load32(&a.b[12]) & ~n.netmask());
    }
    if (host - n.dhcp_start < n.dhcp_count)
        fail(option, s + " is in the DHCP range (from " + wire::ipv4_to_string(n.dhcp_start) +
                         ", " + std::to_string(n.dhcp_count) + " addresses)",
             todo);
    for (const gw::NetConfig::StaticLease& l : n.dhcp_hosts)
        if (l.ip == host) fail(option, s + " is a static lease's (--dhcp-host)", todo);
}

// --guestfwd and --smb: virtual addresses in the default LAN.
void resolve_services(const CLI::App& app, const RawOptions& raw, Config& cfg) {
    std::vector<std::pair<wire::IpAddr, uint16_t>> taken;
    auto claim = [&](const std::string& option, const wire::IpAddr& a, uint16_t port) {
        if (std::find(taken.begin(), taken.end(), std::pair{a, port}) != taken.end())
            fail(option, "TCP " + a.to_string() + " port " + std::to_string(port) +
                             " is forwarded twice",
                 "give each guest forward its own address and port");
        taken.emplace_back(a, port);
        if (!cfg.net.is_service_addr(a)) cfg.net.service_addrs.push_back(a);
    };
    for (const std::string& text : raw.guestfwd) {
        std::string why;
        auto spec = nat::parse_guestfwd(text, &why);
        if (!spec)
            fail("--guestfwd", "bad guest forward '" + text + "': " + why,
                 "write tcp:ADDR:PORT-TARGET, TARGET being HOST:PORT, unix:PATH or cmd:COMMAND, "
                 "such as tcp:10.0.2.100:80-127.0.0.1:8080");
        check_service_addr(cfg, "--guestfwd", spec->addr);
        claim("--guestfwd", spec->addr, spec->port);
        cfg.guest_forwards.push_back(std::move(*spec));
    }
    if (given(app, "--smb-server") && !given(app, "--smb"))
        fail("--smb-server", "--smb-server is the address of --smb's server", "give --smb DIR too");
    if (!given(app, "--smb")) return;
    char* real = realpath(raw.smb.c_str(), nullptr);
    const int err = errno;
    struct stat st {};
    if (!real || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        fail("--smb", "'" + raw.smb + "' is not a directory" +
                          (real ? std::string() : std::string(" (") + std::strerror(err) + ")"),
             "give the directory to share with the guests");
    }
    cfg.smb_dir = real;
    free(real);
    wire::IpAddr addr = wire::IpAddr::v4((cfg.net.net & cfg.net.netmask()) + 4);  // QEMU's 10.0.2.4
    if (given(app, "--smb-server")) {
        auto a = wire::IpAddr::parse(raw.smb_server);
        if (!a) fail("--smb-server", "'" + raw.smb_server + "' is not an IP address",
                     "give an unused address of the LAN, such as 10.0.2.4");
        addr = *a;
    }
    check_service_addr(cfg, given(app, "--smb-server") ? "--smb-server" : "--smb", addr);
    cfg.smb_addr = addr;
    for (uint16_t port : {uint16_t{445}, uint16_t{139}}) claim("--smb", addr, port);
}

}  // namespace

std::optional<gw::HostPort> parse_host_port(std::string_view text) {
    std::string_view addr = text;
    std::optional<std::string_view> port;
    if (text.starts_with('[')) {
        auto close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        addr = text.substr(1, close - 1);
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (!rest.starts_with(':')) return std::nullopt;
            port = rest.substr(1);
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        auto colon = text.find(':');
        addr = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    gw::HostPort hp;
    // A link-local IPv6 address's zone: [fe80::1%eth0]:53.
    if (size_t pct = addr.find('%'); pct != std::string_view::npos && text.starts_with('[')) {
        hp.scope = gw::scope_of(addr.substr(pct + 1));
        if (hp.scope == 0) return std::nullopt;
        addr = addr.substr(0, pct);
    }
    auto a = wire::IpAddr::parse(addr);
    if (!a) return std::nullopt;
    if (hp.scope && !wire::is_v6_link_local(*a)) return std::nullopt;
    // "[1.2.3.4]" is not a thing; "[::1]" with a v4 inside brackets is refused.
    if (text.starts_with('[') && a->is_v4() && addr.find(':') == std::string_view::npos)
        return std::nullopt;
    hp.addr = *a;
    if (port) {
        auto p = parse_uint(*port);
        if (!p || *p == 0 || *p > 65535) return std::nullopt;
        hp.port = static_cast<uint16_t>(*p);
    }
    return hp;
}

std::optional<Cidr> parse_cidr(std::string_view text) {
    auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto a = wire::ipv4_parse(text.substr(0, slash));
    auto len = parse_uint(text.substr(slash + 1));
    if (!a || !len || *len > 32 || text.size() - slash - 1 > 2) return std::nullopt;
    return Cidr{*a, static_cast<uint8_t>(*len)};
}

namespace {

// --outbound-addr ADDR|IFACE: the address the NAT's sockets leave from (of
// ADDR's family), or an interface's first IPv4 and first global IPv6
// address. Each must be bindable now, so that a typo fails at start rather
// than every connection later.
void resolve_outbound(const std::string& text, gw::NetConfig& net) {
    const char* opt = "--outbound-addr";
    std::vector<wire::IpAddr> addrs;
    if (auto a = wire::IpAddr::parse(text)) {
        if (a->is_unspecified() || wire::is_v6_multicast(*a) ||
            (a->is_v4() && (a->as_v4() >> 28) >= 0xe))
            fail(opt, "'" + text + "' cannot be a source address",
                 "give one of the host's unicast addresses, or an interface");
        addrs.push_back(*a);
    } else {
        if (text.empty() || text.size() >= IFNAMSIZ || text.find('/') != std::string::npos)
            fail(opt, "'" + text + "' is neither an address nor an interface name",
                 "give one of the host's addresses (192.0.2.10, 2001:db8::10) or an interface "
                 "such as eth0");
        ifaddrs* list = nullptr;
        if (getifaddrs(&list) != 0)
            fail(opt, std::string("cannot list the host's addresses: ") + std::strerror(errno),
                 "give an address instead of an interface");
        bool have4 = false, have6 = false, found = false;
        for (ifaddrs* i = list; i; i = i->ifa_next) {
            if (!i->ifa_addr || text != i->ifa_name) continue;
            found = true;
            const int fam = i->ifa_addr->sa_family;
            if (fam == AF_INET && !have4) {
                const auto* s4 = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
                addrs.push_back(wire::IpAddr::v4(ntohl(s4->sin_addr.s_addr)));
                have4 = true;
            } else if (fam == AF_INET6 && !have6) {
                wire::IpAddr a;
                std::memcpy(a.b.data(), &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
                if (wire::is_v6_link_local(a)) continue;
                addrs.push_back(a);
                have6 = true;
            }
        }
        freeifaddrs(list);
        if (addrs.empty())
            fail(opt, found ? "interface " + text + " has no usable address"
                            : "'" + text + "' is not an address nor an interface of this host",
                 "give one of the host's addresses, or an interface that has one ('ip addr' "
                 "lists them)");
    }
    for (const wire::IpAddr& a : addrs) {
        const int family = a.is_v4() ? AF_INET : AF_INET6;
        wire::IpAddr& slot = a.is_v4() ? net.outbound4 : net.outbound6;
        if (!slot.is_unspecified() && slot != a)
            fail(opt, "two " + std::string(a.is_v4() ? "IPv4" : "IPv6") + " outbound addresses (" +
                          slot.to_string() + " and " + a.to_string() + ")",
                 "give at most one of each family");
        int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        const sockaddr_storage ss = core::to_sockaddr(a, 0);
        if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&ss), core::sockaddr_len(ss)) != 0) {
            const int e = errno;
            if (fd >= 0) close(fd);
            fail(opt, "cannot use " + a.to_string() + " as a source address: " + std::strerror(e),
                 "give one of the host's addresses ('ip addr' lists them)");
        }
        close(fd);
        slot = a;
    }
}

}  // namespace

Config parse_options(const std::vector<std::string>& args) {
    Config cfg;
    // --help and --version win over everything else, errors included.
    for (const std::string& a : args) {
        if (a == "-h" || a == "--help") {
            cfg.action = Action::help;
            return cfg;
        }
    }
    if (std::find(args.begin(), args.end(), "--version") != args.end()) {
        cfg.action = Action::version;
        return cfg;
    }

    CLI::App app{"usernet"};
    RawOptions raw;
    describe(app, raw);
    // CLI11 would take --no-ipv6=no as "false" and answer --no-ipv6=maybe
    // with "Could not convert"; a flag here takes no value at all.
    for (const std::string& a : args) {
        if (a.rfind("--", 0) != 0) continue;
        const size_t eq = a.find('=');
        if (eq == std::string::npos) continue;
        const std::string name = a.substr(0, eq);
        const CLI::Option* opt = nullptr;
        try {
            opt = app.get_option(name);
        } catch (const CLI::OptionNotFound&) {
            continue;  // CLI11 reports unknown options below
        }
        if (opt->get_expected_max() == 0)
            fail(name, name + " takes no value: write " + name + " alone, without '=" +
                           a.substr(eq + 1) + "'",
                 kHelpHint);
    }
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11's order
    try {
        app.parse(reversed);
    } catch (const CLI::ArgumentMismatch& e) {
        std::string msg = e.what();
        std::string option = msg.substr(0, msg.find(':'));
        fail(option, "option " + option + " needs a value", kHelpHint);
    } catch (const CLI::ParseError& e) {
        fail("", e.what(), kHelpHint);
    }
    if (raw.help || raw.version) {  // in a cluster of short flags: -dh
        cfg.action = raw.help ? Action::help : Action::version;
        return cfg;
    }
    std::vector<std::string> extra = app.remaining();
    if (!extra.empty()) {
        const std::string& x = extra.front();
        if (x.starts_with('-') && x.size() > 1)
            fail(x, "unknown option '" + x + "'", kHelpHint);
        fail("", "unexpected argument '" + x + "'",
             "options take one value each; " + std::string(kHelpHint));
    }

    if (raw.debug && raw.quiet)
        fail("--quiet", "--debug and --quiet contradict each other", "give one of them");
    cfg.log_level = raw.debug ? LogLevel::debug : raw.quiet ? LogLevel::quiet : LogLevel::info;
    cfg.config_net = raw.config_net;
    cfg.net.map_gateway_to_loopback = !raw.no_map_gw;
    if (given(app, "--forward-source")) {
        if (raw.forward_source != "client" && raw.forward_source != "gateway")
            fail("--forward-source", "'" + raw.forward_source + "' is neither client nor gateway",
                 "give client (forwarded clients keep their address, the default) or gateway "
                 "(they all appear as the gateway)");
        cfg.net.forward_keep_client = raw.forward_source == "client";
    }
    cfg.net.allow_link_local = raw.allow_link_local;
    cfg.net.dhcp4 = !raw.no_dhcp;
    for (const std::string& text : raw.outbound_addr) resolve_outbound(text, cfg.net);
    cfg.net.restrict = raw.restrict;
    cfg.net.no_tcp = raw.no_tcp;
    cfg.net.no_udp = raw.no_udp;
    cfg.net.no_icmp = raw.no_icmp;
    for (bool allow : {true, false})
        for (const std::string& text : allow ? raw.allow : raw.deny)
            cfg.net.policy.push_back(parse_policy_rule(allow ? "--allow" : "--deny", text, allow));
    cfg.tap_offload = !raw.no_offload;
    if (!raw.max_flows.empty()) {
        cfg.limits.tcp_flows_per_guest =
            parse_in_range("--max-flows", raw.max_flows, 1, 1'000'000, "", "",
                           "give the most TCP connections one guest may have open, such as 20000");
        cfg.limits.tcp_flows = std::max(cfg.limits.tcp_flows, cfg.limits.tcp_flows_per_guest);
    }
    if (!raw.busy_poll.empty())
        cfg.busy_poll_us =
            parse_in_range("--busy-poll", raw.busy_poll, 0, 10'000, "", " of microseconds",
                           "give how long to poll before sleeping, such as 200, or 0 for never");

    resolve_addresses(app, raw, cfg);
    resolve_addresses6(app, raw, cfg);
    resolve_attachments(app, raw, cfg);
    resolve_lans(app, raw, cfg);
    check_fixed_addresses(cfg);
    assign_netns_addresses(cfg);
    cfg.no_gateway = raw.no_gateway;
    if (cfg.no_gateway) {
        // What only the gateway and its NAT could do: the services, the
        // NAT's options, forwards, and a serial line (its peer is routed
        // through the gateway). The address options are ignored.
        for (const char* opt :
             {"--config-net", "--guest-addr", "--serial", "--tftp", "--bootfile",
              "--tftp-server-name", "--hostname", "--dns-search", "--lease-time", "--no-dhcp",
              "--dhcp-host", "--dhcp-route", "--dns-host", "--host-alias", "--guestfwd", "--smb",
              "--no-map-gw", "--allow-link-local", "--restrict", "--no-tcp", "--no-udp",
              "--no-icmp", "--allow", "--deny", "--max-flows", "--dns-upstream",
              "--outbound-addr", "-t", "-u", "--hostfwd", "--forward-source"})
            if (given(app, opt))
                fail(opt, std::string(opt) + " needs usernet's gateway, which --no-gateway turns off",
                     "drop one of them (with --no-gateway the network's own router and DHCP "
                     "server configure the guests)");
    }

    for (const std::string& text : raw.dns_upstream) {
        auto hp = parse_host_port(text);
        if (!hp || hp->addr.is_unspecified())
            fail("--dns-upstream", "'" + text + "' is not a resolver address",
                 "write ADDR, ADDR:PORT, [IPV6] or [IPV6]:PORT, such as 9.9.9.9, [::1]:5353 or "
                 "[fe80::1%eth0] (a link-local address with its interface)");
        cfg.net.dns_upstreams.push_back(*hp);
    }
    resolve_forwards(app, raw, cfg);
    resolve_services(app, raw, cfg);
    if (!cfg.lans.empty() && (!cfg.forwards.empty() || !cfg.guest_forwards.empty()) &&
        std::none_of(cfg.attachments.begin(), cfg.attachments.end(),
                     [](const Attachment& a) { return a.lan == 0; }))
        fail(!cfg.forwards.empty() ? (given(app, "--hostfwd") ? "--hostfwd" : "-t") : "--guestfwd",
             "forwards go to the default LAN (the attachments before the first --lan), and "
             "it has none",
             "put the forward's guest before the first --lan");

    if (given(app, "--pcap")) {
        if (raw.pcap.empty()) fail("--pcap", "empty file name", "give a file to write to");
        cfg.pcap_path = raw.pcap;
        for (const LanConfig& l : cfg.lans)
            if (l.pcap_path == cfg.pcap_path)
                fail("--lan", "LAN " + l.name + " and the default LAN both capture to " +
                                  cfg.pcap_path,
                     "give each LAN its own capture file");
    }
    // Millions of bytes, as tcpdump -C counts them; 0 lets the file grow.
    if (given(app, "--pcap-size"))
        cfg.pcap_size_mb = parse_in_range("--pcap-size", raw.pcap_size, 0, 1'000'000,
                                          "size ", " of megabytes (10^6 bytes)",
                                          "give a size such as 1000, or 0 for no limit");
    if (given(app, "--pcap-count"))
        cfg.pcap_count = parse_in_range("--pcap-count", raw.pcap_count, 1, 1000, "count ",
                                        " of files", "give how many files to keep, such as 2");
    const bool capturing = !cfg.pcap_path.empty() ||
                           std::any_of(cfg.lans.begin(), cfg.lans.end(),
                                       [](const LanConfig& l) { return !l.pcap_path.empty(); });
    for (const char* opt : {"--pcap-size", "--pcap-count"})
        if (given(app, opt) && !capturing)
            fail(opt, std::string(opt) + " limits a capture, and there is none",
                 "give --pcap FILE (or a --lan NAME,pcap=FILE), or drop " + std::string(opt));
    if (given(app, "--pid")) {
        if (raw.pid.empty()) fail("--pid", "empty file name", "give a file to write to");
        cfg.pid_path = raw.pid;
    }
    if (given(app, "--api-socket")) {
        if (raw.api_socket.empty())
            fail("--api-socket", "empty socket path", "give a path for the control socket");
        if (cfg.no_gateway)
            fail("--api-socket", "the control API manages forwards, and --no-gateway has none",
                 "drop --api-socket or --no-gateway");
        cfg.api_socket = raw.api_socket;
    }
    check_distinct_files(cfg);
    check_port_clashes(cfg);
    return cfg;
}

Config parse_options(int argc, const char* const* argv) {
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return parse_options(args);
}

std::vector<std::string> long_option_names() {
    CLI::App app{"usernet"};
    RawOptions raw;
    describe(app, raw);
    std::vector<std::string> names;
    for (const CLI::Option* o : app.get_options())
        for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
    return names;
}

std::vector<std::string> short_option_names() {
    CLI::App app{"usernet"};
    RawOptions raw;
    describe(app, raw);
    std::vector<std::string> names;
    for (const CLI::Option* o : app.get_options())
        for (const std::string& s : o->get_snames()) names.push_back("-" + s);
    return names;
}

std::string version_text() { return "usernet " USERNET_VERSION "\n"; }

std::string help_text() {
    return R"(Usage: usernet [OPTION]...
A user-mode network for virtual machines and network namespaces: guests
share one LAN behind a NAT gateway (QEMU's addresses by default).

Attachments (repeatable; each VALUE may end in ,mtu=N, and those of --netns,
--tap, --socket, --listen, --connect and --vde in ,mac=MAC: the LAN then sees
MAC whatever MAC the guest uses):
      --netns NAME|PATH|PID  create a TAP in that network namespace
      --tap-name IFNAME      name of that TAP (default tap0)
      --config-net           set addresses (IPv4 and IPv6), default routes
                             and MTU inside each namespace
      --tap IFNAME           attach an existing TAP device
      --no-offload           no checksum or segmentation offload on TAPs
      --socket PATH          listen for QEMU -netdev stream on a Unix socket
      --listen [HOST:]PORT   listen on TCP (default host 127.0.0.1) for QEMU
                             -netdev stream inet or -netdev socket,connect=
      --connect HOST:PORT    connect to a QEMU listening with -netdev
                             stream,server=on or -netdev socket,listen=
                             (retried until it answers, and after a drop)
      --bochs PORT[,count=N] serve N Bochs instances (default 1) with
                             ne2k ethmod=socket: instance i is given
                             ethdev=PORT+2i (usernet uses PORT+2i+1);
                             MTU at most 1500
      --dgram udp:HOST:PORT[,QHOST:QPORT] | unix:PATH[,QPATH]
                             one frame per datagram (QEMU -netdev dgram,
                             socket,udp=): bind the first address, send to
                             the emulator's (default: whoever sent last)
      --mcast GROUP:PORT[,localaddr=ADDR]  join an IPv4 multicast LAN
                             (QEMU -netdev socket,mcast= or dgram's form)
      --vde DIR              be a VDE switch in directory DIR (created if
                             missing): vde_plug, QEMU -netdev vde, VirtualBox
      --serial LINE[,proto=ppp|slip][,addr=IP]
                             a guest without a NIC dials in with PPP (the
                             default; address and DNS by IPCP) or SLIP over
                             a serial line: LINE is pty[:LINK] (a new
                             pseudo-terminal), unix:PATH (QEMU -serial
                             unix:PATH) or tcp:[HOST:]PORT (QEMU -serial
                             tcp:, Bochs com1: mode=socket-client); the
                             peer's address is a DHCP lease taken for it,
                             or addr=IP
      --uplink IFACE         bridge the LAN onto host interface IFACE (a NIC,
                             a veth; needs CAP_NET_RAW); MTU: the interface's
      --no-gateway           no gateway, DHCP, DNS or NAT on the LAN: only
                             the switch (the uplink's network has its own)
      --mtu N                default MTU of every attachment but --uplink
                             (68-65520; default 65520 for --netns, 1500
                             otherwise and for --netns on an --uplink's LAN)
      --lan NAME[,net=CIDR][,pcap=FILE]  the attachments after it form a LAN
                             of their own: own switch, gateway, DHCP, DNS
                             and NAT, no frame crossing to another LAN
                             (net= default: --net's; forwards go to the
                             default LAN, the attachments before any --lan)
      --websocket [HOST:]PORT[,origin=ORIGIN]...
                             listen for WebSocket clients (v86's
                             network_relay_url; default HOST 127.0.0.1);
                             with origin=, only those browser Origins
  Without attachment, listen on $XDG_RUNTIME_DIR/usernet.socket or
  /tmp/usernet-UID.socket and print the QEMU command line to use.

Addresses:
      --net CIDR             the virtual network (default 10.0.2.0/24)
      --gateway ADDR         the gateway, reaching the host (default 10.0.2.2)
      --dns ADDR             the DNS forwarder (default 10.0.2.3)
      --dhcp-start ADDR      first address leased by DHCP (default 10.0.2.15)
      --guest-addr ADDR      port-forward target and --config-net address
                             (default: a fixed address, else the guest
                             heard from last)
      --domain NAME          domain name handed out by DHCP (and in router
                             advertisements, RFC 8106)
      --net6 PREFIX/64       the IPv6 prefix guests autoconfigure from
                             router advertisements (default fec0::/64)
      --gateway6 ADDR        the IPv6 gateway, reaching the host's ::1
                             (default fec0::2)
      --dns6 ADDR            the IPv6 DNS address (default fec0::3)
      --no-ipv6              no IPv6: no router advertisements, neighbor
                             discovery or IPv6 routing by the gateway

Services:
      --tftp DIR             serve the files under DIR, read-only, by TFTP
                             at the gateway address, port 69 (IPv4 and IPv6)
      --dns-host NAME=ADDR   the DNS address answers NAME with ADDR (A or
                             AAAA; repeatable) itself, before upstream
      --host-alias NAME      the name of the host, answered with the gateway
                             addresses (default host.usernet.internal);
                             guests' DHCP host names are answered too
      --hostname NAME        the host name DHCP gives guests (option 12)
      --dns-search DOMAIN[,DOMAIN...]  the DNS search list (DHCP option 119,
                             DHCPv6, router advertisements; default: --domain)
      --lease-time SECONDS   DHCP lease time (default 86400)
      --no-dhcp              no DHCPv4 server (guests configure themselves;
                             DHCPv6 and router advertisements stay)
      --dhcp-host MAC=ADDR[,NAME]  a static lease: MAC always gets ADDR (and
                             host name NAME); repeatable
      --dhcp-route NET/LEN[,GATEWAY]  a classless static route (option 121)
                             via GATEWAY (default: the gateway); repeatable
      --bootfile NAME|URL    network boot: DHCP gives NAME on the TFTP
                             server (option 67, file field, next server the
                             gateway; DHCPv6 boot-file-url), or a URL to
                             iPXE and UEFI HTTP boot clients
      --tftp-server-name NAME  the TFTP server DHCP names with the boot file
                             (option 66; default: the gateway address)
      --guestfwd tcp:ADDR:PORT-TARGET  a guest's connections to ADDR:PORT
                             (an unused address of the LAN) go to TARGET:
                             HOST:PORT, unix:PATH, or cmd:COMMAND (run per
                             connection on its stdin/stdout); repeatable
      --smb DIR              share DIR with the guests by SMB, as
                             \\10.0.2.4\qemu (Samba's smbd run per connection)
      --smb-server ADDR      the SMB server's address (default: the
                             network's .4, 10.0.2.4)

NAT:
      --no-map-gw            the gateway address does not reach the host
      --allow-link-local     let guests reach 169.254.0.0/16 (refused by
                             default: cloud metadata services live there)
      --restrict             guests reach nothing through the NAT: only the
                             gateway's services (DHCP, DNS, TFTP, ping),
                             guest forwards, SMB and port forwards (QEMU's
                             restrict=on)
      --no-tcp, --no-udp, --no-icmp  no outbound TCP, UDP or ping flows
      --deny ADDR[/LEN][:PORT[-PORT]]  refuse these destinations (a RST or
                             ICMP administratively prohibited); repeatable
      --allow ADDR[/LEN][:PORT[-PORT]]  allow only these destinations (and
                             not what --deny refuses); repeatable; IPv6 as
                             [2001:db8::/32]:443
      --max-flows N          TCP connections one guest may have (default
                             16384; 65536 in all guests together)
      --dns-upstream ADDR[:PORT]  resolver to forward DNS to (repeatable;
                             [IPV6]:PORT; default: /etc/resolv.conf)
      --outbound-addr ADDR|IFACE  the host address guests' connections,
                             datagrams, pings and DNS queries leave from
                             (one per family; IFACE: its IPv4 and IPv6
                             addresses), as slirp4netns --outbound-addr
  -t, --tcp-ports SPEC       forward TCP ports from the host to the guest
  -u, --udp-ports SPEC       forward UDP ports from the host to the guest
                             SPEC: [ADDR[%IFNAME]/]PORT[-END][:[GUEST:]GUESTPORT[-END]],...
                             (ADDR IPv4 or IPv6: ::1/8080 or [::1]/8080;
                             GUEST a guest's address: 8080:10.0.2.16:80;
                             ~PORT[-END] excludes ports; none: no forward)
      --hostfwd SPEC         a forward in QEMU's hostfwd= syntax:
                             [tcp|udp]:[HOSTADDR]:PORT-[GUESTADDR]:PORT
      --forward-source client|gateway  whether forwarded clients keep their
                             address in the guest (client, the default; those
                             on the host's loopback appear as the gateway) or
                             all appear as the gateway

Operation:
      --busy-poll USEC       after a burst of small packets, poll this long
                             before sleeping (latency for CPU time; default
                             200, 0 turns it off)
      --pcap FILE            capture every frame crossing the switch
      --pcap-size MB         start a new capture file when FILE would pass
                             MB million bytes (default 1000; 0: no limit)
      --pcap-count N         keep N capture files, FILE, FILE.1 (older),
                             ...; the oldest is removed (default 2)
      --pid FILE             write the process ID to FILE
      --api-socket PATH      a control socket (slirp4netns's JSON protocol:
                             add_hostfwd, list_hostfwd, remove_hostfwd; and
                             get_stats)
  -d, --debug                log debugging messages
  -q, --quiet                log only warnings and errors, print no banner
  -f, --foreground           accepted for pasta compatibility (always set)
  -h, --help                 show this help and exit
      --version              show the version and exit

Exit status: 0 after SIGINT, SIGTERM or SIGHUP, 1 if start-up failed, 2 on
a bad command line. SIGUSR1 writes the counters (get_stats) to stderr as
one JSON line. See usernet(1).
)";
}

}  // namespace usernet::app
