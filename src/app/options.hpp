// The command line: argv -> Config, and nothing else.
//
// parse_options() reads and validates every option and resolves every
// default (addresses derived from --net, MTUs per attachment kind, one
// address per namespace for --config-net), so that the Config it returns
// is complete and consistent: the Daemon only builds what it describes.
// It does no I/O beyond reading argv: whether a namespace exists, a socket
// path is free or a port can be bound is found out when the Daemon starts.
// Errors are thrown as OptionError, whose message names the option; main()
// prints it and exits 2. docs/usernet.1 describes every option; help_text()
// is its short form.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/net_config.hpp"
#include "nat/forward.hpp"
#include "nat/guest_forward.hpp"
#include "nat/nat.hpp"
#include "ports/dgram_port.hpp"
#include "ports/serial_config.hpp"
#include "wire/addr.hpp"

namespace usernet::app {

inline constexpr uint32_t kMinMtu = 68;       // RFC 791's minimum
inline constexpr uint32_t kMaxMtu = 65520;    // as passt: fits a 64 KiB frame
inline constexpr uint32_t kNetnsMtu = 65520;  // TAP in a namespace: no wire to respect
inline constexpr uint32_t kWireMtu = 1500;    // --socket, --tap, --vde: an emulated NIC
inline constexpr const char* kDefaultTapName = "tap0";

enum class AttachmentKind {
    netns, tap, socket, tcp_listen, tcp_connect, dgram, bochs, vde, serial, uplink, websocket
};

inline constexpr const char* kDefaultListenHost = "127.0.0.1";  // --listen PORT

// One guest attachment from --netns, --tap, --socket, --listen or --connect
// (value[,mtu=N]), --dgram / --mcast (kind dgram), or --bochs
// (PORT[,count=N][,mtu=N]), --vde (DIR[,mtu=N]), --serial, or --uplink
// (IFACE[,mtu=N]); --netns, --tap and --socket may add ,mac=MAC.
struct Attachment {
    AttachmentKind kind = AttachmentKind::socket;
    std::string target;      // as given, without the ",mtu=" suffix
    std::string netns_path;  // netns: the file to open (/run/netns/NAME, PATH, /proc/PID/ns/net)
    std::string ifname;      // netns: --tap-name; tap: the TAP's name; uplink: the interface
    // Resolved: suffix, else --mtu, else the kind's default. uplink: the
    // suffix, else 0 (the interface's own MTU).
    uint32_t mtu = kWireMtu;
    // netns: neither a suffix nor --mtu gave mtu (it is kNetnsMtu, or
    // kWireMtu when an --uplink is on its LAN).
    bool mtu_by_default = false;
    // ,mac=MAC: MAC translation, the LAN sees this MAC (ports/mac_translator.hpp).
    std::optional<wire::MacAddr> lan_mac;
    // netns with --config-net: the address, prefix and route set inside it.
    // serial with addr=: the peer's fixed address.
    std::optional<wire::Ipv4> address;
    // The LAN it joins: 0 is the default LAN (Config::net), k the LAN of the
    // k-th --lan (Config::lans[k - 1]), the one named last before it.
    size_t lan = 0;
    // tcp_listen, tcp_connect: the TCP address (target is its canonical
    // text, "127.0.0.1:5555" or "[::1]:5555").
    gw::HostPort endpoint{};
    // bochs: instance i uses ethdev=bochs_port+2i, usernet bochs_port+2i+1.
    uint16_t bochs_port = 0;
    uint32_t bochs_count = 0;
    // dgram (--dgram, --mcast): the datagram link, resolved (mtu included).
    std::optional<ports::DgramConfig> dgram;
    // serial: transport, protocol (the LAN's addresses are filled in by the
    // daemon).
    ports::SerialConfig serial;
    // websocket: where to listen, and the Origins allowed (empty: any).
    std::string ws_host = "127.0.0.1";
    uint16_t ws_port = 0;
    std::vector<std::string> ws_origins;
};

// A LAN of its own (--lan NAME[,net=CIDR][,pcap=FILE]): its switch,
// gateway, DHCP pool, DNS and NAT are apart from every other LAN's; no
// frame crosses between LANs. Forwards (-t, -u) go to the default LAN.
struct LanConfig {
    std::string name;
    gw::NetConfig net;      // --net's settings, with net= and its .2/.3/.15
    std::string pcap_path;  // ,pcap=: this LAN's capture; empty: none
};

enum class LogLevel { quiet, info, debug };

enum class Action { run, help, version };

struct Config {
    Action action = Action::run;
    // In command-line order. Empty: listen on the default socket path.
    std::vector<Attachment> attachments;
    // The LANs beyond the default one, in the order --lan named them.
    std::vector<LanConfig> lans;
    // --mtu: the MTU of attachments without their own (the default socket's
    // too, when there is no attachment).
    std::optional<uint32_t> default_mtu;
    bool config_net = false;
    bool tap_offload = true;  // --no-offload clears it
    // --no-gateway: no gateway, DHCP, DNS or NAT on the LAN; the switch only.
    bool no_gateway = false;
    nat::NatLimits limits;    // --max-flows
    uint32_t busy_poll_us = 200;  // --busy-poll
    // Addresses, DNS upstreams (empty: read /etc/resolv.conf), --no-map-gw.
    gw::NetConfig net;
    // --guest-addr: the port-forward target and the first --config-net
    // address. Unset: forwards go to the guest that took a DHCP lease.
    std::optional<wire::Ipv4> guest_addr;
    std::vector<nat::ForwardSpec> forwards;  // -t and -u, in order
    // --guestfwd, in order (their addresses are in net.service_addrs).
    std::vector<nat::GuestForwardSpec> guest_forwards;
    // --smb: the directory shared (absolute), empty: none; and the
    // server's address in the default LAN (--smb-server, QEMU's 10.0.2.4).
    std::string smb_dir;
    wire::IpAddr smb_addr;
    std::string pcap_path;                   // empty: no capture
    uint32_t pcap_size_mb = 1000;            // --pcap-size: rotate at this (10^6 bytes); 0: never
    uint32_t pcap_count = 2;                 // --pcap-count: files kept, FILE and FILE.1 ...
    std::string pid_path;                    // empty: no pid file
    std::string api_socket;                  // --api-socket; empty: no control API
    // The guest a forward without its own goes to (--guest-addr, else the
    // first fixed address in the default LAN): the control API's too.
    std::optional<wire::Ipv4> forward_target;
    LogLevel log_level = LogLevel::info;
};

// A bad command line. what() reads "<what was wrong>; <what to do>" and
// names the option concerned.
class OptionError : public std::runtime_error {
public:
    OptionError(std::string option, const std::string& message)
        : std::runtime_error(message), option_(std::move(option)) {}
    // The option the error is about ("--mtu"), empty when none applies.
    const std::string& option() const { return option_; }

private:
    std::string option_;
};

// Parses argv[1..argc). Throws OptionError.
Config parse_options(int argc, const char* const* argv);
Config parse_options(const std::vector<std::string>& args);  // without argv[0]

std::string help_text();
std::string version_text();
// Every long option the parser accepts ("--netns", ...): the help text and
// the man page must cover them all (tested).
std::vector<std::string> long_option_names();
// Every short option the parser accepts ("-t", ...), likewise.
std::vector<std::string> short_option_names();

// Pieces of the parser, exposed for tests. They return nothing on bad input.
// "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT"; a bare IPv6 address has no port.
std::optional<gw::HostPort> parse_host_port(std::string_view text);
struct Cidr {
    wire::Ipv4 addr = 0;
    uint8_t prefix_len = 0;
};
std::optional<Cidr> parse_cidr(std::string_view text);

}  // namespace usernet::app
