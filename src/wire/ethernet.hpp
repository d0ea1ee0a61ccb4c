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

// Writes an untagged Ethernet header at p; returns the header length.
inline size_t build_ethernet(uint8_t* p, const MacAddr& dst, const MacAddr& src, uint16_t type) {
    dst.store(p);
    src.store(p + 6);
    store16(p + 12, type);
    return kEthHeaderLen;
}

}  // namespace usernet::wire
