// The DHCPv6 server: see dhcp6_server.hpp for the theory of operation.
#include "gateway/dhcp6_server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "gateway/gateway.hpp"
#include "gateway/log_format.hpp"
#include "wire/dns.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {

namespace {

// Whether the client's Option Request Option names code.
bool requested(const wire::Dhcp6Options& opts, uint16_t code) {
    auto oro = opts.find(wire::dhcp6opt::oro);
    if (!oro) return false;
    for (size_t i = 0; i + 1 < oro->size(); i += 2)
        if (wire::load16(oro->data() + i) == code) return true;
    return false;
}

}  // namespace

namespace {

// A reply fits the minimum IPv6 MTU whatever the link.
constexpr size_t kMaxReply = 1280 - 40 - wire::kUdpHeaderLen;
// RFC 8415 21.13 / RFC 3633: no prefixes to delegate.
constexpr uint16_t kNoPrefixAvail = 6;

bool same(wire::Bytes a, wire::Bytes b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace

Dhcp6Server::Dhcp6Server(Gateway& gw, const NetConfig& cfg) : gw_(gw), cfg_(cfg) {
    // DUID-LL (type 3), hardware type 1 (Ethernet), the gateway's MAC.
    duid_ = {0, 3, 0, 1};
    duid_.resize(10);
    cfg_.gw_mac.store(&duid_[4]);
}

void Dhcp6Server::handle(wire::Bytes msg, const wire::IpAddr& src, uint16_t sport,
                         const wire::MacAddr& mac, sw::PortId port) {
    stats_.received++;
    auto m = wire::Dhcp6View::parse(msg);
    if (!m) {
        stats_.dropped_malformed++;
        spdlog::debug("dhcpv6: malformed message from {}", src);
        return;
    }
    answer(*m, src, sport, mac, port);
}

void Dhcp6Server::answer(const wire::Dhcp6View& req, const wire::IpAddr& to, uint16_t port,
                         const wire::MacAddr& mac, sw::PortId from) {
    namespace t = wire::dhcp6type;
    namespace o = wire::dhcp6opt;
    const wire::Dhcp6Options& opts = req.options();
    const uint8_t type = req.type();
    const auto client = opts.find(o::client_id);
    const auto server = opts.find(o::server_id);
    if (opts.count(o::client_id) > 1 || opts.count(o::server_id) > 1 ||
        (client && (client->size() < 2 || client->size() > wire::kMaxDuidLen))) {
        stats_.dropped_malformed++;
        return;
    }
    const bool has_ia = opts.find(o::ia_na) || opts.find(o::ia_ta) || opts.find(o::ia_pd);
    bool ok = false;
    switch (type) {
    case t::solicit:
    case t::rebind:
    case t::confirm:
        ok = client && !server;
        break;
    case t::request:
    case t::renew:
    case t::release:
    case t::decline:
        ok = client && server && same(*server, duid());
        break;
    case t::information_request:
        ok = (!server || same(*server, duid())) && !has_ia;
        break;
    default:
        break;  // server messages, reconfigure: not for a server
    }
    if (!ok) {
        stats_.dropped_not_for_us++;
        spdlog::debug("dhcpv6: ignored a message of type {} from {}", type, to);
        return;
    }

    const bool rapid = type == t::solicit && opts.find(o::rapid_commit).has_value();
    const uint8_t reply_type = type == t::solicit && !rapid ? t::advertise : t::reply;
    uint8_t* l4 = gw_.tx_l4();
    wire::Dhcp6Builder b(wire::MutBytes(l4 + wire::kUdpHeaderLen, kMaxReply), reply_type,
                         req.xid());
    b.put(o::server_id, duid());
    if (client) b.put(o::client_id, *client);
    if (rapid) b.put(o::rapid_commit, {});

    if (type == t::confirm) {
        // 18.3.3: are the client's addresses on this link? No addresses:
        // no reply.
        bool any = false;
        bool on_link = true;
        opts.for_each([&](const wire::Dhcp6Option& op) {
            if (op.code != o::ia_na) return;
            auto ia = wire::Dhcp6IaNa::parse(op.data);
            if (!ia) return;
            ia->options.for_each([&](const wire::Dhcp6Option& a) {
                auto addr = a.code == o::iaaddr ? wire::Dhcp6IaAddr::parse(a.data) : std::nullopt;
                if (!addr) return;
                any = true;
                on_link = on_link && cfg_.in_prefix6(addr->addr);
            });
        });
        if (!any) return;
        b.put_status(on_link ? wire::dhcp6status::success : wire::dhcp6status::not_on_link,
                     on_link ? "on link" : "not on this link");
    } else if (type != t::information_request) {
        const Ia what = type == t::release   ? Ia::release
                        : type == t::decline ? Ia::decline
                        : type == t::renew   ? Ia::renew
                        : reply_type == t::advertise ? Ia::offer
                                             : Ia::bind;
        size_t ias = 0;
        opts.for_each([&](const wire::Dhcp6Option& op) {
            if (op.code == o::ia_na) {
                auto ia = wire::Dhcp6IaNa::parse(op.data);
                if (!ia || ++ias > kMaxIasPerMessage) return;
                ia_na(b, *ia, *client, mac, from, what);
            } else if ((op.code == o::ia_ta || op.code == o::ia_pd) && what != Ia::release &&
                       what != Ia::decline) {
                // Not served: the IA back (IAID, and IA_PD's T1 and T2) with
                // its status (21.5, RFC 8415 21.21).
                const bool ta = op.code == o::ia_ta;
                const size_t fixed = ta ? 4 : 12;
                if (op.data.size() < fixed) return;
                size_t mark = b.begin(op.code);
                b.append(op.data.first(fixed));
                b.put_status(ta ? wire::dhcp6status::no_addrs_avail : kNoPrefixAvail,
                             ta ? "no temporary addresses" : "no prefixes to delegate");
                b.end(mark);
            }
        });
        if (what == Ia::release || what == Ia::decline)
            b.put_status(wire::dhcp6status::success, what == Ia::release ? "released" : "declined");
    }
    if (type != t::release && type != t::decline) {
        b.put(o::dns_servers, wire::Bytes(cfg_.dns6.b.data(), 16));
        if (!gw_.search_wire().empty()) b.put(o::domain_list, gw_.search_wire());
        // RFC 5970 3.1: only to a client that asks for it. A name on our
        // TFTP server becomes its URL there.
        if (!cfg_.bootfile.empty() && requested(opts, o::bootfile_url)) {
            const std::string url = cfg_.bootfile_is_url()
                                        ? cfg_.bootfile
                                        : "tftp://[" + cfg_.gateway6.to_string() + "]/" + cfg_.bootfile;
            b.put(o::bootfile_url,
                  wire::Bytes(reinterpret_cast<const uint8_t*>(url.data()), url.size()));
        }
    }
    const size_t n = b.finish();
    if (n == 0) return;
    const wire::IpAddr& self = gw_.link_local();
    wire::build_udp(l4, self, to, wire::kDhcp6ServerPort, port, n);
    if (gw_.send_ip(self, to, wire::ipproto::udp, wire::kUdpHeaderLen + n)) {
        if (reply_type == t::advertise) stats_.advertises++;
        else stats_.replies++;
    }
}

void Dhcp6Server::ia_na(wire::Dhcp6Builder& b, const wire::Dhcp6IaNa& ia, wire::Bytes duid,
                        const wire::MacAddr& mac, sw::PortId port, Ia what) {
    namespace o = wire::dhcp6opt;
    Lease* l = find(duid, ia.iaid);
    // Only the attachment that holds a binding may renew, release or decline
    // it; a binding whose attachment left goes to the same MAC on its new one.
    if (l && l->port == sw::kNoPort && l->mac == mac) l->port = port;
    if (l && l->port != port) l = nullptr;
    if (what == Ia::release || what == Ia::decline) {
        if (!l) {
            // 18.3.7, 18.3.8: an IA the client holds no binding for.
            const size_t mark = b.begin(o::ia_na);
            b.append32(ia.iaid);
            b.append32(0);
            b.append32(0);
            b.put_status(wire::dhcp6status::no_binding, "no binding for this IA");
            b.end(mark);
            return;
        }
        // Only the addresses the IA names (18.3.7, 18.3.8: the server
        // ignores addresses not assigned to the IA). A Release naming none
        // gives back the IA's binding, as before; a Decline is about one
        // address someone else answers at, so it must name ours.
        bool named_ours = false, named_any = false;
        ia.options.for_each([&](const wire::Dhcp6Option& a) {
            auto addr = a.code == o::iaaddr ? wire::Dhcp6IaAddr::parse(a.data) : std::nullopt;
            if (!addr) return;
            named_any = true;
            named_ours = named_ours || addr->addr == l->addr;
        });
        if (!named_ours && (named_any || what == Ia::decline)) {
            spdlog::debug("dhcpv6: {} {} an address it does not hold; ignored", mac,
                          what == Ia::release ? "released" : "declined");
            return;
        }
        if (what == Ia::release) {
            spdlog::debug("dhcpv6: released {}", l->addr);
            *l = std::move(leases_.back());
            leases_.pop_back();
        } else {
            // Someone else answers at that address: it rests, bound to
            // nobody, rather than going to the next client.
            // An attachment keeps at most its quota of addresses resting,
            // so that declining cannot drain the pool: its oldest goes.
            spdlog::info("dhcpv6: {} declined {} (in use by another host)", mac, l->addr);
            const core::Millis now = gw_.loop().now();
            l->duid.clear();
            l->iaid = 0;
            l->declined = true;
            l->until = now + kDeclineHoldMs;
            size_t resting = 0;
            Lease* oldest = nullptr;
            for (Lease& d : leases_) {
                if (!d.declined || d.port != port || d.until <= now) continue;
                resting++;
                if (!oldest || d.until < oldest->until) oldest = &d;
            }
            if (resting > std::max<uint32_t>(cfg_.dhcp_leases_per_port, 1)) {
                *oldest = std::move(leases_.back());
                leases_.pop_back();
            }
        }
        return;
    }
    const size_t mark = b.begin(o::ia_na);
    b.append32(ia.iaid);
    if (what == Ia::bind || what == Ia::offer) l = bind(duid, ia.iaid, mac, port);
    if (!l) {
        b.append32(0);
        b.append32(0);
        if (what == Ia::renew) {
            b.put_status(wire::dhcp6status::no_binding, "no binding for this IA");
        } else {
            stats_.no_addrs++;
            b.put_status(wire::dhcp6status::no_addrs_avail, "no addresses available");
        }
        b.end(mark);
        return;
    }
    const uint32_t life = cfg_.lease_seconds;
    const core::Millis now = gw_.loop().now();
    if (what == Ia::offer && !l->committed) {
        l->until = now + kOfferHoldMs;
    } else {
        l->until = now + core::Millis{life} * 1000;
        l->committed = true;
    }
    b.append32(life / 2);
    b.append32(life / 5 * 4);
    // Addresses the client asked for that are not its binding: lifetimes
    // of 0, so that it stops using them (18.3.4).
    ia.options.for_each([&](const wire::Dhcp6Option& a) {
        auto addr = a.code == o::iaaddr ? wire::Dhcp6IaAddr::parse(a.data) : std::nullopt;
        if (!addr || addr->addr == l->addr) return;
        const size_t m = b.begin(o::iaaddr);
        b.append(wire::Bytes(addr->addr.b.data(), 16));
        b.append32(0);
        b.append32(0);
        b.end(m);
    });
    const size_t m = b.begin(o::iaaddr);
    b.append(wire::Bytes(l->addr.b.data(), 16));
    b.append32(life);
    b.append32(life);
    b.end(m);
    b.end(mark);
    stats_.addresses_bound++;
}

Dhcp6Server::Lease* Dhcp6Server::find(wire::Bytes duid, uint32_t iaid) {
    for (Lease& l : leases_)
        if (!l.declined && l.iaid == iaid &&
            same(wire::Bytes(l.duid.data(), l.duid.size()), duid))
            return &l;
    return nullptr;
}

bool Dhcp6Server::usable(const wire::IpAddr& a, const Lease* self,
                         const wire::MacAddr& mac) const {
    if (!cfg_.in_prefix6(a) || a == cfg_.prefix6 || gw_.is_own_v6(a)) return false;
    const core::Millis now = gw_.loop().now();
    for (const Lease& l : leases_)
        if (&l != self && l.addr == a && l.until > now) return false;
    return !gw_.address6_taken(a, mac);
}

bool Dhcp6Server::make_room(sw::PortId port) {
    const core::Millis now = gw_.loop().now();
    size_t mine = 0;
    Lease* oldest = nullptr;
    for (Lease& l : leases_) {
        if (l.port != port || l.declined) continue;
        mine++;
        if (!oldest || l.until < oldest->until) oldest = &l;
    }
    Lease* victim = nullptr;
    if (mine >= std::max<uint32_t>(cfg_.dhcp_leases_per_port, 1)) {
        victim = oldest;  // the attachment's own oldest binding
    } else if (leases_.size() >= kMaxLeases) {
        for (Lease& l : leases_)
            if (l.until <= now && (!victim || l.until < victim->until)) victim = &l;
        if (!victim) return false;
    }
    if (victim) {
        *victim = std::move(leases_.back());
        leases_.pop_back();
    }
    return true;
}

Dhcp6Server::Lease* Dhcp6Server::bind(wire::Bytes duid, uint32_t iaid, const wire::MacAddr& mac,
                                      sw::PortId port) {
    if (Lease* l = find(duid, iaid)) {
        if (l->port == sw::kNoPort && l->mac == mac) l->port = port;  // came back
        if (l->port == port && usable(l->addr, l, mac)) {
            l->mac = mac;
            return l;
        }
        // Another attachment's client with the same identity, or its
        // address went to someone else: not this one's.
        if (l->port != port && l->until > gw_.loop().now()) return nullptr;
        *l = std::move(leases_.back());
        leases_.pop_back();
    }
    if (!make_room(port)) return nullptr;
    // The address that goes with the MAC's IPv4 address, for the client's
    // first IA; then the pool.
    wire::IpAddr addr{};
    bool first_ia = std::none_of(leases_.begin(), leases_.end(), [&](const Lease& l) {
        return !l.declined && same(wire::Bytes(l.duid.data(), l.duid.size()), duid);
    });
    if (first_ia) {
        const wire::Ipv4 v4 = gw_.v4_of_mac(mac);
        if (v4 != 0 && cfg_.in_subnet(v4) && usable(cfg_.v6_of(v4), nullptr, mac))
            addr = cfg_.v6_of(v4);
    }
    for (uint32_t k = 1; addr.is_unspecified() && k <= 2 * kMaxLeases; k++) {
        wire::IpAddr a = cfg_.prefix6;
        wire::store16(&a.b[10], 1);
        wire::store32(&a.b[12], k);
        if (usable(a, nullptr, mac)) addr = a;
    }
    if (addr.is_unspecified()) return nullptr;
    Lease l;
    l.duid.assign(duid.begin(), duid.end());
    l.iaid = iaid;
    l.addr = addr;
    l.mac = mac;
    l.port = port;
    leases_.push_back(std::move(l));
    spdlog::debug("dhcpv6: {} for {} (IAID {})", addr, mac, iaid);
    return &leases_.back();
}

void Dhcp6Server::port_gone(sw::PortId port) {
    for (Lease& l : leases_)
        if (l.port == port) l.port = sw::kNoPort;
}

}  // namespace usernet::gw
