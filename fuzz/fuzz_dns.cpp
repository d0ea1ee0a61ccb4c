// Fuzzes DnsView, the name reader (at every offset, so every byte is tried
// as the start of a compressed name), the record walker, and the response
// builders into a buffer whose capacity the input chooses: a finished
// response must parse back with the same question.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_dns(s, in);

    DnsName name;
    for (size_t off = 0; off < std::min<size_t>(size, 1024); off++) {
        if (auto n = dns_read_name(in, off, name)) {
            FUZZ_CHECK(*n >= 1 && *n <= size - off);
            FUZZ_CHECK(name.len >= 1 && name.len <= kDnsMaxNameLen);
            FUZZ_CHECK(name.wire[name.len - 1] == 0);
            s(name.label_count());
        }
    }

    // The input as dotted text: whatever encodes must read back the same.
    uint8_t enc[kDnsHeaderLen + kDnsMaxNameLen] = {};
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (size_t n = dns_encode_name(text, enc + kDnsHeaderLen, kDnsMaxNameLen)) {
        auto r = dns_read_name(Bytes(enc, kDnsHeaderLen + n), kDnsHeaderLen, name);
        FUZZ_CHECK(r && *r == n && name.len == n);
        if (text.find('\\') == std::string_view::npos) FUZZ_CHECK(name.equals(text));
    }

    auto v = DnsView::parse(in);
    if (!v) return 0;
    std::vector<uint8_t> out(size ? data[0] * 2u : 0u);
    auto q = v->question();
    if (size_t n = dns_build_error(MutBytes(out), *v, dnsrcode::servfail)) {
        FUZZ_CHECK(n <= out.size());
        auto r = DnsView::parse(Bytes(out.data(), n));
        FUZZ_CHECK(r && r->id() == v->id() && r->qr() && r->rcode() == dnsrcode::servfail);
        FUZZ_CHECK(r->qdcount() == (q ? 1 : 0));
    }
    if (!q) return 0;
    DnsResponseBuilder b(MutBytes(out), *v, *q);
    b.add_address(IpAddr::v4(0x0a000202), 60);
    b.add_address(IpAddr::parse("fec0::2").value_or(IpAddr{}), 60);
    if (size_t n = b.finish()) {
        FUZZ_CHECK(n <= out.size());
        auto r = DnsView::parse(Bytes(out.data(), n));
        FUZZ_CHECK(r.has_value());
        auto rq = r->question();
        FUZZ_CHECK(rq && rq->qtype == q->qtype && rq->qclass == q->qclass);
        FUZZ_CHECK(std::equal(rq->name.bytes().begin(), rq->name.bytes().end(),
                              q->name.bytes().begin(), q->name.bytes().end()));
        // The two answers, named as the question, or none and TC when they
        // did not fit; and an OPT record (root name) exactly when the
        // query had one and it fitted.
        const bool edns = dns_edns_version(*v).has_value();
        DnsRecordIter it(*r);
        DnsRecord rec;
        int count = 0, opts = 0;
        while (it.next(rec)) {
            if (it.section() == 2) {
                FUZZ_CHECK(rec.type == dnstype::opt && rec.name.len == 1 && rec.ttl == 0);
                opts++;
                continue;
            }
            FUZZ_CHECK(rec.name.len == q->name.len);
            count++;
        }
        FUZZ_CHECK(!it.malformed());
        if (b.truncated())
            FUZZ_CHECK(count == 0 && r->ancount() == 0 && r->tc());
        else
            FUZZ_CHECK(count == 2);
        FUZZ_CHECK(opts == (edns && r->arcount() == 1 ? 1 : 0));
        FUZZ_CHECK(!edns || r->arcount() == 1 || n + kEdnsOptLen > out.size());
    }
    return 0;
}
