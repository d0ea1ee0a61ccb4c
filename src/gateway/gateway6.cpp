// The gateway's IPv6 half: neighbor discovery for its own addresses (RFC
// 4861), router advertisements with the prefix for SLAAC (RFC 4862), the
// MTU, and DNS (RFC 8106), ICMPv6 echo and time exceeded (RFC 4443), the
// IPv6 source guard and neighbor table, and the framing of IPv6 packets
// toward guests. See gateway.hpp for the theory of operation.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "gateway/dhcp6_server.hpp"
#include "gateway/dns_forwarder.hpp"
#include "gateway/tftp_server.hpp"
#include "gateway/gateway.hpp"
#include "gateway/log_format.hpp"
#include "wire/dns.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv6.hpp"
#include "wire/tftp.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {

using wire::store16;
using wire::store32;

namespace {

constexpr size_t kEthIpv6Len = wire::kEthHeaderLen + wire::kIpv6HeaderLen;
// RFC 4861 6.1, 7.1: neighbor discovery comes from the link itself.
constexpr uint8_t kNdHopLimit = 255;
// An ICMPv6 error quotes as much of the offending packet as fits in the
// minimum MTU (RFC 4443 2.4 (c)).
constexpr size_t kIcmp6ErrorMax = 1280 - wire::kIpv6HeaderLen;

const wire::IpAddr kAllNodes = *wire::IpAddr::parse("ff02::1");
const wire::IpAddr kAllRouters = *wire::IpAddr::parse("ff02::2");
// All_DHCP_Relay_Agents_and_Servers (RFC 8415 7.1).
const wire::IpAddr kAllDhcp = *wire::IpAddr::parse("ff02::1:2");

bool is_nd_type(uint8_t t) {
    return t >= wire::icmp6type::router_solicit && t <= wire::icmp6type::redirect;
}

}  // namespace

// --- input -------------------------------------------------------------------

void Gateway::handle_ipv6(wire::Bytes payload, const wire::MacAddr& dst_mac,
                          const wire::MacAddr& src_mac, const sw::FrameMeta& meta) {
    if (!cfg_.ipv6) {
        stats_.dropped_unsupported++;
        return;
    }
    auto ip = wire::Ipv6View::parse(payload);
    if (!ip) {
        stats_.dropped_malformed++;
        spdlog::debug("ipv6: dropped a malformed packet from {}", src_mac);
        return;
    }
    if (ip->discard()) {
        // An option we must not skip, a routing header naming hops after
        // us, or a hop-by-hop header out of place: none can be honoured by
        // a translating gateway.
        stats_.dropped_unsupported++;
        // RFC 8200 4.2 and 4.4 (RFC 5095 for type 0): say why, to a
        // packet for us, or to a group every router is in.
        const wire::IpAddr d = ip->dst_addr();
        const bool ours = dst_mac == cfg_.gw_mac && !wire::is_v6_multicast(d);
        const bool all = d == kAllNodes || d == kAllRouters;
        if (auto pp = ip->problem(); pp && (ours || (all && pp->code == 2)))
            send_param_problem6(*ip, *pp);
        return;
    }
    if (ip->is_fragment()) {
        // RFC 8200 4.5: a fragment that is not the last must carry a
        // multiple of 8 bytes, and none may end past 65535; say which
        // field is wrong.
        const size_t data = ip->total_len() - ip->header_len();
        const size_t frag_hdr = ip->header_len() - 8;
        std::optional<wire::Ipv6Problem> bad;
        if (ip->more_fragments() && data % 8 != 0) bad = wire::Ipv6Problem{0, 4};
        else if (size_t{ip->frag_offset()} * 8 + data > 65535)
            bad = wire::Ipv6Problem{0, static_cast<uint32_t>(frag_hdr + 2)};
        if (bad) {
            stats_.dropped_malformed++;
            if (dst_mac == cfg_.gw_mac && !wire::is_v6_multicast(ip->dst_addr()))
                send_param_problem6(*ip, *bad);
            return;
        }
        auto whole = reasm_.add(*ip, meta.ingress, loop_.now());
        arm_reassembly_timer();
        if (!whole) return;
        sw::FrameMeta m = meta;
        m.off = wire::Offload{};
        handle_ipv6(*whole, dst_mac, src_mac, m);
        return;
    }
    const wire::IpAddr src = ip->src_addr();
    const wire::IpAddr dst = ip->dst_addr();
    if (wire::is_v6_multicast(src) || src.is_v4() || src.is_loopback() || is_own_v6(src)) {
        stats_.dropped_martian++;
        spdlog::debug("ipv6: dropped a packet from impossible source {}", src);
        return;
    }
    const bool to_us_l2 = dst_mac == cfg_.gw_mac;
    const bool mcast = wire::is_v6_multicast(dst);
    const uint8_t proto = ip->protocol();

    if (proto == wire::ipproto::icmpv6 && (is_own_v6(dst) || mcast)) {
        auto icmp = wire::Icmp6View::parse(ip->payload());
        if (!icmp || (!meta.off.trusted() && !icmp->checksum_ok(src, dst))) {
            stats_.dropped_malformed++;
            spdlog::debug("icmpv6: bad message from {}", src);
            return;
        }
        const uint8_t type = icmp->type();
        if (is_nd_type(type)) {
            // RFC 4861 6.1.1, 7.1.1: hop limit 255, code 0, valid options.
            auto opts = wire::NdpOptions::parse(icmp->body());
            if (ip->hop_limit() != kNdHopLimit || icmp->code() != 0 || !opts) {
                stats_.dropped_malformed++;
                return;
            }
            if (type == wire::icmp6type::neighbor_solicit) {
                const wire::IpAddr target = icmp->nd_target();
                if (!is_own_v6(target) || wire::is_v6_multicast(target)) {
                    stats_.dropped_not_for_us++;
                    return;
                }
                if (src.is_unspecified()) {
                    // Somebody's duplicate address detection for one of
                    // ours: defend it (RFC 4862 5.4.3), to all nodes.
                    if (opts->find(wire::ndopt::source_lla)) {
                        stats_.dropped_malformed++;  // RFC 4861 7.1.1
                        return;
                    }
                    send_neighbor_advert(target, kAllNodes, wire::multicast_mac(kAllNodes),
                                         false);
                } else {
                    send_neighbor_advert(target, src, src_mac, true);
                }
                return;
            }
            if (type == wire::icmp6type::router_solicit) {
                if (src.is_unspecified() && opts->find(wire::ndopt::source_lla)) {
                    stats_.dropped_malformed++;  // RFC 4861 6.1.1
                    return;
                }
                if (!rs_allowed(meta.ingress)) return;
                if (src.is_unspecified())
                    send_router_advert(meta.ingress, wire::multicast_mac(kAllNodes), kAllNodes);
                else
                    send_router_advert(meta.ingress, src_mac, src);
                return;
            }
            // Advertisements from guests (the guard let only their own
            // neighbor advertisements through): nothing to do here, the
            // guard learned the sender.
            stats_.dropped_not_for_us++;
            return;
        }
        // An echo to one of ours, or to all nodes or all routers (we are
        // both): RFC 4443 4.2 asks for the reply to a multicast echo from
        // a unicast address of ours.
        const bool all = dst == kAllNodes || dst == kAllRouters;
        if (type == wire::icmp6type::echo_request && ((is_own_v6(dst) && to_us_l2) || all)) {
            if (icmp->code() != 0 || src.is_unspecified()) {
                stats_.dropped_malformed++;
                return;
            }
            wire::Bytes msg = icmp->message();
            if (msg.size() > tx_l4_capacity()) {
                stats_.dropped_too_big++;
                return;
            }
            const wire::IpAddr from =
                !all ? dst : wire::is_v6_link_local(src) ? link_local_ : cfg_.gateway6;
            uint8_t* l4 = tx_l4();
            std::memcpy(l4, msg.data(), msg.size());
            l4[0] = wire::icmp6type::echo_reply;
            wire::finish_icmp6(l4, msg.size(), from, src);
            if (send_ip6(from, src, wire::ipproto::icmpv6, msg.size(), 64, nullptr))
                stats_.icmp_echo_replies++;
            return;
        }
    }
    if (proto == wire::ipproto::udp && dst == kAllDhcp) {
        auto udp = wire::UdpView::parse(ip->payload());
        if (!udp || (!meta.off.trusted() && !udp->checksum_ok(src, dst)) || src.is_unspecified()) {
            stats_.dropped_malformed++;
            return;
        }
        if (udp->dst_port() != wire::kDhcp6ServerPort) {
            stats_.dropped_not_for_us++;
            return;
        }
        if (dhcp_allowed(meta.ingress))
            dhcp6_->handle(udp->payload(), src, udp->src_port(), src_mac, meta.ingress);
        return;
    }
    if (proto == wire::ipproto::udp && to_us_l2 && !src.is_unspecified() &&
        ((cfg_.dns_service && dst == cfg_.dns6) ||
         (tftp_ && (dst == cfg_.gateway6 || dst == link_local_)))) {
        // The gateway's own UDP services: DNS at dns6, TFTP at gateway6 and
        // at the gateway's link-local address (the guest's default router,
        // which the NAT would otherwise take to the host's [::1]:69).
        auto udp = wire::UdpView::parse(ip->payload());
        const bool dns = dst == cfg_.dns6;
        if (udp && udp->dst_port() == (dns ? wire::kDnsPort : wire::kTftpPort)) {
            if (!meta.off.trusted() && !udp->checksum_ok(src, dst)) {
                stats_.dropped_malformed++;
                spdlog::debug("udp: bad checksum from {}", src);
                return;
            }
            if (dns)
                dns_->from_guest(DnsGuestKey{meta.ingress}, src, udp->src_port(), udp->payload());
            else
                tftp_->handle(dst, src, udp->src_port(), udp->payload(), meta.ingress);
            return;
        }
    }
    if (mcast || !to_us_l2) {
        // MLD reports, other groups, and unicast flooded to every port on
        // its way to another guest.
        stats_.dropped_not_for_us++;
        return;
    }
    if (src.is_unspecified() || dst.is_v4() || dst.is_unspecified()) {
        stats_.dropped_martian++;
        return;
    }
    if (is_own_v6(dst) && proto != wire::ipproto::tcp && proto != wire::ipproto::udp &&
        proto != wire::ipproto::icmpv6) {
        // The gateway is the destination and knows no such next header
        // (RFC 8200 4: Parameter Problem, code 1, at the byte naming it);
        // "no next header" ends the packet quietly.
        stats_.dropped_unsupported++;
        if (proto != wire::ipproto::ipv6_nonxt)
            send_param_problem6(*ip, {1, static_cast<uint32_t>(ip->next_header_offset())});
        return;
    }
    if (!is_own_v6(dst) && ip->hop_limit() <= 1) {
        stats_.dropped_ttl++;
        send_time_exceeded6(*ip);
        return;
    }
    if (!sink_) {
        stats_.dropped_unsupported++;
        return;
    }
    route(src, dst, proto, ip->hop_limit(), ip->packet(), ip->payload(), src_mac, meta);
}

void Gateway::send_time_exceeded6(const wire::Ipv6View& ip, uint8_t code) {
    send_icmp6_error(ip, wire::icmp6type::time_exceeded, code, 0, cfg_.gateway6);
}

void Gateway::send_param_problem6(const wire::Ipv6View& ip, const wire::Ipv6Problem& pp) {
    const wire::IpAddr dst = ip.dst_addr();
    stats_.icmp6_param_problems++;
    send_icmp6_error(ip, wire::icmp6type::param_problem, pp.code, pp.pointer,
                     is_own_v6(dst) ? dst : cfg_.gateway6);
}

// An ICMPv6 error about `ip` to its source (RFC 4443 2.4): as much of the
// packet as fits in the minimum MTU, rate-limited per source.
void Gateway::send_icmp6_error(const wire::Ipv6View& ip, uint8_t type, uint8_t code,
                               uint32_t param, const wire::IpAddr& from) {
    const wire::IpAddr to = ip.src_addr();
    if (to.is_unspecified() || wire::is_v6_multicast(to) || to.is_v4() || to.is_loopback() ||
        is_own_v6(to))
        return;
    // Never an error about an error (RFC 4443 2.4 (e)).
    if (ip.protocol() == wire::ipproto::icmpv6) {
        auto icmp = wire::Icmp6View::parse(ip.payload());
        if (!icmp || wire::is_icmp6_error(icmp->type())) return;
    }
    if (!icmp_error_allowed(to)) {
        stats_.icmp_rate_limited++;
        return;
    }
    const size_t quote = std::min(ip.total_len(), kIcmp6ErrorMax - 8);
    uint8_t* l4 = tx_l4();
    l4[0] = type;
    l4[1] = code;
    store32(l4 + 4, param);
    std::memcpy(l4 + 8, ip.packet().data(), quote);
    wire::finish_icmp6(l4, 8 + quote, from, to);
    send_ip6(from, to, wire::ipproto::icmpv6, 8 + quote, 64, nullptr);
}

// --- neighbor discovery: what the gateway sends --------------------------------

void Gateway::send_nd(uint8_t type, uint8_t flags, const wire::IpAddr& target,
                      const wire::IpAddr& from, const wire::IpAddr& to,
                      const wire::MacAddr& to_mac) {
    // Both messages: header, flags, target, and our link-layer address
    // (target's in an advertisement, source's in a solicitation).
    uint8_t* p = nd_buf_.data();
    uint8_t* icmp = p + kEthIpv6Len;
    constexpr size_t kLen = wire::kNdFixedLen + 8;
    std::memset(icmp, 0, kLen);
    icmp[0] = type;
    icmp[4] = flags;
    std::memcpy(icmp + 8, target.b.data(), 16);
    icmp[24] = type == wire::icmp6type::neighbor_advert ? wire::ndopt::target_lla
                                                         : wire::ndopt::source_lla;
    icmp[25] = 1;
    cfg_.gw_mac.store(icmp + 26);
    wire::finish_icmp6(icmp, kLen, from, to);
    wire::build_ipv6(p + wire::kEthHeaderLen, from, to, wire::ipproto::icmpv6, kLen, kNdHopLimit);
    wire::build_ethernet(p, to_mac, cfg_.gw_mac, wire::ethertype::ipv6);
    sw_.input(id(), wire::Bytes(p, kEthIpv6Len + kLen));
}

void Gateway::send_neighbor_advert(const wire::IpAddr& target, const wire::IpAddr& to,
                                   const wire::MacAddr& to_mac, bool solicited) {
    const uint8_t flags = static_cast<uint8_t>(0x80 | (solicited ? 0x40 : 0) | 0x20);  // R, S, O
    stats_.neighbor_adverts++;
    send_nd(wire::icmp6type::neighbor_advert, flags, target, target, to, to_mac);
}

void Gateway::send_neighbor_solicit(const wire::IpAddr& target) {
    const core::Millis now = loop_.now();
    NsAttempt& a = ns_attempts_[wire::IpAddrHash{}(target) & (ns_attempts_.size() - 1)];
    if (a.ip == target && now - a.at < kArpRetryMs) return;
    a.ip = target;
    a.at = now;
    const wire::IpAddr group = wire::solicited_node(target);
    const wire::IpAddr& from = wire::is_v6_link_local(target) ? link_local_ : cfg_.gateway6;
    stats_.neighbor_solicits++;
    send_nd(wire::icmp6type::neighbor_solicit, 0, target, from, group, wire::multicast_mac(group));
}

void Gateway::send_router_advert(sw::PortId port, const wire::MacAddr& to_mac,
                                 const wire::IpAddr& to) {
    const sw::Port* dest = sw_.port(port);
    if (!dest || port == id()) return;
    uint8_t* p = nd_buf_.data();
    uint8_t* ra = p + kEthIpv6Len;
    const size_t cap = nd_buf_.size() - kEthIpv6Len;
    std::memset(ra, 0, cap);
    ra[0] = wire::icmp6type::router_advert;
    ra[4] = 64;  // the hop limit guests should use
    ra[5] = 0x40;  // O: DNS by DHCPv6 too (M clear: addresses by SLAAC)
    store16(ra + 6, static_cast<uint16_t>(std::min<uint32_t>(cfg_.ra_router_lifetime_s, 9000)));
    size_t n = 16;
    // Source link-layer address (RFC 4861 4.6.1).
    ra[n] = wire::ndopt::source_lla;
    ra[n + 1] = 1;
    cfg_.gw_mac.store(ra + n + 2);
    n += 8;
    // MTU (4.6.4): the attachment's own, if IPv6 can use it (a host
    // ignores one below 1280, RFC 4861 6.3.4: leave it out).
    if (dest->mtu() >= wire::kIpv6MinMtu) {
        ra[n] = wire::ndopt::mtu;
        ra[n + 1] = 1;
        store32(ra + n + 4, dest->mtu());
        n += 8;
    }
    // Prefix information (4.6.2): on-link and autonomous.
    ra[n] = wire::ndopt::prefix_info;
    ra[n + 1] = 4;
    ra[n + 2] = cfg_.prefix6_len;
    ra[n + 3] = 0xc0;
    store32(ra + n + 4, cfg_.ra_valid_lifetime_s);
    store32(ra + n + 8, std::min(cfg_.ra_preferred_lifetime_s, cfg_.ra_valid_lifetime_s));
    std::memcpy(ra + n + 16, cfg_.prefix6.b.data(), 16);
    n += 32;
    // Recursive DNS server (RFC 8106 5.1).
    ra[n] = wire::ndopt::rdnss;
    ra[n + 1] = 3;
    store32(ra + n + 4, cfg_.ra_router_lifetime_s);
    std::memcpy(ra + n + 8, cfg_.dns6.b.data(), 16);
    n += 24;
    // DNS search list (5.2), when there is one (the domain at least).
    if (const size_t len = search_wire_.size()) {
        size_t opt = (8 + len + 7) / 8 * 8;
        if (n + opt <= cap) {
            std::memset(ra + n, 0, opt);
            ra[n] = wire::ndopt::dnssl;
            ra[n + 1] = static_cast<uint8_t>(opt / 8);
            store32(ra + n + 4, cfg_.ra_router_lifetime_s);
            std::memcpy(ra + n + 8, search_wire_.data(), len);
            n += opt;
        }
    }
    wire::finish_icmp6(ra, n, link_local_, to);
    wire::build_ipv6(p + wire::kEthHeaderLen, link_local_, to, wire::ipproto::icmpv6, n,
                     kNdHopLimit);
    wire::build_ethernet(p, to_mac, cfg_.gw_mac, wire::ethertype::ipv6);
    stats_.router_adverts++;
    sw_.input_to(id(), port, wire::Bytes(p, kEthIpv6Len + n));
}

void Gateway::advertise_to_all() {
    if (!cfg_.ipv6) return;
    sw_.for_each_port([&](sw::Port& port) {
        if (port.id() != id())
            send_router_advert(port.id(), wire::multicast_mac(kAllNodes), kAllNodes);
    });
    // Spread over [interval/2, interval] so that many daemons' do not
    // line up (RFC 4861 6.2.4 randomises the same way); the first three
    // at most 16 s apart (MAX_INITIAL_RTR_ADVERT_INTERVAL), so that a
    // guest that missed the first hears another soon.
    core::Millis base = core::Millis{cfg_.ra_interval_s} * 1000;
    if (initial_ras_ < kInitialRas && ++initial_ras_ < kInitialRas) {
        base = std::min<core::Millis>(base, kInitialRaIntervalMs);
    }
    loop_.arm(ra_timer_, base / 2 + static_cast<core::Millis>(loop_.now() * 2654435761u) % (base / 2 + 1));
}

bool Gateway::rs_allowed(sw::PortId port) {
    if (port == sw::kNoPort) return true;
    while (rs_budget_.size() <= port) rs_budget_.emplace_back(kRsBurst, kRsPerSecond);
    if (rs_budget_[port].take(loop_.now())) return true;
    stats_.dropped_rate++;
    return false;
}

// --- output ------------------------------------------------------------------

bool Gateway::send_ip6(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto,
                       size_t l4_len, uint8_t hop_limit, const wire::Offload* off, size_t at) {
    if (!cfg_.ipv6 || at > tx_l4_capacity() || l4_len > tx_l4_capacity() - at ||
        l4_len > 65535) {
        stats_.dropped_too_big++;
        return false;
    }
    wire::MacAddr mac;
    if (wire::is_v6_multicast(dst)) {
        mac = wire::multicast_mac(dst);
    } else {
        const Neighbor6* n = live_neighbor6(dst);
        if (!n) {
            if ((cfg_.in_prefix6(dst) || wire::is_v6_link_local(dst)) && !is_own_v6(dst)) {
                send_neighbor_solicit(dst);
                if ((!off || !off->any()) && hold(src, dst, proto, to_front(at, l4_len), hop_limit))
                    return true;
            }
            stats_.dropped_no_neighbor++;
            return false;
        }
        size_t per_frame = off && off->gso_type != wire::Offload::gso_none
                               ? std::min<size_t>(l4_len, off->hdr_len + size_t{off->gso_size})
                               : l4_len;
        if (per_frame + wire::kIpv6HeaderLen > n->mtu) {
            if (!off || !off->any())
                return send_fragments6(src, dst, proto, to_front(at, l4_len), hop_limit, n->mac,
                                       n->mtu);
            stats_.dropped_too_big++;
            return false;
        }
        mac = n->mac;
    }
    uint8_t* l4 = tx_l4() + at;
    uint8_t* iph = l4 - wire::kIpv6HeaderLen;
    uint8_t* eth = iph - wire::kEthHeaderLen;
    wire::build_ipv6(iph, src, dst, proto, l4_len, hop_limit);
    wire::build_ethernet(eth, mac, cfg_.gw_mac, wire::ethertype::ipv6);
    const size_t eth_off = static_cast<size_t>(eth - tx_.data());
    const size_t len = kEthIpv6Len + l4_len;  // always over the 60-byte minimum
    if (off) {
        constexpr uint16_t kL4 = static_cast<uint16_t>(kEthIpv6Len);
        wire::Offload o = *off;
        o.csum_start = static_cast<uint16_t>(o.csum_start + kL4);
        o.hdr_len = static_cast<uint16_t>(o.hdr_len + kL4);
        if (o.gso_type != wire::Offload::gso_none && l4_len <= off->hdr_len + size_t{o.gso_size}) {
            o.gso_type = wire::Offload::gso_none;
            o.gso_size = 0;
        }
        sw_.input(id(), wire::Bytes(tx_.data() + eth_off, len), o);
        return true;
    }
    send_frame(eth_off, len);
    return true;
}

// As send_fragments4, with a fragment header in each (RFC 8200 4.5).
bool Gateway::send_fragments6(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto,
                              size_t l4_len, uint8_t hop_limit, const wire::MacAddr& mac,
                              uint32_t mtu) {
    constexpr size_t kFragHdr = 8;
    const size_t over = wire::kIpv6HeaderLen + kFragHdr;
    const size_t chunk = mtu > over ? (mtu - over) & ~size_t{7} : 0;
    if (chunk < 8) {
        stats_.dropped_too_big++;
        return false;
    }
    if (frag_id6_ == 0) frag_id6_ = static_cast<uint32_t>(loop_.now() * 2654435761u) | 1;
    const uint32_t ident = frag_id6_++;
    uint8_t* l4 = tx_l4();
    for (size_t at = 0; at < l4_len; at += chunk) {
        const size_t n = std::min(chunk, l4_len - at);
        uint8_t* fh = l4 + at - kFragHdr;
        uint8_t* iph = fh - wire::kIpv6HeaderLen;
        uint8_t* eth = iph - wire::kEthHeaderLen;
        wire::build_ipv6(iph, src, dst, wire::ipproto::ipv6_frag, kFragHdr + n, hop_limit);
        fh[0] = proto;
        fh[1] = 0;
        store16(fh + 2, static_cast<uint16_t>(at | (at + n < l4_len ? 1 : 0)));
        store32(fh + 4, ident);
        wire::build_ethernet(eth, mac, cfg_.gw_mac, wire::ethertype::ipv6);
        sw_.input(id(), wire::Bytes(eth, kEthIpv6Len + kFragHdr + n));
        stats_.fragments_sent++;
    }
    return true;
}

// --- the IPv6 source guard ---------------------------------------------------

// A first fragment carries the upper-layer header (RFC 7112 asks it to
// carry the whole header chain): what the guard refuses whole it refuses
// here, since the fragments after it cannot change those first bytes
// (RFC 5722: receivers drop overlapping fragments). Neighbor discovery is
// never fragmented (RFC 6980: receivers must ignore it), so any ND type is
// refused, as is a first fragment whose chain does not reach the upper
// layer (RFC 7113's RA-Guard rule), and a DHCPv6 server's message.
bool Gateway::admit_first_fragment6(const wire::Ipv6View& ip, const wire::MacAddr& mac) {
    const wire::Bytes rest = ip.payload();
    uint8_t next = ip.protocol();
    size_t off = 0;
    for (size_t n = 0;; n++) {
        if (next != wire::ipproto::ipv6_dstopts && next != wire::ipproto::ipv6_route &&
            next != wire::ipproto::ah)
            break;
        if (n == wire::kMaxExtHeaders || rest.size() - off < 8) {
            stats_.dropped_malformed++;
            spdlog::debug("guard: {} sent a first fragment without its upper-layer header", mac);
            return false;
        }
        const size_t len = next == wire::ipproto::ah ? (size_t{rest[off + 1]} + 2) * 4
                                                     : (size_t{rest[off + 1]} + 1) * 8;
        next = rest[off];
        if (len > rest.size() - off) {
            stats_.dropped_malformed++;
            return false;
        }
        off += len;
    }
    const wire::Bytes l4 = rest.subspan(off);
    const bool icmp = next == wire::ipproto::icmpv6;
    const bool udp = next == wire::ipproto::udp;
    if ((icmp && l4.size() < 4) || (udp && l4.size() < wire::kUdpHeaderLen) ||
        next == wire::ipproto::ipv6_hopopts || next == wire::ipproto::ipv6_frag) {
        stats_.dropped_malformed++;
        spdlog::debug("guard: {} sent a first fragment without its upper-layer header", mac);
        return false;
    }
    if (icmp && is_nd_type(l4[0])) {  // redirects included
        stats_.dropped_spoofed++;
        spdlog::debug("guard: {} sent neighbor discovery in fragments", mac);
        return false;
    }
    if (udp && cfg_.ipv6 && wire::load16(l4.data()) == wire::kDhcp6ServerPort &&
        wire::load16(l4.data() + 2) == wire::kDhcp6ClientPort) {
        stats_.dropped_spoofed++;
        spdlog::debug("guard: {} sent a DHCPv6 server's message in fragments", mac);
        return false;
    }
    return true;
}

bool Gateway::admit6(sw::PortId from, const wire::MacAddr& mac, bool to_gateway,
                     wire::Bytes payload) {
    // What the guard cannot read it cannot vouch for: a packet the parser
    // refuses (more extension headers than it walks, say) could still be
    // one a receiver takes, a router advertisement among them. So could
    // what follows a hop-by-hop header out of place, where the walk stops;
    // only the gateway, which answers it with a Parameter Problem, gets it.
    auto ip = wire::Ipv6View::parse(payload);
    if (!ip || (ip->misplaced_hop_by_hop() && !to_gateway)) {
        stats_.dropped_malformed++;
        spdlog::debug("guard: {} sent an IPv6 packet the guard cannot read", mac);
        return false;
    }
    const wire::IpAddr src = ip->src_addr();
    if (ip->is_fragment() && ip->frag_offset() == 0 && !admit_first_fragment6(*ip, mac))
        return false;
    uint8_t icmp_type = 0;
    if (ip->protocol() == wire::ipproto::icmpv6 && !ip->is_fragment()) {
        if (auto icmp = wire::Icmp6View::parse(ip->payload())) {
            icmp_type = icmp->type();
            auto refuse = [&](const char* why) {
                stats_.dropped_spoofed++;
                spdlog::debug("guard: {} sent {}", mac, why);
                return false;
            };
            // No guest is a router, whether the gateway speaks IPv6 or not
            // (a rogue router on a LAN without IPv6 draws the guests'
            // IPv6 traffic to itself).
            if (icmp_type == wire::icmp6type::router_advert)
                return refuse("a router advertisement");
            if (icmp_type == wire::icmp6type::redirect) return refuse("a redirect");
            if (!cfg_.ipv6) return true;  // plain L2 between guests otherwise
            if (is_nd_type(icmp_type)) {
                auto opts = wire::NdpOptions::parse(icmp->body());
                if (!opts) return refuse("neighbor discovery with unreadable options");
                for (uint8_t t : {wire::ndopt::source_lla, wire::ndopt::target_lla}) {
                    auto lla = opts->lla(t);
                    if (opts->find(t) && (!lla || *lla != mac))
                        return refuse("a link-layer address option not its own");
                }
                if (icmp_type == wire::icmp6type::neighbor_advert &&
                    (icmp->nd_target() != src || src.is_unspecified()) &&
                    !claim6(from, mac, icmp->nd_target()))
                    return false;
            }
        }
    }
    if (!cfg_.ipv6) return true;  // plain L2 between guests; the gateway ignores it
    if (ip->protocol() == wire::ipproto::udp && !ip->is_fragment()) {
        // DHCP snooping, as for IPv4: the gateway is the DHCPv6 server.
        auto udp = wire::UdpView::parse(ip->payload());
        if (udp && udp->src_port() == wire::kDhcp6ServerPort &&
            udp->dst_port() == wire::kDhcp6ClientPort) {
            stats_.dropped_spoofed++;
            spdlog::debug("guard: {} sent a DHCPv6 server's message", mac);
            return false;
        }
    }
    if (src.is_unspecified()) {
        // An interface without an address yet: its duplicate address
        // detection, router solicitations and MLD reports (RFC 4862 5.4.2,
        // RFC 4861 6.3.7, RFC 3810 5.2.13).
        const bool ok = icmp_type == wire::icmp6type::neighbor_solicit ||
                        icmp_type == wire::icmp6type::router_solicit ||
                        icmp_type == wire::icmp6type::mld2_report;
        if (!ok || !wire::is_v6_multicast(ip->dst_addr())) {
            stats_.dropped_spoofed++;
            return false;
        }
        if (icmp_type == wire::icmp6type::neighbor_solicit) {
            // The address it is about to use becomes its binding, first
            // come (as FCFS SAVI does, RFC 6620): port forwards can reach
            // a guest before it has sent anything from it. An address
            // another guest holds, however idle, stays that guest's: the
            // probe passes, the holder defends it (its advertisement comes
            // from the address, which is still its own) and the newcomer's
            // detection fails, as RFC 4862 5.4 means it to. If nobody
            // defends, the newcomer takes the address when it first sends
            // from it (claim6, after the hold time).
            auto icmp = wire::Icmp6View::parse(ip->payload());
            const wire::IpAddr target = icmp->nd_target();
            auto held = neighbors6_.find(target);
            if (may_learn6(target, mac) && (held == neighbors6_.end() || held->second.mac == mac))
                claim6(from, mac, target);
        }
        return true;
    }
    return claim6(from, mac, src);
}

bool Gateway::may_learn6(const wire::IpAddr& ip, const wire::MacAddr& mac) const {
    if (ip.is_v4() || wire::is_v6_multicast(ip) || is_own_v6(ip)) return false;
    if (!wire::is_v6_link_local(ip) && (!cfg_.in_prefix6(ip) || ip == cfg_.prefix6)) return false;
    return !mac.is_multicast() && !mac.is_zero() && mac != cfg_.gw_mac;
}

bool Gateway::claim6(sw::PortId port, const wire::MacAddr& mac, const wire::IpAddr& ip) {
    const core::Millis now = loop_.now();
    auto it = neighbors6_.find(ip);
    if (it != neighbors6_.end() && it->second.mac == mac && it->second.port == port) {
        it->second.seen = now;
        neighbor_known(ip);  // (alive again after an idle spell)
        return true;
    }
    auto refuse = [&](const char* why) {
        stats_.dropped_spoofed++;
        spdlog::debug("guard: {} may not send from {}: {}", mac, ip, why);
        return false;
    };
    if (!may_learn6(ip, mac)) return refuse("not a guest address of this network");
    // The IPv6 partner of an address --config-net gave an attachment is
    // that attachment's, as the IPv4 one is.
    if (!reserved_.empty() && cfg_.in_prefix6(ip))
        for (const Reservation& r : reserved_)
            if (r.port != sw::kNoPort && r.port != port && cfg_.v6_of(r.ip) == ip)
                return refuse("reserved for another attachment");
    if (it != neighbors6_.end() && it->second.mac != mac &&
        now - it->second.seen < cfg_.claim_hold_ms)
        return refuse("another guest holds it");
    // At most kMaxV6PerMac addresses a MAC: the idlest one of its makes room.
    size_t mine = 0;
    auto idlest = neighbors6_.end();
    for (auto e = neighbors6_.begin(); e != neighbors6_.end(); ++e) {
        if (e->second.mac != mac) continue;
        mine++;
        if (idlest == neighbors6_.end() || e->second.seen < idlest->second.seen) idlest = e;
    }
    if (mine >= kMaxV6PerMac && idlest != neighbors6_.end() && idlest != it) {
        neighbors6_.erase(idlest);
        it = neighbors6_.find(ip);
    }
    if (it == neighbors6_.end() && neighbors6_.size() >= kMaxNeighbors6) {
        // The idlest entry nobody used within the hold time goes.
        auto victim = neighbors6_.end();
        for (auto e = neighbors6_.begin(); e != neighbors6_.end(); ++e)
            if (now - e->second.seen >= cfg_.claim_hold_ms &&
                (victim == neighbors6_.end() || e->second.seen < victim->second.seen))
                victim = e;
        if (victim == neighbors6_.end()) return refuse("the neighbor table is full");
        neighbors6_.erase(victim);
    }
    const sw::Port* p = sw_.port(port);
    Neighbor6 n{mac, p ? p->mtu() : 1500, now, port, p && p->takes_offload()};
    if (it == neighbors6_.end()) {
        neighbors6_.emplace(ip, n);
        spdlog::debug("neighbor {} is {} (mtu {})", ip, mac, n.mtu);
    } else {
        it->second = n;
    }
    neighbor_known(ip);
    return true;
}

bool Gateway::address6_taken(const wire::IpAddr& a, const wire::MacAddr& mac) const {
    auto it = neighbors6_.find(a);
    return it != neighbors6_.end() && it->second.mac != mac &&
           loop_.now() - it->second.seen < cfg_.claim_hold_ms;
}

wire::IpAddr Gateway::guest_v6_of(const wire::IpAddr& v4) const {
    if (!cfg_.ipv6) return wire::IpAddr{};
    std::optional<wire::MacAddr> mac;
    if (!v4.is_unspecified()) {
        if (!v4.is_v4()) return wire::IpAddr{};
        const Reservation* r = reservation(v4.as_v4());
        if (r && r->port != sw::kNoPort && r->v6) {
            // --config-net gave that attachment this IPv6 address too.
            return cfg_.v6_of(v4.as_v4());
        }
        auto n = neighbors_.find(v4.as_v4());
        if (n == neighbors_.end()) return wire::IpAddr{};
        mac = n->second.mac;
    }
    const std::pair<const wire::IpAddr, Neighbor6>* best = nullptr;
    for (const auto& e : neighbors6_) {
        if (wire::is_v6_link_local(e.first) || (mac && e.second.mac != *mac)) continue;
        if (!best || e.second.seen > best->second.seen) best = &e;
    }
    return best ? best->first : wire::IpAddr{};
}

const Gateway::Neighbor6* Gateway::live_neighbor6(const wire::IpAddr& ip) const {
    auto it = neighbors6_.find(ip);
    if (it == neighbors6_.end() || loop_.now() - it->second.seen > kNeighborIdleMs)
        return nullptr;
    return &it->second;
}

}  // namespace usernet::gw
