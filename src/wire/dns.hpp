// DNS messages (RFC 1035; case-insensitive names RFC 4343; AAAA RFC 3596).
//
// DnsView checks the 12-byte header. Names are read by dns_read_name(),
// which bounds every label, the total length (255) and the compression
// pointers: a pointer must point strictly backwards and at most
// kDnsMaxPointerJumps are followed, so a loop cannot hang the reader.
// question() parses only the first question, which is all a forwarder or a
// local responder needs; DnsRecordIter walks the records after it.
//
// The builders write answers to a query: a response with A/AAAA records
// whose names are compression pointers to the question, and an error
// response with only a RCODE. A query with an EDNS(0) OPT record gets one
// back (RFC 6891 7: a responder that answers must; a client such as
// systemd-resolved stops using EDNS with a server that does not), with
// kEdnsUdpSize, version 0 and no options. Not supported: DNSSEC, zone
// transfers, anything but class IN in the builders.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::wire {

inline constexpr size_t kDnsHeaderLen = 12;
inline constexpr uint16_t kDnsPort = 53;
inline constexpr size_t kDnsMaxNameLen = 255;  // wire form, RFC 1035 2.3.4
inline constexpr size_t kDnsMaxLabelLen = 63;
inline constexpr int kDnsMaxPointerJumps = 64;
inline constexpr size_t kDnsMaxUdpLen = 512;   // without EDNS(0)
// The UDP payload size our OPT records announce (DNS Flag Day 2020's).
inline constexpr uint16_t kEdnsUdpSize = 1232;
inline constexpr size_t kEdnsOptLen = 11;  // root name, type, class, ttl, rdlength
// Longest DnsName::to_text() output: every byte escaped as \DDD.
inline constexpr size_t kDnsMaxTextLen = 4 * kDnsMaxNameLen;

namespace dnstype {
inline constexpr uint16_t a = 1;
inline constexpr uint16_t ns = 2;
inline constexpr uint16_t cname = 5;
inline constexpr uint16_t soa = 6;
inline constexpr uint16_t ptr = 12;
inline constexpr uint16_t mx = 15;
inline constexpr uint16_t txt = 16;
inline constexpr uint16_t aaaa = 28;
inline constexpr uint16_t srv = 33;
inline constexpr uint16_t opt = 41;
inline constexpr uint16_t any = 255;
}  // namespace dnstype

namespace dnsclass {
inline constexpr uint16_t in = 1;
}

namespace dnsopcode {
inline constexpr uint8_t query = 0;
}

namespace dnsrcode {
inline constexpr uint8_t noerror = 0;
inline constexpr uint8_t formerr = 1;
inline constexpr uint8_t servfail = 2;
inline constexpr uint8_t nxdomain = 3;
inline constexpr uint8_t notimp = 4;
inline constexpr uint8_t refused = 5;
}  // namespace dnsrcode

namespace dnsflag {
inline constexpr uint16_t qr = 0x8000;
inline constexpr uint16_t aa = 0x0400;
inline constexpr uint16_t tc = 0x0200;
inline constexpr uint16_t rd = 0x0100;
inline constexpr uint16_t ra = 0x0080;
}  // namespace dnsflag

// A name in uncompressed wire form (length-prefixed labels, ending with the
// root label), held inline: reading one never allocates.
struct DnsName {
    std::array<uint8_t, kDnsMaxNameLen> wire{};
    size_t len = 0;  // including the final zero byte

    Bytes bytes() const { return Bytes(wire.data(), bounded_len()); }
    size_t label_count() const;
    // Dotted text in lower case, without the trailing dot ("" for the
    // root). Dots and bytes outside printable ASCII inside a label are
    // escaped as \. and \DDD (RFC 4343 2.1). Writes a terminating NUL and
    // returns the length without it, or nullopt if cap is too small
    // (kDnsMaxTextLen + 1 always suffices).
    std::optional<size_t> to_text(char* out, size_t cap) const;
    std::string to_string() const;
    // Case-insensitive comparison with dotted text ("example.com",
    // a trailing dot allowed). Text with escapes never matches.
    bool equals(std::string_view dotted) const;

private:
    // len as far as wire can hold it, should a caller have set it wrong.
    size_t bounded_len() const { return len < wire.size() ? len : wire.size(); }
};

// Reads the name at `off` in `msg`, following compression pointers.
// Returns the number of bytes the name occupies at `off` (up to and
// including the first pointer), or nullopt if it is malformed.
std::optional<size_t> dns_read_name(Bytes msg, size_t off, DnsName& out);

// The address a reverse-lookup name names: "4.3.2.1.in-addr.arpa" is
// 1.2.3.4 (RFC 1035 3.5), 32 nibble labels under "ip6.arpa" an IPv6
// address (RFC 3596 2.5); nullopt for any other name, a shorter (network)
// one among them. Case does not matter.
std::optional<IpAddr> dns_reverse_addr(const DnsName& name);

// Encodes dotted text ("example.com" or "example.com.") into wire form.
// Returns the length written, or 0 if the text is not a valid name or does
// not fit in cap.
size_t dns_encode_name(std::string_view dotted, uint8_t* out, size_t cap);

struct DnsQuestion {
    DnsName name;
    uint16_t qtype = 0;
    uint16_t qclass = 0;
    size_t end = 0;  // offset just past qclass
};

struct DnsRecord {
    DnsName name;
    uint16_t type = 0;
    uint16_t rclass = 0;
    uint32_t ttl = 0;
    Bytes rdata;
    size_t rdata_offset = 0;  // where rdata sits in the message
};

class DnsView {
public:
    static std::optional<DnsView> parse(Bytes msg) {
        if (msg.size() < kDnsHeaderLen) return std::nullopt;
        DnsView v;
        v.msg_ = msg;
        return v;
    }

    uint16_t id() const { return load16(&msg_[0]); }
    uint16_t flags() const { return load16(&msg_[2]); }
    bool qr() const { return (flags() & dnsflag::qr) != 0; }
    uint8_t opcode() const { return static_cast<uint8_t>((flags() >> 11) & 0x0f); }
    bool aa() const { return (flags() & dnsflag::aa) != 0; }
    bool tc() const { return (flags() & dnsflag::tc) != 0; }
    bool rd() const { return (flags() & dnsflag::rd) != 0; }
    bool ra() const { return (flags() & dnsflag::ra) != 0; }
    uint8_t rcode() const { return static_cast<uint8_t>(flags() & 0x0f); }
    uint16_t qdcount() const { return load16(&msg_[4]); }
    uint16_t ancount() const { return load16(&msg_[6]); }
    uint16_t nscount() const { return load16(&msg_[8]); }
    uint16_t arcount() const { return load16(&msg_[10]); }
    Bytes message() const { return msg_; }

    // The first question, if qdcount >= 1 and it is well formed.
    std::optional<DnsQuestion> question() const;

private:
    DnsView() = default;
    Bytes msg_;
};

// Walks the resource records (answer, authority, additional, in that order)
// of a message whose questions all parse. Stops at the first malformed
// record.
class DnsRecordIter {
public:
    explicit DnsRecordIter(const DnsView& v);
    bool next(DnsRecord& out);
    // 0 answer, 1 authority, 2 additional: the section of the last record.
    int section() const { return section_; }
    // True if the walk ended on a malformed record or question.
    bool malformed() const { return malformed_; }

private:
    Bytes msg_;
    size_t pos_ = 0;
    uint32_t left_[3] = {0, 0, 0};
    int section_ = 0;
    bool malformed_ = false;
};

// Builds a response to `query`, whose first question is `q`: same id and
// opcode, QR and RA set, RD copied, AA if `authoritative`, the question
// re-encoded uncompressed, then answers added one by one.
// The EDNS(0) OPT record of a query's additional section: its version
// (the TTL's second byte), or nullopt when there is none or the message
// does not parse that far.
std::optional<uint8_t> dns_edns_version(const DnsView& msg);
// The UDP payload size an EDNS query's OPT record offers (its class), at
// least 512 (RFC 6891 6.2.5); 512 without EDNS.
size_t dns_udp_payload(const DnsView& msg);

// Writes an OPT record (kEdnsOptLen bytes: root, type 41, class kEdnsUdpSize,
// extended RCODE 0, version 0, no flags, no data) at out; false if cap is
// too small.
bool dns_write_opt(uint8_t* out, size_t cap);

class DnsResponseBuilder {
public:
    DnsResponseBuilder(MutBytes buf, const DnsView& query, const DnsQuestion& q,
                       uint8_t rcode = dnsrcode::noerror, bool authoritative = true);

    // False when not even the header and question fit.
    bool ok() const { return ok_; }
    // An A or AAAA record (chosen by the family of addr) named by a pointer
    // to the question. Returns false if it does not fit (room for the OPT
    // record an EDNS query gets is kept); finish() then answers with TC set
    // and no records (RFC 2181 9), and the client asks again over TCP.
    bool add_address(const IpAddr& addr, uint32_t ttl);
    // Any record named by a pointer to the question.
    bool add_record(uint16_t type, uint32_t ttl, Bytes rdata);
    bool truncated() const { return truncated_; }
    // Returns the message length, or 0 if not even the question fitted.
    size_t finish();

private:
    MutBytes buf_;
    size_t len_ = 0;
    size_t question_end_ = 0;
    uint16_t ancount_ = 0;
    bool ok_ = false;
    bool truncated_ = false;
    bool edns_ = false;  // the query had an OPT record: finish() adds ours
};

// Whether a query's question section is one no server can answer but with
// FORMERR (RFC 1035 4.1.1): a question that does not parse, or more than
// one in a standard query (RFC 9619). No question at all is allowed (a
// DNS cookie's query, RFC 7873 5.4).
inline bool dns_question_unreadable(const DnsView& query) {
    return (query.qdcount() >= 1 && !query.question()) ||
           (query.opcode() == dnsopcode::query && query.qdcount() > 1);
}

// An error response (SERVFAIL, NXDOMAIN, REFUSED, FORMERR...) to `query`,
// echoing its first question when that parses (qdcount 0 otherwise).
// Returns the length, or 0 if it does not fit.
size_t dns_build_error(MutBytes buf, const DnsView& query, uint8_t rcode,
                       bool authoritative = false);

}  // namespace usernet::wire
