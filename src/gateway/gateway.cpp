// The gateway port: ARP (RFC 826), IPv4 input checks (RFC 1122 3.2.1),
// ICMP echo of its own addresses and time exceeded (RFC 792), the neighbor
// table, and the framing of everything sent toward guests. See gateway.hpp
// for the theory of operation.
#include "gateway/gateway.hpp"

#include <spdlog/spdlog.h>

#include "gateway/log_format.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "gateway/dhcp4_server.hpp"
#include "gateway/dhcp6_server.hpp"
#include "gateway/dns_forwarder.hpp"
#include "gateway/dns_tcp.hpp"
#include "gateway/tftp_server.hpp"
#include "wire/arp.hpp"
#include "wire/dhcp4.hpp"
#include "wire/dns.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/tftp.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {

namespace {

constexpr size_t kEthIpv4Len = wire::kEthHeaderLen + wire::kIpv4HeaderLen;
constexpr size_t kMaxIpv4Len = 65535;

bool is_multicast_v4(wire::Ipv4 a) { return (a >> 28) == 0xe; }

bool is_icmp_error(uint8_t type) {
    return type == wire::icmptype::dest_unreach || type == wire::icmptype::time_exceeded ||
           type == 4 /* source quench */ || type == 5 /* redirect */ ||
           type == 12 /* parameter problem */;
}

}  // namespace

Gateway::Gateway(core::EventLoop& loop, sw::Switch& sw, NetConfig cfg)
    : loop_(loop), sw_(sw), cfg_(std::move(cfg)) {
    // Names are matched as the forwarder passes them: lower case, no final
    // dot (--domain Lab.Test. is lab.test).
    if (!cfg_.domain.empty() && cfg_.domain.back() == '.') cfg_.domain.pop_back();
    for (char& c : cfg_.domain) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    neighbors_.reserve(kMaxNeighbors);
    sw_.attach(*this);
    sw_.pin(cfg_.gw_mac, id());
    sw_.set_guard(this, id());
    sw_.set_on_detach([this](sw::PortId port) { on_port_detached(port); });
    dhcp_ = std::make_unique<Dhcp4Server>(*this);
    dhcp6_ = std::make_unique<Dhcp6Server>(*this, cfg_);
    dns_ = std::make_unique<DnsForwarder>(loop_, *this);
    dns_tcp_ = std::make_unique<DnsTcpService>(loop_, *dns_);
    if (!cfg_.tftp_root.empty()) tftp_ = std::make_unique<TftpServer>(loop_, *this, cfg_.tftp_root);
    // fe80:: with the interface identifier of gateway6: fe80::2 by default,
    // the router address QEMU's user networking (libslirp) gives its guests.
    // A gateway6 whose low 64 bits are zero falls back to its MAC's EUI-64.
    link_local_ = wire::IpAddr{};
    link_local_.b[0] = 0xfe;
    link_local_.b[1] = 0x80;
    std::memcpy(&link_local_.b[8], &cfg_.gateway6.b[8], 8);
    if (link_local_ == *wire::IpAddr::parse("fe80::")) link_local_ = wire::link_local_of(cfg_.gw_mac);
    search_wire_ = cfg_.search_wire();
    bool all4 = true;
    search_wire4_ = cfg_.search_wire4(&all4);
    if (!all4)
        spdlog::warn("the DNS search list does not fit DHCP option 119's 255 bytes even compressed: "
                     "DHCPv4 clients get the first names only");
    size_t full = 0;
    for (const std::string& n : cfg_.dns_search) full += n.size() + 2;
    if (all4 && full > 255 && cfg_.ipv6)
        spdlog::warn("the DNS search list takes more than 255 bytes uncompressed: router "
                     "advertisements and DHCPv6 carry the first names only (DHCPv4 all of them)");
    // The first unsolicited router advertisement goes out a second after
    // start, to whoever attached by then; guests that come later solicit.
    if (cfg_.ipv6) loop_.arm(ra_timer_, 1000);
}

Gateway::~Gateway() {
    sw_.set_on_detach(nullptr);
    sw_.set_guard(nullptr, sw::kNoPort);
    tftp_.reset();
    dns_tcp_.reset();
    dns_.reset();
    dhcp6_.reset();
    dhcp_.reset();
    sw_.detach(*this);
}

// --- input -------------------------------------------------------------------

void Gateway::deliver(wire::Bytes frame, const sw::FrameMeta& meta) {
    auto eth = wire::EthernetView::parse(frame);
    if (!eth) {
        stats_.dropped_malformed++;
        return;
    }
    if (eth->has_vlan_tag()) {
        // The LAN is untagged; a tagged frame belongs to some other network.
        stats_.dropped_unsupported++;
        return;
    }
    switch (eth->ethertype()) {
    case wire::ethertype::arp:
        handle_arp(eth->payload(), eth->src(), meta);
        break;
    case wire::ethertype::ipv4:
        handle_ipv4(eth->payload(), eth->dst(), eth->src(), meta);
        break;
    case wire::ethertype::ipv6:
        handle_ipv6(eth->payload(), eth->dst(), eth->src(), meta);
        break;
    default:
        stats_.dropped_unsupported++;
        break;
    }
}

bool Gateway::may_learn(wire::Ipv4 ip, const wire::MacAddr& mac) const {
    return ip != 0 && cfg_.in_subnet(ip) && ip != cfg_.net && ip != cfg_.broadcast() &&
           !is_own_v4(ip) && !mac.is_multicast() && !mac.is_zero() && mac != cfg_.gw_mac;
}

void Gateway::handle_arp(wire::Bytes payload, const wire::MacAddr& src_mac,
                         const sw::FrameMeta&) {
    auto arp = wire::ArpView::parse(payload);
    if (!arp) {
        stats_.dropped_malformed++;
        return;
    }
    wire::MacAddr sha = arp->sender_mac();
    wire::Ipv4 spa = arp->sender_ip();
    wire::Ipv4 tpa = arp->target_ip();
    // No proxy ARP on this LAN: a sender speaks only for its own MAC.
    if (sha != src_mac) {
        stats_.dropped_martian++;
        spdlog::debug("arp: sender {} differs from frame source {}", sha,
                      src_mac);
        return;
    }
    // The sender was bound to spa by admit() before the frame got here.
    if (is_own_v4(spa)) {
        stats_.dropped_martian++;
        spdlog::debug("arp: {} claims our address {}", sha, V4{spa});
        return;
    }
    if (arp->op() != wire::arpop::request || !is_own_v4(tpa)) return;

    uint8_t* p = arp_buf_.data();
    size_t len = wire::build_ethernet(p, sha, cfg_.gw_mac, wire::ethertype::arp);
    len += wire::build_arp(p + len, wire::arpop::reply, cfg_.gw_mac, tpa, sha, spa);
    std::memset(p + len, 0, wire::kEthMinFrame - len);
    stats_.arp_replies++;
    sw_.input(id(), wire::Bytes(p, wire::kEthMinFrame));
}

void Gateway::handle_ipv4(wire::Bytes payload, const wire::MacAddr& dst_mac,
                          const wire::MacAddr& src_mac, const sw::FrameMeta& meta) {
    auto ip = wire::Ipv4View::parse(payload);
    if (!ip || !ip->checksum_ok()) {
        stats_.dropped_malformed++;
        spdlog::debug("ipv4: dropped a malformed packet from {}", src_mac);
        return;
    }
    if (ip->is_fragment()) {
        auto whole = reasm_.add(*ip, meta.ingress, loop_.now());
        arm_reassembly_timer();
        if (!whole) return;
        // Offload flags spoke of the fragment, not of the whole: checksums
        // are verified in software from here on.
        sw::FrameMeta m = meta;
        m.off = wire::Offload{};
        handle_ipv4(*whole, dst_mac, src_mac, m);
        return;
    }
    const wire::Ipv4 src = ip->src();
    const wire::Ipv4 dst = ip->dst();
    if (is_multicast_v4(src) || src == 0xffffffff || (src >> 24) == 127 || is_own_v4(src) ||
        (src != 0 && cfg_.in_subnet(src) && (src == cfg_.broadcast() || src == cfg_.net))) {
        stats_.dropped_martian++;
        spdlog::debug("ipv4: dropped a packet from impossible source {}", V4{src});
        return;
    }
    const bool to_us_l2 = dst_mac == cfg_.gw_mac;
    const bool bcast = dst == 0xffffffff || dst == cfg_.broadcast();
    const uint8_t proto = ip->protocol();

    if (proto == wire::ipproto::udp) {
        auto udp = wire::UdpView::parse(ip->payload());
        if (!udp) {
            stats_.dropped_malformed++;
            return;
        }
        bool dhcp = cfg_.dhcp4 && udp->dst_port() == wire::kDhcp4ServerPort &&
                    ((bcast && dst_mac.is_broadcast()) || (to_us_l2 && (bcast || dst == cfg_.gateway)));
        bool dns = cfg_.dns_service && to_us_l2 && dst == cfg_.dns &&
                   udp->dst_port() == wire::kDnsPort;
        bool tftp = tftp_ && to_us_l2 && dst == cfg_.gateway && udp->dst_port() == wire::kTftpPort;
        if (dhcp || dns || tftp) {
            if (!meta.off.trusted() && !udp->checksum_ok(ip->src_addr(), ip->dst_addr())) {
                stats_.dropped_malformed++;
                spdlog::debug("udp: bad checksum from {}", V4{src});
                return;
            }
            if (dhcp) {
                if (dhcp_allowed(meta.ingress))
                    dhcp_->handle(udp->payload(), src_mac, meta.ingress, meta.ingress_mtu);
            } else if (src == 0) {
                stats_.dropped_martian++;
            } else if (tftp) {
                tftp_->handle(ip->dst_addr(), ip->src_addr(), udp->src_port(), udp->payload(),
                              meta.ingress);
            } else {
                dns_->from_guest(DnsGuestKey{meta.ingress}, ip->src_addr(), udp->src_port(),
                                 udp->payload());
            }
            return;
        }
    }
    if (!to_us_l2 || bcast || is_multicast_v4(dst)) {
        // Broadcasts other than DHCP, multicast, and unicast flooded to
        // every port on its way to another guest.
        stats_.dropped_not_for_us++;
        return;
    }
    if (src == 0) {
        stats_.dropped_martian++;
        return;
    }
    if (is_own_v4(dst) && proto == wire::ipproto::icmp) {
        auto icmp = wire::Icmp4View::parse(ip->payload());
        if (!icmp || (!meta.off.trusted() && !icmp->checksum_ok())) {
            stats_.dropped_malformed++;
            spdlog::debug("icmp: bad message from {}", V4{src});
            return;
        }
        if (icmp->type() == wire::icmptype::echo_request) {
            // Answered here whatever the NAT does with the gateway address.
            if (icmp->code() == 0) handle_icmp_echo(*ip);
            else stats_.dropped_malformed++;
            return;
        }
    }
    if (is_own_v4(dst) && proto != wire::ipproto::tcp && proto != wire::ipproto::udp &&
        proto != wire::ipproto::icmp) {
        // The gateway is the destination and speaks no such protocol
        // (RFC 1122 3.2.2.1: protocol unreachable).
        stats_.dropped_unsupported++;
        send_icmp4_error(*ip, wire::icmptype::dest_unreach, wire::icmpcode::proto_unreach, dst);
        return;
    }
    if (!is_own_v4(dst) && ip->ttl() <= 1) {
        stats_.dropped_ttl++;
        send_time_exceeded(*ip);
        return;
    }
    if (!sink_) {
        stats_.dropped_unsupported++;
        return;
    }
    route(ip->src_addr(), ip->dst_addr(), proto, ip->ttl(), ip->packet(), ip->payload(), src_mac,
          meta);
}

void Gateway::route(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto, uint8_t ttl,
                    wire::Bytes packet, wire::Bytes l4, const wire::MacAddr& src_mac,
                    const sw::FrameMeta& meta) {
    GuestPacket pkt;
    pkt.src = src;
    pkt.dst = dst;
    pkt.proto = proto;
    pkt.ttl = ttl;
    pkt.ip_packet = packet;
    pkt.l4 = l4;
    pkt.ingress_mtu = meta.ingress_mtu;
    pkt.src_mac = src_mac;
    pkt.port = meta.ingress;
    pkt.l4_csum_trusted = meta.off.trusted();
    stats_.routed++;
    sink_->from_guest(pkt);
}

void Gateway::handle_icmp_echo(const wire::Ipv4View& ip) {
    wire::Bytes msg = ip.payload();
    if (msg.size() > tx_l4_capacity()) {
        stats_.dropped_too_big++;
        return;
    }
    auto icmp = wire::Icmp4View::parse(msg);
    uint8_t* l4 = tx_l4();
    std::memcpy(l4 + wire::kIcmpHeaderLen, icmp->payload().data(), icmp->payload().size());
    wire::build_icmp4(l4, wire::icmptype::echo_reply, 0, icmp->rest(), msg.size());
    if (send_ip(ip.dst_addr(), ip.src_addr(), wire::ipproto::icmp, msg.size()))
        stats_.icmp_echo_replies++;
}

bool Gateway::icmp_error_allowed(const wire::IpAddr& to) {
    const core::Millis now = loop_.now();
    // A guest whose attachment is not known yet shares one more bucket.
    const sw::PortId port = port_of(to);
    const size_t slot = port == sw::kNoPort ? 0 : size_t{port} + 1;
    if (slot >= icmp_port_errors_.size())
        icmp_port_errors_.resize(slot + 1, core::TokenBucket{kIcmpErrorBurst});
    return icmp_port_errors_[slot].take(now) && icmp_errors_.take(now);
}

void Gateway::send_time_exceeded(const wire::Ipv4View& ip, uint8_t code) {
    send_icmp4_error(ip, wire::icmptype::time_exceeded, code, cfg_.gateway);
}

void Gateway::send_icmp4_error(const wire::Ipv4View& ip, uint8_t type, uint8_t code,
                               wire::Ipv4 from) {
    // Never an ICMP error about an ICMP error (RFC 1122 3.2.2).
    if (ip.protocol() == wire::ipproto::icmp) {
        auto icmp = wire::Icmp4View::parse(ip.payload());
        if (!icmp || is_icmp_error(icmp->type())) return;
    }
    // A guest sending TTL 1 floods must not make us flood it back.
    if (!icmp_error_allowed(ip.src_addr())) {
        stats_.icmp_rate_limited++;
        return;
    }
    size_t quote = std::min(ip.total_len(), ip.header_len() + 8);
    uint8_t* l4 = tx_l4();
    std::memcpy(l4 + wire::kIcmpHeaderLen, ip.packet().data(), quote);
    size_t len = wire::kIcmpHeaderLen + quote;
    wire::build_icmp4(l4, type, code, 0, len);
    send_ip(wire::IpAddr::v4(from), ip.src_addr(), wire::ipproto::icmp, len);
}

void Gateway::arm_reassembly_timer() {
    const core::Millis next = reasm_.next_deadline();
    if (next == 0) loop_.cancel(reasm_timer_);
    else if (!reasm_timer_.armed() || reasm_timer_.deadline() != next) loop_.arm_at(reasm_timer_, next);
}

void Gateway::reassembly_expired() {
    reasm_.expire(loop_.now(), [this](wire::Bytes first, bool v6, sw::PortId) {
        if (v6) {
            if (auto ip = wire::Ipv6View::parse(first)) send_time_exceeded6(*ip, 1);
        } else if (auto ip = wire::Ipv4View::parse(first)) {
            send_time_exceeded(*ip, 1);
        }
    });
    arm_reassembly_timer();
}

// --- output ------------------------------------------------------------------

bool Gateway::send_ip(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto,
                      size_t l4_len, uint8_t ttl, const wire::Offload* off, size_t at) {
    if (!src.is_v4() && !dst.is_v4()) return send_ip6(src, dst, proto, l4_len, ttl, off, at);
    if (!src.is_v4() || !dst.is_v4()) {
        stats_.dropped_unsupported++;
        return false;
    }
    if (at > tx_l4_capacity() || l4_len > tx_l4_capacity() - at ||
        l4_len + wire::kIpv4HeaderLen > kMaxIpv4Len) {
        stats_.dropped_too_big++;
        return false;
    }
    const wire::Ipv4 d = dst.as_v4();
    wire::MacAddr mac = wire::MacAddr::broadcast();
    if (d != 0xffffffff && d != cfg_.broadcast()) {
        const Neighbor* n = live_neighbor(d);
        if (!n) {
            if (cfg_.in_subnet(d) && !is_own_v4(d)) {
                send_arp_request(d);
                if ((!off || !off->any()) && hold(src, dst, proto, to_front(at, l4_len), ttl))
                    return true;
            }
            stats_.dropped_no_neighbor++;
            return false;
        }
        size_t per_frame = off && off->gso_type != wire::Offload::gso_none
                               ? std::min<size_t>(l4_len, off->hdr_len + size_t{off->gso_size})
                               : l4_len;
        const uint32_t mtu = mtu_of(*n);
        if (per_frame + wire::kIpv4HeaderLen > mtu) {
            if (!off || !off->any())
                return send_fragments4(src.as_v4(), d, proto, to_front(at, l4_len), ttl, n->mac,
                                       mtu);
            stats_.dropped_too_big++;
            spdlog::debug("ipv4: {} bytes exceed the MTU {} of {}", l4_len + wire::kIpv4HeaderLen,
                          mtu, V4{d});
            return false;
        }
        mac = n->mac;
    }
    uint8_t* l4 = tx_l4() + at;
    uint8_t* iph = l4 - wire::kIpv4HeaderLen;
    uint8_t* eth = iph - wire::kEthHeaderLen;
    wire::build_ipv4(iph, src.as_v4(), d, proto, l4_len, ttl, ip_id_++);
    wire::build_ethernet(eth, mac, cfg_.gw_mac, wire::ethertype::ipv4);
    size_t eth_off = static_cast<size_t>(eth - tx_.data());
    size_t len = kEthIpv4Len + l4_len;
    if (len < wire::kEthMinFrame) {
        std::memset(tx_.data() + eth_off + len, 0, wire::kEthMinFrame - len);
        len = wire::kEthMinFrame;
    }
    if (off) {
        // Offsets from tx_l4() become offsets from the frame.
        constexpr uint16_t kL4 = static_cast<uint16_t>(kEthIpv4Len);
        wire::Offload o = *off;
        o.csum_start = static_cast<uint16_t>(o.csum_start + kL4);
        o.hdr_len = static_cast<uint16_t>(o.hdr_len + kL4);
        if (o.gso_type != wire::Offload::gso_none && l4_len <= off->hdr_len + size_t{o.gso_size}) {
            o.gso_type = wire::Offload::gso_none;  // fits in one frame after all
            o.gso_size = 0;
        }
        sw_.input(id(), wire::Bytes(tx_.data() + eth_off, len), o);
        return true;
    }
    send_frame(eth_off, len);
    return true;
}

// A message at tx_l4() + at moved to tx_l4(), where hold() and the
// fragmenters take it; what follows it stays. Returns l4_len.
size_t Gateway::to_front(size_t at, size_t l4_len) {
    if (at != 0) std::memmove(tx_l4(), tx_l4() + at, l4_len);
    return l4_len;
}

void Gateway::send_frame(size_t off, size_t len) {
    sw_.input(id(), wire::Bytes(tx_.data() + off, len));
}

// The l4_len bytes at tx_l4() (checksum complete) as IPv4 fragments of at
// most mtu bytes. Each fragment's headers are written in front of its
// data, over the tail of the fragment before it, which the switch has
// delivered by then.
bool Gateway::send_fragments4(wire::Ipv4 src, wire::Ipv4 dst, uint8_t proto, size_t l4_len,
                              uint8_t ttl, const wire::MacAddr& mac, uint32_t mtu) {
    const size_t chunk = mtu > wire::kIpv4HeaderLen ? (mtu - wire::kIpv4HeaderLen) & ~size_t{7} : 0;
    if (chunk < 8) {
        stats_.dropped_too_big++;
        return false;
    }
    const uint16_t ident = ip_id_++;
    uint8_t* l4 = tx_l4();
    for (size_t at = 0; at < l4_len; at += chunk) {
        const size_t n = std::min(chunk, l4_len - at);
        uint8_t* iph = l4 + at - wire::kIpv4HeaderLen;
        uint8_t* eth = iph - wire::kEthHeaderLen;
        wire::build_ipv4(iph, src, dst, proto, n, ttl, ident, false);
        wire::store16(iph + 6, static_cast<uint16_t>(at / 8 | (at + n < l4_len ? 0x2000 : 0)));
        wire::store16(iph + 10, 0);
        wire::store16(iph + 10,
                      wire::csum_fold(wire::csum_partial(wire::Bytes(iph, wire::kIpv4HeaderLen))));
        wire::build_ethernet(eth, mac, cfg_.gw_mac, wire::ethertype::ipv4);
        size_t len = kEthIpv4Len + n;
        if (len < wire::kEthMinFrame) {  // only the last one can be that short
            std::memset(eth + len, 0, wire::kEthMinFrame - len);
            len = wire::kEthMinFrame;
        }
        sw_.input(id(), wire::Bytes(eth, len));
        stats_.fragments_sent++;
    }
    return true;
}

void Gateway::send_arp_request(wire::Ipv4 target) {
    core::Millis now = loop_.now();
    ArpAttempt& a = arp_attempts_[(target * 2654435761u) >> 24];
    if (a.ip == target && now - a.at < kArpRetryMs) return;
    a.ip = target;
    a.at = now;
    uint8_t* p = arp_buf_.data();
    size_t len = wire::build_ethernet(p, wire::MacAddr::broadcast(), cfg_.gw_mac,
                                      wire::ethertype::arp);
    len += wire::build_arp(p + len, wire::arpop::request, cfg_.gw_mac, cfg_.gateway,
                           wire::MacAddr{}, target);
    std::memset(p + len, 0, wire::kEthMinFrame - len);
    stats_.arp_requests++;
    sw_.input(id(), wire::Bytes(p, wire::kEthMinFrame));
}

// --- the IP source guard -----------------------------------------------------

bool Gateway::admit(sw::PortId from, wire::Bytes frame) {
    auto eth = wire::EthernetView::parse(frame);
    if (!eth) return true;  // too short to carry an address; the switch checks sizes
    const wire::MacAddr src = eth->src();
    switch (eth->ethertype()) {
    case wire::ethertype::arp: {
        auto arp = wire::ArpView::parse(eth->payload());
        if (!arp) {
            // Not Ethernet/IPv4 ARP. Receivers take more than that (Linux
            // also hardware type 6, IEEE 802): unguarded, it could speak
            // for the gateway's address. Nothing on an Ethernet LAN needs it.
            stats_.dropped_malformed++;
            spdlog::debug("guard: {} sent an ARP that is not Ethernet/IPv4", src);
            return false;
        }
        if (arp->sender_mac() != src) {
            stats_.dropped_spoofed++;
            spdlog::debug("guard: ARP from {} speaks for {}", src, arp->sender_mac());
            return false;
        }
        wire::Ipv4 spa = arp->sender_ip();
        if (spa == 0) return true;  // an address probe (RFC 5227)
        return claim(from, src, spa);
    }
    case wire::ethertype::ipv4: {
        auto ip = wire::Ipv4View::parse(eth->payload());
        // Malformed: receivers drop it, and what the guard cannot read it
        // cannot vouch for.
        if (!ip || !ip->checksum_ok()) {
            stats_.dropped_malformed++;
            return false;
        }
        if (cfg_.dhcp4 && ip->protocol() == wire::ipproto::udp && ip->frag_offset() == 0) {
            // DHCP snooping: the gateway is this LAN's DHCP server; a
            // guest's offer or ACK would race it and hand the others a
            // router of the guest's choosing. A first fragment is looked at
            // as a whole datagram is: the ports are in its first 8 bytes,
            // which no later fragment can overwrite (their offsets start at
            // 8), and one too short to hold them is refused.
            const wire::Bytes l4 = ip->payload();
            if (l4.size() < wire::kUdpHeaderLen) {
                if (ip->is_fragment()) {
                    stats_.dropped_malformed++;
                    return false;
                }
            } else if (wire::load16(l4.data()) == wire::kDhcp4ServerPort &&
                       wire::load16(l4.data() + 2) == wire::kDhcp4ClientPort) {
                stats_.dropped_spoofed++;
                spdlog::debug("guard: {} sent a DHCP server's message", src);
                return false;
            }
        }
        if (ip->src() != 0) return claim(from, src, ip->src());
        // 0.0.0.0 is for a client without an address talking to DHCP.
        if (ip->protocol() == wire::ipproto::udp && !ip->is_fragment()) {
            auto udp = wire::UdpView::parse(ip->payload());
            if (udp && udp->dst_port() == wire::kDhcp4ServerPort) return true;
        }
        stats_.dropped_spoofed++;
        return false;
    }
    case wire::ethertype::ipv6:
        return admit6(from, src, eth->dst() == cfg_.gw_mac, eth->payload());
    case wire::ethertype::vlan:  // a second 802.1Q tag inside the first
    case 0x88a8:                 // 802.1ad (QinQ) service tag
    case 0x9100:                 // its older pre-standard form
        // Tags inside tags hide the source address from this guard (and
        // would reach an uplink's other VLANs): the LAN carries one tag at
        // most.
        stats_.dropped_spoofed++;
        spdlog::debug("guard: {} sent a frame with stacked VLAN tags", src);
        return false;
    default:
        if (carries_ip_under_llc(eth->ethertype(), eth->payload())) {
            stats_.dropped_spoofed++;
            spdlog::debug("guard: {} sent IP or ARP under LLC", src);
            return false;
        }
        return true;
    }
}

// An 802.3 length (or 0x8870, jumbo frames' LLC) instead of a type: LLC.
// Under SNAP (RFC 1042, any OUI, e.g. 802.1H's 0000F8) it can carry IPv4,
// IPv6, ARP or a VLAN tag, and under SAPs 0x06 and 0x98 IP and ARP, all of
// which this guard does not read and some stacks take. Ethernet carries
// them with a type field (RFC 894), and no guest needs the other forms;
// other LLC (spanning tree, IPX, NetBIOS) passes.
bool Gateway::carries_ip_under_llc(uint16_t type, wire::Bytes llc) {
    if ((type > 1500 && type != 0x8870) || llc.size() < 3) return false;
    const uint8_t dsap = llc[0] & 0xfe, ssap = llc[1] & 0xfe;  // less the group/response bit
    if (dsap == 0x06 || dsap == 0x98 || ssap == 0x06 || ssap == 0x98) return true;
    if (dsap != 0xaa && ssap != 0xaa) return false;
    // SNAP: a one-byte control field (U format) or a two-byte one (I, S),
    // then a 3-byte OUI and the protocol's type.
    for (size_t ctl : {size_t{1}, size_t{2}}) {
        if (llc.size() < 2 + ctl + 5) continue;
        const uint16_t inner = wire::load16(llc.data() + 2 + ctl + 3);
        if (inner == wire::ethertype::ipv4 || inner == wire::ethertype::ipv6 ||
            inner == wire::ethertype::arp || inner == wire::ethertype::vlan || inner == 0x88a8 ||
            inner == 0x9100 || inner == 0x8870)
            return true;
    }
    return false;
}

const Gateway::Reservation* Gateway::reservation(wire::Ipv4 ip) const {
    for (const Reservation& r : reserved_)
        if (r.ip == ip) return &r;
    return nullptr;
}

bool Gateway::held(wire::Ipv4 ip, const Neighbor& n, core::Millis now) const {
    if (now < n.bound_until || now - n.seen < cfg_.claim_hold_ms) return true;
    const Reservation* r = reservation(ip);
    return r && r->port == sw::kNoPort && now - n.seen < core::Millis{cfg_.lease_seconds} * 1000;
}

bool Gateway::claim(sw::PortId port, const wire::MacAddr& mac, wire::Ipv4 ip) {
    const core::Millis now = loop_.now();
    auto it = neighbors_.find(ip);
    if (it != neighbors_.end() && it->second.mac == mac && it->second.port == port) {
        it->second.seen = now;  // the common case: a guest using its own address
        neighbor_known(wire::IpAddr::v4(ip));  // (alive again after an idle spell)
        return true;
    }
    auto refuse = [&](const char* why) {
        stats_.dropped_spoofed++;
        spdlog::debug("guard: {} may not send from {}: {}", mac, V4{ip}, why);
        return false;
    };
    if (!may_learn(ip, mac)) return refuse("not a guest address of this network");
    if (const Reservation* r = reservation(ip); r && r->port != sw::kNoPort && r->port != port)
        return refuse("reserved for another attachment");
    if (it != neighbors_.end() && it->second.mac != mac && held(ip, it->second, now))
        return refuse("another guest holds it");
    if (auto m = mac_ip_.find(mac); m != mac_ip_.end() && m->second != ip) {
        auto o = neighbors_.find(m->second);
        if (o != neighbors_.end() && o->second.mac == mac && held(m->second, o->second, now))
            return refuse(now < o->second.bound_until ? "it holds a lease on another address"
                                                      : "it uses another address");
    }
    if (dhcp_ && dhcp_->leases().in_pool(ip) && !reservation(ip) &&
        pool_claims(port, now) + dhcp_->leases().port_count(port, now) >=
            dhcp_->leases().quota(port))
        return refuse("its attachment already holds its share of the DHCP pool");
    const sw::Port* p = sw_.port(port);
    if (!bind(ip, mac, port, p ? p->mtu() : 1500, p && p->takes_offload()))
        return refuse("the neighbor table is full");
    return true;
}

// Addresses of the DHCP pool that guests behind port use without a lease
// (set statically) and still hold: with the port's leases, they are its
// share of the pool, so that a few gratuitous ARPs cannot take the pool
// from guests that ask for an address.
size_t Gateway::pool_claims(sw::PortId port, core::Millis now) const {
    size_t n = 0;
    for (const auto& [ip, nb] : neighbors_)
        if (nb.port == port && now >= nb.bound_until && held(ip, nb, now) && !reservation(ip) &&
            dhcp_->leases().in_pool(ip))
            n++;
    return n;
}

Gateway::Neighbor* Gateway::bind(wire::Ipv4 ip, const wire::MacAddr& mac, sw::PortId port,
                                 uint32_t mtu, bool offload) {
    const core::Millis now = loop_.now();
    // One address per MAC: whatever it held before lapses.
    if (auto m = mac_ip_.find(mac); m != mac_ip_.end() && m->second != ip) {
        auto o = neighbors_.find(m->second);
        if (o != neighbors_.end() && o->second.mac == mac) neighbors_.erase(o);
        mac_ip_.erase(m);
    }
    auto it = neighbors_.find(ip);
    if (it != neighbors_.end()) {
        Neighbor& n = it->second;
        if (n.mac != mac) {
            spdlog::debug("neighbor {} moved from {} to {}", V4{ip}, n.mac, mac);
            if (auto pm = mac_ip_.find(n.mac); pm != mac_ip_.end() && pm->second == ip)
                mac_ip_.erase(pm);
            n.bound_until = 0;
            n.mac = mac;
        }
    } else {
        if (neighbors_.size() >= kMaxNeighbors && !make_room()) {
            spdlog::debug("neighbor table full, not learning {}", V4{ip});
            return nullptr;
        }
        it = neighbors_.emplace(ip, Neighbor{mac, mtu, now, 0, port, offload}).first;
        last_guest_ = ip;
        spdlog::debug("neighbor {} is {} (mtu {})", V4{ip}, mac, mtu);
    }
    Neighbor& n = it->second;
    n.mtu = mtu;
    n.seen = now;
    n.offload = offload;
    if (port != sw::kNoPort) n.port = port;
    mac_ip_[mac] = ip;
    neighbor_known(wire::IpAddr::v4(ip));
    return &n;
}

bool Gateway::hold(const wire::IpAddr& src, const wire::IpAddr& dst, uint8_t proto,
                   size_t l4_len, uint8_t ttl) {
    if (l4_len > kHeldMax) return false;
    const core::Millis now = loop_.now();
    // A free or expired slot, else the oldest (pushed out by a newer one).
    HeldPacket* slot = &held_[0];
    for (HeldPacket& h : held_) {
        if (!h.used || now - h.at > kHoldMs) {
            slot = &h;
            break;
        }
        if (h.at < slot->at) slot = &h;
    }
    if (slot->used) stats_.held_expired++;
    else held_n_++;
    *slot = HeldPacket{true, now, src, dst, proto, ttl, static_cast<uint16_t>(l4_len), {}};
    std::memcpy(slot->l4.data(), tx_l4(), l4_len);
    stats_.held_for_neighbor++;
    return true;
}

void Gateway::neighbor_known_slow(const wire::IpAddr& ip) {
    for (const HeldPacket& h : held_)
        if (h.used && h.dst == ip) {
            if (!held_timer_.armed()) loop_.arm(held_timer_, 0);
            return;
        }
}

void Gateway::send_held() {
    const core::Millis now = loop_.now();
    for (HeldPacket& h : held_) {
        if (!h.used) continue;
        if (now - h.at > kHoldMs) {
            h.used = false;
            held_n_--;
            stats_.held_expired++;
            continue;
        }
        const bool known = h.dst.is_v4() ? live_neighbor(h.dst.as_v4()) != nullptr
                                         : live_neighbor6(h.dst) != nullptr;
        if (!known) continue;
        h.used = false;
        held_n_--;
        std::memcpy(tx_l4(), h.l4.data(), h.len);
        if (send_ip(h.src, h.dst, h.proto, h.len, h.ttl, nullptr)) stats_.held_sent++;
    }
}

void Gateway::drop_binding(std::unordered_map<wire::Ipv4, Neighbor>::iterator it) {
    if (auto m = mac_ip_.find(it->second.mac); m != mac_ip_.end() && m->second == it->first)
        mac_ip_.erase(m);
    neighbors_.erase(it);
}

void Gateway::reserve(wire::Ipv4 ip, sw::PortId port, bool v6) {
    for (Reservation& r : reserved_)
        if (r.ip == ip) {
            r.port = port;
            r.v6 = v6;
            return;
        }
    reserved_.push_back(Reservation{ip, port, v6});
}

bool Gateway::local_addresses(std::string_view name, std::vector<wire::IpAddr>& out) const {
    out.clear();
    bool known = false;
    // RFC 6761 6.3: localhost names are the loopback addresses, answered
    // here and never taken from a guest's DHCP name or sent upstream.
    if (name == "localhost" || name.ends_with(".localhost")) {
        out.push_back(wire::IpAddr::v4(0x7f000001));
        out.push_back(*wire::IpAddr::parse("::1"));
        return true;
    }
    if (!cfg_.host_alias.empty() && name == cfg_.host_alias && cfg_.map_gateway_to_loopback) {
        known = true;
        out.push_back(wire::IpAddr::v4(cfg_.gateway));
        if (cfg_.ipv6) out.push_back(cfg_.gateway6);
    }
    for (const auto& [n, a] : cfg_.dns_hosts) {
        if (n != name) continue;
        known = true;
        out.push_back(a);
    }
    // A guest's DHCP host name: "foo", or "foo.DOMAIN".
    std::string_view label = name;
    if (!cfg_.domain.empty() && name.size() > cfg_.domain.size() + 1 &&
        name.ends_with(cfg_.domain) && name[name.size() - cfg_.domain.size() - 1] == '.')
        label = name.substr(0, name.size() - cfg_.domain.size() - 1);
    if (!known && label.find('.') == std::string_view::npos && dhcp_) {
        if (auto v4 = dhcp_->leases().find_hostname(label, loop_.now())) {
            known = true;
            out.push_back(wire::IpAddr::v4(*v4));
            if (cfg_.ipv6) {
                const wire::IpAddr v6 = guest_v6_of(wire::IpAddr::v4(*v4));
                if (!v6.is_unspecified()) out.push_back(v6);
            }
        }
    }
    return known;
}

bool Gateway::local_name(const wire::IpAddr& addr, std::string& out) const {
    out.clear();
    if (!cfg_.host_alias.empty() && cfg_.map_gateway_to_loopback &&
        (addr == wire::IpAddr::v4(cfg_.gateway) || (cfg_.ipv6 && addr == cfg_.gateway6))) {
        out = cfg_.host_alias;
        return true;
    }
    for (const auto& [n, a] : cfg_.dns_hosts) {
        if (a == addr) {
            out = n;
            return true;
        }
    }
    if (!dhcp_) return false;
    dhcp_->leases().each_named(loop_.now(), [&](wire::Ipv4 ip, std::string_view name) {
        if (!out.empty()) return;
        const wire::IpAddr v4 = wire::IpAddr::v4(ip);
        if (addr == v4 || (cfg_.ipv6 && !addr.is_v4() && addr == guest_v6_of(v4))) {
            out = name;
            if (!cfg_.domain.empty()) {
                out += '.';
                out += cfg_.domain;
                if (out.back() == '.') out.pop_back();
            }
        }
    });
    return !out.empty();
}

void Gateway::on_port_detached(sw::PortId port) {
    if (port == id()) return;
    for (auto it = neighbors_.begin(); it != neighbors_.end();) {
        if (it->second.port == port) {
            auto next = std::next(it);
            drop_binding(it);
            it = next;
        } else {
            ++it;
        }
    }
    std::erase_if(neighbors6_, [port](const auto& e) { return e.second.port == port; });
    if (port < rs_budget_.size()) rs_budget_[port] = core::TokenBucket(kRsBurst, kRsPerSecond);
    std::erase_if(reserved_, [port](const Reservation& r) { return r.port == port; });
    if (port < dhcp_budget_.size()) dhcp_budget_[port] = core::TokenBucket(kDhcpBurst, kDhcpPerSecond);
    if (dhcp_) dhcp_->port_gone(port);
    if (dhcp6_) dhcp6_->port_gone(port);
    if (size_t{port} + 1 < icmp_port_errors_.size())
        icmp_port_errors_[size_t{port} + 1] = core::TokenBucket{kIcmpErrorBurst};
    if (tftp_) tftp_->drop_port(port);
    if (sink_) sink_->port_gone(port);
}

void Gateway::set_hosts_behind(sw::PortId port, size_t hosts) {
    if (port == sw::kNoPort || hosts == 0 || !dhcp_) return;
    size_t n = std::min(hosts, dhcp_->leases().pool_size());
    dhcp_->leases().set_port_quota(port, std::max<size_t>(n, cfg_.dhcp_leases_per_port));
    while (dhcp_budget_.size() <= port) dhcp_budget_.emplace_back(kDhcpBurst, kDhcpPerSecond);
    uint32_t k = static_cast<uint32_t>(std::max<size_t>(n, 1));
    dhcp_budget_[port] = core::TokenBucket(kDhcpBurst * k, kDhcpPerSecond * k);
}

bool Gateway::dhcp_allowed(sw::PortId port) {
    if (port == sw::kNoPort) return true;
    while (dhcp_budget_.size() <= port) dhcp_budget_.emplace_back(kDhcpBurst, kDhcpPerSecond);
    if (dhcp_budget_[port].take(loop_.now())) return true;
    stats_.dropped_rate++;
    return false;
}

// --- neighbors ---------------------------------------------------------------

bool Gateway::neighbor_live(wire::Ipv4 ip, const Neighbor& n) const {
    core::Millis now = loop_.now();
    return now - n.seen <= kNeighborIdleMs || held(ip, n, now);
}

const Gateway::Neighbor* Gateway::live_neighbor(wire::Ipv4 ip) const {
    auto it = neighbors_.find(ip);
    if (it == neighbors_.end() || !neighbor_live(ip, it->second)) return nullptr;
    return &it->second;
}

bool Gateway::make_room() {
    // Forget the entries that have aged out; failing that, the idlest one
    // nothing holds.
    for (auto it = neighbors_.begin(); it != neighbors_.end();) {
        auto next = std::next(it);
        if (!neighbor_live(it->first, it->second)) drop_binding(it);
        it = next;
    }
    if (neighbors_.size() < kMaxNeighbors) return true;
    core::Millis now = loop_.now();
    auto victim = neighbors_.end();
    for (auto it = neighbors_.begin(); it != neighbors_.end(); ++it) {
        if (held(it->first, it->second, now)) continue;
        if (victim == neighbors_.end() || it->second.seen < victim->second.seen) victim = it;
    }
    if (victim == neighbors_.end()) return false;
    drop_binding(victim);
    return true;
}

bool Gateway::learn_neighbor(wire::Ipv4 ip, const wire::MacAddr& mac, uint32_t mtu,
                             sw::PortId port) {
    if (!may_learn(ip, mac)) return false;
    core::Millis now = loop_.now();
    if (auto it = neighbors_.find(ip);
        it != neighbors_.end() && it->second.mac != mac && held(ip, it->second, now))
        return false;
    const sw::Port* p = sw_.port(port);
    return bind(ip, mac, port, mtu, p && p->takes_offload()) != nullptr;
}

void Gateway::bind_lease(wire::Ipv4 ip, const wire::MacAddr& mac, uint32_t mtu,
                         core::Millis until, sw::PortId port) {
    if (!may_learn(ip, mac)) return;
    // DHCP checked address_taken() before it acknowledged; a lease never
    // overrides another guest's hold.
    if (const Reservation* r = reservation(ip); r && r->port != sw::kNoPort && r->port != port)
        return;
    if (auto it = neighbors_.find(ip);
        it != neighbors_.end() && it->second.mac != mac && held(ip, it->second, loop_.now()))
        return;
    const sw::Port* p = sw_.port(port);
    if (Neighbor* n = bind(ip, mac, port, mtu, p && p->takes_offload())) {
        n->bound_until = until;
        last_guest_ = ip;
    }
}

void Gateway::unbind_lease(wire::Ipv4 ip) {
    if (auto it = neighbors_.find(ip); it != neighbors_.end()) it->second.bound_until = 0;
}

void Gateway::forget_neighbor(wire::Ipv4 ip, const wire::MacAddr& mac) {
    if (auto it = neighbors_.find(ip); it != neighbors_.end() && it->second.mac == mac)
        drop_binding(it);
}

bool Gateway::address_taken(wire::Ipv4 ip, const wire::MacAddr& mac, sw::PortId port) const {
    if (is_own_v4(ip)) return true;  // a guest forward's or the SMB share's
    if (const Reservation* r = reservation(ip); r && r->port != sw::kNoPort && r->port != port)
        return true;
    // Held, not merely known: an address set statically lapses after the
    // claim hold without traffic (a lease holds until it ends).
    auto it = neighbors_.find(ip);
    return it != neighbors_.end() && it->second.mac != mac && held(ip, it->second, loop_.now());
}

sw::PortId Gateway::port_of(const wire::IpAddr& guest) const {
    if (!guest.is_v4()) {
        const Neighbor6* n = live_neighbor6(guest);
        return n ? n->port : sw::kNoPort;
    }
    const Neighbor* n = live_neighbor(guest.as_v4());
    return n ? n->port : sw::kNoPort;
}

core::Millis Gateway::last_heard(const wire::MacAddr& mac) const {
    auto m = mac_ip_.find(mac);
    if (m == mac_ip_.end()) return 0;
    auto it = neighbors_.find(m->second);
    return it != neighbors_.end() && it->second.mac == mac ? it->second.seen : 0;
}

std::optional<wire::MacAddr> Gateway::neighbor_mac(wire::Ipv4 ip) const {
    if (const Neighbor* n = live_neighbor(ip)) return n->mac;
    return std::nullopt;
}

// A neighbor's MTU, as learned, or its attachment's now if that is lower (a
// PPP line's, once the peer's MRU is known).
uint32_t Gateway::mtu_of(const Neighbor& n) const {
    const sw::Port* p = sw_.port(n.port);
    return p ? std::min(n.mtu, p->mtu()) : n.mtu;
}

uint32_t Gateway::path_mtu(const wire::IpAddr& dst) const {
    if (dst.is_v4()) {
        if (const Neighbor* n = live_neighbor(dst.as_v4())) return mtu_of(*n);
    } else if (const Neighbor6* n = live_neighbor6(dst)) {
        return n->mtu;
    }
    return 1500;
}

bool Gateway::offload_to(const wire::IpAddr& dst) const {
    if (!dst.is_v4()) {
        const Neighbor6* n = live_neighbor6(dst);
        return n && n->offload;
    }
    const Neighbor* n = live_neighbor(dst.as_v4());
    return n && n->offload;
}

Gateway::TxRoom Gateway::tx_room_to(const wire::IpAddr& dst) const {
    const sw::Port* p = sw_.port(port_of(dst));
    if (!p) return {};
    return {p->tx_room(), p->tx_frame_room()};
}

bool Gateway::small_ring_to(const wire::IpAddr& dst) const {
    const sw::Port* p = sw_.port(port_of(dst));
    return p && p->small_ring();
}

bool Gateway::knows_guest(const wire::IpAddr& guest) const {
    if (!guest.is_v4()) return live_neighbor6(guest) != nullptr;
    return live_neighbor(guest.as_v4()) != nullptr;
}

wire::IpAddr Gateway::first_guest_v4() const {
    if (last_guest_ != 0 && live_neighbor(last_guest_)) return wire::IpAddr::v4(last_guest_);
    // The newest guest went away: the most recently heard of the others.
    const std::pair<const wire::Ipv4, Neighbor>* best = nullptr;
    for (const auto& e : neighbors_) {
        if (!neighbor_live(e.first, e.second)) continue;
        if (!best || e.second.seen > best->second.seen) best = &e;
    }
    return best ? wire::IpAddr::v4(best->first) : wire::IpAddr{};
}

}  // namespace usernet::gw
