#include "gateway/dhcp4_server.hpp"

#include <spdlog/spdlog.h>

#include "gateway/log_format.hpp"

#include <algorithm>
#include <cstring>

#include "gateway/gateway.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {

namespace {

// Whether two host names have the same first label, ignoring case.
bool same_label(std::string_view a, std::string_view b) {
    a = a.substr(0, a.find('.'));
    b = b.substr(0, b.find('.'));
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) {
        auto low = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c; };
        if (low(a[i]) != low(b[i])) return false;
    }
    return true;
}

// The largest reply every client must accept (RFC 2131 2: 576-byte IP
// datagrams), minus the IP and UDP headers.
constexpr size_t kMinReplyCap = 576 - 20 - 8;
constexpr size_t kMaxReplyCap = 1500 - 20 - 8;
constexpr uint32_t kMaxPool = 65536;

uint64_t fnv1a(wire::Bytes b) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint8_t c : b) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    return h;
}

}  // namespace

Dhcp4ClientKey Dhcp4ClientKey::from_mac(const wire::MacAddr& mac) {
    Dhcp4ClientKey k;
    k.kind = Kind::mac;
    k.len = 6;
    mac.store(k.bytes.data());
    return k;
}

Dhcp4ClientKey Dhcp4ClientKey::from_client_id(wire::Bytes id) {
    // Type 1 (Ethernet) with a MAC names that MAC (RFC 2132 9.14): the same
    // client whether or not it sends option 61.
    if (id.size() == 7 && id[0] == 1) return from_mac(wire::MacAddr::from(id.data() + 1));
    Dhcp4ClientKey k;
    k.kind = Kind::client_id;
    if (id.size() <= kMaxLen) {
        k.len = static_cast<uint8_t>(id.size());
        if (!id.empty()) std::memcpy(k.bytes.data(), id.data(), id.size());
        return k;
    }
    // Keep the head (type and the start of the DUID) and fold the rest
    // into a hash; the length byte above kMaxLen marks the folded form.
    constexpr size_t head = kMaxLen - 8;
    std::memcpy(k.bytes.data(), id.data(), head);
    uint64_t h = fnv1a(id);
    for (size_t i = 0; i < 8; i++) k.bytes[head + i] = static_cast<uint8_t>(h >> (8 * i));
    k.len = static_cast<uint8_t>(std::min<size_t>(id.size(), 255));
    return k;
}

// --- Dhcp4Leases -----------------------------------------------------------

Dhcp4Leases::Dhcp4Leases(const NetConfig& cfg)
    : lease_ms_(core::Millis{cfg.lease_seconds} * 1000),
      per_port_(std::max<uint32_t>(cfg.dhcp_leases_per_port, 1)) {
    uint32_t count = std::min(cfg.dhcp_count, kMaxPool);
    pool_.reserve(count);
    for (uint32_t i = 0; i < count; i++) {
        wire::Ipv4 a = cfg.dhcp_start + i;
        if (a < cfg.dhcp_start) break;  // wrapped past 255.255.255.255
        if (!cfg.in_subnet(a) || a == cfg.net || a == cfg.broadcast() || a == cfg.gateway ||
            a == cfg.dns || cfg.is_service_addr(wire::IpAddr::v4(a)))
            continue;
        Lease l;
        l.ip = a;
        pool_.push_back(l);
    }
    // Static leases: their addresses join the pool (kept sorted), held for
    // their MAC alone.
    for (const NetConfig::StaticLease& s : cfg.dhcp_hosts) {
        Lease* l = slot_of(s.ip);
        if (!l) {
            Lease n;
            n.ip = s.ip;
            auto at = std::lower_bound(pool_.begin(), pool_.end(), s.ip,
                                       [](const Lease& x, wire::Ipv4 a) { return x.ip < a; });
            l = &*pool_.insert(at, n);
        }
        l->static_mac = s.mac;
    }
}

const Dhcp4Leases::Lease* Dhcp4Leases::static_of(const wire::MacAddr& mac) const {
    for (const Lease& l : pool_)
        if (l.static_mac && *l.static_mac == mac) return &l;
    return nullptr;
}

Dhcp4Leases::Lease* Dhcp4Leases::slot_of(wire::Ipv4 ip) {
    return const_cast<Lease*>(std::as_const(*this).slot_of(ip));
}

const Dhcp4Leases::Lease* Dhcp4Leases::slot_of(wire::Ipv4 ip) const {
    auto it = std::lower_bound(pool_.begin(), pool_.end(), ip,
                               [](const Lease& l, wire::Ipv4 a) { return l.ip < a; });
    return it != pool_.end() && it->ip == ip ? &*it : nullptr;
}

Dhcp4Leases::Lease* Dhcp4Leases::slot_of_key(const Dhcp4ClientKey& key) {
    return const_cast<Lease*>(std::as_const(*this).slot_of_key(key));
}

const Dhcp4Leases::Lease* Dhcp4Leases::slot_of_key(const Dhcp4ClientKey& key) const {
    if (key.empty()) return nullptr;
    for (const Lease& l : pool_)
        if (l.key == key) return &l;
    return nullptr;
}

bool Dhcp4Leases::live(const Lease& l, core::Millis now) const {
    return (l.state == State::offered || l.state == State::bound) && now < l.expires;
}

bool Dhcp4Leases::available(const Lease& l, const wire::MacAddr& mac, PortId port,
                            core::Millis now) const {
    if (l.state == State::declined && now < l.expires) return false;
    if (l.static_mac && *l.static_mac != mac) return false;
    if (live(l, now)) return false;
    return !busy(l.ip, mac, port);
}

Dhcp4Leases::Lease* Dhcp4Leases::live_of_mac(const wire::MacAddr& mac, core::Millis now) {
    for (Lease& l : pool_)
        if (l.mac == mac && live(l, now) && !l.static_mac) return &l;
    return nullptr;
}

// Back to the pool, free since now (recycled for another client).
void Dhcp4Leases::free_slot(Lease& l, core::Millis now) {
    l.key = Dhcp4ClientKey{};
    l.state = State::free;
    l.expires = now;
    l.port = kNoPort;
    l.departed = false;
}

void Dhcp4Leases::take(Lease& l, const Dhcp4ClientKey& key, const wire::MacAddr& mac, State st,
                       core::Millis expires, PortId port, core::Millis now) {
    // A client holds one address, and so does a MAC: whatever it had
    // before lapses (but not what another MAC holds under the same
    // identifier). An address the MAC had under another identifier keeps
    // that identifier, so that its client gets it back if it returns.
    for (Lease& o : pool_) {
        if (&o == &l) continue;
        if (o.key == key && (o.mac == mac || !live(o, now))) {
            o.key = Dhcp4ClientKey{};
            if (o.state != State::declined) {
                o.state = State::free;
                o.expires = 0;
            }
        } else if (o.mac == mac && live(o, now)) {
            o.state = State::free;
            o.expires = now;
        }
    }
    if (!(l.key == key) || !(l.mac == mac)) l.hostname = {};
    l.key = key;
    l.mac = mac;
    l.state = st;
    l.expires = expires;
    l.port = port;
    l.departed = false;
    l.granted = now;
}

size_t Dhcp4Leases::port_count(PortId port, core::Millis now) const {
    if (port == kNoPort) return 0;
    size_t n = 0;
    for (const Lease& l : pool_)
        if (l.port == port && live(l, now)) n++;
    return n;
}

bool Dhcp4Leases::recycle_for(PortId port, core::Millis now) {
    // Offers first (a client that never came back for them), then leases
    // whose holder has been silent for kIdleMs; the least recently heard.
    Lease* victim = nullptr;
    core::Millis victim_heard = 0;
    bool victim_offer = false;
    for (Lease& l : pool_) {
        if (l.port != port || !live(l, now)) continue;
        bool is_offer = l.state == State::offered;
        core::Millis heard = l.granted;
        if (heard_) heard = std::max(heard, heard_(l.mac));
        if (!is_offer && now - heard < kIdleMs) continue;
        if (!victim || (is_offer && !victim_offer) ||
            (is_offer == victim_offer && heard < victim_heard)) {
            victim = &l;
            victim_heard = heard;
            victim_offer = is_offer;
        }
    }
    if (!victim) return false;
    free_slot(*victim, now);
    return true;
}

bool Dhcp4Leases::recycle_departed(core::Millis now) {
    Lease* victim = nullptr;
    core::Millis victim_heard = 0;
    for (Lease& l : pool_) {
        if (!l.departed || l.port != kNoPort || !live(l, now) || l.static_mac) continue;
        core::Millis heard = l.granted;
        if (heard_) heard = std::max(heard, heard_(l.mac));
        if (now - std::min(now, heard) < kIdleMs) continue;
        if (!victim || heard < victim_heard) {
            victim = &l;
            victim_heard = heard;
        }
    }
    if (!victim) return false;
    free_slot(*victim, now);
    return true;
}

// An offer nobody requested, held for a port with a whole network behind
// it (an uplink: its hosts may be asking another DHCP server, and their
// discovers would otherwise hold the pool against the guests), the oldest.
bool Dhcp4Leases::recycle_network_offer(PortId asking, core::Millis now) {
    if (quota(asking) > per_port_) return false;  // one such port does not take another's
    Lease* victim = nullptr;
    for (Lease& l : pool_) {
        if (l.state != State::offered || !live(l, now) || l.static_mac || l.port == kNoPort ||
            quota(l.port) <= per_port_)
            continue;
        if (!victim || l.granted < victim->granted) victim = &l;
    }
    if (!victim) return false;
    free_slot(*victim, now);
    return true;
}

std::optional<wire::Ipv4> Dhcp4Leases::offer(const Dhcp4ClientKey& key, const wire::MacAddr& mac,
                                             std::optional<wire::Ipv4> requested,
                                             core::Millis now, PortId port) {
    // A static lease: that address, always (its MAC's other holdings lapse).
    if (const Lease* s = static_of(mac)) {
        Lease& l = *slot_of(s->ip);
        if (l.state == State::bound && live(l, now) && l.mac == mac) {
            l.port = port;
            l.departed = false;
            return l.ip;
        }
        if (busy(l.ip, mac, port)) return std::nullopt;
        take(l, key, mac, State::offered, now + kOfferHoldMs, port, now);
        return l.ip;
    }
    // The client's own lease, unless another MAC holds it live (a client
    // identifier is no secret: every guest sees them in broadcasts).
    Lease* own = slot_of_key(key);
    if (own && own->mac != mac && live(*own, now)) own = nullptr;
    if (own && live(*own, now)) {
        if (own->state == State::bound) {
            // Still leased (a client that lost its state): offer the same.
            own->port = port;
            own->departed = false;
            return own->ip;
        }
        take(*own, key, mac, State::offered, now + kOfferHoldMs, port, now);
        return own->ip;
    }
    // The address the MAC holds under another identifier: it passes to
    // this one (one address per MAC, see the header).
    if (Lease* l = live_of_mac(mac, now)) {
        take(*l, key, mac, l->state, l->state == State::bound ? l->expires : now + kOfferHoldMs,
             port, now);
        return l->ip;
    }
    if (own && available(*own, mac, port, now)) {
        take(*own, key, mac, State::offered, now + kOfferHoldMs, port, now);
        return own->ip;
    }
    if (port_count(port, now) >= quota(port) && !recycle_for(port, now)) return std::nullopt;
    if (requested) {
        if (Lease* l = slot_of(*requested); l && available(*l, mac, port, now)) {
            take(*l, key, mac, State::offered, now + kOfferHoldMs, port, now);
            return l->ip;
        }
    }
    // Never-used addresses first, in order; then the one free the longest.
    // With none free, a lease whose attachment has gone and whose holder
    // has been silent for kIdleMs goes back to the pool (a browser tab of
    // v86 comes back with a new MAC on each load, and would otherwise keep
    // an address for the whole lease time).
    Lease* best = nullptr;
    for (int round = 0; round < 3 && !best; round++) {
        if (round == 1 && !recycle_departed(now)) continue;
        if (round == 2 && !recycle_network_offer(port, now)) break;
        for (Lease& l : pool_) {
            if (!available(l, mac, port, now)) continue;
            if (l.key.empty() && l.state == State::free) {
                best = &l;
                break;
            }
            if (!best || l.expires < best->expires) best = &l;
        }
    }
    if (!best) return std::nullopt;
    take(*best, key, mac, State::offered, now + kOfferHoldMs, port, now);
    return best->ip;
}

void Dhcp4Leases::set_hostname(wire::Ipv4 ip, std::string_view name) {
    Lease* l = slot_of(ip);
    if (!l) return;
    l->hostname = {};
    const std::string_view label = name.substr(0, name.find('.'));
    if (label.empty() || label.size() >= l->hostname.size() || label.front() == '-' ||
        label.back() == '-')
        return;
    // "localhost" is the loopback address's (RFC 6761 6.3), whatever an
    // unconfigured image sends as its name.
    if (label.size() == 9) {
        char low[9];
        for (size_t i = 0; i < 9; i++) low[i] = static_cast<char>(label[i] | 0x20);
        if (std::string_view(low, 9) == "localhost") return;
    }
    for (char c : label) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '-';
        if (!ok) return;
    }
    for (size_t i = 0; i < label.size(); i++)
        l->hostname[i] = static_cast<char>(label[i] >= 'A' && label[i] <= 'Z' ? label[i] | 0x20
                                                                             : label[i]);
}

std::optional<std::string_view> Dhcp4Server::lease_name(const wire::MacAddr& mac, wire::Ipv4 ip,
                                                        std::optional<std::string_view> sent,
                                                        core::Millis now) {
    const auto& statics = gw_.config().dhcp_hosts;
    for (const NetConfig::StaticLease& s : statics)
        if (s.mac == mac && !s.name.empty()) return s.name;
    if (!sent) return std::nullopt;
    // A name is the first guest's to hold it, and a static lease's always
    // (the guest that sent it keeps the address, unnamed): otherwise any
    // guest could draw the others' connections to a name away to itself.
    for (const NetConfig::StaticLease& s : statics) {
        if (!s.name.empty() && same_label(s.name, *sent)) {
            stats_.names_refused++;
            spdlog::debug("dhcp: {} asked for the name '{}' of a static lease", mac, *sent);
            return std::string_view();
        }
    }
    auto holder = leases_.find_hostname(sent->substr(0, sent->find('.')), now);
    if (holder && *holder != ip) {
        stats_.names_refused++;
        spdlog::debug("dhcp: {} asked for '{}', which {} holds", mac, *sent, V4{*holder});
        return std::string_view();
    }
    return sent;
}

std::optional<wire::Ipv4> Dhcp4Leases::find_hostname(std::string_view label,
                                                     core::Millis now) const {
    if (label.empty()) return std::nullopt;
    for (const Lease& l : pool_) {
        if (l.state != State::bound || !live(l, now) || l.name().size() != label.size())
            continue;
        bool same = true;
        for (size_t i = 0; i < label.size() && same; i++) {
            const char c = label[i] >= 'A' && label[i] <= 'Z' ? static_cast<char>(label[i] | 0x20)
                                                              : label[i];
            same = c == l.hostname[i];
        }
        if (same) return l.ip;
    }
    return std::nullopt;
}

bool Dhcp4Leases::bind(const Dhcp4ClientKey& key, const wire::MacAddr& mac, wire::Ipv4 ip,
                       core::Millis now, PortId port) {
    Lease* l = slot_of(ip);
    if (!l || key.empty()) return false;
    // A MAC with a static lease gets that address and no other.
    if (const Lease* s = static_of(mac)) {
        if (s != l || busy(ip, mac, port)) return false;
        take(*l, key, mac, State::bound, now + lease_ms_, port, now);
        return true;
    }
    // The client's own offer or lease: from the MAC it went to (or, once
    // expired, from anyone the address is free for); or what its MAC holds
    // under another identifier (one address per MAC).
    bool own = l->state != State::declined &&
               ((l->key == key && (l->mac == mac || !live(*l, now))) ||
                (l->mac == mac && live(*l, now)));
    if (own) {
        if (busy(ip, mac, port)) return false;
    } else {
        if (!available(*l, mac, port, now)) return false;
        if (l->port != port && port_count(port, now) >= quota(port) && !recycle_for(port, now))
            return false;
    }
    take(*l, key, mac, State::bound, now + lease_ms_, port, now);
    return true;
}

void Dhcp4Leases::withdraw_offer(const Dhcp4ClientKey& key) {
    if (Lease* l = slot_of_key(key); l && l->state == State::offered) {
        l->state = State::free;
        l->expires = 0;
    }
}

bool Dhcp4Leases::release(const Dhcp4ClientKey& key, wire::Ipv4 ip, core::Millis now,
                          const wire::MacAddr& mac, PortId port) {
    Lease* l = slot_of(ip);
    if (!l || l->key != key || !live(*l, now) || l->mac != mac || l->port != port) return false;
    // The key stays: the client gets this address back if it returns
    // before someone else needs it.
    l->state = State::free;
    l->expires = now;
    return true;
}

bool Dhcp4Leases::decline(const Dhcp4ClientKey& key, wire::Ipv4 ip, core::Millis now,
                          const wire::MacAddr& mac, PortId port) {
    Lease* l = slot_of(ip);
    if (!l || key.empty() || l->key != key || l->mac != mac || l->port != port ||
        (l->state != State::offered && l->state != State::bound))
        return false;
    l->key = Dhcp4ClientKey{};
    l->mac = wire::MacAddr{};
    l->state = State::declined;
    l->expires = now + kDeclineHoldMs;
    // An attachment keeps at most its quota of addresses resting, so that
    // DISCOVER and DECLINE in turn cannot drain the pool: its oldest
    // declined address is free again.
    size_t resting = 0;
    Lease* oldest = nullptr;
    for (Lease& d : pool_) {
        if (d.state != State::declined || d.port != port || now >= d.expires) continue;
        resting++;
        if (!oldest || d.expires < oldest->expires) oldest = &d;
    }
    if (resting > quota(port)) {
        oldest->state = State::free;
        oldest->expires = 0;
    }
    return true;
}

void Dhcp4Leases::port_gone(PortId port) {
    for (Lease& l : pool_)
        if (l.port == port) {
            l.port = kNoPort;
            l.departed = true;
        }
    std::erase_if(quotas_, [port](const auto& q) { return q.first == port; });
}

void Dhcp4Leases::set_port_quota(PortId port, size_t n) {
    std::erase_if(quotas_, [port](const auto& q) { return q.first == port; });
    quotas_.emplace_back(port, std::max<size_t>(n, 1));
}

size_t Dhcp4Leases::quota(PortId port) const {
    for (const auto& [p, n] : quotas_)
        if (p == port) return n;
    return per_port_;
}

std::optional<wire::Ipv4> Dhcp4Leases::lookup(const Dhcp4ClientKey& key, core::Millis now) const {
    const Lease* l = slot_of_key(key);
    if (l && live(*l, now)) return l->ip;
    return std::nullopt;
}

// --- Dhcp4Server -----------------------------------------------------------

Dhcp4Server::Dhcp4Server(Gateway& gw) : gw_(gw), leases_(gw.config()) {
    leases_.set_busy_check([this](wire::Ipv4 ip, const wire::MacAddr& mac, uint32_t port) {
        return gw_.address_taken(ip, mac, port);
    });
    leases_.set_heard_check([this](const wire::MacAddr& mac) { return gw_.last_heard(mac); });
    if (leases_.pool_size() == 0)
        spdlog::warn("dhcp: the address pool is empty (dhcp start {} count {})",
                     V4{gw.config().dhcp_start}, gw.config().dhcp_count);
}

void Dhcp4Server::handle(wire::Bytes dhcp, const wire::MacAddr& src_mac, uint32_t port,
                         uint32_t ingress_mtu) {
    auto msg = wire::Dhcp4View::parse(dhcp);
    if (!msg || msg->op() != wire::dhcp4op::boot_request) {
        stats_.dropped_malformed++;
        spdlog::debug("dhcp: dropped a malformed message from {}", src_mac);
        return;
    }
    auto type = msg->message_type();
    auto chaddr = msg->chaddr();
    if (!chaddr) {
        stats_.dropped_malformed++;
        spdlog::debug("dhcp: dropped a message without an Ethernet chaddr from {}", src_mac);
        return;
    }
    // A relay would forward on behalf of others; there is none on this LAN,
    // and a chaddr other than the sender's would let one guest bind
    // addresses to another's MAC.
    if (msg->giaddr() != 0 || *chaddr != src_mac) {
        stats_.dropped_ignored++;
        spdlog::debug("dhcp: ignored a relayed or foreign-chaddr message from {}",
                      src_mac);
        return;
    }
    const NetConfig& c = gw_.config();
    core::Millis now = gw_.loop().now();
    auto cid = msg->client_id();
    Dhcp4ClientKey key = cid ? Dhcp4ClientKey::from_client_id(*cid)
                             : Dhcp4ClientKey::from_mac(*chaddr);
    auto sid = msg->server_id();

    if (!type) {
        // A BOOTP client: its lease at once (see the header).
        stats_.bootp++;
        auto a = leases_.offer(key, *chaddr, std::nullopt, now, port);
        if (!a || !leases_.bind(key, *chaddr, *a, now, port)) {
            stats_.pool_exhausted++;
            spdlog::debug("dhcp: no address for BOOTP client {}", *chaddr);
            return;
        }
        if (auto name = lease_name(*chaddr, *a, std::nullopt, now)) leases_.set_hostname(*a, *name);
        reply(*msg, Reply::bootp, *a, ingress_mtu, port);
        return;
    }
    switch (*type) {
    case wire::dhcp4msg::discover: {
        stats_.discovers++;
        auto a = leases_.offer(key, *chaddr, msg->requested_ip(), now, port);
        if (!a) {
            stats_.pool_exhausted++;
            // Said once a minute at most: a storm must not flood the log.
            if (now - last_exhausted_log_ >= 60'000 || last_exhausted_log_ == 0) {
                last_exhausted_log_ = now;
                spdlog::info("dhcp: no free address for {} (the pool {}-{} is in use)", *chaddr,
                             V4{gw_.config().dhcp_start},
                             V4{gw_.config().dhcp_start + gw_.config().dhcp_count - 1});
            } else {
                spdlog::debug("dhcp: no free address for {}", *chaddr);
            }
            return;
        }
        reply(*msg, Reply::offer, *a, ingress_mtu);
        return;
    }
    case wire::dhcp4msg::request: {
        stats_.requests++;
        wire::Ipv4 want = 0;
        auto req = msg->requested_ip();
        if (sid) {
            // SELECTING: the client chose a server.
            if (*sid != c.gateway) {
                leases_.withdraw_offer(key);
                stats_.dropped_ignored++;
                return;
            }
            // SELECTING carries option 50; a client that renews with our
            // server id but without it (against RFC 2131 4.3.2, which
            // libslirp accepts) renews its ciaddr.
            if (req) {
                want = *req;
            } else if (msg->ciaddr() != 0) {
                want = msg->ciaddr();
            } else {
                stats_.dropped_malformed++;
                return;
            }
        } else if (req) {
            want = *req;  // INIT-REBOOT
        } else if (msg->ciaddr() != 0) {
            want = msg->ciaddr();  // RENEWING (unicast) or REBINDING (broadcast)
        } else {
            stats_.dropped_malformed++;
            return;
        }
        if (leases_.bind(key, *chaddr, want, now, port)) {
            // A renewal may leave option 12 out (RFC 2131 4.4.5): the
            // name stays (bind() forgot it if the address changed hands).
            if (auto name = lease_name(*chaddr, want, msg->hostname(), now))
                leases_.set_hostname(want, *name);
            reply(*msg, Reply::ack, want, ingress_mtu, port);
        } else {
            spdlog::debug("dhcp: NAK {} for {}", V4{want}, *chaddr);
            reply(*msg, Reply::nak, 0, ingress_mtu);
        }
        return;
    }
    case wire::dhcp4msg::decline: {
        stats_.declines++;
        auto req = msg->requested_ip();
        if ((sid && *sid != c.gateway) || !req) {
            stats_.dropped_ignored++;
            return;
        }
        if (leases_.decline(key, *req, now, *chaddr, port)) {
            spdlog::info("dhcp: {} declined {} (in use by another host)", *chaddr,
                         V4{*req});
            gw_.unbind_lease(*req);
        }
        return;
    }
    case wire::dhcp4msg::release: {
        stats_.releases++;
        if (sid && *sid != c.gateway) {
            stats_.dropped_ignored++;
            return;
        }
        wire::Ipv4 a = msg->ciaddr();
        if (leases_.release(key, a, now, *chaddr, port)) {
            gw_.unbind_lease(a);
            gw_.forget_neighbor(a, *chaddr);
        }
        return;
    }
    case wire::dhcp4msg::inform:
        stats_.informs++;
        reply(*msg, Reply::inform_ack, 0, ingress_mtu);
        return;
    default:
        stats_.dropped_ignored++;
        return;
    }
}

void Dhcp4Server::add_boot(wire::Dhcp4Builder& b, const wire::Dhcp4View& req,
                           std::vector<const char*>& left_out) {
    const NetConfig& c = gw_.config();
    if (c.bootfile.empty()) return;
    auto has = [&](uint8_t code, std::string_view what, bool prefix) {
        auto o = req.find(code);
        if (!o) return false;
        std::string_view v(reinterpret_cast<const char*>(o->data()), o->size());
        return prefix ? v.starts_with(what) : v.find(what) != std::string_view::npos;
    };
    // UEFI HTTP boot says "HTTPClient" in its vendor class and wants it
    // back; iPXE says "iPXE" in its user class. Both fetch URLs; a PXE ROM
    // fetches only by TFTP from the next server.
    const bool http_client = has(wire::dhcp4opt::vendor_class, "HTTPClient", true);
    const bool ipxe = has(wire::dhcp4opt::user_class, "iPXE", false);
    if (c.bootfile_is_url() && !http_client && !ipxe) return;
    const std::string server =
        c.tftp_server_name.empty() ? wire::ipv4_to_string(c.gateway) : c.tftp_server_name;
    // The BOOTP fields always; the options only together, if they fit.
    if (!c.bootfile_is_url()) b.set_siaddr(c.gateway);  // the TFTP server: ours
    b.set_file(c.bootfile);
    using B = wire::Dhcp4Builder;
    const size_t need = (http_client ? B::option_size(10) : 0) +
                        (c.bootfile_is_url() ? 0 : B::option_size(server.size())) +
                        B::option_size(c.bootfile.size());
    if (need > b.room()) {
        left_out.push_back("boot file (66, 67)");
        return;
    }
    if (http_client) b.add_string(wire::dhcp4opt::vendor_class, "HTTPClient");
    if (!c.bootfile_is_url()) b.add_string(wire::dhcp4opt::tftp_server_name, server);
    b.add_string(wire::dhcp4opt::bootfile_name, c.bootfile);
}

void Dhcp4Server::reply(const wire::Dhcp4View& req, Reply kind, wire::Ipv4 yiaddr, uint32_t mtu,
                        uint32_t port) {
    const NetConfig& c = gw_.config();
    uint8_t* l4 = gw_.tx_l4();
    size_t cap = kMinReplyCap;
    if (auto mms = req.max_message_size(); mms && *mms > 576)
        cap = std::min<size_t>(*mms - 28u, kMaxReplyCap);
    wire::Dhcp4Builder b(wire::MutBytes(l4 + wire::kUdpHeaderLen, cap));
    b.reply_to(req);
    const bool bootp = kind == Reply::bootp;
    if (!bootp) {
        uint8_t type = wire::dhcp4msg::ack;
        if (kind == Reply::offer) type = wire::dhcp4msg::offer;
        if (kind == Reply::nak) type = wire::dhcp4msg::nak;
        b.add_u8(wire::dhcp4opt::message_type, type);
        b.add_ipv4(wire::dhcp4opt::server_id, c.gateway);
    }
    if (kind != Reply::nak) {
        if (bootp) {
            b.set_yiaddr(yiaddr);
            b.set_siaddr(c.gateway);  // the boot server (RFC 951): ours
        } else if (kind != Reply::inform_ack) {
            b.set_yiaddr(yiaddr);
            uint64_t secs = c.lease_seconds;
            b.add_u32(wire::dhcp4opt::lease_time, c.lease_seconds);
            b.add_u32(wire::dhcp4opt::renewal_time, static_cast<uint32_t>(secs / 2));
            b.add_u32(wire::dhcp4opt::rebinding_time, static_cast<uint32_t>(secs * 7 / 8));
        }
        if (kind != Reply::offer) b.set_ciaddr(req.ciaddr());
        b.add_ipv4(wire::dhcp4opt::subnet_mask, c.netmask());
        b.add_ipv4(wire::dhcp4opt::router, c.gateway);
        b.add_ipv4(wire::dhcp4opt::dns_server, c.dns);
        b.add_ipv4(wire::dhcp4opt::broadcast_addr, c.broadcast());
        b.add_u16(wire::dhcp4opt::mtu, static_cast<uint16_t>(std::clamp<uint32_t>(mtu, 68, 65535)));
    }
    // The rest, most needed first, as far as the client's maximum message
    // size (at least 576 bytes, RFC 2131) allows: a reply that cannot carry
    // everything still goes, without what did not fit (logged).
    std::vector<const char*> left_out;
    auto optional = [&](const char* what, uint8_t code, wire::Bytes data) {
        if (wire::Dhcp4Builder::option_size(data.size()) <= b.room()) b.add_option(code, data);
        else left_out.push_back(what);
    };
    auto text = [](std::string_view s) {
        return wire::Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    };
    // RFC 6842: the client identifier goes back as it came.
    if (auto cid = req.find(wire::dhcp4opt::client_id); cid && !cid->empty())
        optional("client identifier (61)", wire::dhcp4opt::client_id, *cid);
    if (kind != Reply::nak) {
        if (!c.dhcp_routes.empty()) {
            // RFC 3442: width, the significant octets of the destination,
            // the router. The default route (via the gateway unless a
            // --dhcp-route gives 0.0.0.0/0) too, since option 3 is ignored
            // then; the routes fit 255 bytes (the option parser checks).
            uint8_t routes[255];
            size_t n = 0;
            auto put = [&](wire::Ipv4 net, uint8_t len, wire::Ipv4 via) {
                const size_t octets = (len + 7u) / 8u;
                if (n + 1 + octets + 4 > sizeof routes) return;
                routes[n++] = len;
                for (size_t i = 0; i < octets; i++) routes[n++] = static_cast<uint8_t>(net >> (24 - 8 * i));
                wire::store32(routes + n, via);
                n += 4;
            };
            const bool own_default =
                std::any_of(c.dhcp_routes.begin(), c.dhcp_routes.end(),
                            [](const NetConfig::Route& r) { return r.prefix_len == 0; });
            for (const NetConfig::Route& r : c.dhcp_routes) put(r.net, r.prefix_len, r.via);
            if (!own_default) put(0, 0, c.gateway);
            optional("classless routes (121)", wire::dhcp4opt::classless_route,
                     wire::Bytes(routes, n));
        }
        add_boot(b, req, left_out);
        // The host name: a static lease's, else --hostname.
        std::string_view name = c.hostname;
        if (auto mac = req.chaddr())
            for (const NetConfig::StaticLease& s : c.dhcp_hosts)
                if (s.mac == *mac && !s.name.empty()) name = s.name;
        if (!name.empty()) optional("host name (12)", wire::dhcp4opt::hostname, text(name));
        if (!c.domain.empty())
            optional("domain name (15)", wire::dhcp4opt::domain_name, text(c.domain));
        if (!gw_.search_wire4().empty())
            optional("domain search (119)", wire::dhcp4opt::domain_search, gw_.search_wire4());
    }
    if (!left_out.empty()) {
        stats_.options_left_out++;
        std::string list;
        for (const char* w : left_out) list += std::string(list.empty() ? "" : ", ") + w;
        auto level = stats_.options_left_out == 1 ? spdlog::level::warn : spdlog::level::debug;
        spdlog::log(level,
                    "dhcp: a reply to {} did not fit the {} bytes the client takes and goes "
                    "without: {} (shorten --dns-search, --domain, --dhcp-route or --bootfile)",
                    req.chaddr() ? req.chaddr()->to_string() : std::string("?"), cap, list);
    }
    size_t len = b.finish();
    if (len == 0) {
        stats_.send_failed++;
        spdlog::debug("dhcp: reply did not fit in {} bytes", cap);
        return;
    }
    wire::Ipv4 dst = 0xffffffff;
    if (kind != Reply::nak && !req.broadcast() && req.ciaddr() != 0) dst = req.ciaddr();
    if (kind == Reply::ack || bootp) {
        // The guest is reachable at yiaddr from now on, even before it
        // sends from it (a unicast reply, a port forward).
        if (auto mac = req.chaddr())
            gw_.bind_lease(yiaddr, *mac, mtu, gw_.loop().now() + leases_.lease_ms(), port);
    }
    wire::build_udp(l4, wire::IpAddr::v4(c.gateway), wire::IpAddr::v4(dst),
                    wire::kDhcp4ServerPort, wire::kDhcp4ClientPort, len);
    if (!gw_.send_ip(wire::IpAddr::v4(c.gateway), wire::IpAddr::v4(dst), wire::ipproto::udp,
                     wire::kUdpHeaderLen + len)) {
        stats_.send_failed++;
        return;
    }
    switch (kind) {
    case Reply::offer:
        stats_.offers++;
        break;
    case Reply::nak:
        stats_.naks++;
        break;
    case Reply::bootp:
        stats_.bootp_replies++;
        break;
    default:
        stats_.acks++;
        break;
    }
}

}  // namespace usernet::gw
