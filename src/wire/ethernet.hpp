// Ethernet II frames, with at most one 802.1Q tag (IEEE 802.1Q-2018 9.3).
//
// The view is over a frame without preamble or FCS, as every attachment
// delivers them. parse() checks the 14-byte header (18 with a tag); nothing
// else about the payload is assumed.
#pragma once

#include <optional>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::wire {

namespace ethertype {
inline constexpr uint16_t ipv4 = 0x0800;
inline constexpr uint16_t arp = 0x0806;
inline constexpr uint16_t vlan = 0x8100;
inline constexpr uint16_t ipv6 = 0x86dd;
}  // namespace ethertype

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kVlanTagLen = 4;
inline constexpr size_t kEthMinFrame = 60;  // without FCS
inline constexpr size_t kEthMaxFrame = 65535 + kEthHeaderLen;

class EthernetView {
public:
    static std::optional<EthernetView> parse(Bytes frame) {
        if (frame.size() < kEthHeaderLen) return std::nullopt;
        EthernetView v;
        v.frame_ = frame;
        v.hdr_len_ = kEthHeaderLen;
        uint16_t et = load16(&frame[12]);
        if (et == ethertype::vlan) {
            if (frame.size() < kEthHeaderLen + kVlanTagLen) return std::nullopt;
            v.tci_ = load16(&frame[14]);
            v.has_tag_ = true;
            v.hdr_len_ += kVlanTagLen;
        }
        return v;
    }

    MacAddr dst() const { return MacAddr::from(&frame_[0]); }
    MacAddr src() const { return MacAddr::from(&frame_[6]); }
    // The ethertype of the payload (after the tag, if any).
    uint16_t ethertype() const { return load16(&frame_[hdr_len_ - 2]); }
    bool has_vlan_tag() const { return has_tag_; }
    uint16_t vlan_id() const { return tci_ & 0x0fff; }
    size_t header_len() const { return hdr_len_; }
    Bytes frame() const { return frame_; }
    Bytes payload() const { return frame_.subspan(hdr_len_); }

private:
    EthernetView() = default;
    Bytes frame_;
    size_t hdr_len_ = 0;
    uint16_t tci_ = 0;
    bool has_tag_ = false;
};

// The length of frame's Ethernet header and the IPv4 or IPv6 packet it
// carries, by that packet's own length field, when the whole packet is
// within frame (what follows it is padding or junk: QEMU's i82559er sends
// 1514-byte frames in 2600-byte datagrams). nullopt for anything else
// (another ethertype, a malformed or cut-off header, an IPv6 jumbogram).
inline std::optional<size_t> ip_frame_length(Bytes frame) {
    auto eth = EthernetView::parse(frame);
    if (!eth) return std::nullopt;
    const Bytes ip = eth->payload();
    size_t len = 0;
    if (eth->ethertype() == ethertype::ipv4) {
        if (ip.size() < 20 || (ip[0] >> 4) != 4) return std::nullopt;
        len = load16(&ip[2]);
        if (len < size_t{ip[0] & 0x0fu} * 4 || (ip[0] & 0x0f) < 5) return std::nullopt;
    } else if (eth->ethertype() == ethertype::ipv6) {
        if (ip.size() < 40 || (ip[0] >> 4) != 6 || load16(&ip[4]) == 0) return std::nullopt;
        len = 40 + size_t{load16(&ip[4])};
    } else {
        return std::nullopt;
    }
    if (len > ip.size()) return std::nullopt;
    return eth->header_len() + len;
}

// Writes an untagged Ethernet header at p; returns the header length.
inline size_t build_ethernet(uint8_t* p, const MacAddr& dst, const MacAddr& src, uint16_t type) {
    dst.store(p);
    src.store(p + 6);
    store16(p + 12, type);
    return kEthHeaderLen;
}

}  // namespace usernet::wire
