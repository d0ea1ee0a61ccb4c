// The virtual L2 switch: MAC learning, flooding, one LAN.
//
// Every frame from a port passes input(): it is checked for a sane size,
// its source MAC is learned for that port (unless it is multicast or
// pinned to another port, such as the gateway's), and it goes out of the
// port that owns the destination MAC, or of every other port when the
// destination is broadcast, multicast or unknown. A port may own at most
// its max_macs() addresses (64 for a guest, kMaxMacsPerPort; an uplink to
// a real network more), so a guest spraying source MACs cannot flush
// the table or take over another guest's traffic; learned entries age out.
// Each port's learned entries are kept on a list of their own, least
// recently seen first, so a port at its limit finds an aged entry of its
// own to reuse in O(1) (the head of its list) instead of scanning the whole
// table per frame, which a guest spraying source MACs would otherwise make
// it do.
// The switch knows Ethernet only, and offload (wire/offload.hpp): a frame
// with a partial checksum or a large TCP segment goes as it is to a port
// that takes offload; for any other port the switch completes the checksum
// and cuts the segment to the port's MTU in a scratch buffer of its own.
// Offload fields are validated on the way in (wire::validate_offload), so
// neither path carries a header usernet would not take, and no frame is
// cut into more than wire::kMaxGsoSegments pieces.
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/event_loop.hpp"
#include "switch/port.hpp"
#include "wire/addr.hpp"

namespace usernet::sw {

struct SwitchStats {
    uint64_t frames = 0;
    uint64_t flooded = 0;
    uint64_t dropped_runt = 0;
    uint64_t dropped_giant = 0;
    uint64_t dropped_bad_src = 0;   // multicast source, or a MAC pinned elsewhere
    uint64_t dropped_mac_limit = 0; // port already owns its max_macs() MACs
    uint64_t dropped_hairpin = 0;   // destination lives on the ingress port
    uint64_t offload_resolved = 0;  // offloaded frames finished in software for a port
    uint64_t dropped_bad_offload = 0; // offload fields that do not describe the frame
    uint64_t dropped_guard = 0;     // refused by the ingress guard (spoofed source)
};

// Decides, once the switch has accepted a frame's source MAC for its port
// and before the frame goes anywhere, whether it may enter the LAN at all
// (the gateway's IP source guard).
class IngressGuard {
public:
    virtual bool admit(PortId from, wire::Bytes frame) = 0;

protected:
    ~IngressGuard() = default;
};

class Switch {
public:
    static constexpr size_t kMaxMacsPerPort = kDefaultMaxMacs;  // Port::max_macs()
    static constexpr size_t kMaxMacs = 65536;
    static constexpr core::Millis kMacAgeMs = 300'000;

    explicit Switch(core::EventLoop& loop) : loop_(loop) {}

    PortId attach(Port& p);
    void detach(Port& p);

    // Binds mac to port for good (the gateway's own address).
    void pin(const wire::MacAddr& mac, PortId port);

    // A frame entering the switch from port `from`, with its offload state
    // (a port that does not take offload passes none).
    void input(PortId from, wire::Bytes frame, const wire::Offload& off = {});
    // A frame from port `from` (the gateway, past the guard) for port `to`
    // alone, whatever its destination address: a router advertisement to
    // all nodes that carries that attachment's MTU.
    void input_to(PortId from, PortId to, wire::Bytes frame);

    // Consulted for every frame a port (other than the guard's own) sends;
    // a refused frame is counted (dropped_guard) and goes nowhere.
    void set_guard(IngressGuard* g, PortId own) {
        guard_ = g;
        guard_port_ = own;
    }
    // Called with every port that detaches, after it is gone (its flows
    // and bindings can be dropped).
    void set_on_detach(std::function<void(PortId)> f) { on_detach_ = std::move(f); }

    // Called with every frame that crosses the switch (pcap).
    void set_observer(std::function<void(wire::Bytes)> obs) { observer_ = std::move(obs); }

    // How long a learned MAC lives without frames from it (tests shorten it).
    void set_mac_age(core::Millis ms) { mac_age_ms_ = ms; }

    // Which port owns mac, or kNoPort.
    PortId lookup(const wire::MacAddr& mac) const;
    Port* port(PortId id) const { return id < ports_.size() ? ports_[id] : nullptr; }
    const SwitchStats& stats() const { return stats_; }
    template <class F>
    void for_each_port(F&& f) const {
        for (Port* p : ports_)
            if (p) f(*p);
    }

private:
    struct MacHash {
        size_t operator()(const wire::MacAddr& m) const noexcept {
            uint64_t v = 0;
            for (uint8_t c : m.b) v = (v << 8) | c;
            return std::hash<uint64_t>{}(v * 0x9e3779b97f4a7c15ULL);
        }
    };
    struct Entry;
    using Node = std::pair<const wire::MacAddr, Entry>;  // stable in table_
    struct Entry {
        PortId port;
        core::Millis seen;
        bool pinned;
        Node* prev = nullptr;  // the port's list, oldest first (learned entries)
        Node* next = nullptr;
    };
    struct PortMacs {
        Node* head = nullptr;  // least recently seen
        Node* tail = nullptr;
        uint32_t count = 0;
        core::Millis clash_warned = 0;  // when a MAC clash on this port was last logged
    };
    // Logs (at most every kClashWarnMs per port) that frames from src on
    // port `from` are dropped because `owner` holds that MAC.
    void warn_clash(PortId from, const wire::MacAddr& src, PortId owner, core::Millis now);
    static constexpr core::Millis kClashWarnMs = 10'000;
    bool learn(PortId from, const wire::MacAddr& src);
    void link_tail(PortId port, Node& n);
    void unlink(Node& n);
    bool aged(const Entry& e, core::Millis now) const { return now - e.seen > mac_age_ms_; }
    // Frees an aged entry of `port` (its list's head) if there is one.
    bool reuse_aged(PortId port, core::Millis now);
    void forward(PortId to, wire::Bytes frame, const FrameMeta& meta);
    void forward_resolved(Port& p, wire::Bytes frame, const FrameMeta& meta);

    core::EventLoop& loop_;
    std::vector<Port*> ports_;
    std::vector<PortMacs> macs_per_port_;
    std::unordered_map<wire::MacAddr, Entry, MacHash> table_;
    core::Millis mac_age_ms_ = kMacAgeMs;
    core::Millis last_sweep_ = 0;  // the whole-table sweep at kMaxMacs, once a second
    std::function<void(wire::Bytes)> observer_;
    std::function<void(PortId)> on_detach_;
    IngressGuard* guard_ = nullptr;
    PortId guard_port_ = kNoPort;
    SwitchStats stats_;
    std::unique_ptr<uint8_t[]> scratch_;  // software offload, allocated on first use
};

}  // namespace usernet::sw
