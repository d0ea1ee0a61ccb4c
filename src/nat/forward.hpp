// Port forwards: host listeners whose connections and datagrams go to a guest.
//
// Syntax (passt's -t/-u, passt(1) "PORT FORWARDING"):
//   [HOSTADDR[%IFNAME]/]HOSTPORT[-END][:GUESTPORT[-END]][,...]
// The address prefix applies to every comma-separated range after it; a
// range maps onto a guest range of the same length (8080:80, 1000-1002:
// 2000-2002); "~PORT[-END]" items exclude ports from the other ranges;
// "none" means no forwards. HOSTADDR is IPv4 or IPv6, with or without
// brackets ([::1]/8080 and ::1/8080). Without an address a forward listens
// on every address of both families (0.0.0.0, and :: with IPV6_V6ONLY when
// the host has IPv6); an explicit "::" takes both families. add() binds
// all of a spec's sockets or none. Not supported: passt's "all" and "auto"
// (scanning or binding every port), and exclusion-only specs, which mean
// the same.
//
// TCP: the listener accepts (accept4 until EAGAIN, at most 256 a wakeup)
// and hands each socket to TcpNat::open_inbound toward the guest's port;
// out of descriptors, the listener pauses for 200 ms instead of spinning. UDP: the bound socket is
// handed to UdpNat, which relays datagrams to the guest and sends the
// guest's replies back out of that same socket, so the client sees them
// come from the port it sent to.
//
// Families: a forward's guest is the guest's IPv6 address (one in the
// prefix, the one it used last, or the one its duplicate address detection
// probed) for an IPv6 client, its IPv4 address for an IPv4 client; a guest
// with only one family gets every client on it (an IPv4 client reaches an
// IPv6-only guest, and an IPv6 client an IPv4-only one).
//
// The peer the guest sees (forward_peer_for_guest): a client on the host's
// loopback appears as the gateway address of the guest's family (10.0.2.2
// or fec0::2), as in QEMU/slirp; any other client keeps its own address,
// so a guest server sees who connects. A client the guest could not answer
// directly (one of the other family, an address inside the virtual
// network, a link-local one) appears as the gateway too; with
// --forward-source gateway (NetConfig::forward_keep_client off) every
// client does. A client that appears as the gateway keeps its source port
// unless another connection (UDP: another client) to the same guest port
// has it already; then it gets the next free port of 49152-65535
// (ForwardPortPicker), so that two clients never share a flow.
//
// The target guest is the spec's guest_addr (--guest-addr; an IPv6 client
// then goes to an IPv6 address of the same guest), else the guest that
// holds a lease (or was heard from last) at the time of the connection,
// else, when no guest has been heard from at all, the first DHCP address:
// QEMU's default hostfwd target, and the address --config-net gives the
// first namespace. The gateway ARPs (or solicits) for it and holds a few
// packets meanwhile (Gateway::hold); a TCP connection waits on the
// translator's SYN retries, so a client that connects while the guest
// boots gets through once it is up, as with QEMU. Only with no DHCP range
// and no guest heard from is a connection reset (TCP) or a datagram
// dropped (UDP).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.hpp"
#include "wire/addr.hpp"

namespace usernet::nat {

class Nat;

struct ForwardSpec {
    char proto = 't';  // 't': TCP, 'u': UDP
    // The host address to listen on; unset: every address of both families.
    // An explicit "::" takes IPv4 too (QEMU's hostfwd [::]), unless v6only
    // (-t/-u's "::", as passt's: IPv6 only).
    std::optional<wire::IpAddr> bind_addr;
    bool v6only = false;
    std::string bind_ifname;  // %IFNAME (SO_BINDTODEVICE); empty: any interface
    uint16_t host_first = 0;  // host ports host_first..host_last (inclusive)
    uint16_t host_last = 0;
    uint16_t guest_first = 0;  // map onto guest_first..guest_first+(host_last-host_first)
    uint16_t guest_last = 0;
    // The guest to forward to: the spec's own (8080:10.0.2.16:80), else
    // --guest-addr (filled by the application); unset: the guest holding a
    // lease when a connection arrives.
    std::optional<wire::IpAddr> guest_addr;

    uint16_t guest_port(uint16_t host_port) const {
        return static_cast<uint16_t>(guest_first + (host_port - host_first));
    }
    // "127.0.0.1/8080-8081:80-81/tcp", for logs and error messages.
    std::string to_string() const;

    friend bool operator==(const ForwardSpec&, const ForwardSpec&) = default;
};

// Parses one -t ('t') or -u ('u') argument into one spec per contiguous
// range (exclusions split ranges). "none" yields no specs. Throws
// std::invalid_argument naming the bad part and the expected syntax.
std::vector<ForwardSpec> parse_forward_specs(char proto, std::string_view text);
// Parses QEMU's hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT
// (--hostfwd) into a spec: an empty HOSTADDR listens on every IPv4 address
// as QEMU's does (0.0.0.0; [::] for both families), an empty GUESTADDR
// leaves the guest to --guest-addr or the lease holder.
ForwardSpec parse_hostfwd(std::string_view text);

// The address a forwarded client appears from to guest `guest`: see above.
wire::IpAddr forward_peer_for_guest(Nat& nat, const wire::IpAddr& client,
                                    const wire::IpAddr& guest);

// The guest a forward delivers client's connection or datagram to now (see
// above); unspecified when there is none.
wire::IpAddr forward_target_guest(Nat& nat, const std::optional<wire::IpAddr>& override_addr,
                                  const wire::IpAddr& client);

struct ForwardStats {
    uint64_t tcp_accepted = 0;
    uint64_t tcp_no_guest = 0;   // reset: no guest to forward to (no DHCP range)
    uint64_t tcp_refused = 0;    // the TCP translator did not take it
    uint64_t accept_errors = 0;  // accept4 failures other than EAGAIN
    uint64_t accept_paused = 0;  // listener paused: out of descriptors
};

// Source ports for forwarded clients that appear as the gateway: the
// client's own port when it is not taken, else the next free one of
// 49152-65535, round robin.
class ForwardPortPicker {
public:
    static constexpr uint32_t kFirst = 49152, kCount = 16384, kTries = 4096;
    // 0 when kTries ports in a row are taken.
    uint16_t pick(uint16_t want, const std::function<bool(uint16_t)>& taken);

private:
    uint32_t next_ = 0;
};

class Forwarder {
public:
    explicit Forwarder(Nat& nat);
    ~Forwarder();
    Forwarder(const Forwarder&) = delete;
    Forwarder& operator=(const Forwarder&) = delete;

    // Binds the spec's listeners now (all or none of them). Throws
    // std::runtime_error("cannot listen on 127.0.0.1:8080/tcp: Address
    // already in use") style errors.
    void add(const ForwardSpec& spec);
    // Stops listening for the forward of proto ('t' or 'u') bound to
    // host_port on bind_addr (none: the every-address form, both
    // families). Connections already accepted live on; a UDP forward's
    // clients are forgotten. Returns the number of sockets closed (0: no
    // such forward).
    size_t remove(char proto, const std::optional<wire::IpAddr>& bind_addr, uint16_t host_port);

    const ForwardStats& stats() const { return stats_; }
    // The listening sockets, for listings: proto ('t', 'u'), descriptor,
    // guest port and guest address (none: chosen per connection).
    template <class F>
    void for_each_listener(F&& fn) const {
        for (const Binding& b : bindings_) fn(b.proto, b.fd, b.guest_port, b.guest_addr);
    }
    size_t listener_count() const { return tcp_listeners_.size() + udp_sockets_; }

private:
    class TcpListener;
    friend class TcpListener;

    // One listening socket of a forward, for remove().
    struct Binding {
        char proto;
        std::optional<wire::IpAddr> bind_addr;  // the spec's
        uint16_t host_port;
        int fd;
        uint16_t guest_port = 0;                 // where it goes
        std::optional<wire::IpAddr> guest_addr;  // none: the guest chosen per connection
    };

    Nat& nat_;
    std::vector<std::unique_ptr<TcpListener>> tcp_listeners_;
    std::vector<Binding> bindings_;
    size_t udp_sockets_ = 0;
    ForwardStats stats_;
    ForwardPortPicker ports_;
};

}  // namespace usernet::nat
