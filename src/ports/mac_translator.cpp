// MAC translation (see the header for what is rewritten and why).
#include "ports/mac_translator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "wire/arp.hpp"
#include "wire/dhcp4.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/udp.hpp"

namespace usernet::ports {

namespace {

bool same_mac(const uint8_t* p, const wire::MacAddr& m) {
    return std::memcmp(p, m.b.data(), 6) == 0;
}

}  // namespace

void MacTranslator::plan(wire::Bytes frame, bool outbound, const wire::MacAddr& from,
                         const wire::Offload& off, Plan& p) {
    auto eth = wire::EthernetView::parse(frame);
    if (!eth) return;
    const size_t eth_field = outbound ? 6 : 0;
    if (same_mac(&frame[eth_field], from)) p.add(eth_field);
    const size_t l3 = eth->header_len();
    const uint8_t* base = frame.data();

    if (eth->ethertype() == wire::ethertype::arp) {
        auto arp = wire::ArpView::parse(eth->payload());
        if (!arp) return;
        // Sender hardware address at 8, target at 18 (RFC 826).
        if (outbound && arp->sender_mac() == from) {
            p.add(l3 + 8);
            p.arp = true;
        }
        if (arp->target_mac() == from) {
            p.add(l3 + 18);
            p.arp = true;
        }
        return;
    }
    if (eth->ethertype() == wire::ethertype::ipv6) {
        plan_ndp(frame, *eth, from, off, p);
        return;
    }
    if (eth->ethertype() != wire::ethertype::ipv4) return;
    auto ip = wire::Ipv4View::parse(eth->payload());
    if (!ip || ip->protocol() != wire::ipproto::udp || ip->is_fragment()) return;
    auto udp = wire::UdpView::parse(ip->payload());
    if (!udp) return;
    if (outbound ? udp->dst_port() != wire::kDhcp4ServerPort
                 : udp->src_port() != wire::kDhcp4ServerPort)
        return;
    auto dhcp = wire::Dhcp4View::parse(udp->payload());
    if (!dhcp) return;
    if (dhcp->op() != (outbound ? wire::dhcp4op::boot_request : wire::dhcp4op::boot_reply))
        return;
    const size_t udp_off = static_cast<size_t>(udp->segment().data() - base);
    const size_t msg_off = static_cast<size_t>(dhcp->message().data() - base);
    size_t before = p.n_fields;
    // From the guest, whatever MAC a request names is the guest's: a client
    // that keeps the MAC it started with after the NIC's changed (dhclient
    // renews so) still speaks for this one guest, which the LAN knows by
    // the LAN MAC. Toward the guest, only the LAN MAC is rewritten.
    if (auto ch = dhcp->chaddr(); ch && (outbound || *ch == from)) p.add(msg_off + 28);
    wire::Dhcp4OptionIter it = dhcp->options();
    wire::Dhcp4Option o;
    size_t ids = 0;
    while (ids < kMaxClientIds && it.next(o)) {
        if (o.code != wire::dhcp4opt::client_id || o.data.size() != 7 || o.data[0] != 1 ||
            (!outbound && !same_mac(o.data.data() + 1, from)))
            continue;
        p.add(static_cast<size_t>(o.data.data() - base) + 1);
        ids++;
    }
    if (p.n_fields == before) return;
    p.dhcp = true;
    // A checksum of zero means none; a partial one is completed later over
    // the bytes as they will be.
    if (udp->checksum() != 0 && !off.csum_partial) {
        p.l4 = udp_off;
        p.csum = udp_off + 6;
    }
}

void MacTranslator::plan_ndp(wire::Bytes frame, const wire::EthernetView& eth,
                             const wire::MacAddr& from, const wire::Offload& off, Plan& p) {
    auto ip = wire::Ipv6View::parse(eth.payload());
    if (!ip || ip->protocol() != wire::ipproto::icmpv6 || ip->is_fragment()) return;
    auto icmp = wire::Icmp6View::parse(ip->payload());
    if (!icmp) return;
    const uint8_t type = icmp->type();
    if (type < wire::icmp6type::router_solicit || type > wire::icmp6type::redirect) return;
    // Every option's length checked before the walk below relies on it.
    const wire::Bytes opts = icmp->body();
    if (!wire::NdpOptions::parse(opts)) return;
    const size_t opts_off = static_cast<size_t>(opts.data() - frame.data());
    size_t before = p.n_fields;
    for (size_t i = 0; i < opts.size() && p.n_fields - before < kMaxLinkLayerOptions;) {
        const size_t len = size_t{opts[i + 1]} * 8;
        if ((opts[i] == wire::ndopt::source_lla || opts[i] == wire::ndopt::target_lla) &&
            len == 8 && same_mac(&opts[i + 2], from))
            p.add(opts_off + i + 2);
        i += len;
    }
    if (p.n_fields == before) return;
    p.ndp = true;
    if (off.csum_partial) return;  // completed later over the new bytes
    p.l4 = static_cast<size_t>(icmp->message().data() - frame.data());
    p.csum = p.l4 + 2;
}

void MacTranslator::apply(uint8_t* buf, const Plan& p, const wire::MacAddr& to) {
    // RFC 1624 eqn. 3 (HC' = ~(~HC + ~m + m')), a byte at a time: a byte at
    // an even offset from the UDP or ICMPv6 header is the high half of its
    // word.
    uint32_t acc = p.l4 ? static_cast<uint16_t>(~wire::load16(buf + p.csum)) : 0;
    for (size_t f = 0; f < p.n_fields; f++) {
        uint8_t* field = buf + p.fields[f];
        if (p.l4 && p.fields[f] > p.l4) {
            for (size_t i = 0; i < 6; i++) {
                bool high = ((p.fields[f] + i - p.l4) & 1) == 0;
                uint32_t old_w = high ? uint32_t{field[i]} << 8 : field[i];
                uint32_t new_w = high ? uint32_t{to.b[i]} << 8 : to.b[i];
                acc += (0xffffu - old_w) + new_w;
            }
        }
        to.store(field);
    }
    if (!p.l4) return;
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    // 0xffff for a zero result: UDP's "no checksum" is 0, and to ICMPv6
    // both mean the same one's complement zero.
    uint16_t c = static_cast<uint16_t>(~acc);
    wire::store16(buf + p.csum, c == 0 ? 0xffff : c);
}

MacTranslator::Learned MacTranslator::to_lan(wire::MutBytes frame, const wire::Offload& off) {
    if (frame.size() < wire::kEthHeaderLen) return Learned::same;
    wire::MacAddr src = wire::MacAddr::from(&frame[6]);
    // The switch refuses these; they teach nothing.
    if (src.is_multicast() || src.is_zero()) return Learned::same;
    Learned learned = Learned::same;
    if (!guest_mac_) {
        learned = Learned::first;
    } else if (*guest_mac_ != src) {
        learned = Learned::changed;
        stats_.guest_mac_changes++;
    }
    guest_mac_ = src;
    if (src == lan_mac_) return learned;  // the guest uses the LAN MAC itself
    Plan p;
    plan(frame, true, src, off, p);
    if (p.n_fields == 0) return learned;
    apply(frame.data(), p, lan_mac_);
    stats_.to_lan++;
    stats_.arp += p.arp;
    stats_.dhcp += p.dhcp;
    stats_.ndp += p.ndp;
    return learned;
}

MacTranslator::Learned MacTranslator::set_guest_mac(const wire::MacAddr& mac) {
    if (mac.is_multicast() || mac.is_zero() || (guest_mac_ && *guest_mac_ == mac))
        return Learned::same;
    const Learned learned = guest_mac_ ? Learned::changed : Learned::first;
    if (guest_mac_) stats_.guest_mac_changes++;
    guest_mac_ = mac;
    return learned;
}

MacTranslator::Out MacTranslator::to_guest(wire::Bytes frame, const wire::Offload& off) {
    if (!guest_mac_ || *guest_mac_ == lan_mac_) return {frame, {}};
    Plan p;
    plan(frame, false, lan_mac_, off, p);
    if (p.n_fields == 0) return {frame, {}};
    if (p.end > kHeadCapacity) {
        // Keep the fields that fit; the checksum is in front of them all.
        Plan fit = p;
        fit.n_fields = 0;
        fit.end = 0;
        for (size_t f = 0; f < p.n_fields; f++)
            if (p.fields[f] + 6 <= kHeadCapacity) fit.add(p.fields[f]);
        fit.end = std::max(fit.end, fit.l4 ? fit.csum + 2 : 0);
        p = fit;
        stats_.dhcp_too_long++;
    }
    std::memcpy(head_.data(), frame.data(), p.end);
    apply(head_.data(), p, *guest_mac_);
    stats_.to_guest++;
    stats_.arp += p.arp;
    stats_.dhcp += p.dhcp;
    stats_.ndp += p.ndp;
    return {wire::Bytes(head_.data(), p.end), frame.subspan(p.end)};
}

void log_guest_mac(const std::string& port, sw::PortId id, MacTranslator::Learned learned,
                   const MacTranslator& x) {
    if (learned == MacTranslator::Learned::same || !x.guest_mac()) return;
    if (learned == MacTranslator::Learned::first) {
        spdlog::info("{} (port {}): the guest uses MAC {}, the LAN sees {}", port, id,
                     x.guest_mac()->to_string(), x.lan_mac().to_string());
        return;
    }
    auto level = x.stats().guest_mac_changes <= kLoggedChanges ? spdlog::level::info
                                                               : spdlog::level::debug;
    spdlog::log(level, "{} (port {}): the guest's MAC is now {}; the LAN still sees {}", port, id,
                x.guest_mac()->to_string(), x.lan_mac().to_string());
}

}  // namespace usernet::ports
