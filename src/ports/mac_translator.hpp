// MAC translation for one attachment (",mac=LANMAC"): the guest keeps
// whatever MAC it uses, the LAN sees one fixed MAC.
//
// Why: v86 restores a guest from a state image, and the guest inside keeps
// the MAC it had when the image was saved while the emulated card (or the
// next boot of the same image) gets another; v86's own
// mac_address_translation option rewrites between the two. More generally
// a guest whose MAC changes underneath it (a restored snapshot, a cloned
// VM, `ip link set tap0 address NEW`) would lose its DHCP lease and be
// refused by the gateway's IP source guard, which binds every address to
// one MAC. With translation the LAN, the switch, the lease table and the
// guard only ever see the fixed MAC.
//
// What is rewritten (IPv4 and IPv6 over Ethernet, with or without one
// 802.1Q tag):
//   guest -> LAN (to_lan, in place, in the port's own receive buffer):
//     Ethernet source; ARP sender (and a target equal to the frame's
//     source, as gratuitous ARP has it) hardware address; in a BOOTREQUEST
//     to UDP port 67, an Ethernet chaddr and every client identifier
//     (option 61) of type 1, whatever MAC they name (a DHCP client that
//     kept the MAC it started with after the NIC's changed still speaks
//     for this guest); in a neighbor discovery
//     message (router and neighbor solicitation and advertisement,
//     redirect), every source or target link-layer address option that
//     holds the frame's source (RFC 4861 4.6.1). The frame's source is
//     remembered as the guest's MAC (the latest one wins).
//   LAN -> guest (to_guest, on a copy of the frame's head):
//     Ethernet destination equal to the LAN MAC; ARP target hardware
//     address equal to it; in a BOOTREPLY from UDP port 67, chaddr and
//     type-1 client identifiers equal to it; link-layer address options
//     equal to it. Broadcasts and frames for other MACs pass unchanged,
//     except for those DHCP, ARP and neighbor discovery fields.
// The UDP or ICMPv6 checksum follows each change (RFC 1624 incremental
// update, byte by byte so odd offsets in the options are right); a zero
// UDP checksum ("none") stays zero and a partial one (checksum offload:
// the field holds only the pseudo-header sum, completed later over the new
// bytes) is left alone. Fragments and anything that does not parse are not
// touched beyond the Ethernet header.
//
// Bounds: every field is reached through the checked views of wire/
// (Ethernet, ARP, IPv4, UDP, DHCPv4 and its option walk, which honours
// option overload); at most kMaxClientIds identifiers are rewritten per
// message. Nothing is allocated per frame: to_guest copies at most
// kHeadCapacity bytes (the part up to the last rewritten byte) into the
// translator's own buffer and returns it with the untouched rest of the
// original, so a 64 KiB TCP segment costs a 14-byte copy. A DHCP reply
// whose last field to rewrite lies beyond kHeadCapacity (no real server
// sends one) gets only its Ethernet and chaddr fields translated, counted.
//
// Not translated: SLAAC addresses derived from the MAC (they are only
// addresses; the LAN binds them to the LAN MAC), DHCPv6's DUIDs (the
// server binds by DUID and attachment, not by MAC), other protocols
// carrying MACs.
// One guest MAC per attachment: a guest bridging several MACs behind its
// port would have them all folded onto the LAN MAC.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include <string>

#include "switch/port.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/ethernet.hpp"
#include "wire/offload.hpp"

namespace usernet::ports {

struct MacTranslatorStats {
    uint64_t to_lan = 0;            // frames from the guest rewritten
    uint64_t to_guest = 0;          // frames toward the guest rewritten
    uint64_t arp = 0;               // ARP hardware addresses rewritten (both ways)
    uint64_t dhcp = 0;              // DHCP messages rewritten (both ways)
    uint64_t ndp = 0;               // neighbor discovery messages rewritten (both ways)
    uint64_t dhcp_too_long = 0;     // replies only partly translated (head too long)
    uint64_t guest_mac_changes = 0; // the guest's MAC changed (after the first)
};

class MacTranslator {
public:
    // The head of a frame toward the guest that may be copied and rewritten:
    // a DHCP message of an Ethernet MTU, with room to spare.
    static constexpr size_t kHeadCapacity = 2048;
    static constexpr size_t kMaxClientIds = 4;
    static constexpr size_t kMaxLinkLayerOptions = 4;  // per neighbor discovery message

    // lan_mac must be a unicast, non-zero address (checked by the caller).
    explicit MacTranslator(const wire::MacAddr& lan_mac) : lan_mac_(lan_mac) {}

    const wire::MacAddr& lan_mac() const { return lan_mac_; }
    // The MAC the guest uses, once it has sent a frame.
    const std::optional<wire::MacAddr>& guest_mac() const { return guest_mac_; }

    enum class Learned : uint8_t { same, first, changed };
    // Guest -> LAN, rewriting the frame in place. `off` is the frame's
    // offload state (a partial UDP checksum is left alone). Says whether
    // this frame taught the guest's MAC for the first time or changed it.
    Learned to_lan(wire::MutBytes frame, const wire::Offload& off = {});
    // The guest's MAC as its NIC says it, without a frame (a TAP's own
    // address): frames toward the guest go to it from now on.
    Learned set_guest_mac(const wire::MacAddr& mac);

    // A frame as the guest must see it: head, then tail. Without anything
    // to rewrite, head is the whole frame and tail is empty; otherwise head
    // is the translator's own buffer (valid until the next call) and tail
    // the rest of the original frame.
    struct Out {
        wire::Bytes head;
        wire::Bytes tail;
        size_t size() const { return head.size() + tail.size(); }
    };
    Out to_guest(wire::Bytes frame, const wire::Offload& off = {});

    const MacTranslatorStats& stats() const { return stats_; }

private:
    // Where a frame's MAC fields are: offsets from the frame's start of
    // each 6-byte field to replace, and the UDP or ICMPv6 checksum to keep
    // right.
    struct Plan {
        std::array<size_t, 3 + std::max(kMaxClientIds, kMaxLinkLayerOptions)> fields{};
        size_t n_fields = 0;
        size_t l4 = 0;           // UDP or ICMPv6 header offset (0: no checksum to fix)
        size_t csum = 0;         // its checksum field's offset
        size_t end = 0;          // one past the last byte to rewrite
        bool arp = false;
        bool dhcp = false;
        bool ndp = false;
        void add(size_t off) {
            fields[n_fields++] = off;
            end = off + 6 > end ? off + 6 : end;
        }
    };
    // Finds the fields holding `from`, for the guest's way out (outbound)
    // or in. eth_field is 6 (source) or 0 (destination).
    static void plan(wire::Bytes frame, bool outbound, const wire::MacAddr& from,
                     const wire::Offload& off, Plan& p);
    // The link-layer address options holding `from` in an IPv6 neighbor
    // discovery message.
    static void plan_ndp(wire::Bytes frame, const wire::EthernetView& eth,
                         const wire::MacAddr& from, const wire::Offload& off, Plan& p);
    // Writes `to` over every planned field of buf and fixes the checksum.
    static void apply(uint8_t* buf, const Plan& p, const wire::MacAddr& to);

    wire::MacAddr lan_mac_;
    std::optional<wire::MacAddr> guest_mac_;
    MacTranslatorStats stats_;
    alignas(64) std::array<uint8_t, kHeadCapacity> head_{};
};

// Logs (info) what to_lan() learned for the port named `port`: the
// guest's MAC the first time, each change after it (the first
// kLoggedChanges at info, the rest at debug: a guest changing its MAC at
// every frame cannot flood the log).
inline constexpr uint64_t kLoggedChanges = 16;
void log_guest_mac(const std::string& port, sw::PortId id, MacTranslator::Learned learned,
                   const MacTranslator& x);

}  // namespace usernet::ports
