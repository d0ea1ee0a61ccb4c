// ARP for IPv4 over Ethernet (RFC 826).
//
// Only hardware type 1 / protocol 0x0800 with 6- and 4-byte addresses is
// accepted; anything else is not ARP that usernet can answer.
#pragma once

#include <optional>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::wire {

inline constexpr size_t kArpLen = 28;

namespace arpop {
inline constexpr uint16_t request = 1;
inline constexpr uint16_t reply = 2;
}  // namespace arpop

class ArpView {
public:
    static std::optional<ArpView> parse(Bytes pkt) {
        if (pkt.size() < kArpLen) return std::nullopt;
        if (load16(&pkt[0]) != 1 || load16(&pkt[2]) != 0x0800 || pkt[4] != 6 || pkt[5] != 4)
            return std::nullopt;
        ArpView v;
        v.pkt_ = pkt;
        return v;
    }
    uint16_t op() const { return load16(&pkt_[6]); }
    MacAddr sender_mac() const { return MacAddr::from(&pkt_[8]); }
    Ipv4 sender_ip() const { return load32(&pkt_[14]); }
    MacAddr target_mac() const { return MacAddr::from(&pkt_[18]); }
    Ipv4 target_ip() const { return load32(&pkt_[24]); }

private:
    ArpView() = default;
    Bytes pkt_;
};

inline size_t build_arp(uint8_t* p, uint16_t op, const MacAddr& sha, Ipv4 spa, const MacAddr& tha,
                        Ipv4 tpa) {
    store16(p, 1);
    store16(p + 2, 0x0800);
    p[4] = 6;
    p[5] = 4;
    store16(p + 6, op);
    sha.store(p + 8);
    store32(p + 14, spa);
    tha.store(p + 18);
    store32(p + 24, tpa);
    return kArpLen;
}

}  // namespace usernet::wire
