// IPv4 headers (RFC 791).
//
// parse() checks version, header length and total length against the buffer
// and trims Ethernet padding; options are skipped (never interpreted).
// Fragments are recognised (is_fragment) so callers can count and drop
// them: usernet does no reassembly, the source of several libslirp CVEs.
#pragma once

#include <optional>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace usernet::wire {

namespace ipproto {
inline constexpr uint8_t icmp = 1;
inline constexpr uint8_t tcp = 6;
inline constexpr uint8_t udp = 17;
inline constexpr uint8_t ipv6_hopopts = 0;
inline constexpr uint8_t icmpv6 = 58;
}  // namespace ipproto

inline constexpr size_t kIpv4HeaderLen = 20;

class Ipv4View {
public:
    static std::optional<Ipv4View> parse(Bytes pkt) {
        if (pkt.size() < kIpv4HeaderLen) return std::nullopt;
        if ((pkt[0] >> 4) != 4) return std::nullopt;
        size_t ihl = static_cast<size_t>(pkt[0] & 0x0fu) * 4;
        if (ihl < kIpv4HeaderLen || ihl > pkt.size()) return std::nullopt;
        size_t total = load16(&pkt[2]);
        if (total < ihl || total > pkt.size()) return std::nullopt;
        Ipv4View v;
        v.pkt_ = pkt.first(total);
        v.ihl_ = ihl;
        return v;
    }

    Ipv4 src() const { return load32(&pkt_[12]); }
    Ipv4 dst() const { return load32(&pkt_[16]); }
    IpAddr src_addr() const { return IpAddr::v4(src()); }
    IpAddr dst_addr() const { return IpAddr::v4(dst()); }
    uint8_t protocol() const { return pkt_[9]; }
    uint8_t ttl() const { return pkt_[8]; }
    uint8_t tos() const { return pkt_[1]; }
    uint16_t id() const { return load16(&pkt_[4]); }
    bool dont_fragment() const { return (pkt_[6] & 0x40) != 0; }
    bool more_fragments() const { return (pkt_[6] & 0x20) != 0; }
    uint16_t frag_offset() const { return load16(&pkt_[6]) & 0x1fff; }
    bool is_fragment() const { return more_fragments() || frag_offset() != 0; }
    size_t header_len() const { return ihl_; }
    size_t total_len() const { return pkt_.size(); }
    bool checksum_ok() const { return csum_fold(csum_partial(pkt_.first(ihl_))) == 0; }
    Bytes header() const { return pkt_.first(ihl_); }
    Bytes packet() const { return pkt_; }
    Bytes payload() const { return pkt_.subspan(ihl_); }

private:
    Ipv4View() = default;
    Bytes pkt_;
    size_t ihl_ = 0;
};

// Writes a 20-byte IPv4 header (DF set, no options) with its checksum.
inline size_t build_ipv4(uint8_t* p, Ipv4 src, Ipv4 dst, uint8_t proto, size_t payload_len,
                         uint8_t ttl = 64, uint16_t id = 0, bool df = true) {
    p[0] = 0x45;
    p[1] = 0;
    store16(p + 2, static_cast<uint16_t>(kIpv4HeaderLen + payload_len));
    store16(p + 4, id);
    store16(p + 6, df ? 0x4000 : 0);
    p[8] = ttl;
    p[9] = proto;
    store16(p + 10, 0);
    store32(p + 12, src);
    store32(p + 16, dst);
    store16(p + 10, csum_fold(csum_partial(Bytes(p, kIpv4HeaderLen))));
    return kIpv4HeaderLen;
}

}  // namespace usernet::wire
