// The Bochs attachment: Bochs's NE2000 (or E1000) with `ethmod=socket`.
//
// On the wire (Bochs iodev/network/eth_socket.cc, Bochs 2.7): one raw
// Ethernet frame per UDP datagram, no header, no FCS. Given `ethdev=N`
// (or `ethdev=NAME:N`, NAME a host name: an ethdev starting with a digit
// is read as a bare port, so `127.0.0.1:N` would mean port 127), Bochs
// binds its socket to port N on every address and sends each frame from
// it to localhost (or NAME) port N+1. It polls that socket for one frame
// per millisecond of emulated time and keeps only frames to its own MAC
// or to broadcast, dropping them while the NIC's ring is full; its NE2000
// drops frames under 60 bytes.
//
// Theory of operation: the attachment is one DgramPort per Bochs instance
// (the generic one-frame-per-datagram port: batched receive and send, a
// bounded queue, padding to 60 bytes), each its own port on the switch.
// Instance i (0 <= i < count) is told `ethdev=BASE+2i`; usernet binds
// 127.0.0.1:BASE+2i+1 and sends to 127.0.0.1:BASE+2i, and takes datagrams
// only from there (anything else on the host could send to a UDP port).
// This is the numbering of Bochs's own bxhub, so a bochsrc written for
// bxhub works unchanged. Each instance gets its own MAC in the bochsrc
// lines usernet prints, b0:c4:20:00:00:II (Bochs's default MAC with the
// instance number), since guests on one LAN need distinct MACs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"

namespace usernet::ports {

class DgramPort;
struct DgramConfig;

inline constexpr uint32_t kBochsMaxInstances = 64;
// A standard Ethernet frame: Bochs's NE2000 takes nothing larger.
inline constexpr uint32_t kBochsMaxMtu = 1500;

// --bochs PORT[,count=N][,mtu=N].
struct BochsSpec {
    uint16_t base_port = 0;  // instance 0's ethdev
    uint32_t count = 1;
    std::optional<uint32_t> mtu;  // unset: the default MTU
};

// Parses "PORT[,count=N][,mtu=N]" (parameters in any order, each once).
// PORT from 1 to 65535 - 2*count + 1 (every instance needs two ports),
// count from 1 to kBochsMaxInstances, mtu from 68 to kBochsMaxMtu. On bad
// input returns nothing and sets *error to "<what was wrong>; <what to do>".
std::optional<BochsSpec> parse_bochs_spec(std::string_view text, std::string* error);

// Instance i's ports: Bochs binds ethdev (its `ethdev=`), usernet binds
// ethdev + 1.
inline uint16_t bochs_ethdev_port(uint16_t base, uint32_t i) {
    return static_cast<uint16_t>(base + 2 * i);
}
inline uint16_t bochs_usernet_port(uint16_t base, uint32_t i) {
    return static_cast<uint16_t>(base + 2 * i + 1);
}
// b0:c4:20:00:00:II (i < 256).
wire::MacAddr bochs_mac(uint32_t i);

// The bochsrc lines for instance i: the PCI slot and the `ne2k:` line.
std::vector<std::string> bochsrc_lines(uint16_t base, uint32_t i);

// The datagram link of instance i, as DgramPort takes it.
DgramConfig bochs_dgram_config(uint16_t base, uint32_t i, uint32_t mtu);

// All instances of one --bochs option: count DgramPorts, attached to the
// switch for the attachment's life.
class BochsAttachment {
public:
    // Binds every instance's socket. Throws std::runtime_error with one
    // sentence naming the port that could not be bound.
    BochsAttachment(core::EventLoop& loop, sw::Switch& sw, const BochsSpec& spec, uint32_t mtu);
    ~BochsAttachment();
    BochsAttachment(const BochsAttachment&) = delete;
    BochsAttachment& operator=(const BochsAttachment&) = delete;

    uint16_t base_port() const { return base_; }
    size_t instance_count() const { return ports_.size(); }
    DgramPort& instance(size_t i) { return *ports_[i]; }

private:
    uint16_t base_;
    std::vector<std::unique_ptr<DgramPort>> ports_;
};

}  // namespace usernet::ports
