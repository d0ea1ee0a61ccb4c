// Reassembly of IPv4 and IPv6 fragments from guests, under strict limits.
//
// A guest that sends a datagram larger than its MTU (a UDP message of 4000
// bytes on Ethernet, ping -s 3000) sends fragments; the gateway puts them
// back together before the NAT sees the packet, as a host would (RFC 791
// 3.2, RFC 8200 4.5).
//
// Fragments are a classic way to make a receiver hold memory and to slip
// overlapping data past filters, so:
// - at most kSlots datagrams are in progress at once, kPerPort of them per
//   attachment (an attachment at its quota recycles its own oldest one,
//   never another's; with every slot in use by others, the fragment is
//   dropped); each slot's 64 KiB buffer is allocated once and reused;
// - a datagram has kTimeout4Ms (IPv4, Linux's ipfrag_time) or kTimeout6Ms
//   (IPv6, RFC 8200's 60 s) from its first fragment to be complete;
// - at most kMaxPieces fragments make one datagram: enough for 64 KiB in
//   the 48-byte fragments of the least MTU (68), as Linux and libslirp
//   take them (64 pieces lost every datagram over 64 x (MTU - 20) bytes);
// - overlapping fragments drop the whole datagram (RFC 5722 for IPv6, and
//   the same for IPv4, as Linux does); an exact duplicate is ignored;
// - a fragment that is not the last must carry a multiple of 8 bytes; the
//   whole may not exceed 65535 bytes of IP packet (IPv4) or payload (IPv6);
//   fragments that disagree on where the datagram ends drop it;
// - IPv6 fragments whose fragment header follows other extension headers
//   (hop-by-hop or destination options before it) are not reassembled:
//   nothing a guest sends through a NAT needs them.
// The reassembled packet keeps the first fragment's header (IPv4: its
// options too; the total length, fragment fields and checksum rewritten;
// IPv6: the fragment header removed, the payload length rewritten). A
// datagram that runs out of time is reported through expire(), which the
// gateway runs from a timer to send the guest an ICMP time exceeded
// (code 1) quoting the first fragment, when that came.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>

#include "core/event_loop.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"

namespace usernet::gw {

struct ReassemblyStats {
    uint64_t fragments = 0;        // fragments taken
    uint64_t reassembled = 0;      // datagrams completed
    uint64_t dropped_overlap = 0;  // datagrams dropped for overlapping fragments
    uint64_t dropped_timeout = 0;  // datagrams not complete in time
    uint64_t dropped_limit = 0;    // no slot free, or too many pieces
    uint64_t dropped_invalid = 0;  // bad lengths, too big, inconsistent ends, unsupported chain
};

class Reassembler {
public:
    static constexpr size_t kSlots = 16;
    static constexpr size_t kPerPort = 4;
    static constexpr size_t kMaxPieces = (65535 + 47) / 48;  // 1366
    static constexpr core::Millis kTimeout4Ms = 30'000;
    static constexpr core::Millis kTimeout6Ms = 60'000;

    // Take a fragment of ip (is_fragment()) that came in on port. When it
    // completes its datagram, returns the whole packet, valid until the
    // next call.
    std::optional<wire::Bytes> add(const wire::Ipv4View& ip, sw::PortId port, core::Millis now);
    std::optional<wire::Bytes> add(const wire::Ipv6View& ip, sw::PortId port, core::Millis now);

    const ReassemblyStats& stats() const { return stats_; }
    size_t in_progress() const;
    // When the oldest datagram in progress runs out of time (0: none).
    core::Millis next_deadline() const;
    // Drops the datagrams whose time ran out by `now`. For each whose first
    // fragment (offset 0) came, calls expired(first, v6, port) with that
    // fragment as it arrived (an IPv4 packet; an IPv6 packet with its
    // fragment header), for the ICMP "fragment reassembly time exceeded"
    // that RFC 792 / RFC 8200 4.5 ask for (none without fragment zero).
    template <class F>
    void expire(core::Millis now, F&& expired) {
        for (Slot& s : slots_) {
            if (!s.used || now - s.started < (s.v6 ? kTimeout6Ms : kTimeout4Ms)) continue;
            drop(s, stats_.dropped_timeout);
            if (auto first = first_fragment(s)) expired(*first, s.v6, s.port);
        }
    }

private:
    static constexpr size_t kMaxHeader = 60;  // an IPv4 header with options; IPv6's 40
    static constexpr size_t kBufLen = kMaxHeader + 65535;
    struct Range {
        uint32_t first;
        uint32_t end;
    };
    struct Slot {
        bool used = false;
        bool v6 = false;
        wire::IpAddr src;
        wire::IpAddr dst;
        uint32_t id = 0;
        uint8_t proto = 0;
        sw::PortId port = sw::kNoPort;
        core::Millis started = 0;
        size_t hdr_len = 0;  // 0 until the first fragment (offset 0) came
        size_t total = 0;    // 0 until the last fragment (no MF) came
        size_t have = 0;
        size_t pieces = 0;
        std::array<uint8_t, kMaxHeader> hdr{};
        std::unique_ptr<uint8_t[]> buf;  // data at kMaxHeader + offset
        std::unique_ptr<Range[]> ranges;  // kMaxPieces, made with buf
    };
    struct Piece {
        bool v6;
        wire::IpAddr src;
        wire::IpAddr dst;
        uint32_t id;
        uint8_t proto;
        size_t offset;  // bytes
        bool more;
        wire::Bytes header;  // the first fragment's header to keep
        wire::Bytes data;
    };
    std::optional<wire::Bytes> take(const Piece& p, sw::PortId port, core::Millis now);
    std::optional<wire::Bytes> first_fragment(Slot& s);
    Slot* slot_for(const Piece& p, sw::PortId port, core::Millis now);
    void drop(Slot& s, uint64_t& counter);

    std::array<Slot, kSlots> slots_{};
    ReassemblyStats stats_;
};

}  // namespace usernet::gw
