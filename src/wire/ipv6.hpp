// IPv6 headers and their extension header chain (RFC 8200).
//
// parse() checks the fixed header against the buffer (trimming Ethernet
// padding) and walks the extension headers to the upper-layer header:
// hop-by-hop options (first only, RFC 8200 4.1: one further on ends the
// walk and marks the packet discard()), routing, fragment and
// destination options, and AH (RFC 4302, its length in 4-byte units).
// ESP (RFC 4303) and "no next header" (59) end the walk: what follows is
// opaque. Each header's length is checked before it is read; a chain longer
// than kMaxExtHeaders, or one that runs past the packet, is malformed.
//
// The options inside hop-by-hop and destination options headers are walked
// too: padding and the router alert (RFC 2711, which MLD sends) are known;
// an unknown option whose type says "skip" (its two high bits 00) is
// skipped, and one that says "discard" marks the packet discard() (a
// receiver drops it, RFC 8200 4.2). A routing header with segments left is
// one usernet cannot honour (it knows no routing type, and RFC 5095 forbids
// type 0): routing_pending(), and discard() too. Where RFC 8200 asks the
// receiver to answer such a packet with an ICMPv6 Parameter Problem
// (option types 10 always, 11 unless the destination is multicast; a
// routing header with segments left; a misplaced hop-by-hop header, code
// 1), problem() gives its code and pointer
// (the offending byte's offset from the start of the IPv6 header), for the
// first such header in the chain.
//
// A fragment header (44) with a nonzero offset or the M flag makes the
// packet a fragment; the walk stops there (a later fragment's payload is
// not a header). An atomic fragment (offset 0, M clear, RFC 6946) is
// walked through as an unfragmented packet.
#pragma once

#include <optional>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/ipv4.hpp"

namespace usernet::wire {

namespace ipproto {
inline constexpr uint8_t ipv6_route = 43;
inline constexpr uint8_t ipv6_frag = 44;
inline constexpr uint8_t esp = 50;
inline constexpr uint8_t ah = 51;
inline constexpr uint8_t ipv6_nonxt = 59;
inline constexpr uint8_t ipv6_dstopts = 60;
}  // namespace ipproto

inline constexpr size_t kIpv6HeaderLen = 40;
// The smallest link MTU IPv6 runs on (RFC 8200 5).
inline constexpr uint32_t kIpv6MinMtu = 1280;
// Extension headers walked before a packet is called malformed. Real
// traffic carries at most three or four (RFC 8200 4.1's order lists six
// kinds); a long chain is a way to make a receiver work.
inline constexpr size_t kMaxExtHeaders = 8;

// What a Parameter Problem about a packet says (RFC 4443 3.4).
struct Ipv6Problem {
    uint8_t code = 0;      // 0: erroneous header field, 2: unrecognized option
    uint32_t pointer = 0;  // offset of the offending byte in the packet
};

class Ipv6View {
public:
    static std::optional<Ipv6View> parse(Bytes pkt) {
        if (pkt.size() < kIpv6HeaderLen || (pkt[0] >> 4) != 6) return std::nullopt;
        size_t payload_len = load16(&pkt[4]);
        // A jumbogram (payload length 0 and a jumbo option) does not fit a
        // LAN of 64 KiB frames: a zero length is read as an empty payload,
        // which no upper-layer parser accepts.
        if (kIpv6HeaderLen + payload_len > pkt.size()) return std::nullopt;
        Ipv6View v;
        v.pkt_ = pkt.first(kIpv6HeaderLen + payload_len);
        if (!v.walk()) return std::nullopt;
        return v;
    }

    IpAddr src_addr() const { return IpAddr::v6_from(&pkt_[8]); }
    IpAddr dst_addr() const { return IpAddr::v6_from(&pkt_[24]); }
    const uint8_t* src_raw() const { return &pkt_[8]; }
    const uint8_t* dst_raw() const { return &pkt_[24]; }
    uint8_t hop_limit() const { return pkt_[7]; }
    uint8_t traffic_class() const { return static_cast<uint8_t>(load16(&pkt_[0]) >> 4); }
    uint32_t flow_label() const { return load32(&pkt_[0]) & 0xfffff; }
    // The upper-layer protocol (or ipv6_nonxt, esp) after the chain.
    uint8_t protocol() const { return proto_; }
    // Bytes before the upper-layer header: 40 plus the extension headers.
    size_t header_len() const { return hdr_len_; }
    // Offset of the byte that names protocol(): 6 in the fixed header, or
    // the first byte of the last extension header.
    size_t next_header_offset() const { return nh_offset_; }
    size_t total_len() const { return pkt_.size(); }
    size_t ext_headers() const { return ext_count_; }
    bool has_hop_by_hop() const { return hop_by_hop_; }
    // A hop-by-hop header after another header: the walk stopped at it,
    // so protocol() is 0 and what follows was not read.
    bool misplaced_hop_by_hop() const { return misplaced_hop_by_hop_; }
    bool is_fragment() const { return fragment_; }
    uint16_t frag_offset() const { return frag_offset_; }  // in 8-byte units
    bool more_fragments() const { return more_frags_; }
    uint32_t frag_id() const { return frag_id_; }
    bool discard() const { return discard_; }
    bool routing_pending() const { return routing_pending_; }
    // The Parameter Problem RFC 8200 asks for, if any (see the top).
    std::optional<Ipv6Problem> problem() const {
        if (!has_problem_) return std::nullopt;
        return problem_;
    }
    bool router_alert() const { return router_alert_; }
    Bytes packet() const { return pkt_; }
    Bytes header() const { return pkt_.first(hdr_len_); }
    Bytes payload() const { return pkt_.subspan(hdr_len_); }

private:
    Ipv6View() = default;

    bool walk() {
        uint8_t next = pkt_[6];
        size_t off = kIpv6HeaderLen;
        for (;;) {
            switch (next) {
            case ipproto::ipv6_hopopts:
            case ipproto::ipv6_dstopts:
            case ipproto::ipv6_route:
            case ipproto::ipv6_frag:
            case ipproto::ah:
                break;
            default:  // upper layer, ESP or no next header: the walk ends
                proto_ = next;
                hdr_len_ = off;
                return true;
            }
            if (next == ipproto::ipv6_hopopts && off != kIpv6HeaderLen) {
                // Only right after the IPv6 header (RFC 8200 4.1): anywhere
                // else it is a next header the receiver does not know, and
                // said so with Parameter Problem code 1 at the field naming
                // it (as Linux does). Nothing after it is read.
                misplaced_hop_by_hop_ = true;
                note_problem(1, nh_offset_);
                discard_ = true;
                proto_ = next;
                hdr_len_ = off;
                return true;
            }
            if (++ext_count_ > kMaxExtHeaders) return false;
            if (pkt_.size() - off < 8) return false;  // every one is at least 8 bytes
            const uint8_t* h = &pkt_[off];
            size_t len;
            if (next == ipproto::ipv6_frag) len = 8;
            else if (next == ipproto::ah) len = (size_t{h[1]} + 2) * 4;
            else len = (size_t{h[1]} + 1) * 8;
            if (len > pkt_.size() - off) return false;
            switch (next) {
            case ipproto::ipv6_hopopts:
                hop_by_hop_ = true;
                if (!walk_options(off + 2, len - 2)) return false;
                break;
            case ipproto::ipv6_dstopts:
                if (!walk_options(off + 2, len - 2)) return false;
                break;
            case ipproto::ipv6_route:
                if (h[3] != 0) {  // segments left, of a type we do not know
                    routing_pending_ = true;
                    note_problem(0, off + 2);  // the routing type
                    discard_ = true;
                }
                break;
            case ipproto::ipv6_frag: {
                uint16_t om = load16(h + 2);
                frag_offset_ = static_cast<uint16_t>(om >> 3);
                more_frags_ = (om & 1) != 0;
                frag_id_ = load32(h + 4);
                if (frag_offset_ != 0 || more_frags_) {
                    fragment_ = true;
                    proto_ = h[0];
                    nh_offset_ = off;
                    hdr_len_ = off + len;
                    return true;
                }
                break;
            }
            default:
                break;
            }
            next = h[0];
            nh_offset_ = off;
            off += len;
        }
    }

    // Type-length-value options (RFC 8200 4.2) of a hop-by-hop or
    // destination options header: the n bytes at `at`, after its first two.
    bool walk_options(size_t at, size_t n) {
        const Bytes opts = pkt_.subspan(at, n);
        size_t i = 0;
        while (i < opts.size()) {
            uint8_t type = opts[i];
            if (type == 0) {  // Pad1
                i++;
                continue;
            }
            if (opts.size() - i < 2) return false;
            size_t len = opts[i + 1];
            if (len > opts.size() - i - 2) return false;
            if (type == 5 && len == 2) {
                router_alert_ = true;
            } else if (type != 1 && (type >> 6) != 0) {
                // 01: discard silently; 10: and say so; 11: and say so
                // unless the destination is multicast.
                const bool mcast_dst = pkt_[24] == 0xff;
                if ((type >> 6) == 2 || ((type >> 6) == 3 && !mcast_dst))
                    note_problem(2, at + i);
                discard_ = true;
            }
            i += 2 + len;
        }
        return true;
    }

    void note_problem(uint8_t code, size_t pointer) {
        // The receiver stops at the first header it must discard for, so
        // only that one is reported (and none after a silent discard).
        if (discard_) return;
        has_problem_ = true;
        problem_ = {code, static_cast<uint32_t>(pointer)};
    }

    Bytes pkt_;
    size_t hdr_len_ = kIpv6HeaderLen;
    size_t nh_offset_ = 6;
    size_t ext_count_ = 0;
    uint8_t proto_ = ipproto::ipv6_nonxt;
    uint16_t frag_offset_ = 0;
    uint32_t frag_id_ = 0;
    bool more_frags_ = false;
    bool fragment_ = false;
    bool hop_by_hop_ = false;
    bool misplaced_hop_by_hop_ = false;
    bool discard_ = false;
    bool routing_pending_ = false;
    bool router_alert_ = false;
    bool has_problem_ = false;
    Ipv6Problem problem_{};
};

// Writes a 40-byte IPv6 header with no extension headers.
inline size_t build_ipv6(uint8_t* p, const IpAddr& src, const IpAddr& dst, uint8_t next,
                         size_t payload_len, uint8_t hop_limit = 64, uint32_t flow = 0) {
    store32(p, (uint32_t{6} << 28) | (flow & 0xfffff));
    store16(p + 4, static_cast<uint16_t>(payload_len));
    p[6] = next;
    p[7] = hop_limit;
    std::memcpy(p + 8, src.b.data(), 16);
    std::memcpy(p + 24, dst.b.data(), 16);
    return kIpv6HeaderLen;
}

// Address kinds (RFC 4291 2.4).
inline bool is_v6_multicast(const IpAddr& a) { return !a.is_v4() && a.b[0] == 0xff; }
inline bool is_v6_link_local(const IpAddr& a) {
    return a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80;
}
// ff02::1:ffXX:XXXX, the solicited-node group of a (RFC 4291 2.7.1).
inline IpAddr solicited_node(const IpAddr& a) {
    IpAddr r;
    r.b[0] = 0xff;
    r.b[1] = 0x02;
    r.b[11] = 0x01;
    r.b[12] = 0xff;
    r.b[13] = a.b[13];
    r.b[14] = a.b[14];
    r.b[15] = a.b[15];
    return r;
}
// The Ethernet group a multicast IPv6 address maps to (RFC 2464 7).
inline MacAddr multicast_mac(const IpAddr& a) {
    return MacAddr{{0x33, 0x33, a.b[12], a.b[13], a.b[14], a.b[15]}};
}
// fe80::/64 with the modified EUI-64 of mac (RFC 4291 appendix A).
inline IpAddr link_local_of(const MacAddr& m) {
    IpAddr r;
    r.b[0] = 0xfe;
    r.b[1] = 0x80;
    r.b[8] = static_cast<uint8_t>(m.b[0] ^ 0x02);
    r.b[9] = m.b[1];
    r.b[10] = m.b[2];
    r.b[11] = 0xff;
    r.b[12] = 0xfe;
    r.b[13] = m.b[3];
    r.b[14] = m.b[4];
    r.b[15] = m.b[5];
    return r;
}

}  // namespace usernet::wire
