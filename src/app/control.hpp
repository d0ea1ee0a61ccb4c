// The control API (--api-socket PATH): a unix stream socket that takes one
// JSON request per connection and answers it, in the protocol of
// slirp4netns's --api-socket, so that the tools that drive slirp4netns's
// port forwards (rootlesskit's slirp4netns port driver, podman) drive
// usernet's as they are:
//
//   {"execute": "add_hostfwd", "arguments": {"proto": "tcp",
//    "host_addr": "0.0.0.0", "host_port": 8080, "guest_port": 80}}
//       -> {"return": {"id": 1}}
//   {"execute": "list_hostfwd"}
//       -> {"entries": [{"id": 1, "proto": "tcp", ...}]}
//   {"execute": "remove_hostfwd", "arguments": {"id": 1}}
//       -> {"return": {}}
//
// and usernet's own {"execute": "get_stats"}: every LAN's attachments with
// their frame counters, live flows and drops. A failure is
// {"error": {"desc": "..."}}. A request ends at the end of its JSON object
// or when the client shuts its side; at most 64 KiB, 16 clients at once,
// and 10 s to send it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/event_loop.hpp"
#include "core/unix_listener.hpp"
#include "nat/forward.hpp"
#include "ports/acceptor.hpp"

namespace usernet::app {

class Daemon;

// What get_stats answers (its "return" object): every LAN's attachments
// with their counters, the gateway's, DNS, DHCP and NAT counters. Also
// what SIGUSR1 logs.
nlohmann::json stats_json(Daemon& daemon);

class ControlServer final : public core::IoHandler {
public:
    static constexpr size_t kMaxRequest = 64 * 1024;
    static constexpr size_t kMaxClients = 16;
    static constexpr core::Millis kRequestMs = 10000;

    // Listens at path (core::UnixListener's checks). The forwards the
    // command line gave are listed first, with ids 1, 2, ...
    ControlServer(core::EventLoop& loop, Daemon& daemon, std::string path);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    void on_io(uint32_t events) override;
    const std::string& path() const { return sock_.path(); }

    // One request, answered (what a connection's request gets; public for
    // the tests).
    nlohmann::json handle(const nlohmann::json& request);

private:
    struct Client;
    struct Forward {
        uint64_t id;
        nat::ForwardSpec spec;
    };
    nlohmann::json add_hostfwd(const nlohmann::json& args);
    nlohmann::json list_hostfwd() const;
    nlohmann::json remove_hostfwd(const nlohmann::json& args);
    nlohmann::json get_stats() const;
    void drop(Client& c);

    core::EventLoop& loop_;
    Daemon& daemon_;
    core::UnixListener sock_;
    std::vector<std::unique_ptr<Client>> clients_;
    std::vector<Forward> forwards_;
    uint64_t next_id_ = 1;
    ports::Acceptor acceptor_{loop_, this};
};

}  // namespace usernet::app
