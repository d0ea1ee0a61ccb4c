// Fuzzes the DHCPv4 lease state machine through the real gateway: 16
// guest MACs spread over the switch's 4 ports send DISCOVER, REQUEST
// (selecting, init-reboot, renewing), RELEASE, DECLINE and ARP claims in
// any order, with or without client identifiers (their own, or one they
// all share, as a hostile guest would), while time advances past offer
// holds, decline rests and lease ends (lease time 600 s, pool of 8).
//
// The harness keeps, from the replies alone, who holds what: an ACK gives
// the client its address until now + lease time; its NAK, RELEASE or
// DECLINE ends that. Invariants (FUZZ_CHECK):
// - every OFFER and ACK names an address of the pool (never the network,
//   broadcast, gateway or DNS address, never outside the range);
// - no ACK gives an address to a MAC while a MAC on another port holds it
//   (two MACs on one port are one attachment's business: a per-port quota
//   may recycle one of them for the other); a MAC holds one address, so
//   its ACK ends what it held under any client identifier;
// - the addresses held at once never outnumber the pool.
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "gateway/dhcp4_server.hpp"
#include "wire/arp.hpp"
#include "wire/dhcp4.hpp"
#include "world.hpp"

using namespace usernet;
using namespace usernet::fuzz;

namespace {

constexpr size_t kMacs = 16;
constexpr size_t kMaxOps = 512;
constexpr uint32_t kPool = 8;
constexpr uint32_t kLeaseSeconds = 600;

size_t port_of(size_t mac) { return mac % kPorts; }
MacAddr mac_of(size_t mac) { return guest_mac(port_of(mac), static_cast<uint8_t>(mac / kPorts)); }

struct Claim {
    Ipv4 ip;
    core::Millis until;
};

struct Model {
    // (mac index, client id variant) -> the address it was ACKed.
    std::map<std::pair<size_t, uint8_t>, Claim> claims;
};

Ipv4 pick_ip(const gw::NetConfig& c, uint8_t b) {
    // Mostly the pool, sometimes just outside it or a special address.
    return c.dhcp_start - 2 + b % (kPool + 4);
}

std::vector<uint8_t> dhcp_frame(const gw::NetConfig& c, size_t mac, uint8_t cidv, uint8_t type,
                                Ipv4 ciaddr, std::optional<Ipv4> requested,
                                std::optional<Ipv4> server, uint32_t xid, bool bcast_flag) {
    MacAddr m = mac_of(mac);
    std::vector<uint8_t> f(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + 400);
    uint8_t* d = &f[kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen];
    Dhcp4Builder b(MutBytes(d, 400));
    b.set_op(dhcp4op::boot_request);
    b.set_xid(xid);
    b.set_chaddr(m);
    b.set_ciaddr(ciaddr);
    if (bcast_flag) b.set_flags(kDhcp4FlagBroadcast);
    b.add_u8(dhcp4opt::message_type, type);
    uint8_t cid[7] = {1};
    m.store(cid + 1);
    switch (cidv) {
    case 1:  // 01:MAC, as most clients send
        b.add_option(dhcp4opt::client_id, Bytes(cid, 7));
        break;
    case 2:  // one identifier every MAC claims
        b.add_option(dhcp4opt::client_id, Bytes(reinterpret_cast<const uint8_t*>("shared"), 6));
        break;
    case 3:  // another MAC's 01:MAC
        mac_of((mac + 1) % kMacs).store(cid + 1);
        b.add_option(dhcp4opt::client_id, Bytes(cid, 7));
        break;
    default:
        break;
    }
    if (requested) b.add_ipv4(dhcp4opt::requested_ip, *requested);
    if (server) b.add_ipv4(dhcp4opt::server_id, *server);
    size_t n = b.finish();
    FUZZ_CHECK(n > 0);
    bool unicast = ciaddr != 0;
    Ipv4 src = ciaddr, dst = unicast ? c.gateway : 0xffffffff;
    build_ethernet(f.data(), unicast ? c.gw_mac : MacAddr::broadcast(), m, ethertype::ipv4);
    build_ipv4(&f[kEthHeaderLen], src, dst, ipproto::udp, kUdpHeaderLen + n, 64, 1);
    build_udp(&f[kEthHeaderLen + kIpv4HeaderLen], IpAddr::v4(src), IpAddr::v4(dst),
              kDhcp4ClientPort, kDhcp4ServerPort, n);
    f.resize(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + n);
    return f;
}

std::vector<uint8_t> arp_claim(size_t mac, Ipv4 ip, Ipv4 target) {
    std::vector<uint8_t> f(60, 0);
    MacAddr m = mac_of(mac);
    size_t n = build_ethernet(f.data(), MacAddr::broadcast(), m, ethertype::arp);
    build_arp(f.data() + n, arpop::request, m, ip, MacAddr{}, target);
    return f;
}

// The client the server sees: no identifier and 01:MAC both name the MAC;
// the shared identifier is one client; another MAC's 01:MAC names that MAC.
size_t identity(size_t mac, uint8_t cidv) {
    switch (cidv) {
    case 2: return kMacs;
    case 3: return (mac + 1) % kMacs;
    default: return mac;
    }
}

// A RELEASE or DECLINE of ip by (mac, cidv) ends the MAC's claim on it made
// under the same identity (the server checks the holder's identifier).
void end_claim(Model& m, size_t mac, uint8_t cidv, Ipv4 ip) {
    for (auto it = m.claims.begin(); it != m.claims.end();) {
        const bool same = it->first.first == mac && it->second.ip == ip &&
                          identity(mac, it->first.second) == identity(mac, cidv);
        it = same ? m.claims.erase(it) : std::next(it);
    }
}

bool in_pool(const gw::NetConfig& c, Ipv4 a) {
    return a >= c.dhcp_start && a < c.dhcp_start + c.dhcp_count && a != c.gateway &&
           a != c.dns && a != c.net && a != c.broadcast();
}

// Reads the replies each MAC's own port got, checks them, and updates the
// model. `asked` is the client that sent the last request.
void collect(World& w, Model& m, size_t mac, uint8_t cidv) {
    core::Millis now = w.loop.now();
    for (size_t p = 0; p < kPorts; p++) {
        for (const auto& f : w.ports[p]->kept) {
            auto eth = EthernetView::parse(f);
            if (!eth || eth->ethertype() != ethertype::ipv4) continue;
            auto ip = Ipv4View::parse(eth->payload());
            if (!ip || ip->protocol() != ipproto::udp) continue;
            auto u = UdpView::parse(ip->payload());
            if (!u || u->src_port() != kDhcp4ServerPort) continue;
            auto d = Dhcp4View::parse(u->payload());
            FUZZ_CHECK(d.has_value());
            auto ch = d->chaddr();
            FUZZ_CHECK(ch.has_value());
            // A broadcast reply reaches every port: read it at its owner's.
            if (p != port_of(mac) || *ch != mac_of(mac)) continue;
            auto type = d->message_type();
            FUZZ_CHECK(type.has_value());
            auto key = std::make_pair(mac, cidv);
            if (*type == dhcp4msg::offer || *type == dhcp4msg::ack)
                FUZZ_CHECK(in_pool(w.cfg, d->yiaddr()));
            if (*type == dhcp4msg::nak) m.claims.erase(key);
            if (*type != dhcp4msg::ack) continue;
            Ipv4 a = d->yiaddr();
            for (const auto& [k, c] : m.claims) {
                if (k.first == mac || port_of(k.first) == port_of(mac)) continue;
                // A second of slack for the boundary of a lease's end.
                if (c.ip == a && c.until > now + 1000) {
                    std::fprintf(stderr,
                                 "fuzz_dhcp_leases: ACK of %08x to MAC %zu (port %zu) while MAC "
                                 "%zu (port %zu) holds it\n",
                                 a, mac, port_of(mac), k.first, port_of(k.first));
                    FUZZ_CHECK(false);
                }
            }
            // A MAC holds one address (the IP source guard lets it use
            // one): its ACK ends what the same MAC held under any
            // identity.
            for (auto it = m.claims.begin(); it != m.claims.end();)
                it = it->first.first == mac ? m.claims.erase(it) : std::next(it);
            m.claims[key] = Claim{a, now + core::Millis(kLeaseSeconds) * 1000};
        }
    }
    for (auto& p : w.ports) p->kept.clear();
    std::set<Ipv4> held;
    for (const auto& [k, c] : m.claims)
        if (c.until > now + 1000) held.insert(c.ip);
    FUZZ_CHECK(held.size() <= kPool);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    init_process();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    WorldOptions o;
    o.dhcp_count = kPool;
    o.lease_seconds = kLeaseSeconds;
    o.nat = false;  // DHCP and ARP only: nothing routed
    World w(o);
    for (auto& p : w.ports) p->keep = true;
    Model model;
    Reader r{data, size};
    const gw::NetConfig& c = w.cfg;
    uint32_t xid = 1;
    for (size_t i = 0; i < kMaxOps && !r.empty(); i++) {
        uint8_t opb = r.u8();
        uint8_t who = r.u8();
        size_t mac = who % kMacs;
        uint8_t cidv = (who >> 4) & 3;
        uint8_t arg = r.u8();
        auto key = std::make_pair(mac, cidv);
        Ipv4 held = model.claims.count(key) ? model.claims[key].ip : 0;
        Ipv4 ip = (arg & 0x80) && held ? held : pick_ip(c, arg);
        std::vector<uint8_t> f;
        switch (opb % 7) {
        case 0:  // DISCOVER, maybe asking for an address
            f = dhcp_frame(c, mac, cidv, dhcp4msg::discover, 0,
                           (arg & 0x40) ? std::optional<Ipv4>(ip) : std::nullopt, std::nullopt,
                           xid++, arg & 0x20);
            break;
        case 1:  // REQUEST, selecting our offer (or another server's)
            f = dhcp_frame(c, mac, cidv, dhcp4msg::request, 0, ip,
                           (arg & 0x40) ? c.gateway + 10 : c.gateway, xid++, arg & 0x20);
            break;
        case 2:  // REQUEST, init-reboot or renewing
            f = dhcp_frame(c, mac, cidv, dhcp4msg::request, (arg & 0x40) ? ip : 0,
                           (arg & 0x40) ? std::nullopt : std::optional<Ipv4>(ip), std::nullopt,
                           xid++, arg & 0x20);
            break;
        case 3:  // RELEASE
            f = dhcp_frame(c, mac, cidv, dhcp4msg::release, ip, std::nullopt, c.gateway, xid++,
                           false);
            end_claim(model, mac, cidv, ip);
            break;
        case 4:  // DECLINE
            f = dhcp_frame(c, mac, cidv, dhcp4msg::decline, 0, ip, c.gateway, xid++, false);
            end_claim(model, mac, cidv, ip);
            break;
        case 5:  // time passes
            w.advance(core::Millis(arg) * 10'000);
            break;
        case 6:  // an ARP claim (gratuitous, or asking for the gateway)
            f = arp_claim(mac, ip, (arg & 0x40) ? ip : c.gateway);
            break;
        }
        if (!f.empty()) w.input(port_of(mac), f);
        collect(w, model, mac, cidv);
    }
    return 0;
}
