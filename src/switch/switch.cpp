#include "switch/switch.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "wire/ethernet.hpp"

namespace usernet::sw {

PortId Switch::attach(Port& p) {
    // Reuse a free slot so ids stay small for ports that come and go
    // (QEMU clients reconnecting).
    for (PortId i = 0; i < ports_.size(); i++) {
        if (!ports_[i]) {
            ports_[i] = &p;
            macs_per_port_[i] = PortMacs{};
            p.id_ = i;
            return i;
        }
    }
    ports_.push_back(&p);
    macs_per_port_.push_back(PortMacs{});
    p.id_ = static_cast<PortId>(ports_.size() - 1);
    return p.id_;
}

void Switch::warn_clash(PortId from, const wire::MacAddr& src, PortId owner, core::Millis now) {
    // Two VMs started with QEMU's default MAC (52:54:00:12:34:56) on one
    // LAN: the second gets no network, and only this line says why.
    PortMacs& m = macs_per_port_[from];
    if (m.clash_warned != 0 && now - m.clash_warned < kClashWarnMs) return;
    m.clash_warned = now == 0 ? 1 : now;
    spdlog::warn("{}: frames from MAC {} dropped: {} has that MAC and is still attached; give "
                 "each guest a MAC of its own (QEMU: -device ...,mac=52:54:00:XX:XX:XX)",
                 ports_[from]->describe(), src.to_string(), ports_[owner]->describe());
}

void Switch::detach(Port& p) {
    PortId id = p.id_;
    if (id >= ports_.size() || ports_[id] != &p) return;
    // Not per frame: a scan of the whole table also takes the MACs pinned
    // to this port, which are on no list.
    for (auto it = table_.begin(); it != table_.end();) {
        if (it->second.port == id) it = table_.erase(it);
        else ++it;
    }
    ports_[id] = nullptr;
    macs_per_port_[id] = PortMacs{};
    p.id_ = kNoPort;
    if (on_detach_) on_detach_(id);
}

void Switch::link_tail(PortId port, Node& n) {
    PortMacs& l = macs_per_port_[port];
    n.second.prev = l.tail;
    n.second.next = nullptr;
    (l.tail ? l.tail->second.next : l.head) = &n;
    l.tail = &n;
    l.count++;
}

void Switch::unlink(Node& n) {
    PortMacs& l = macs_per_port_[n.second.port];
    (n.second.prev ? n.second.prev->second.next : l.head) = n.second.next;
    (n.second.next ? n.second.next->second.prev : l.tail) = n.second.prev;
    n.second.prev = n.second.next = nullptr;
    l.count--;
}

bool Switch::reuse_aged(PortId port, core::Millis now) {
    Node* oldest = macs_per_port_[port].head;
    if (!oldest || !aged(oldest->second, now)) return false;
    unlink(*oldest);
    table_.erase(oldest->first);
    return true;
}

void Switch::pin(const wire::MacAddr& mac, PortId port) {
    auto [it, inserted] = table_.try_emplace(mac, Entry{port, 0, true});
    if (!inserted) {
        if (!it->second.pinned) unlink(*it);
        it->second = Entry{port, 0, true};
    }
}

PortId Switch::lookup(const wire::MacAddr& mac) const {
    auto it = table_.find(mac);
    if (it == table_.end()) return kNoPort;
    if (!it->second.pinned && aged(it->second, loop_.now())) return kNoPort;
    return it->second.port;
}

bool Switch::learn(PortId from, const wire::MacAddr& src) {
    if (src.is_multicast() || src.is_zero()) {
        stats_.dropped_bad_src++;
        return false;
    }
    core::Millis now = loop_.now();
    auto it = table_.find(src);
    if (it != table_.end()) {
        Entry& e = it->second;
        if (e.port == from && !e.pinned) {
            e.seen = now;
            if (e.next) {  // not the newest already: to the tail
                unlink(*it);
                link_tail(from, *it);
            }
            return true;
        }
        if (e.pinned) {
            if (e.port == from) return true;
            stats_.dropped_bad_src++;
            return false;
        }
        // A MAC moves to another port at once when its port has gone (a
        // guest re-attached elsewhere: a QEMU that reconnected, migrated);
        // while that port is still attached, only once the entry aged out.
        // A guest idle for a few seconds keeps its MAC, and so its lease,
        // address and replies, from a guest on another port that copies it.
        if (ports_[e.port] && !aged(e, now)) {
            stats_.dropped_bad_src++;
            warn_clash(from, src, e.port, now);
            return false;
        }
        if (macs_per_port_[from].count >= ports_[from]->max_macs() && !reuse_aged(from, now)) {
            stats_.dropped_mac_limit++;
            return false;
        }
        unlink(*it);
        e.port = from;
        e.seen = now;
        link_tail(from, *it);
        return true;
    }
    if (macs_per_port_[from].count >= ports_[from]->max_macs() && !reuse_aged(from, now)) {
        stats_.dropped_mac_limit++;
        return false;
    }
    if (table_.size() >= kMaxMacs && !reuse_aged(from, now) && now - last_sweep_ >= 1000) {
        // Only with more than kMaxMacs / kMaxMacsPerPort ports: free every
        // aged entry, at most once a second.
        last_sweep_ = now;
        for (PortMacs& l : macs_per_port_)
            while (l.head && aged(l.head->second, now)) {
                Node* n = l.head;
                unlink(*n);
                table_.erase(n->first);
            }
    }
    if (table_.size() >= kMaxMacs) {
        stats_.dropped_mac_limit++;
        return false;
    }
    auto [ins, ok] = table_.emplace(src, Entry{from, now, false});
    (void)ok;
    link_tail(from, *ins);
    return true;
}

void Switch::forward(PortId to, wire::Bytes frame, const FrameMeta& meta) {
    Port* p = ports_[to];
    if (!p) return;
    if (meta.off.any() && !p->takes_offload()) {
        forward_resolved(*p, frame, meta);
        return;
    }
    bool gso = meta.off.gso_type != wire::Offload::gso_none;
    if (!gso && frame.size() > p->mtu() + wire::kEthHeaderLen + wire::kVlanTagLen) {
        p->stats().tx_dropped++;
        return;
    }
    // Another guest's kernel would cut it as we would (a guest that
    // routes): the same cap on pieces. The gateway takes any GSO frame
    // whole (its NAT does not cut it).
    if (gso && to != guard_port_ &&
        (frame.size() + meta.off.gso_size - 1) / meta.off.gso_size > wire::kMaxGsoSegments) {
        stats_.dropped_bad_offload++;
        p->stats().tx_dropped++;
        return;
    }
    p->stats().tx_frames++;
    p->stats().tx_bytes += frame.size();
    p->deliver(frame, meta);
}

// A frame with offload for a port without: finished here, as the kernel's
// skb_checksum_help() and TCP GSO would (wire/offload.hpp).
void Switch::forward_resolved(Port& p, wire::Bytes frame, const FrameMeta& meta) {
    constexpr size_t kScratch = wire::kEthMaxFrame + wire::kVlanTagLen;
    if (!scratch_) scratch_ = std::make_unique_for_overwrite<uint8_t[]>(kScratch);
    FrameMeta plain = meta;
    plain.off = {};
    auto out = [&](wire::Bytes f) {
        if (f.size() > p.mtu() + wire::kEthHeaderLen + wire::kVlanTagLen) {
            p.stats().tx_dropped++;
            return;
        }
        p.stats().tx_frames++;
        p.stats().tx_bytes += f.size();
        p.deliver(f, plain);
    };
    stats_.offload_resolved++;
    if (meta.off.gso_type != wire::Offload::gso_none) {
        if (!wire::segment_tcp(frame, meta.off, p.mtu(), wire::MutBytes(scratch_.get(), kScratch),
                               out)) {
            stats_.dropped_bad_offload++;
            p.stats().tx_dropped++;
        }
        return;
    }
    std::memcpy(scratch_.get(), frame.data(), frame.size());
    wire::MutBytes copy(scratch_.get(), frame.size());
    if (!wire::complete_checksum(copy, meta.off)) {
        stats_.dropped_bad_offload++;
        p.stats().tx_dropped++;
        return;
    }
    out(copy);
}

void Switch::input(PortId from, wire::Bytes frame, const wire::Offload& off) {
    if (from >= ports_.size() || !ports_[from]) return;
    Port& in = *ports_[from];
    if (frame.size() < wire::kEthHeaderLen) {
        stats_.dropped_runt++;
        in.stats().rx_dropped++;
        return;
    }
    if (frame.size() > wire::kEthMaxFrame) {
        stats_.dropped_giant++;
        in.stats().rx_dropped++;
        return;
    }
    in.stats().rx_frames++;
    in.stats().rx_bytes += frame.size();
    loop_.note_bytes(frame.size());
    wire::MacAddr dst = wire::MacAddr::from(&frame[0]);
    wire::MacAddr src = wire::MacAddr::from(&frame[6]);
    // Offload fields are checked once, here, whatever the frame's way out:
    // a frame cut in software is bounded where it is cut
    // (wire::kMaxGsoSegments), and one
    // passed as it is to another guest's offload TAP carries nothing
    // usernet would not take itself. A TCP segment never goes to a group
    // address, so a large one flooded to every port is refused too.
    if (off.any() && (!wire::validate_offload(frame, off) ||
                      (off.gso_type != wire::Offload::gso_none && dst.is_multicast()))) {
        stats_.dropped_bad_offload++;
        in.stats().rx_dropped++;
        return;
    }
    if (!learn(from, src)) {
        in.stats().rx_dropped++;
        return;
    }
    // After learning: the guard binds addresses to a MAC on this port only
    // once the switch has accepted that the MAC lives here.
    if (guard_ && from != guard_port_ && !guard_->admit(from, frame)) {
        stats_.dropped_guard++;
        in.stats().rx_dropped++;
        return;
    }
    stats_.frames++;
    if (observer_) observer_(frame);
    FrameMeta meta{from, in.mtu(), in.takes_offload(), off, stats_.frames};
    if (!dst.is_multicast()) {
        PortId to = lookup(dst);
        if (to != kNoPort) {
            if (to == from) {
                stats_.dropped_hairpin++;
                return;
            }
            forward(to, frame, meta);
            return;
        }
    }
    stats_.flooded++;
    for (PortId i = 0; i < ports_.size(); i++) {
        if (i != from && ports_[i]) forward(i, frame, meta);
    }
}

void Switch::input_to(PortId from, PortId to, wire::Bytes frame) {
    if (from >= ports_.size() || !ports_[from] || to >= ports_.size() || !ports_[to] || to == from)
        return;
    if (frame.size() < wire::kEthHeaderLen || frame.size() > wire::kEthMaxFrame) return;
    Port& in = *ports_[from];
    in.stats().rx_frames++;
    in.stats().rx_bytes += frame.size();
    stats_.frames++;
    if (observer_) observer_(frame);
    forward(to, frame, FrameMeta{from, in.mtu(), in.takes_offload(), {}, stats_.frames});
}

}  // namespace usernet::sw
