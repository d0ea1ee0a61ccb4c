// Fragment reassembly: see reassembly.hpp for the rules and limits.
#include "gateway/reassembly.hpp"

#include <cstring>

#include "wire/checksum.hpp"

namespace usernet::gw {

std::optional<wire::Bytes> Reassembler::add(const wire::Ipv4View& ip, sw::PortId port,
                                            core::Millis now) {
    Piece p{false,
            ip.src_addr(),
            ip.dst_addr(),
            ip.id(),
            ip.protocol(),
            size_t{ip.frag_offset()} * 8,
            ip.more_fragments(),
            ip.header(),
            ip.payload()};
    return take(p, port, now);
}

std::optional<wire::Bytes> Reassembler::add(const wire::Ipv6View& ip, sw::PortId port,
                                            core::Millis now) {
    // The fragment header must come right after the IPv6 header.
    if (ip.header_len() != wire::kIpv6HeaderLen + 8) {
        stats_.fragments++;
        stats_.dropped_invalid++;
        return std::nullopt;
    }
    Piece p{true,
            ip.src_addr(),
            ip.dst_addr(),
            ip.frag_id(),
            ip.protocol(),
            size_t{ip.frag_offset()} * 8,
            ip.more_fragments(),
            ip.packet().first(wire::kIpv6HeaderLen),
            ip.payload()};
    return take(p, port, now);
}

size_t Reassembler::in_progress() const {
    size_t n = 0;
    for (const Slot& s : slots_) n += s.used;
    return n;
}

core::Millis Reassembler::next_deadline() const {
    core::Millis next = 0;
    for (const Slot& s : slots_) {
        if (!s.used) continue;
        const core::Millis d = s.started + (s.v6 ? kTimeout6Ms : kTimeout4Ms);
        if (next == 0 || d < next) next = d;
    }
    return next;
}

std::optional<wire::Bytes> Reassembler::first_fragment(Slot& s) {
    if (s.hdr_len == 0) return std::nullopt;
    size_t len0 = 0;
    for (size_t i = 0; i < s.pieces; i++)
        if (s.ranges[i].first == 0) len0 = s.ranges[i].end;
    if (len0 == 0) return std::nullopt;
    uint8_t* data = s.buf.get() + kMaxHeader;
    if (!s.v6) {
        uint8_t* h = data - s.hdr_len;
        std::memcpy(h, s.hdr.data(), s.hdr_len);  // as it came: MF, its own length
        return wire::Bytes(h, s.hdr_len + len0);
    }
    // The IPv6 header, then the fragment header it pointed to (offset 0,
    // more to come), then the data.
    uint8_t* h = data - wire::kIpv6HeaderLen - 8;
    std::memcpy(h, s.hdr.data(), wire::kIpv6HeaderLen);
    uint8_t* fh = h + wire::kIpv6HeaderLen;
    fh[0] = s.proto;
    fh[1] = 0;
    wire::store16(fh + 2, 1);  // offset 0, M
    wire::store32(fh + 4, s.id);
    return wire::Bytes(h, wire::kIpv6HeaderLen + 8 + len0);
}

void Reassembler::drop(Slot& s, uint64_t& counter) {
    s.used = false;
    counter++;
}

Reassembler::Slot* Reassembler::slot_for(const Piece& p, sw::PortId port, core::Millis now) {
    Slot* free_slot = nullptr;
    Slot* oldest_mine = nullptr;
    size_t mine = 0;
    for (Slot& s : slots_) {
        if (s.used && now - s.started >= (s.v6 ? kTimeout6Ms : kTimeout4Ms))
            drop(s, stats_.dropped_timeout);
        if (!s.used) {
            if (!free_slot) free_slot = &s;
            continue;
        }
        if (s.v6 == p.v6 && s.id == p.id && s.port == port && s.src == p.src && s.dst == p.dst &&
            (p.v6 || s.proto == p.proto))
            return &s;
        if (s.port == port) {
            mine++;
            if (!oldest_mine || s.started < oldest_mine->started) oldest_mine = &s;
        }
    }
    Slot* s = free_slot;
    if (mine >= kPerPort) {
        drop(*oldest_mine, stats_.dropped_limit);  // the attachment's own oldest
        s = oldest_mine;
    }
    if (!s) {
        stats_.dropped_limit++;
        return nullptr;
    }
    if (!s->buf) {
        s->buf = std::make_unique<uint8_t[]>(kBufLen);
        s->ranges = std::make_unique<Range[]>(kMaxPieces);
    }
    s->used = true;
    s->v6 = p.v6;
    s->src = p.src;
    s->dst = p.dst;
    s->id = p.id;
    s->proto = p.proto;
    s->port = port;
    s->started = now;
    s->hdr_len = 0;
    s->total = 0;
    s->have = 0;
    s->pieces = 0;
    return s;
}

std::optional<wire::Bytes> Reassembler::take(const Piece& p, sw::PortId port, core::Millis now) {
    stats_.fragments++;
    const size_t len = p.data.size();
    const size_t end = p.offset + len;
    // The largest datagram: an IPv4 packet of 65535 bytes, header included,
    // or an IPv6 payload of 65535 bytes.
    const size_t limit = p.v6 ? 65535 : 65535 - p.header.size();
    if (len == 0 || (p.more && len % 8 != 0) || end > limit || p.header.size() > kMaxHeader) {
        stats_.dropped_invalid++;
        return std::nullopt;
    }
    Slot* s = slot_for(p, port, now);
    if (!s) return std::nullopt;
    if (!p.more) {
        if ((s->total && s->total != end)) {
            drop(*s, stats_.dropped_invalid);
            return std::nullopt;
        }
        s->total = end;
    }
    if (s->total && end > s->total) {
        drop(*s, stats_.dropped_invalid);
        return std::nullopt;
    }
    for (size_t i = 0; i < s->pieces; i++) {
        const Range& r = s->ranges[i];
        if (r.first == p.offset && r.end == end) return std::nullopt;  // a duplicate
        if (p.offset < r.end && r.first < end) {
            drop(*s, stats_.dropped_overlap);  // RFC 5722
            return std::nullopt;
        }
        if (s->total && r.end > s->total) {
            drop(*s, stats_.dropped_invalid);
            return std::nullopt;
        }
    }
    if (s->pieces == kMaxPieces) {
        drop(*s, stats_.dropped_limit);
        return std::nullopt;
    }
    s->ranges[s->pieces++] = Range{static_cast<uint32_t>(p.offset), static_cast<uint32_t>(end)};
    std::memcpy(s->buf.get() + kMaxHeader + p.offset, p.data.data(), len);
    s->have += len;
    if (p.offset == 0) {
        s->hdr_len = p.header.size();
        std::memcpy(s->hdr.data(), p.header.data(), s->hdr_len);
    }
    if (!s->total || s->have != s->total || !s->hdr_len) return std::nullopt;

    // Complete: the first fragment's header in front of the data.
    uint8_t* h = s->buf.get() + kMaxHeader - s->hdr_len;
    std::memcpy(h, s->hdr.data(), s->hdr_len);
    if (s->v6) {
        wire::store16(h + 4, static_cast<uint16_t>(s->total));
        h[6] = s->proto;
    } else {
        wire::store16(h + 2, static_cast<uint16_t>(s->hdr_len + s->total));
        wire::store16(h + 6, 0);
        wire::store16(h + 10, 0);
        wire::store16(h + 10, wire::csum_fold(wire::csum_partial(wire::Bytes(h, s->hdr_len))));
    }
    s->used = false;
    stats_.reassembled++;
    return wire::Bytes(h, s->hdr_len + s->total);
}

}  // namespace usernet::gw
