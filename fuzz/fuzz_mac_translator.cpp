// Fuzzes MacTranslator (src/ports/mac_translator.*), both ways.
//
// Input: one mode byte, six bytes of LAN MAC, then a frame. Mode bit 0:
// toward the guest (to_guest, after the translator has learned a guest
// MAC from a fixed frame) instead of from it (to_lan, in place); bit 1: the
// frame's UDP checksum is partial (offload). Checked: nothing outside the
// frame is read or written (ASan, and guard bytes); the frame keeps its
// size; to_lan changes at most the MAC fields and the UDP or ICMPv6
// checksum; to_guest's head is the frame itself or a copy of at most
// kHeadCapacity bytes, and its tail is the rest of the original; a valid
// UDP or ICMPv6 checksum stays valid.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.hpp"
#include "ports/mac_translator.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/udp.hpp"

using namespace usernet;

namespace {

// Whether the frame is an untagged IPv4 UDP datagram whose (nonzero)
// checksum verifies.
bool udp_checksum_verifies(wire::Bytes f) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv4) return false;
    auto ip = wire::Ipv4View::parse(eth->payload());
    if (!ip || ip->protocol() != wire::ipproto::udp || ip->is_fragment()) return false;
    auto udp = wire::UdpView::parse(ip->payload());
    return udp && udp->checksum() != 0 && udp->checksum_ok(ip->src_addr(), ip->dst_addr());
}

// Whether the frame is an untagged IPv6 packet with an ICMPv6 message
// whose checksum verifies.
bool icmp6_checksum_verifies(wire::Bytes f) {
    auto eth = wire::EthernetView::parse(f);
    if (!eth || eth->ethertype() != wire::ethertype::ipv6) return false;
    auto ip = wire::Ipv6View::parse(eth->payload());
    if (!ip || ip->protocol() != wire::ipproto::icmpv6 || ip->is_fragment()) return false;
    auto icmp = wire::Icmp6View::parse(ip->payload());
    return icmp && icmp->checksum_ok(ip->src_addr(), ip->dst_addr());
}

bool checksum_verifies(wire::Bytes f) {
    return udp_checksum_verifies(f) || icmp6_checksum_verifies(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 7) return 0;
    const uint8_t mode = data[0];
    wire::MacAddr lan = wire::MacAddr::from(data + 1);
    if (lan.is_multicast() || lan.is_zero()) return 0;  // refused by the option parser
    const uint8_t* frame = data + 7;
    const size_t len = size - 7;
    wire::Offload off;
    off.csum_partial = (mode & 2) != 0;
    const bool valid_before = !off.csum_partial && checksum_verifies(wire::Bytes(frame, len));

    ports::MacTranslator x(lan);
    if ((mode & 1) == 0) {
        std::vector<uint8_t> buf(frame, frame + len);
        buf.resize(len + 8, 0xa5);  // guard bytes
        x.to_lan(wire::MutBytes(buf.data(), len), off);
        for (size_t i = len; i < buf.size(); i++) FUZZ_CHECK(buf[i] == 0xa5);
        size_t changed = 0;
        for (size_t i = 0; i < len; i++) changed += buf[i] != frame[i];
        constexpr size_t kMaxFields = 3 + std::max(ports::MacTranslator::kMaxClientIds,
                                                   ports::MacTranslator::kMaxLinkLayerOptions);
        FUZZ_CHECK(changed <= kMaxFields * 6 + 2);
        if (valid_before) FUZZ_CHECK(checksum_verifies(wire::Bytes(buf.data(), len)));
        return 0;
    }
    // Learn a guest MAC first: a minimal frame from 02:00:00:00:00:01.
    uint8_t hello[wire::kEthMinFrame] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1,
                                         0x08, 0x06};
    x.to_lan(wire::MutBytes(hello, sizeof hello));
    ports::MacTranslator::Out out = x.to_guest(wire::Bytes(frame, len), off);
    FUZZ_CHECK(out.size() == len);
    if (out.head.data() != frame) {
        FUZZ_CHECK(out.head.size() <= ports::MacTranslator::kHeadCapacity);
        FUZZ_CHECK(out.tail.empty() || out.tail.data() == frame + out.head.size());
    } else {
        FUZZ_CHECK(out.tail.empty() && out.head.size() == len);
    }
    std::vector<uint8_t> joined(out.head.begin(), out.head.end());
    joined.insert(joined.end(), out.tail.begin(), out.tail.end());
    if (valid_before) FUZZ_CHECK(checksum_verifies(joined));
    return 0;
}
