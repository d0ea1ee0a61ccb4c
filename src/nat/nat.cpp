#include "nat/nat.hpp"

#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "gateway/dns_forwarder.hpp"
#include "gateway/dns_tcp.hpp"
#include "nat/forward.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/tcp_nat.hpp"
#include "nat/udp_nat.hpp"
#include "wire/ipv4.hpp"
#include "wire/ipv6.hpp"

namespace usernet::nat {

Nat::Nat(core::EventLoop& loop, gw::Gateway& gw, NatLimits limits)
    : loop_(loop), gw_(gw), limits_(limits), commands_(loop) {
    tcp_ = std::make_unique<TcpNat>(*this);
    udp_ = std::make_unique<UdpNat>(*this);
    icmp_ = std::make_unique<IcmpNat>(*this);
    fwd_ = std::make_unique<Forwarder>(*this);
}

Nat::~Nat() = default;

void Nat::from_guest(const gw::GuestPacket& pkt) {
    switch (pkt.proto) {
    case wire::ipproto::tcp:
        tcp_->from_guest(pkt);
        break;
    case wire::ipproto::udp:
        udp_->from_guest(pkt);
        break;
    case wire::ipproto::icmp:
    case wire::ipproto::icmpv6:
        // Each family's own ICMP only.
        if (pkt.src.is_v4() == (pkt.proto == wire::ipproto::icmp)) {
            icmp_->from_guest(pkt);
            break;
        }
        stats_.dropped_proto++;
        break;
    default:
        stats_.dropped_proto++;
        break;
    }
}

void Nat::port_gone(sw::PortId port) {
    tcp_->drop_port(port);
    udp_->drop_port(port);
    icmp_->drop_port(port);
    commands_.forget_owner(port);
}

bool Nat::release_descriptor() { return udp_->release_oldest() || icmp_->release_oldest(); }

void Nat::add_forward(const ForwardSpec& spec) { fwd_->add(spec); }

void Nat::add_guest_forward(const GuestForwardSpec& spec) { guest_fwds_.push_back(spec); }

bool Nat::remove_guest_forward(const wire::IpAddr& addr, uint16_t port) {
    return std::erase_if(guest_fwds_, [&](const GuestForwardSpec& g) {
               return g.addr == addr && g.port == port;
           }) != 0;
}

HostTarget Nat::host_target(const wire::IpAddr& dst, uint16_t port, uint8_t proto) {
    const gw::NetConfig& c = gw_.config();
    HostTarget t;
    auto refuse = [&](HostTarget::Verdict v) {
        t.verdict = v;
        if (v == HostTarget::Verdict::forbidden) stats_.dropped_forbidden++;
        else stats_.dropped_unreachable++;
        return t;
    };
    // A guest forward is the user's own: no policy applies.
    bool service_addr = false;
    for (const GuestForwardSpec& g : guest_fwds_) {
        if (g.addr != dst) continue;
        service_addr = true;
        if (proto != wire::ipproto::tcp || port != g.port) continue;
        t.verdict = HostTarget::Verdict::ok;
        t.guest_forward = true;
        switch (g.kind) {
        case GuestForwardSpec::Kind::tcp:
            t.addr = to_sockaddr(g.host, g.host_port);
            break;
        case GuestForwardSpec::Kind::unix_socket: {
            auto* un = reinterpret_cast<sockaddr_un*>(&t.addr);
            un->sun_family = AF_UNIX;
            std::memcpy(un->sun_path, g.path.data(),
                        std::min(g.path.size(), sizeof un->sun_path - 1));
            break;
        }
        case GuestForwardSpec::Kind::command:
            t.command = &g.command;
            break;
        case GuestForwardSpec::Kind::embedder:
            t.opener = g.opener;
            break;
        }
        return t;
    }
    if (service_addr) return refuse(HostTarget::Verdict::unreachable);
    // The DNS address's port 53 is the gateway's service whatever the
    // policy; everything else passes the user's policy first.
    const bool dns_service = c.dns_service &&
                             (dst == wire::IpAddr::v4(c.dns) || (c.ipv6 && dst == c.dns6)) &&
                             port == 53 &&
                             (proto == wire::ipproto::tcp || proto == wire::ipproto::udp);
    // The gateway's link-local address is the gateway: the rules for
    // --gateway6 hold there too (--deny [fec0::2] covers it).
    const wire::IpAddr& policy_dst = c.ipv6 && dst == gw_.link_local() ? c.gateway6 : dst;
    if (!dns_service && !c.policy_allows(policy_dst, port, proto)) {
        stats_.dropped_policy++;
        t.verdict = HostTarget::Verdict::forbidden;
        return t;
    }
    if (dst.is_v4()) {
        wire::Ipv4 d = dst.as_v4();
        if (d == c.gateway) {
            if (!c.map_gateway_to_loopback) return refuse(HostTarget::Verdict::unreachable);
            t.verdict = HostTarget::Verdict::ok;
            t.addr = to_sockaddr(wire::IpAddr::v4(0x7f000001), port);
            return t;
        }
        if (d == c.dns) {
            if (!dns_service)
                return refuse(HostTarget::Verdict::unreachable);
            if (proto == wire::ipproto::tcp) {
                t.verdict = HostTarget::Verdict::ok;
                t.dns_tcp = &gw_.dns_tcp();
                return t;
            }
            // Follow the forwarder's choice: the upstream that answered
            // last, so a dead first resolver does not break DNS over TCP.
            std::optional<gw::HostPort> up = gw_.dns().active_upstream();
            if (!up) return refuse(HostTarget::Verdict::unreachable);
            t.verdict = HostTarget::Verdict::ok;
            t.addr = to_sockaddr(up->addr, up->port, up->scope);
            return t;
        }
        const uint8_t first = static_cast<uint8_t>(d >> 24);
        if (first == 127 || first == 0) return refuse(HostTarget::Verdict::forbidden);
        if ((d >> 16) == 0xa9fe && !c.allow_link_local)
            return refuse(HostTarget::Verdict::forbidden);
        if (c.in_subnet(d) || d == 0xffffffff || (d >> 28) >= 0xe)
            return refuse(HostTarget::Verdict::unreachable);
    } else {
        // The gateway's link-local address, the guest's default router,
        // is the gateway too (as in libslirp and passt).
        if (c.ipv6 && (dst == c.gateway6 || dst == gw_.link_local())) {
            if (!c.map_gateway_to_loopback) return refuse(HostTarget::Verdict::unreachable);
            t.verdict = HostTarget::Verdict::ok;
            t.addr = to_sockaddr(*wire::IpAddr::parse("::1"), port);
            return t;
        }
        if (c.ipv6 && dst == c.dns6) {
            if (!dns_service)
                return refuse(HostTarget::Verdict::unreachable);
            if (proto == wire::ipproto::tcp) {
                t.verdict = HostTarget::Verdict::ok;
                t.dns_tcp = &gw_.dns_tcp();
                return t;
            }
            std::optional<gw::HostPort> up = gw_.dns().active_upstream();
            if (!up) return refuse(HostTarget::Verdict::unreachable);
            t.verdict = HostTarget::Verdict::ok;
            t.addr = to_sockaddr(up->addr, up->port, up->scope);
            return t;
        }
        // The host's own loopback, and its link-local scope (which would
        // need an interface the guest cannot name), are not the guest's.
        if (dst.is_loopback() || dst.is_unspecified() || wire::is_v6_link_local(dst))
            return refuse(HostTarget::Verdict::forbidden);
        if (wire::is_v6_multicast(dst) || c.in_prefix6(dst))
            return refuse(HostTarget::Verdict::unreachable);
    }
    t.verdict = HostTarget::Verdict::ok;
    t.addr = to_sockaddr(dst, port);
    return t;
}

wire::IpAddr Nat::guest_visible(const wire::IpAddr& host_src) const {
    const gw::NetConfig& c = gw_.config();
    if (host_src.is_loopback() && c.map_gateway_to_loopback)
        return host_src.is_v4() ? wire::IpAddr::v4(c.gateway) : c.gateway6;
    return host_src;
}

bool Nat::inbound_allowed(const wire::IpAddr& src, uint16_t port, uint8_t proto) const {
    const gw::NetConfig& c = gw_.config();
    if (c.policy.empty() && !c.restrict && !c.no_tcp && !c.no_udp && !c.no_icmp) return true;
    if (c.dns_service && port == 53 && (src == wire::IpAddr::v4(c.dns) || (c.ipv6 && src == c.dns6)))
        return true;
    const wire::IpAddr& policy_src = c.ipv6 && src == gw_.link_local() ? c.gateway6 : src;
    return c.policy_allows(policy_src, port, proto);
}

wire::IpAddr Nat::gateway_for(const wire::IpAddr& guest) const {
    const gw::NetConfig& c = gw_.config();
    return guest.is_v4() ? wire::IpAddr::v4(c.gateway) : c.gateway6;
}

}  // namespace usernet::nat
