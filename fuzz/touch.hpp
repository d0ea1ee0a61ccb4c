// Shared by the fuzz harnesses: read every accessor of a view, so that a
// length the parser failed to check shows up as an ASan report, and walk
// the nested formats the way the gateway and the NAT will.
#pragma once

#include <cstdint>

#include "wire/arp.hpp"
#include "wire/bytes.hpp"
#include "wire/dhcp4.hpp"
#include "wire/dhcp6.hpp"
#include "wire/dns.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp4.hpp"
#include "wire/icmp6.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"
#include "wire/tcp.hpp"
#include "wire/udp.hpp"

namespace usernet::fuzz {

using namespace usernet::wire;

inline volatile uint64_t g_sink;

// Folds values into a sink the optimiser cannot drop.
struct Sink {
    uint64_t v = 0;
    void operator()(uint64_t x) { v = v * 31 + x; }
    void operator()(Bytes b) {
        (*this)(b.size());
        for (uint8_t c : b) (*this)(c);
    }
    ~Sink() { g_sink = v; }
};

inline void touch_mac(Sink& s, const MacAddr& m) {
    for (uint8_t c : m.b) s(c);
}

inline void touch_tcp_options(Sink& s, const TcpOptions& o) {
    s(o.mss.value_or(0));
    s(o.wscale.value_or(0));
    s(o.sack_permitted);
    s(o.ts_val.value_or(0));
    s(o.ts_ecr.value_or(0));
    for (size_t i = 0; i < o.sack_blocks; i++) {
        s(o.sack.at(i).left);
        s(o.sack.at(i).right);
    }
}

inline void touch_arp(Sink& s, Bytes b) {
    auto a = ArpView::parse(b);
    if (!a) return;
    s(a->op());
    touch_mac(s, a->sender_mac());
    s(a->sender_ip());
    touch_mac(s, a->target_mac());
    s(a->target_ip());
}

inline void touch_dhcp4(Sink& s, Bytes b) {
    auto d = Dhcp4View::parse(b);
    if (!d) return;
    s(d->op());
    s(d->htype());
    s(d->hlen());
    s(d->hops());
    s(d->xid());
    s(d->secs());
    s(d->flags());
    s(d->broadcast());
    s(d->ciaddr());
    s(d->yiaddr());
    s(d->siaddr());
    s(d->giaddr());
    s(d->chaddr_raw());
    if (auto m = d->chaddr()) touch_mac(s, *m);
    s(d->sname());
    s(d->file());
    s(d->options_field());
    Dhcp4OptionIter it = d->options();
    Dhcp4Option o;
    while (it.next(o)) {
        s(o.code);
        s(o.data);
    }
    s(d->message_type().value_or(0));
    s(d->requested_ip().value_or(0));
    s(d->server_id().value_or(0));
    s(d->max_message_size().value_or(0));
    if (auto c = d->client_id()) s(*c);
    if (auto p = d->param_request_list()) s(*p);
    if (auto h = d->hostname()) s(h->size());
}

inline void touch_dns_name(Sink& s, const DnsName& n) {
    s(n.bytes());
    s(n.label_count());
    char text[kDnsMaxTextLen + 1];
    s(n.to_text(text, sizeof text).value_or(0));
    s(n.to_text(text, 8).value_or(0));
    s(n.to_string().size());
    s(n.equals("example.com"));
    s(n.equals(""));
}

inline void touch_dns(Sink& s, Bytes b) {
    auto v = DnsView::parse(b);
    if (!v) return;
    s(v->id());
    s(v->flags());
    s(v->qr());
    s(v->opcode());
    s(v->aa());
    s(v->tc());
    s(v->rd());
    s(v->ra());
    s(v->rcode());
    s(v->qdcount());
    s(v->ancount());
    s(v->nscount());
    s(v->arcount());
    if (auto q = v->question()) {
        touch_dns_name(s, q->name);
        if (auto a = dns_reverse_addr(q->name)) s(a->b);
        s(q->qtype);
        s(q->qclass);
        s(q->end);
    }
    DnsRecordIter it(*v);
    DnsRecord r;
    while (it.next(r)) {
        touch_dns_name(s, r.name);
        s(r.type);
        s(r.rclass);
        s(r.ttl);
        s(r.rdata);
        s(r.rdata_offset);
        s(static_cast<uint64_t>(it.section()));
    }
    s(it.malformed());
}

inline void touch_dhcp6_options(Sink& s, const Dhcp6Options& opts, int depth = 0) {
    opts.for_each([&](const Dhcp6Option& o) {
        s(o.code);
        s(o.data);
        if (depth > 2) return;
        if (o.code == dhcp6opt::ia_na) {
            if (auto ia = Dhcp6IaNa::parse(o.data)) {
                s(ia->iaid);
                s(ia->t1);
                s(ia->t2);
                touch_dhcp6_options(s, ia->options, depth + 1);
            }
        } else if (o.code == dhcp6opt::iaaddr) {
            if (auto a = Dhcp6IaAddr::parse(o.data)) {
                s(a->addr.b[15]);
                s(a->preferred);
                s(a->valid);
            }
        }
    });
}

inline void touch_dhcp6(Sink& s, Bytes b) {
    auto d = Dhcp6View::parse(b);
    if (!d) return;
    s(d->type());
    s(d->xid());
    touch_dhcp6_options(s, d->options());
}

inline void touch_udp(Sink& s, Bytes b, const IpAddr& src, const IpAddr& dst) {
    auto u = UdpView::parse(b);
    if (!u) return;
    s(u->src_port());
    s(u->dst_port());
    s(u->checksum());
    s(u->segment());
    s(u->checksum_ok(src, dst));
    if (u->dst_port() == kDhcp4ServerPort || u->dst_port() == kDhcp4ClientPort)
        touch_dhcp4(s, u->payload());
    if (u->dst_port() == kDhcp6ServerPort || u->dst_port() == kDhcp6ClientPort)
        touch_dhcp6(s, u->payload());
    if (u->dst_port() == kDnsPort || u->src_port() == kDnsPort) touch_dns(s, u->payload());
}

inline void touch_tcp(Sink& s, Bytes b, const IpAddr& src, const IpAddr& dst) {
    auto t = TcpView::parse(b);
    if (!t) return;
    s(t->src_port());
    s(t->dst_port());
    s(t->seq());
    s(t->ack());
    s(t->flags());
    s(t->has(tcpflag::syn));
    s(t->window());
    s(t->checksum());
    s(t->urgent());
    s(t->header_len());
    s(t->options());
    touch_tcp_options(s, t->parse_options());
    s(t->payload());
    s(t->seg_len());
    s(t->checksum_ok(src, dst));
}

inline void touch_ipv4(Sink& s, Bytes b, int depth = 0);

inline void touch_icmp4(Sink& s, Bytes b, int depth) {
    auto m = Icmp4View::parse(b);
    if (!m) return;
    s(m->type());
    s(m->code());
    s(m->checksum());
    s(m->echo_id());
    s(m->echo_seq());
    s(m->rest());
    s(m->message());
    s(m->checksum_ok());
    // Errors quote the offending datagram: parse it as the NAT will.
    if (m->type() == icmptype::dest_unreach || m->type() == icmptype::time_exceeded)
        touch_ipv4(s, m->payload(), depth + 1);
}

inline void touch_ipv4(Sink& s, Bytes b, int depth) {
    auto ip = Ipv4View::parse(b);
    if (!ip) return;
    s(ip->src());
    s(ip->dst());
    s(ip->protocol());
    s(ip->ttl());
    s(ip->tos());
    s(ip->id());
    s(ip->dont_fragment());
    s(ip->more_fragments());
    s(ip->frag_offset());
    s(ip->is_fragment());
    s(ip->header_len());
    s(ip->total_len());
    s(ip->checksum_ok());
    s(ip->header());
    s(ip->payload());
    if (depth > 1) return;
    IpAddr src = ip->src_addr(), dst = ip->dst_addr();
    switch (ip->protocol()) {
    case ipproto::udp:
        touch_udp(s, ip->payload(), src, dst);
        break;
    case ipproto::tcp:
        touch_tcp(s, ip->payload(), src, dst);
        break;
    case ipproto::icmp:
        touch_icmp4(s, ip->payload(), depth);
        break;
    default:
        break;
    }
}

inline void touch_ipv6(Sink& s, Bytes b, int depth = 0);

inline void touch_icmp6(Sink& s, Bytes b, const IpAddr& src, const IpAddr& dst, int depth) {
    auto m = Icmp6View::parse(b);
    if (!m) return;
    s(m->type());
    s(m->code());
    s(m->checksum());
    s(m->checksum_ok(src, dst));
    s(m->body());
    switch (m->type()) {
    case icmp6type::echo_request:
    case icmp6type::echo_reply:
        s(m->echo_id());
        s(m->echo_seq());
        break;
    case icmp6type::neighbor_solicit:
    case icmp6type::neighbor_advert:
        s(m->nd_target().b);
        s(m->na_router());
        s(m->na_solicited());
        s(m->na_override());
        [[fallthrough]];
    case icmp6type::router_solicit:
    case icmp6type::router_advert:
        if (auto o = NdpOptions::parse(m->body())) {
            for (uint8_t t : {ndopt::source_lla, ndopt::target_lla, ndopt::prefix_info,
                              ndopt::mtu, ndopt::rdnss, ndopt::dnssl}) {
                if (auto opt = o->find(t)) s(opt->data);
                if (auto mac = o->lla(t)) touch_mac(s, *mac);
            }
        }
        break;
    default:
        // Errors quote the offending packet: parse it as the NAT will.
        if (is_icmp6_error(m->type()) && m->message().size() >= 8)
            touch_ipv6(s, m->message().subspan(8), depth + 1);
        break;
    }
}

inline void touch_ipv6(Sink& s, Bytes b, int depth) {
    auto ip = Ipv6View::parse(b);
    if (!ip) return;
    s(ip->src_addr().b);
    s(ip->dst_addr().b);
    s(ip->hop_limit());
    s(ip->traffic_class());
    s(ip->flow_label());
    s(ip->protocol());
    s(ip->header_len());
    s(ip->total_len());
    s(ip->ext_headers());
    s(ip->has_hop_by_hop());
    s(ip->is_fragment());
    s(ip->frag_offset());
    s(ip->more_fragments());
    s(ip->frag_id());
    s(ip->discard());
    s(ip->routing_pending());
    s(ip->misplaced_hop_by_hop());
    // A misplaced hop-by-hop header ends the walk there, and is discarded.
    if (ip->misplaced_hop_by_hop() &&
        (!ip->discard() || ip->protocol() != ipproto::ipv6_hopopts))
        __builtin_trap();
    if (auto pp = ip->problem()) {
        s(pp->code);
        s(pp->pointer < ip->total_len());  // the pointer names a byte of the packet
        if (pp->pointer >= ip->total_len()) __builtin_trap();
    }
    s(ip->router_alert());
    s(ip->header());
    s(ip->payload());
    if (depth > 1 || ip->is_fragment()) return;
    IpAddr src = ip->src_addr(), dst = ip->dst_addr();
    switch (ip->protocol()) {
    case ipproto::udp:
        touch_udp(s, ip->payload(), src, dst);
        break;
    case ipproto::tcp:
        touch_tcp(s, ip->payload(), src, dst);
        break;
    case ipproto::icmpv6:
        touch_icmp6(s, ip->payload(), src, dst, depth);
        break;
    default:
        break;
    }
}

inline void touch_ethernet(Sink& s, Bytes b) {
    auto e = EthernetView::parse(b);
    if (!e) return;
    touch_mac(s, e->dst());
    touch_mac(s, e->src());
    s(e->dst().is_multicast());
    s(e->ethertype());
    s(e->has_vlan_tag());
    s(e->vlan_id());
    s(e->header_len());
    s(e->frame().size());
    if (auto n = ip_frame_length(b)) {
        if (*n > b.size() || *n < e->header_len()) __builtin_trap();
        s(*n);
    }
    switch (e->ethertype()) {
    case ethertype::arp:
        touch_arp(s, e->payload());
        break;
    case ethertype::ipv4:
        touch_ipv4(s, e->payload());
        break;
    case ethertype::ipv6:
        touch_ipv6(s, e->payload());
        break;
    default:
        s(e->payload());
        break;
    }
}

}  // namespace usernet::fuzz
