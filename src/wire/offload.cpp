// Checksum and segmentation offload (see offload.hpp).
#include "wire/offload.hpp"

#include <algorithm>
#include <cstring>

#include "wire/checksum.hpp"
#include "wire/ethernet.hpp"

namespace usernet::wire {

namespace {

uint16_t load_native16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

void store_native16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

}  // namespace

bool parse_vnet_hdr(const uint8_t* hdr, size_t frame_len, Offload& out) {
    out = Offload{};
    uint8_t flags = hdr[0];
    uint8_t gso = hdr[1];
    if (flags & ~(vnet::f_needs_csum | vnet::f_data_valid)) return false;
    out.hdr_len = load_native16(hdr + 2);
    out.gso_size = load_native16(hdr + 4);
    out.csum_start = load_native16(hdr + 6);
    out.csum_offset = load_native16(hdr + 8);
    out.csum_valid = (flags & vnet::f_data_valid) != 0;
    if (flags & vnet::f_needs_csum) {
        if (size_t{out.csum_start} + out.csum_offset + 2 > frame_len) return false;
        out.csum_partial = true;
    } else {
        out.csum_start = out.csum_offset = 0;
    }
    switch (gso & ~vnet::gso_ecn) {
    case Offload::gso_none:
        out.gso_size = 0;
        break;
    case Offload::gso_tcp4:
    case Offload::gso_tcp6:
        if (!out.csum_partial || out.gso_size == 0) return false;
        out.gso_type = static_cast<uint8_t>(gso & ~vnet::gso_ecn);
        break;
    default:
        return false;
    }
    return true;
}

void write_vnet_hdr(uint8_t* hdr, const Offload& off) {
    hdr[0] = static_cast<uint8_t>((off.csum_partial ? vnet::f_needs_csum : 0) |
                                  (off.csum_valid ? vnet::f_data_valid : 0));
    hdr[1] = off.gso_type;
    store_native16(hdr + 2, off.hdr_len);
    store_native16(hdr + 4, off.gso_type != Offload::gso_none ? off.gso_size : 0);
    store_native16(hdr + 6, off.csum_partial ? off.csum_start : 0);
    store_native16(hdr + 8, off.csum_partial ? off.csum_offset : 0);
}

bool complete_checksum(MutBytes frame, const Offload& off) {
    if (!off.csum_partial) return true;
    size_t field = size_t{off.csum_start} + off.csum_offset;
    if (field + 2 > frame.size() || off.csum_start >= frame.size()) return false;
    // The field holds the (uncomplemented) pseudo-header sum: summing it
    // with the rest and complementing gives the checksum.
    uint32_t sum = csum_partial(Bytes(frame.data() + off.csum_start, frame.size() - off.csum_start));
    uint16_t c = csum_fold(sum);
    // UDP sends a computed 0 as all ones (RFC 768); for TCP and ICMPv6 the
    // two are the same number in ones' complement.
    store16(&frame[field], c == 0 ? 0xffff : c);
    return true;
}

// The header checks of a GSO frame, shared by validate_offload() and
// plan_tcp_segments(): fills l3, l4, hdrs, payload and v6 of `plan`.
static bool check_tcp_gso(Bytes frame, const Offload& off, TcpSegmentPlan& plan) {
    if (off.gso_type != Offload::gso_tcp4 && off.gso_type != Offload::gso_tcp6) return false;
    if (off.gso_size == 0 || frame.size() < kEthHeaderLen) return false;
    size_t l3 = kEthHeaderLen;
    uint16_t type = load16(&frame[12]);
    if (type == ethertype::vlan) {
        if (frame.size() < kEthHeaderLen + kVlanTagLen) return false;
        l3 += kVlanTagLen;
        type = load16(&frame[16]);
    }
    size_t iphl = 0;
    if (off.gso_type == Offload::gso_tcp4) {
        if (type != ethertype::ipv4 || frame.size() < l3 + 20) return false;
        if ((frame[l3] >> 4) != 4) return false;
        iphl = size_t{frame[l3] & 0x0fu} * 4;
        if (iphl < 20 || frame[l3 + 9] != 6) return false;
        if (load16(&frame[l3 + 6]) & 0x3fff) return false;  // a fragment
        if (size_t{load16(&frame[l3 + 2])} != frame.size() - l3) return false;
        plan.v6 = false;
    } else {
        if (type != ethertype::ipv6 || frame.size() < l3 + 40) return false;
        if ((frame[l3] >> 4) != 6 || frame[l3 + 6] != 6) return false;  // TCP, no extensions
        iphl = 40;
        if (size_t{load16(&frame[l3 + 4])} + 40 != frame.size() - l3) return false;
        plan.v6 = true;
    }
    size_t l4 = l3 + iphl;
    if (frame.size() < l4 + 20) return false;
    size_t tcphl = static_cast<size_t>(frame[l4 + 12] >> 4) * 4;
    if (tcphl < 20 || frame.size() < l4 + tcphl) return false;
    if (off.csum_partial && (off.csum_start != l4 || off.csum_offset != 16)) return false;
    plan.l3 = l3;
    plan.l4 = l4;
    plan.hdrs = l4 + tcphl;
    plan.payload = frame.size() - plan.hdrs;
    return true;
}

bool validate_offload(Bytes frame, const Offload& off) {
    if (off.csum_partial) {
        size_t field = size_t{off.csum_start} + off.csum_offset;
        if (off.csum_start >= frame.size() || field + 2 > frame.size()) return false;
    }
    if (off.gso_type == Offload::gso_none) return true;
    TcpSegmentPlan plan;
    return off.csum_partial && check_tcp_gso(frame, off, plan);
}

bool plan_tcp_segments(Bytes frame, const Offload& off, uint32_t mtu, size_t scratch_len,
                       TcpSegmentPlan& plan) {
    if (!check_tcp_gso(frame, off, plan)) return false;
    size_t l3_overhead = plan.hdrs - plan.l3;
    if (mtu <= l3_overhead) return false;
    plan.piece = std::min<size_t>(off.gso_size, mtu - l3_overhead);
    if (plan.hdrs + plan.piece > scratch_len) return false;
    if (plan.payload == 0) plan.piece = 1;  // one frame, headers only
    // The port's MTU may cut finer than gso_size: the cap holds for the
    // pieces actually made.
    return plan.pieces() <= kMaxGsoSegments;
}

size_t build_tcp_segment(Bytes frame, const TcpSegmentPlan& plan, size_t i, uint8_t* out) {
    size_t first = i * plan.piece;
    size_t len = std::min(plan.piece, plan.payload - std::min(first, plan.payload));
    bool last = first + len >= plan.payload;
    std::memcpy(out, frame.data(), plan.hdrs);
    std::memcpy(out + plan.hdrs, frame.data() + plan.hdrs + first, len);
    uint8_t* ip = out + plan.l3;
    uint8_t* tcp = out + plan.l4;
    size_t tcp_len = plan.hdrs - plan.l4 + len;
    uint32_t pseudo = 0;
    if (!plan.v6) {
        store16(ip + 2, static_cast<uint16_t>(plan.hdrs - plan.l3 + len));
        store16(ip + 4, static_cast<uint16_t>(load16(ip + 4) + i));
        store16(ip + 10, 0);
        store16(ip + 10, csum_fold(csum_partial(Bytes(ip, plan.l4 - plan.l3))));
        pseudo = csum_partial(Bytes(ip + 12, 8));
    } else {
        store16(ip + 4, static_cast<uint16_t>(tcp_len));
        pseudo = csum_partial(Bytes(ip + 8, 32));
    }
    pseudo = (pseudo & 0xffff) + (pseudo >> 16) + 6 + static_cast<uint32_t>(tcp_len);
    store32(tcp + 4, load32(tcp + 4) + static_cast<uint32_t>(first));
    uint8_t flags = tcp[13];
    if (!last) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i != 0) flags &= static_cast<uint8_t>(~kTcpCwr);
    tcp[13] = flags;
    store16(tcp + 16, 0);
    store16(tcp + 16, csum_fold(csum_partial(Bytes(tcp, tcp_len), pseudo)));
    return plan.hdrs + len;
}

}  // namespace usernet::wire
