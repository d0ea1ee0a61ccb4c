// What a --serial attachment is: its transport, protocol, address and the
// LAN it joins. Plain data and its parser, so the command line can fill it
// without pulling in the port (serial_port.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "wire/addr.hpp"

namespace usernet::ports {

enum class SerialTransport { pty, unix_socket, tcp };
enum class SerialProtocol { ppp, slip };

struct SerialConfig {
    SerialTransport transport = SerialTransport::pty;
    std::string path;                // unix: socket path; pty: optional symlink
    std::string host = "127.0.0.1";  // tcp
    uint16_t port = 0;               // tcp (0: any free port)
    SerialProtocol protocol = SerialProtocol::ppp;
    std::optional<wire::Ipv4> fixed_addr;  // else a DHCP lease
    uint32_t mtu = 1500;
    // The LAN (the gateway's addresses).
    wire::Ipv4 net = 0x0a000200;
    uint8_t prefix_len = 24;
    wire::Ipv4 gateway = 0x0a000202;
    wire::Ipv4 dns = 0x0a000203;
};

// "pty", "pty:LINK", "unix:PATH", "tcp:PORT", "tcp:HOST:PORT",
// "tcp:[V6]:PORT" into cfg's transport fields; an error text, or "".
std::string parse_serial_transport(std::string_view text, SerialConfig& cfg);

}  // namespace usernet::ports
