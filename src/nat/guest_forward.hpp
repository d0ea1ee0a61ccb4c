// Guest forwards (QEMU's guestfwd): a TCP address that exists only inside
// the LAN, whose connections go to a host address, a unix socket, or a
// command.
//
// Syntax (--guestfwd; QEMU's guestfwd= with usernet's targets):
//   [tcp]:ADDR:PORT-TARGET
//   TARGET  HOST:PORT | [V6]:PORT   a TCP connection to that host address
//           unix:PATH | /PATH       a connection to a unix stream socket
//           cmd:COMMAND             COMMAND run per connection by /bin/sh -c,
//                                   its stdin and stdout the stream
// ADDR is an IPv4 address of the LAN ([V6] an address of its IPv6 prefix)
// that is not the gateway's or the DNS address: the gateway answers ARP and
// neighbor solicitations for it, so a guest reaches it as a host on its
// own link. Only TCP to PORT is forwarded there; anything else to ADDR is
// unreachable. A guest forward is the user's own configuration, so
// --restrict and --allow/--deny do not apply to it, and a HOST:PORT may be
// the host's loopback.
//
// Each connection is one flow of the TCP translator (TcpNat) whose host
// side is the socket toward TARGET: a TCP socket, a unix stream socket, or
// our end of a loopback TCP connection whose other end is the command's
// stdin and stdout (TCP, not a socketpair, as libslirp does it: smbd and
// other inetd-style servers ask their socket for the peer's address). The
// command runs in a process group of its own, with the signal dispositions
// and mask reset, usernet's environment and stderr. At most kMaxCommands
// run at once, kMaxCommandsPerGuest for one attachment, and an attachment
// starts at most kSpawnBurst at once and kSpawnPerSecond a second after
// that (a guest's connection beyond these is reset), so that a guest
// cannot fill the host with processes or fork at its packet rate. Each is
// reaped through a pidfd when it exits, and what it left running in its
// group then gets SIGTERM; the groups still running when usernet stops get
// SIGTERM (SIGKILL after a second).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "core/token_bucket.hpp"
#include "wire/addr.hpp"

namespace usernet::nat {

// The host side of a guest forward an embedder provides itself (libslirp's
// slirp_add_guestfwd, whose bytes go to a QEMU chardev): per connection,
// a connected stream socket whose other end the opener keeps, or -errno.
class GuestForwardOpener {
public:
    virtual int open_connection(uint32_t owner) = 0;

protected:
    ~GuestForwardOpener() = default;
};

struct GuestForwardSpec {
    enum class Kind : uint8_t { tcp, unix_socket, command, embedder };
    wire::IpAddr addr;  // the virtual address inside the LAN
    uint16_t port = 0;
    Kind kind = Kind::tcp;
    wire::IpAddr host;      // tcp: where to connect
    uint16_t host_port = 0;
    std::string path;       // unix_socket: the socket's path
    std::string command;    // command: run by /bin/sh -c
    GuestForwardOpener* opener = nullptr;  // embedder: not owned

    // "10.0.2.100:1234 -> 127.0.0.1:8000", for logs.
    std::string to_string() const;
};

// Parses the syntax above. On bad input returns nothing and says why in
// *why ("... ; what to do" is the caller's).
std::optional<GuestForwardSpec> parse_guestfwd(std::string_view text, std::string* why);

// The children that command targets run, and their reaping.
class CommandRunner {
public:
    static constexpr size_t kMaxCommands = 64;
    static constexpr size_t kMaxCommandsPerGuest = 16;
    static constexpr uint32_t kSpawnBurst = 16;
    static constexpr uint32_t kSpawnPerSecond = 4;

    explicit CommandRunner(core::EventLoop& loop) : loop_(loop) {}
    ~CommandRunner();
    CommandRunner(const CommandRunner&) = delete;
    CommandRunner& operator=(const CommandRunner&) = delete;

    // Starts `command` for attachment `owner` with one end of a new
    // loopback TCP connection as its stdin and stdout; returns the other
    // end (non-blocking, close-on-exec), or -errno (-EAGAIN: a limit above).
    int spawn(const std::string& command, uint32_t owner);
    // An attachment went away: its counts go (once its commands are gone).
    void forget_owner(uint32_t owner);
    size_t running() const { return children_.size(); }
    uint64_t started() const { return started_; }

private:
    struct Child final : core::IoHandler {
        CommandRunner* runner = nullptr;
        uint32_t owner = 0;
        pid_t pid = -1;
        int pidfd = -1;
        void on_io(uint32_t) override;
    };
    struct PerGuest {
        size_t running = 0;
        core::TokenBucket spawns{kSpawnBurst, kSpawnPerSecond};
    };
    void reap(Child* c);

    core::EventLoop& loop_;
    std::vector<std::unique_ptr<Child>> children_;
    std::unordered_map<uint32_t, PerGuest> per_guest_;
    uint64_t started_ = 0;
};

}  // namespace usernet::nat
