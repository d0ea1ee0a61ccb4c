// DNS: real queries and dnsmasq answers, hostile names (compression loops,
// pointers out of range, overlong names), and the response builders.
#include "wire/dns.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

namespace {
constexpr size_t kDnsInFrame = kEthIp + 8;

template <typename Array>
Bytes dns_of(const Array& frame) {
    return bytes(frame).subspan(kDnsInFrame);
}

// A query header (id 0x1234, RD, one question) followed by `body`.
std::vector<uint8_t> query_with(std::initializer_list<uint8_t> body, uint16_t qdcount = 1) {
    std::vector<uint8_t> m(12 + body.size());
    const uint8_t header[] = {0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(std::begin(header), std::end(header), m.begin());
    std::copy(body.begin(), body.end(), m.begin() + 12);
    store16(&m[4], qdcount);
    return m;
}

std::optional<size_t> read_name(const std::vector<uint8_t>& m, size_t off, DnsName& n) {
    return dns_read_name(bytes(m), off, n);
}
}  // namespace

TEST(DnsView, ParsesCapturedQueryHeader) {
    auto v = DnsView::parse(dns_of(kDnsQueryA));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->id(), 0x73aa);
    EXPECT_EQ(v->flags(), 0x0100);
    EXPECT_FALSE(v->qr());
    EXPECT_EQ(v->opcode(), dnsopcode::query);
    EXPECT_FALSE(v->aa());
    EXPECT_FALSE(v->tc());
    EXPECT_TRUE(v->rd());
    EXPECT_FALSE(v->ra());
    EXPECT_EQ(v->rcode(), dnsrcode::noerror);
    EXPECT_EQ(v->qdcount(), 1);
    EXPECT_EQ(v->ancount(), 0);
    EXPECT_EQ(v->nscount(), 0);
    EXPECT_EQ(v->arcount(), 0);
}

TEST(DnsView, ParsesCapturedQuestionForExampleComA) {
    auto v = DnsView::parse(dns_of(kDnsQueryA));
    auto q = v->question();
    ASSERT_TRUE(q);
    EXPECT_EQ(q->name.to_string(), "example.com");
    EXPECT_EQ(q->name.len, 13u);
    EXPECT_EQ(q->name.label_count(), 2u);
    EXPECT_TRUE(q->name.equals("example.com"));
    EXPECT_TRUE(q->name.equals("EXAMPLE.com."));
    EXPECT_FALSE(q->name.equals("example.co"));
    EXPECT_FALSE(q->name.equals("www.example.com"));
    EXPECT_FALSE(q->name.equals("example"));
    EXPECT_EQ(q->qtype, dnstype::a);
    EXPECT_EQ(q->qclass, dnsclass::in);
    EXPECT_EQ(q->end, v->message().size());
    EXPECT_EQ(DnsView::parse(dns_of(kDnsQueryAAAA))->question()->qtype, dnstype::aaaa);
}

TEST(DnsView, ParsesCapturedDnsmasqResponse) {
    auto v = DnsView::parse(dns_of(kDnsResponseA));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->id(), 0x73aa);
    EXPECT_TRUE(v->qr());
    EXPECT_TRUE(v->aa());
    EXPECT_TRUE(v->rd());
    EXPECT_TRUE(v->ra());
    EXPECT_EQ(v->ancount(), 1);
    DnsRecordIter it(*v);
    DnsRecord r;
    ASSERT_TRUE(it.next(r));
    EXPECT_EQ(it.section(), 0);
    EXPECT_EQ(r.name.to_string(), "example.com") << "the name is a pointer to the question";
    EXPECT_EQ(r.type, dnstype::a);
    EXPECT_EQ(r.rclass, dnsclass::in);
    EXPECT_EQ(r.ttl, 0u);
    ASSERT_EQ(r.rdata.size(), 4u);
    EXPECT_EQ(load32(r.rdata.data()), 0x5db8d822u);  // 93.184.216.34
    EXPECT_FALSE(it.next(r));
    EXPECT_FALSE(it.malformed());
}

TEST(DnsView, ParsesCapturedAaaaResponse) {
    auto v = DnsView::parse(dns_of(kDnsResponseAAAA));
    DnsRecordIter it(*v);
    DnsRecord r;
    ASSERT_TRUE(it.next(r));
    EXPECT_EQ(r.type, dnstype::aaaa);
    ASSERT_EQ(r.rdata.size(), 16u);
    EXPECT_EQ(IpAddr::v6_from(r.rdata.data()), *IpAddr::parse("2606:2800:220:1:248:1893:25c8:1946"));
}

TEST(DnsView, RejectsMessageShorterThanHeader) {
    for (size_t n = 0; n < 12; n++) EXPECT_FALSE(DnsView::parse(dns_of(kDnsQueryA).first(n)));
    auto v = DnsView::parse(dns_of(kDnsQueryA).first(12));
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->question()) << "qdcount says 1 but nothing follows";
}

TEST(DnsView, RejectsTruncatedQuestion) {
    Bytes m = dns_of(kDnsQueryA);
    for (size_t n = 12; n < m.size(); n++)
        EXPECT_FALSE(DnsView::parse(m.first(n))->question()) << n;
}

TEST(DnsView, NoQuestionWhenQdcountIsZero) {
    std::vector<uint8_t> m = vec(dns_of(kDnsQueryA));
    m[5] = 0;
    EXPECT_FALSE(DnsView::parse(bytes(m))->question());
}

// Reverse-lookup names (RFC 1035 3.5, RFC 3596 2.5) name an address;
// partial ones (a network's), malformed labels and other names do not.
TEST(DnsName, ReverseNamesGiveTheirAddress) {
    auto rev = [](const char* text) {
        DnsName n;
        n.len = dns_encode_name(text, n.wire.data(), n.wire.size());
        return dns_reverse_addr(n);
    };
    EXPECT_EQ(rev("15.2.0.10.in-addr.arpa"), IpAddr::v4(0x0a00020f));
    EXPECT_EQ(rev("255.2.0.10.IN-ADDR.ARPA."), IpAddr::v4(0x0a0002ff));
    EXPECT_EQ(rev("f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.e.F.ip6.arpa"),
              IpAddr::parse("fec0::f"));
    for (const char* bad : {"2.0.10.in-addr.arpa", "256.2.0.10.in-addr.arpa", "01.2.0.10.in-addr.arpa",
                            "x.2.0.10.in-addr.arpa", "1.15.2.0.10.in-addr.arpa", "example.com",
                            "0.0.0.c.e.f.ip6.arpa", "10.in-addr.arpa",
                            "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.e.f.ip6.arpa"})
        EXPECT_FALSE(rev(bad)) << bad;
}

TEST(DnsName, RejectsSelfLoopThroughLabels) {
    // "a" then a pointer back to the start of the same name.
    auto m = query_with({1, 'a', 0xc0, 0x0c, 0, 1, 0, 1});
    EXPECT_FALSE(DnsView::parse(bytes(m))->question());
}

TEST(DnsName, RejectsPointerToItself) {
    auto m = query_with({0xc0, 0x0c, 0, 1, 0, 1});
    EXPECT_FALSE(DnsView::parse(bytes(m))->question());
}

TEST(DnsName, RejectsTwoPointersPointingAtEachOther) {
    auto m = query_with({0xc0, 0x0e, 0xc0, 0x0c});
    DnsName n;
    EXPECT_FALSE(read_name(m, 12, n));
    EXPECT_FALSE(read_name(m, 14, n));
}

TEST(DnsName, RejectsPointerChainLongerThanLimit) {
    // Offset 12: the root name. Offset 13: a pointer to 12; each following
    // pointer points at the one before it.
    auto m = query_with({0});
    for (int k = 0; k <= kDnsMaxPointerJumps; k++) {
        uint16_t target = static_cast<uint16_t>(k == 0 ? 12 : 13 + 2 * (k - 1));
        m.push_back(static_cast<uint8_t>(0xc0 | (target >> 8)));
        m.push_back(static_cast<uint8_t>(target));
    }
    DnsName n;
    auto at_limit = read_name(m, 13 + 2 * (kDnsMaxPointerJumps - 1), n);
    ASSERT_TRUE(at_limit) << "exactly kDnsMaxPointerJumps jumps are followed";
    EXPECT_EQ(*at_limit, 2u);
    EXPECT_EQ(n.len, 1u);
    EXPECT_FALSE(read_name(m, 13 + 2 * kDnsMaxPointerJumps, n));
}

TEST(DnsName, RejectsPointerOutOfRange) {
    auto forward = query_with({0xc0, 0x40, 0, 1, 0, 1});
    EXPECT_FALSE(DnsView::parse(bytes(forward))->question());
    auto past_end = query_with({0xff, 0xff, 0, 1, 0, 1});
    EXPECT_FALSE(DnsView::parse(bytes(past_end))->question());
    // A pointer in a later name that leaves the message.
    auto m = query_with({1, 'a', 0, 0, 1, 0, 1, 0xc3, 0xe8});
    DnsName n;
    EXPECT_FALSE(read_name(m, 19, n));
}

TEST(DnsName, RejectsPointerIntoHeader) {
    // Offset 20 points at offset 4, inside the header.
    auto m = query_with({1, 'a', 0, 0, 1, 0, 1, 1, 'b', 0xc0, 0x04});
    DnsName n;
    EXPECT_FALSE(read_name(m, 19, n));
}

TEST(DnsName, FollowsValidBackwardPointer) {
    // "example.com" at 12; at 29 "www" + pointer to it.
    auto m = query_with({7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1,
                         3, 'W', 'w', 'W', 0xc0, 0x0c, 1, 'x', 0xc0, 0x14});
    DnsName n;
    auto used = read_name(m, 29, n);
    ASSERT_TRUE(used);
    EXPECT_EQ(*used, 6u) << "three label bytes, length byte, two pointer bytes";
    EXPECT_EQ(n.to_string(), "www.example.com");
    EXPECT_EQ(n.label_count(), 3u);
    // A pointer into the middle of a name ("com").
    used = read_name(m, 35, n);
    ASSERT_TRUE(used);
    EXPECT_EQ(n.to_string(), "x.com");
}

TEST(DnsName, RejectsTruncatedPointerAndLabel) {
    auto ptr = query_with({0xc0});
    DnsName n;
    EXPECT_FALSE(read_name(ptr, 12, n));
    auto label = query_with({5, 'a', 'b'});
    EXPECT_FALSE(read_name(label, 12, n));
    auto unterminated = query_with({1, 'a'});
    EXPECT_FALSE(read_name(unterminated, 12, n));
    EXPECT_FALSE(read_name(unterminated, 99, n)) << "offset past the message";
}

TEST(DnsName, RejectsExtendedLabelTypes) {
    DnsName n;
    EXPECT_FALSE(read_name(query_with({0x41, 0}), 12, n));
    EXPECT_FALSE(read_name(query_with({0x80, 0}), 12, n));
}

TEST(DnsName, EnforcesMaximumNameLength) {
    // Three 63-byte labels and one 61-byte label: 4*1 + 3*63 + 61 + 1 = 255.
    std::vector<uint8_t> m = query_with({});
    for (int i = 0; i < 3; i++) {
        m.push_back(63);
        m.insert(m.end(), 63, 'a');
    }
    m.push_back(61);
    m.insert(m.end(), 61, 'b');
    m.push_back(0);
    DnsName n;
    auto ok = read_name(m, 12, n);
    ASSERT_TRUE(ok);
    EXPECT_EQ(n.len, 255u);
    EXPECT_EQ(*ok, 255u);
    m[12 + 3 * 64] = 62;  // one byte more: 256
    m.insert(m.begin() + 12 + 3 * 64 + 1, 'b');
    EXPECT_FALSE(read_name(m, 12, n));
}

TEST(DnsName, EnforcesMaximumLengthAcrossPointers) {
    // A 250-byte name at 12; a later name adds a 5-byte label before a
    // pointer to it: 256 bytes uncompressed.
    std::vector<uint8_t> m = query_with({});
    for (int i = 0; i < 3; i++) {
        m.push_back(63);
        m.insert(m.end(), 63, 'a');
    }
    m.push_back(57);
    m.insert(m.end(), 57, 'b');
    m.push_back(0);
    size_t second = m.size();
    m.insert(m.end(), {4, 'c', 'c', 'c', 'c', 0xc0, 0x0c});
    DnsName n;
    ASSERT_TRUE(read_name(m, 12, n));
    EXPECT_EQ(n.len, 251u);
    EXPECT_FALSE(read_name(m, second, n)) << "5 + 251 = 256 bytes uncompressed";
}

TEST(DnsName, LowercasesAndEscapesText) {
    auto m = query_with({7, 'E', 'x', 'A', 'm', 'P', 'l', 'E', 3, 'a', '.', ' ', 2, 0xff, '\\', 0});
    DnsName n;
    ASSERT_TRUE(read_name(m, 12, n));
    EXPECT_EQ(n.to_string(), "example.a\\.\\032.\\255\\\\");
    EXPECT_FALSE(n.equals("example.a\\.\\032.\\255\\\\")) << "escaped text never matches";
    char small[4];
    EXPECT_FALSE(n.to_text(small, sizeof small));
    char exact[23];
    auto len = n.to_text(exact, sizeof exact);
    ASSERT_TRUE(len);
    EXPECT_EQ(*len, 22u);
    EXPECT_EQ(std::string(exact), "example.a\\.\\032.\\255\\\\");
    EXPECT_FALSE(n.to_text(exact, 22)) << "the NUL needs a byte too";
}

TEST(DnsName, RootNameIsEmptyText) {
    DnsName n;
    ASSERT_TRUE(read_name(query_with({0}), 12, n));
    EXPECT_EQ(n.len, 1u);
    EXPECT_EQ(n.label_count(), 0u);
    EXPECT_EQ(n.to_string(), "");
    EXPECT_TRUE(n.equals(""));
    EXPECT_TRUE(n.equals("."));
    EXPECT_FALSE(n.equals("com"));
    char one[1];
    EXPECT_EQ(n.to_text(one, 1), 0u);
}

TEST(DnsEncodeName, EncodesDottedText) {
    uint8_t buf[kDnsMaxNameLen];
    size_t n = dns_encode_name("www.Example.com", buf, sizeof buf);
    ASSERT_EQ(n, 17u);
    const uint8_t want[] = {3, 'w', 'w', 'w', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o',
                            'm', 0};
    EXPECT_TRUE(std::equal(buf, buf + n, want));
    EXPECT_EQ(dns_encode_name("www.Example.com.", buf, sizeof buf), 17u);
    EXPECT_EQ(dns_encode_name("", buf, sizeof buf), 1u);
    EXPECT_EQ(dns_encode_name(".", buf, sizeof buf), 1u);
    EXPECT_EQ(buf[0], 0);
}

TEST(DnsEncodeName, RejectsInvalidNamesAndSmallBuffers) {
    uint8_t buf[300];
    EXPECT_EQ(dns_encode_name("a..b", buf, sizeof buf), 0u);
    EXPECT_EQ(dns_encode_name(".a", buf, sizeof buf), 0u);
    EXPECT_EQ(dns_encode_name("a..", buf, sizeof buf), 0u);
    EXPECT_EQ(dns_encode_name(std::string(64, 'x'), buf, sizeof buf), 0u);
    EXPECT_NE(dns_encode_name(std::string(63, 'x'), buf, sizeof buf), 0u);
    std::string long_name = std::string(63, 'a') + "." + std::string(63, 'a') + "." +
                            std::string(63, 'a') + "." + std::string(62, 'a');
    EXPECT_EQ(dns_encode_name(long_name, buf, sizeof buf), 0u) << "256 bytes on the wire";
    long_name.pop_back();
    EXPECT_EQ(dns_encode_name(long_name, buf, sizeof buf), 255u);
    EXPECT_EQ(dns_encode_name("example.com", buf, 12), 0u);
    EXPECT_EQ(dns_encode_name("example.com", buf, 13), 13u);
    EXPECT_EQ(dns_encode_name("", buf, 0), 0u);
}

TEST(DnsRecordIter, WalksSectionsAndFlagsMalformedRdata) {
    auto m = query_with({1, 'a', 0, 0, 1, 0, 1,                        // question
                         0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4,   // answer
                         0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 5, 6, 7, 8,   // additional
                         0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 9, 0, 9, 1});  // rdlength lies
    store16(&m[6], 1);
    store16(&m[10], 2);
    auto v = DnsView::parse(bytes(m));
    DnsRecordIter it(*v);
    DnsRecord r;
    ASSERT_TRUE(it.next(r));
    EXPECT_EQ(it.section(), 0);
    EXPECT_EQ(r.ttl, 9u);
    EXPECT_EQ(r.rdata_offset, 31u);
    ASSERT_TRUE(it.next(r));
    EXPECT_EQ(it.section(), 2);
    EXPECT_EQ(load32(r.rdata.data()), 0x05060708u);
    EXPECT_FALSE(it.next(r));
    EXPECT_TRUE(it.malformed());
    EXPECT_FALSE(it.next(r));
}

TEST(DnsRecordIter, StopsOnMalformedQuestion) {
    auto m = query_with({0xc0, 0x0c, 0, 1, 0, 1});
    store16(&m[6], 1);
    DnsRecordIter it(*DnsView::parse(bytes(m)));
    DnsRecord r;
    EXPECT_FALSE(it.next(r));
    EXPECT_TRUE(it.malformed());
}

TEST(DnsResponseBuilder, ReproducesDnsmasqAnswerByteForByte) {
    auto query = DnsView::parse(dns_of(kDnsQueryA));
    auto q = query->question();
    ASSERT_TRUE(q);
    std::vector<uint8_t> buf(kDnsMaxUdpLen, 0xee);
    DnsResponseBuilder b(MutBytes(buf), *query, *q);
    ASSERT_TRUE(b.ok());
    EXPECT_TRUE(b.add_address(IpAddr::v4(0x5db8d822), 0));
    size_t n = b.finish();
    Bytes real = dns_of(kDnsResponseA);
    ASSERT_EQ(n, real.size());
    EXPECT_TRUE(std::equal(real.begin(), real.end(), buf.begin()));
}

TEST(DnsResponseBuilder, ReproducesDnsmasqAaaaAnswerByteForByte) {
    auto query = DnsView::parse(dns_of(kDnsQueryAAAA));
    auto q = query->question();
    ASSERT_TRUE(q);
    std::vector<uint8_t> buf(kDnsMaxUdpLen);
    DnsResponseBuilder b(MutBytes(buf), *query, *q);
    b.add_address(*IpAddr::parse("2606:2800:220:1:248:1893:25c8:1946"), 0);
    size_t n = b.finish();
    Bytes real = dns_of(kDnsResponseAAAA);
    ASSERT_EQ(n, real.size());
    EXPECT_TRUE(std::equal(real.begin(), real.end(), buf.begin()));
}

TEST(DnsResponseBuilder, RoundTripsSeveralAnswers) {
    auto query = DnsView::parse(dns_of(kDnsQueryA));
    auto q = query->question();
    std::vector<uint8_t> buf(kDnsMaxUdpLen);
    DnsResponseBuilder b(MutBytes(buf), *query, *q, dnsrcode::noerror, false);
    b.add_address(IpAddr::v4(0x0a000202), 300);
    b.add_address(*IpAddr::parse("fec0::2"), 300);
    const uint8_t txt[] = {2, 'h', 'i'};
    b.add_record(dnstype::txt, 60, Bytes(txt, 3));
    size_t n = b.finish();
    ASSERT_EQ(n, 29u + 16 + 28 + 15);
    auto v = DnsView::parse(Bytes(buf.data(), n));
    EXPECT_EQ(v->id(), 0x73aa);
    EXPECT_TRUE(v->qr());
    EXPECT_FALSE(v->aa());
    EXPECT_EQ(v->ancount(), 3);
    EXPECT_TRUE(v->question()->name.equals("example.com"));
    DnsRecordIter it(*v);
    DnsRecord r;
    std::vector<uint16_t> types;
    while (it.next(r)) {
        EXPECT_TRUE(r.name.equals("example.com"));
        types.push_back(r.type);
    }
    EXPECT_FALSE(it.malformed());
    EXPECT_EQ(types, (std::vector<uint16_t>{dnstype::a, dnstype::aaaa, dnstype::txt}));
}

// RFC 6891 7: a query with an OPT record gets one back, after the answers;
// one without gets none.
TEST(DnsResponseBuilder, EchoesEdnsWithAnOptRecordOfItsOwn) {
    // host.test A IN, then OPT: payload 4096, version 0, DO set.
    auto m = query_with({4, 'h', 'o', 's', 't', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
                         0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0});
    store16(&m[10], 1);
    auto query = DnsView::parse(Bytes(m.data(), m.size()));
    ASSERT_EQ(dns_edns_version(*query), std::optional<uint8_t>(0));
    auto q = query->question();
    ASSERT_TRUE(q);
    std::vector<uint8_t> buf(kDnsMaxUdpLen);
    DnsResponseBuilder b(MutBytes(buf), *query, *q);
    b.add_address(IpAddr::v4(0x0a000202), 300);
    size_t n = b.finish();
    ASSERT_GT(n, 0u);
    auto v = DnsView::parse(Bytes(buf.data(), n));
    EXPECT_EQ(v->ancount(), 1);
    EXPECT_EQ(v->arcount(), 1);
    DnsRecordIter it(*v);
    DnsRecord r;
    std::vector<std::pair<int, uint16_t>> seen;
    while (it.next(r)) seen.push_back({it.section(), r.type});
    EXPECT_FALSE(it.malformed());
    ASSERT_EQ(seen, (std::vector<std::pair<int, uint16_t>>{{0, dnstype::a}, {2, dnstype::opt}}));
    EXPECT_EQ(r.rclass, kEdnsUdpSize);  // the OPT's class: our payload size
    EXPECT_EQ(r.ttl, 0u);               // extended RCODE 0, version 0, no DO
    EXPECT_TRUE(r.rdata.empty());
    // An error answer carries it too.
    std::vector<uint8_t> err(kDnsMaxUdpLen);
    size_t en = dns_build_error(MutBytes(err), *query, dnsrcode::servfail);
    EXPECT_EQ(DnsView::parse(Bytes(err.data(), en))->arcount(), 1);
    // Without OPT in the query, none in the answer.
    store16(&m[10], 0);
    m.resize(m.size() - kEdnsOptLen);
    auto plain = DnsView::parse(Bytes(m.data(), m.size()));
    EXPECT_FALSE(dns_edns_version(*plain));
    DnsResponseBuilder b2(MutBytes(buf), *plain, *plain->question());
    size_t n2 = b2.finish();
    EXPECT_EQ(DnsView::parse(Bytes(buf.data(), n2))->arcount(), 0);
    // A version we do not speak is reported as such.
    auto v1 = query_with({0, 0, 1, 0, 1, 0, 0, 41, 0x10, 0x00, 0, 1, 0, 0, 0, 0});
    store16(&v1[10], 1);
    EXPECT_EQ(dns_edns_version(*DnsView::parse(Bytes(v1.data(), v1.size()))),
              std::optional<uint8_t>(1));
}

TEST(DnsResponseBuilder, ReencodesCompressedQuestionUncompressed) {
    // A name read through a compression pointer is written out in full,
    // so the answers' pointer to offset 12 finds a real name there.
    auto resp = DnsView::parse(dns_of(kDnsResponseA));
    DnsRecordIter it(*resp);
    DnsRecord r;
    ASSERT_TRUE(it.next(r));
    DnsQuestion q;
    q.name = r.name;  // read through the C0 0C pointer
    q.qtype = dnstype::a;
    q.qclass = dnsclass::in;
    std::vector<uint8_t> buf(kDnsMaxUdpLen);
    DnsResponseBuilder b(MutBytes(buf), *resp, q);
    size_t n = b.finish();
    ASSERT_EQ(n, 29u);
    EXPECT_EQ(buf[12], 7) << "the name is written out, not as a pointer";
}

// RFC 2181 9: records that do not fit are not cut in half; the answer is
// the question with TC set, and the client asks again over TCP.
TEST(DnsResponseBuilder, TruncatesWithTcWithoutOverflowWhenFull) {
    auto query = DnsView::parse(dns_of(kDnsQueryA));
    auto q = query->question();
    std::vector<uint8_t> backing(100, 0xee);
    // Room for the header, question and exactly two A records (29 + 32).
    DnsResponseBuilder b(MutBytes(backing.data(), 61), *query, *q);
    EXPECT_TRUE(b.add_address(IpAddr::v4(1), 1));
    EXPECT_TRUE(b.add_address(IpAddr::v4(2), 1));
    EXPECT_FALSE(b.truncated());
    EXPECT_FALSE(b.add_address(IpAddr::v4(3), 1));
    EXPECT_TRUE(b.ok());
    EXPECT_TRUE(b.truncated());
    EXPECT_FALSE(b.add_address(IpAddr::v4(4), 1));
    ASSERT_EQ(b.finish(), 29u);
    auto v = DnsView::parse(Bytes(backing.data(), 29));
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->tc());
    EXPECT_TRUE(v->qr());
    EXPECT_EQ(v->qdcount(), 1);
    EXPECT_EQ(v->ancount(), 0);
    for (size_t i = 61; i < backing.size(); i++) ASSERT_EQ(backing[i], 0xee) << i;
    DnsResponseBuilder tiny(MutBytes(backing.data(), 28), *query, *q);
    EXPECT_FALSE(tiny.ok());
    EXPECT_FALSE(tiny.add_address(IpAddr::v4(1), 1));
    EXPECT_EQ(tiny.finish(), 0u);
}

// An EDNS query's answer keeps room for its OPT record: the records that
// would take it are cut (TC), never the OPT.
TEST(DnsResponseBuilder, KeepsRoomForTheOptRecord) {
    auto m = query_with({4, 'h', 'o', 's', 't', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
                         0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0});
    store16(&m[10], 1);
    auto query = DnsView::parse(Bytes(m.data(), m.size()));
    EXPECT_EQ(dns_udp_payload(*query), 1232u);
    auto q = query->question();
    // 27 (header, question) + 2 x 16 (A records) + 11 (OPT) = 70.
    std::vector<uint8_t> buf(70);
    DnsResponseBuilder b(MutBytes(buf), *query, *q);
    EXPECT_TRUE(b.add_address(IpAddr::v4(1), 1));
    EXPECT_TRUE(b.add_address(IpAddr::v4(2), 1));
    EXPECT_FALSE(b.truncated());
    ASSERT_EQ(b.finish(), 70u);
    auto v = DnsView::parse(Bytes(buf.data(), 70));
    EXPECT_EQ(v->ancount(), 2);
    EXPECT_EQ(v->arcount(), 1);
    // One byte less: the second record goes, with TC; the OPT stays.
    DnsResponseBuilder c(MutBytes(buf.data(), 69), *query, *q);
    EXPECT_TRUE(c.add_address(IpAddr::v4(1), 1));
    EXPECT_FALSE(c.add_address(IpAddr::v4(2), 1));
    size_t n = c.finish();
    ASSERT_EQ(n, 27u + kEdnsOptLen);
    v = DnsView::parse(Bytes(buf.data(), n));
    EXPECT_TRUE(v->tc());
    EXPECT_EQ(v->ancount(), 0);
    EXPECT_EQ(v->arcount(), 1);
    // Without EDNS, and with a payload below 512, the size is 512.
    auto plain = DnsView::parse(dns_of(kDnsQueryA));
    EXPECT_EQ(dns_udp_payload(*plain), 512u);
    m[m.size() - 8] = 0x01;  // class 0x0100 = 256
    m[m.size() - 7] = 0x00;
    EXPECT_EQ(dns_udp_payload(*DnsView::parse(Bytes(m.data(), m.size()))), 512u);
}

TEST(DnsBuildError, AnswersServfailNxdomainRefusedWithQuestion) {
    auto query = DnsView::parse(dns_of(kDnsQueryA));
    for (uint8_t rcode : {dnsrcode::servfail, dnsrcode::nxdomain, dnsrcode::refused}) {
        std::vector<uint8_t> buf(kDnsMaxUdpLen);
        size_t n = dns_build_error(MutBytes(buf), *query, rcode);
        ASSERT_EQ(n, 29u);
        auto v = DnsView::parse(Bytes(buf.data(), n));
        EXPECT_EQ(v->id(), 0x73aa);
        EXPECT_TRUE(v->qr());
        EXPECT_TRUE(v->rd());
        EXPECT_TRUE(v->ra());
        EXPECT_FALSE(v->aa());
        EXPECT_EQ(v->rcode(), rcode);
        EXPECT_EQ(v->qdcount(), 1);
        EXPECT_EQ(v->ancount(), 0);
        EXPECT_TRUE(v->question()->name.equals("example.com"));
    }
}

TEST(DnsBuildError, AnswersHeaderOnlyWhenQuestionIsUnreadable) {
    auto m = query_with({0xc0, 0x0c, 0, 1, 0, 1});
    std::vector<uint8_t> buf(kDnsMaxUdpLen);
    size_t n = dns_build_error(MutBytes(buf), *DnsView::parse(bytes(m)), dnsrcode::formerr);
    ASSERT_EQ(n, 12u);
    auto v = DnsView::parse(Bytes(buf.data(), n));
    EXPECT_EQ(v->id(), 0x1234);
    EXPECT_EQ(v->rcode(), dnsrcode::formerr);
    EXPECT_EQ(v->qdcount(), 0);
    EXPECT_EQ(dns_build_error(MutBytes(buf.data(), 11), *DnsView::parse(bytes(m)),
                              dnsrcode::formerr),
              0u);
}

TEST(DnsBuildError, KeepsOpcodeForNotImplemented) {
    std::vector<uint8_t> m = vec(dns_of(kDnsQueryA));
    m[2] = static_cast<uint8_t>(m[2] | (2 << 3));  // opcode 2 (STATUS)
    std::vector<uint8_t> buf(kDnsMaxUdpLen);
    size_t n = dns_build_error(MutBytes(buf), *DnsView::parse(bytes(m)), dnsrcode::notimp);
    auto v = DnsView::parse(Bytes(buf.data(), n));
    EXPECT_EQ(v->opcode(), 2);
    EXPECT_EQ(v->rcode(), dnsrcode::notimp);
}

TEST(DnsName, HandMadeMalformedNameIsReadSafely) {
    DnsName n;
    n.wire.fill(63);  // labels that run past the end of the array
    n.len = 1000;     // and a length longer than it
    EXPECT_EQ(n.bytes().size(), kDnsMaxNameLen);
    EXPECT_EQ(n.label_count(), 3u);
    EXPECT_FALSE(n.to_text(nullptr, 0));
    char text[kDnsMaxTextLen + 1];
    EXPECT_FALSE(n.to_text(text, sizeof text));
    EXPECT_FALSE(n.equals("a.b"));
    EXPECT_EQ(n.to_string(), "");
}
