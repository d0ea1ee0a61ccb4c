#include "wire/dns.hpp"

#include <cstring>

namespace usernet::wire {

namespace {

constexpr uint8_t kPointerMask = 0xc0;
constexpr uint16_t kQuestionPointer = 0xc000 | kDnsHeaderLen;  // the name at offset 12
constexpr size_t kRecordFixedLen = 10;  // type, class, ttl, rdlength

char lower(uint8_t c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
}

}  // namespace

std::optional<size_t> dns_read_name(Bytes msg, size_t off, DnsName& out) {
    out.len = 0;
    size_t pos = off;
    // Start of the run of labels being read: a pointer must land before it,
    // so every jump goes strictly backwards and the walk must end. The
    // jump count bounds the work on top of that.
    size_t segment_start = off;
    std::optional<size_t> consumed;
    int jumps = 0;
    for (;;) {
        if (pos >= msg.size()) return std::nullopt;
        uint8_t b = msg[pos];
        if ((b & kPointerMask) == kPointerMask) {
            if (pos + 1 >= msg.size()) return std::nullopt;
            size_t target = (size_t{b & 0x3fu} << 8) | msg[pos + 1];
            if (target < kDnsHeaderLen || target >= segment_start) return std::nullopt;
            if (++jumps > kDnsMaxPointerJumps) return std::nullopt;
            if (!consumed) consumed = pos + 2 - off;
            pos = target;
            segment_start = target;
            continue;
        }
        // 0x40 and 0x80 are the obsolete extended label types (RFC 6891 5).
        if ((b & kPointerMask) != 0) return std::nullopt;
        size_t l = b;
        if (l == 0) {
            out.wire[out.len++] = 0;  // fits: labels below keep one byte free
            if (!consumed) consumed = pos + 1 - off;
            return consumed;
        }
        if (l > msg.size() - pos - 1) return std::nullopt;
        if (out.len + 1 + l + 1 > kDnsMaxNameLen) return std::nullopt;
        std::memcpy(&out.wire[out.len], &msg[pos], 1 + l);
        out.len += 1 + l;
        pos += 1 + l;
    }
}

size_t dns_encode_name(std::string_view dotted, uint8_t* out, size_t cap) {
    if (!dotted.empty() && dotted.back() == '.') dotted.remove_suffix(1);
    size_t len = 0;
    while (!dotted.empty()) {
        size_t dot = dotted.find('.');
        std::string_view label = dotted.substr(0, dot);
        if (label.empty() || label.size() > kDnsMaxLabelLen) return 0;
        if (len + 1 + label.size() + 1 > kDnsMaxNameLen || len + 1 + label.size() + 1 > cap)
            return 0;
        out[len++] = static_cast<uint8_t>(label.size());
        std::memcpy(out + len, label.data(), label.size());
        len += label.size();
        if (dot == std::string_view::npos) break;
        dotted.remove_prefix(dot + 1);
        if (dotted.empty()) return 0;  // "a..": an empty label
    }
    if (len + 1 > cap) return 0;
    out[len++] = 0;
    return len;
}

size_t DnsName::label_count() const {
    size_t n = 0, end = bounded_len();
    for (size_t i = 0; i < end && wire[i] != 0 && i + 1 + wire[i] <= end; i += 1 + wire[i]) n++;
    return n;
}

std::optional<size_t> DnsName::to_text(char* out, size_t cap) const {
    size_t o = 0;
    auto put = [&](char c) {
        if (o >= cap) return false;
        out[o++] = c;
        return true;
    };
    const size_t end = bounded_len();
    for (size_t i = 0; i < end && wire[i] != 0;) {
        size_t l = wire[i];
        if (i + 1 + l > end) return std::nullopt;  // a hand-made, malformed name
        if (i > 0 && !put('.')) return std::nullopt;
        for (size_t k = 1; k <= l; k++) {
            uint8_t c = wire[i + k];
            if (c == '.' || c == '\\') {
                if (!put('\\') || !put(static_cast<char>(c))) return std::nullopt;
            } else if (c > 0x20 && c < 0x7f) {
                if (!put(lower(c))) return std::nullopt;
            } else {
                if (!put('\\') || !put(static_cast<char>('0' + c / 100)) ||
                    !put(static_cast<char>('0' + c / 10 % 10)) ||
                    !put(static_cast<char>('0' + c % 10)))
                    return std::nullopt;
            }
        }
        i += 1 + l;
    }
    if (!put('\0')) return std::nullopt;
    return o - 1;
}

std::string DnsName::to_string() const {
    char buf[kDnsMaxTextLen + 1];
    // The buffer holds the longest possible text, so this cannot fail.
    return std::string(buf, to_text(buf, sizeof buf).value_or(0));
}

bool DnsName::equals(std::string_view dotted) const {
    if (!dotted.empty() && dotted.back() == '.') dotted.remove_suffix(1);
    if (dotted.find('\\') != std::string_view::npos) return false;
    const size_t end = bounded_len();
    size_t i = 0;
    while (i < end && wire[i] != 0) {
        size_t l = wire[i];
        if (i + 1 + l > end) return false;
        size_t dot = dotted.find('.');
        std::string_view label = dotted.substr(0, dot);
        if (label.size() != l) return false;
        for (size_t k = 0; k < l; k++)
            if (lower(wire[i + 1 + k]) != lower(static_cast<uint8_t>(label[k]))) return false;
        i += 1 + l;
        // Text ended: the name must end here too.
        if (dot == std::string_view::npos) return i < end && wire[i] == 0;
        dotted.remove_prefix(dot + 1);
        if (dotted.empty()) return false;
    }
    return dotted.empty();
}

std::optional<DnsQuestion> DnsView::question() const {
    if (qdcount() == 0) return std::nullopt;
    DnsQuestion q;
    auto n = dns_read_name(msg_, kDnsHeaderLen, q.name);
    if (!n) return std::nullopt;
    size_t pos = kDnsHeaderLen + *n;
    if (msg_.size() - pos < 4) return std::nullopt;
    q.qtype = load16(&msg_[pos]);
    q.qclass = load16(&msg_[pos + 2]);
    q.end = pos + 4;
    return q;
}

DnsRecordIter::DnsRecordIter(const DnsView& v) : msg_(v.message()) {
    pos_ = kDnsHeaderLen;
    DnsName scratch;
    for (uint32_t i = 0; i < v.qdcount(); i++) {
        auto n = dns_read_name(msg_, pos_, scratch);
        if (!n || msg_.size() - pos_ - *n < 4) {
            malformed_ = true;
            return;
        }
        pos_ += *n + 4;
    }
    left_[0] = v.ancount();
    left_[1] = v.nscount();
    left_[2] = v.arcount();
}

bool DnsRecordIter::next(DnsRecord& out) {
    if (malformed_) return false;
    while (section_ < 3 && left_[section_] == 0) section_++;
    if (section_ >= 3) {
        section_ = 2;
        return false;
    }
    auto n = dns_read_name(msg_, pos_, out.name);
    if (!n || msg_.size() - pos_ - *n < kRecordFixedLen) {
        malformed_ = true;
        return false;
    }
    size_t p = pos_ + *n;
    out.type = load16(&msg_[p]);
    out.rclass = load16(&msg_[p + 2]);
    out.ttl = load32(&msg_[p + 4]);
    size_t rdlen = load16(&msg_[p + 8]);
    p += kRecordFixedLen;
    if (rdlen > msg_.size() - p) {
        malformed_ = true;
        return false;
    }
    out.rdata = msg_.subspan(p, rdlen);
    out.rdata_offset = p;
    pos_ = p + rdlen;
    left_[section_]--;
    return true;
}

namespace {

uint16_t response_flags(const DnsView& query, uint8_t rcode, bool authoritative) {
    uint16_t f = dnsflag::qr | dnsflag::ra;
    f |= static_cast<uint16_t>(query.opcode() << 11);
    if (authoritative) f |= dnsflag::aa;
    if (query.rd()) f |= dnsflag::rd;
    f |= rcode & 0x0f;
    return f;
}

void write_header(uint8_t* p, uint16_t id, uint16_t flags, uint16_t qd) {
    store16(p, id);
    store16(p + 2, flags);
    store16(p + 4, qd);
    store16(p + 6, 0);
    store16(p + 8, 0);
    store16(p + 10, 0);
}

}  // namespace

std::optional<uint8_t> dns_edns_version(const DnsView& msg) {
    if (msg.arcount() == 0) return std::nullopt;
    DnsRecordIter it(msg);
    DnsRecord r;
    while (it.next(r))
        if (it.section() == 2 && r.type == dnstype::opt && r.name.len == 1)
            return static_cast<uint8_t>(r.ttl >> 16);
    return std::nullopt;
}

size_t dns_udp_payload(const DnsView& msg) {
    if (msg.arcount() == 0) return kDnsMaxUdpLen;
    DnsRecordIter it(msg);
    DnsRecord r;
    while (it.next(r))
        if (it.section() == 2 && r.type == dnstype::opt && r.name.len == 1)
            return std::max<size_t>(r.rclass, kDnsMaxUdpLen);
    return kDnsMaxUdpLen;
}

bool dns_write_opt(uint8_t* out, size_t cap) {
    if (cap < kEdnsOptLen) return false;
    out[0] = 0;  // the root
    store16(out + 1, dnstype::opt);
    store16(out + 3, kEdnsUdpSize);
    store32(out + 5, 0);  // extended RCODE 0, version 0, no DO
    store16(out + 9, 0);
    return true;
}

DnsResponseBuilder::DnsResponseBuilder(MutBytes buf, const DnsView& query, const DnsQuestion& q,
                                       uint8_t rcode, bool authoritative)
    : buf_(buf), edns_(dns_edns_version(query).has_value()) {
    size_t need = kDnsHeaderLen + q.name.len + 4;
    if (q.name.len == 0 || q.name.len > kDnsMaxNameLen || buf_.size() < need) return;
    write_header(buf_.data(), query.id(), response_flags(query, rcode, authoritative), 1);
    std::memcpy(&buf_[kDnsHeaderLen], q.name.wire.data(), q.name.len);
    len_ = kDnsHeaderLen + q.name.len;
    store16(&buf_[len_], q.qtype);
    store16(&buf_[len_ + 2], q.qclass);
    len_ += 4;
    question_end_ = len_;
    ok_ = true;
}

bool DnsResponseBuilder::add_record(uint16_t type, uint32_t ttl, Bytes rdata) {
    if (!ok_ || truncated_) return false;
    size_t need = 2 + kRecordFixedLen + rdata.size();
    const size_t keep = edns_ ? kEdnsOptLen : 0;
    if (rdata.size() > 0xffff || ancount_ == 0xffff || need + keep > buf_.size() - len_) {
        truncated_ = true;
        return false;
    }
    uint8_t* p = &buf_[len_];
    store16(p, kQuestionPointer);
    store16(p + 2, type);
    store16(p + 4, dnsclass::in);
    store32(p + 6, ttl);
    store16(p + 10, static_cast<uint16_t>(rdata.size()));
    if (!rdata.empty()) std::memcpy(p + 12, rdata.data(), rdata.size());
    len_ += need;
    ancount_++;
    return true;
}

bool DnsResponseBuilder::add_address(const IpAddr& addr, uint32_t ttl) {
    if (addr.is_v4()) return add_record(dnstype::a, ttl, Bytes(&addr.b[12], 4));
    return add_record(dnstype::aaaa, ttl, Bytes(addr.b.data(), 16));
}

size_t DnsResponseBuilder::finish() {
    if (!ok_) return 0;
    if (truncated_) {
        // The question alone, TC set: the client asks again over TCP.
        len_ = question_end_;
        ancount_ = 0;
        store16(&buf_[2], load16(&buf_[2]) | dnsflag::tc);
    }
    store16(&buf_[6], ancount_);
    if (edns_ && dns_write_opt(&buf_[len_], buf_.size() - len_)) {
        len_ += kEdnsOptLen;
        store16(&buf_[10], 1);
    }
    return len_;
}

std::optional<IpAddr> dns_reverse_addr(const DnsName& name) {
    // The labels, first to last, as spans of the wire form.
    std::array<Bytes, 34> labels;
    size_t n = 0;
    const Bytes w = name.bytes();
    for (size_t off = 0; off < w.size() && w[off] != 0;) {
        const size_t len = w[off];
        if (len > w.size() - off - 1 || n == labels.size()) return std::nullopt;
        labels[n++] = w.subspan(off + 1, len);
        off += 1 + len;
    }
    auto is = [](Bytes label, std::string_view text) {
        if (label.size() != text.size()) return false;
        for (size_t i = 0; i < text.size(); i++)
            if ((label[i] | 0x20) != text[i]) return false;
        return true;
    };
    if (n == 6 && is(labels[4], "in-addr") && is(labels[5], "arpa")) {
        uint32_t a = 0;
        for (size_t i = 0; i < 4; i++) {
            const Bytes l = labels[3 - i];
            if (l.empty() || l.size() > 3 || (l.size() > 1 && l[0] == '0')) return std::nullopt;
            uint32_t v = 0;
            for (uint8_t c : l) {
                if (c < '0' || c > '9') return std::nullopt;
                v = v * 10 + (c - '0');
            }
            if (v > 255) return std::nullopt;
            a = (a << 8) | v;
        }
        return IpAddr::v4(a);
    }
    if (n == 34 && is(labels[32], "ip6") && is(labels[33], "arpa")) {
        std::array<uint8_t, 16> b{};
        for (size_t i = 0; i < 32; i++) {
            const Bytes l = labels[31 - i];
            if (l.size() != 1) return std::nullopt;
            const uint8_t c = l[0] | 0x20;
            uint8_t v;
            if (c >= '0' && c <= '9') v = c - '0';
            else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
            else return std::nullopt;
            b[i / 2] = static_cast<uint8_t>(b[i / 2] | (i % 2 ? v : v << 4));
        }
        return IpAddr::v6_from(b.data());
    }
    return std::nullopt;
}

size_t dns_build_error(MutBytes buf, const DnsView& query, uint8_t rcode, bool authoritative) {
    if (auto q = query.question()) {
        DnsResponseBuilder b(buf, query, *q, rcode, authoritative);
        return b.finish();
    }
    if (buf.size() < kDnsHeaderLen) return 0;
    write_header(buf.data(), query.id(), response_flags(query, rcode, authoritative), 0);
    return kDnsHeaderLen;
}

}  // namespace usernet::wire
