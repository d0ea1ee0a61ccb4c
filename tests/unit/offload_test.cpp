// wire/offload: the virtio-net header, checksum completion, and TCP
// segmentation for ports without offload. The large frames are built here
// the way a Linux guest hands them to a TAP with TSO on (IP total length of
// the whole segment, TCP checksum field holding the pseudo-header sum), and
// every piece is checked with the ordinary parsers and checksums.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "wire/checksum.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/offload.hpp"
#include "wire/tcp.hpp"

namespace usernet::wire {
namespace {

constexpr uint8_t kSyn = 0x02, kFin = 0x01, kPsh = 0x08, kAck = 0x10, kCwr = 0x80;

const IpAddr kSrc4 = IpAddr::v4(0x0a00020f);  // 10.0.2.15
const IpAddr kDst4 = IpAddr::v4(0x0a000202);  // 10.0.2.2

// A GSO frame as a guest's kernel writes it: Ethernet, IPv4 or IPv6, TCP
// with a 12-byte timestamp option, `payload` bytes of a known pattern, the
// TCP checksum partial.
std::vector<uint8_t> gso_frame(bool v6, size_t payload, uint8_t flags, Offload& off,
                               uint16_t mss) {
    size_t iphl = v6 ? 40 : 20, tcphl = 32;
    std::vector<uint8_t> f(kEthHeaderLen + iphl + tcphl + payload);
    MacAddr a{{2, 0, 0, 0, 0, 1}}, b{{2, 0, 0, 0, 0, 2}};
    build_ethernet(f.data(), a, b, v6 ? ethertype::ipv6 : ethertype::ipv4);
    uint8_t* ip = f.data() + kEthHeaderLen;
    IpAddr src = kSrc4, dst = kDst4;
    if (v6) {
        src = IpAddr::parse("fec0::15").value();
        dst = IpAddr::parse("fec0::2").value();
        ip[0] = 0x60;
        store16(ip + 4, static_cast<uint16_t>(tcphl + payload));
        ip[6] = 6;
        ip[7] = 64;
        std::memcpy(ip + 8, src.b.data(), 16);
        std::memcpy(ip + 24, dst.b.data(), 16);
    } else {
        build_ipv4(ip, src.as_v4(), dst.as_v4(), 6, tcphl + payload, 64, 0x1234);
    }
    uint8_t* tcp = ip + iphl;
    build_tcp(tcp, 40000, 80, 0xfffff000u, 77, flags, 512);
    tcp[12] = static_cast<uint8_t>((tcphl / 4) << 4);
    uint8_t ts[12] = {1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7};
    std::memcpy(tcp + 20, ts, sizeof ts);
    for (size_t i = 0; i < payload; i++) tcp[tcphl + i] = static_cast<uint8_t>(i * 7 + i / 251);
    store16(tcp + 16, csum_pseudo_partial(src, dst, 6, static_cast<uint32_t>(tcphl + payload)));
    off = Offload{};
    off.csum_partial = true;
    off.csum_start = static_cast<uint16_t>(kEthHeaderLen + iphl);
    off.csum_offset = 16;
    off.hdr_len = static_cast<uint16_t>(kEthHeaderLen + iphl + tcphl);
    off.gso_type = v6 ? Offload::gso_tcp6 : Offload::gso_tcp4;
    off.gso_size = mss;
    return f;
}

TEST(Offload, VnetHeaderRoundTrips) {
    Offload o;
    o.csum_partial = true;
    o.csum_start = 34;
    o.csum_offset = 16;
    o.gso_type = Offload::gso_tcp4;
    o.gso_size = 1448;
    o.hdr_len = 66;
    uint8_t h[kVnetHdrLen];
    write_vnet_hdr(h, o);
    Offload back;
    ASSERT_TRUE(parse_vnet_hdr(h, 65000, back));
    EXPECT_TRUE(back.csum_partial);
    EXPECT_EQ(back.csum_start, 34);
    EXPECT_EQ(back.csum_offset, 16);
    EXPECT_EQ(back.gso_type, Offload::gso_tcp4);
    EXPECT_EQ(back.gso_size, 1448);
    EXPECT_EQ(back.hdr_len, 66);
}

TEST(Offload, VnetHeaderOfAPlainFrameIsAllZero) {
    uint8_t h[kVnetHdrLen];
    std::memset(h, 0xaa, sizeof h);
    write_vnet_hdr(h, Offload{});
    for (uint8_t b : h) EXPECT_EQ(b, 0);
    Offload back;
    ASSERT_TRUE(parse_vnet_hdr(h, 60, back));
    EXPECT_FALSE(back.any());
    EXPECT_FALSE(back.trusted());
}

TEST(Offload, VnetHeaderThatDoesNotDescribeTheFrameIsRejected) {
    Offload o;
    uint8_t h[kVnetHdrLen] = {};
    h[0] = vnet::f_needs_csum;
    std::memcpy(h + 6, "\x22\x00", 2);  // csum_start 34 (little-endian host)
    std::memcpy(h + 8, "\x10\x00", 2);  // csum_offset 16
    EXPECT_TRUE(parse_vnet_hdr(h, 52, o));
    EXPECT_FALSE(parse_vnet_hdr(h, 51, o)) << "checksum field past the end";
    h[0] = 0x04;  // an unknown flag
    EXPECT_FALSE(parse_vnet_hdr(h, 100, o));
    h[0] = 0;
    h[1] = 3;  // UDP fragmentation offload, never enabled
    EXPECT_FALSE(parse_vnet_hdr(h, 100, o));
    h[1] = Offload::gso_tcp4;  // GSO without a checksum to complete
    std::memcpy(h + 4, "\xa8\x05", 2);
    EXPECT_FALSE(parse_vnet_hdr(h, 100, o));
    h[0] = vnet::f_needs_csum;
    std::memcpy(h + 4, "\x00\x00", 2);  // gso_size 0
    EXPECT_FALSE(parse_vnet_hdr(h, 100, o));
    std::memcpy(h + 4, "\xa8\x05", 2);
    h[1] = Offload::gso_tcp4 | vnet::gso_ecn;
    EXPECT_TRUE(parse_vnet_hdr(h, 100, o));
    EXPECT_EQ(o.gso_type, Offload::gso_tcp4);
}

TEST(Offload, VnetHeaderTakesAnyGsoSizeButZero) {
    // A guest with a small MSS (iperf3 -M 88, a link MTU below 576) sends
    // TSO frames with a small gso_size; the NAT takes them whole. Only
    // cutting one is bounded (SegmentationCapsThePiecesOfOneFrame).
    Offload o;
    uint8_t h[kVnetHdrLen] = {};
    h[0] = vnet::f_needs_csum;
    h[1] = Offload::gso_tcp4;
    for (uint16_t size : {uint16_t{1}, uint16_t{88}, uint16_t{kMinGsoSize - 1}, kMinGsoSize}) {
        std::memcpy(h + 4, &size, 2);
        EXPECT_TRUE(parse_vnet_hdr(h, 65000, o)) << size;
        EXPECT_EQ(o.gso_size, size);
    }
    uint16_t zero = 0;
    std::memcpy(h + 4, &zero, 2);
    EXPECT_FALSE(parse_vnet_hdr(h, 65000, o));
}

TEST(Offload, ValidateAcceptsWhatAGuestKernelSends) {
    for (bool v6 : {false, true}) {
        Offload off;
        auto f = gso_frame(v6, 65000, kAck | kPsh, off, 1448);
        EXPECT_TRUE(validate_offload(f, off)) << v6;
        off.gso_size = 348;  // iperf3 -M 400 with timestamps: 187 pieces
        EXPECT_TRUE(validate_offload(f, off)) << v6;
        Offload partial_only = off;
        partial_only.gso_type = Offload::gso_none;
        EXPECT_TRUE(validate_offload(f, partial_only));
        EXPECT_TRUE(validate_offload(f, Offload{}));
    }
}

TEST(Offload, ValidateRejectsGsoSizeZeroAndHeadersThatDisagree) {
    Offload off;
    auto f = gso_frame(false, 65000, kAck, off, 1448);
    Offload bad = off;
    bad.gso_size = 0;
    EXPECT_FALSE(validate_offload(f, bad)) << "gso_size 0";
    bad.gso_size = 1;  // taken whole by the NAT; cutting it is refused
    EXPECT_TRUE(validate_offload(f, bad));
    bad = off;
    bad.csum_partial = false;  // GSO with nothing to complete
    EXPECT_FALSE(validate_offload(f, bad));
    bad = off;
    bad.csum_offset = 6;  // not the TCP checksum
    EXPECT_FALSE(validate_offload(f, bad));
    bad = off;
    bad.gso_type = Offload::gso_tcp6;  // an IPv4 frame announced as IPv6
    EXPECT_FALSE(validate_offload(f, bad));
    auto g = f;
    store16(&g[kEthHeaderLen + 2], 4000);  // IP length not the frame's
    EXPECT_FALSE(validate_offload(g, off));
    bad = Offload{};
    bad.csum_partial = true;
    bad.csum_start = 59;
    bad.csum_offset = 0;
    std::vector<uint8_t> small(60, 0);
    EXPECT_FALSE(validate_offload(small, bad)) << "checksum field past the end";
    bad.csum_start = 58;
    EXPECT_TRUE(validate_offload(small, bad));
}

TEST(Offload, CompletedChecksumEqualsTheFullComputation) {
    for (size_t payload : {0, 1, 2, 3, 999, 1448}) {
        Offload off;
        auto f = gso_frame(false, payload, kAck | kPsh, off, 1448);
        ASSERT_TRUE(complete_checksum(MutBytes(f.data(), f.size()), off));
        auto ip = Ipv4View::parse(Bytes(f).subspan(kEthHeaderLen));
        ASSERT_TRUE(ip);
        auto tcp = TcpView::parse(ip->payload());
        ASSERT_TRUE(tcp);
        EXPECT_TRUE(tcp->checksum_ok(kSrc4, kDst4)) << payload;
    }
}

TEST(Offload, CompleteChecksumRefusesOffsetsOutsideTheFrame) {
    std::vector<uint8_t> f(60, 0);
    Offload off;
    off.csum_partial = true;
    off.csum_start = 50;
    off.csum_offset = 9;
    EXPECT_FALSE(complete_checksum(MutBytes(f.data(), f.size()), off));
    off.csum_offset = 8;
    EXPECT_TRUE(complete_checksum(MutBytes(f.data(), f.size()), off));
}

struct Piece {
    std::vector<uint8_t> frame;
};

std::vector<Piece> segment(Bytes frame, const Offload& off, uint32_t mtu, bool* ok) {
    std::vector<Piece> out;
    std::vector<uint8_t> scratch(kEthMaxFrame + 4);
    *ok = segment_tcp(frame, off, mtu, MutBytes(scratch.data(), scratch.size()),
                      [&](Bytes f) { out.push_back({std::vector<uint8_t>(f.begin(), f.end())}); });
    return out;
}

TEST(Offload, SegmentsAnIpv4GsoFrameIntoValidMtuSizedPieces) {
    const size_t payload = 65000;
    Offload off;
    auto big = gso_frame(false, payload, kAck | kPsh | kFin | kCwr, off, 1448);
    bool ok = false;
    auto pieces = segment(big, off, 1500, &ok);
    ASSERT_TRUE(ok);
    ASSERT_EQ(pieces.size(), (payload + 1447) / 1448);
    std::vector<uint8_t> joined;
    uint32_t seq = 0xfffff000u;  // wraps within the frame
    for (size_t i = 0; i < pieces.size(); i++) {
        Bytes f(pieces[i].frame);
        ASSERT_LE(f.size(), kEthHeaderLen + 1500);
        auto ip = Ipv4View::parse(f.subspan(kEthHeaderLen));
        ASSERT_TRUE(ip);
        EXPECT_TRUE(ip->checksum_ok());
        EXPECT_EQ(ip->total_len(), f.size() - kEthHeaderLen);
        EXPECT_EQ(load16(&f[kEthHeaderLen + 4]), static_cast<uint16_t>(0x1234 + i));
        auto tcp = TcpView::parse(ip->payload());
        ASSERT_TRUE(tcp);
        EXPECT_TRUE(tcp->checksum_ok(kSrc4, kDst4)) << i;
        EXPECT_EQ(tcp->seq(), seq);
        EXPECT_EQ(tcp->options().size(), 12u);
        bool last = i + 1 == pieces.size();
        EXPECT_EQ(tcp->has(kFin), last);
        EXPECT_EQ(tcp->has(kPsh), last);
        EXPECT_EQ(tcp->has(kCwr), i == 0);
        EXPECT_TRUE(tcp->has(kAck));
        seq += static_cast<uint32_t>(tcp->payload().size());
        joined.insert(joined.end(), tcp->payload().begin(), tcp->payload().end());
    }
    ASSERT_EQ(joined.size(), payload);
    EXPECT_TRUE(std::equal(joined.begin(), joined.end(), big.begin() + kEthHeaderLen + 20 + 32));
}

TEST(Offload, SegmentsAnIpv6GsoFrame) {
    Offload off;
    auto big = gso_frame(true, 10000, kAck, off, 1428);
    bool ok = false;
    auto pieces = segment(big, off, 1500, &ok);
    ASSERT_TRUE(ok);
    ASSERT_EQ(pieces.size(), 8u);
    IpAddr src = IpAddr::parse("fec0::15").value(), dst = IpAddr::parse("fec0::2").value();
    size_t total = 0;
    for (auto& p : pieces) {
        Bytes f(p.frame);
        size_t plen = load16(&f[kEthHeaderLen + 4]);
        EXPECT_EQ(plen + 40 + kEthHeaderLen, f.size());
        auto tcp = TcpView::parse(f.subspan(kEthHeaderLen + 40));
        ASSERT_TRUE(tcp);
        EXPECT_TRUE(tcp->checksum_ok(src, dst));
        total += tcp->payload().size();
    }
    EXPECT_EQ(total, 10000u);
}

TEST(Offload, SmallerMtuThanGsoSizeCutsToTheMtu) {
    Offload off;
    auto big = gso_frame(false, 9000, kAck, off, 8948);
    bool ok = false;
    auto pieces = segment(big, off, 1280, &ok);
    ASSERT_TRUE(ok);
    EXPECT_EQ(pieces.size(), (9000 + 1227) / 1228);  // 1280 - 20 - 32
    for (auto& p : pieces) EXPECT_LE(p.frame.size(), kEthHeaderLen + 1280);
}

TEST(Offload, SegmentationRejectsHeadersThatDisagree) {
    Offload off;
    auto good = gso_frame(false, 5000, kAck, off, 1448);
    bool ok = true;
    // IP total length not the frame's.
    auto f = good;
    store16(&f[kEthHeaderLen + 2], 4000);
    EXPECT_TRUE(segment(f, off, 1500, &ok).empty());
    EXPECT_FALSE(ok);
    // Not TCP.
    f = good;
    f[kEthHeaderLen + 9] = 17;
    segment(f, off, 1500, &ok);
    EXPECT_FALSE(ok);
    // TCP data offset beyond the frame.
    f = good;
    f.resize(kEthHeaderLen + 20 + 24);
    store16(&f[kEthHeaderLen + 2], 44);
    segment(f, off, 1500, &ok);
    EXPECT_FALSE(ok);
    // Checksum offsets elsewhere than the TCP checksum.
    Offload bad = off;
    bad.csum_offset = 6;
    segment(good, bad, 1500, &ok);
    EXPECT_FALSE(ok);
    // An IPv4 frame announced as IPv6.
    bad = off;
    bad.gso_type = Offload::gso_tcp6;
    segment(good, bad, 1500, &ok);
    EXPECT_FALSE(ok);
    // An MTU with no room for payload.
    segment(good, off, 52, &ok);
    EXPECT_FALSE(ok);
    // A fragment.
    f = good;
    store16(&f[kEthHeaderLen + 6], 0x2000);
    segment(f, off, 1500, &ok);
    EXPECT_FALSE(ok);
}

TEST(Offload, SegmentationRefusesATinyGsoSize) {
    Offload off;
    auto big = gso_frame(false, 65000, kAck, off, 1);
    bool ok = true;
    auto pieces = segment(big, off, 1500, &ok);
    EXPECT_FALSE(ok);
    EXPECT_TRUE(pieces.empty());
}

TEST(Offload, SegmentationCapsThePiecesOfOneFrame) {
    // A sane gso_size toward a port with a tiny MTU would still make
    // over a thousand pieces: refused above kMaxGsoSegments.
    Offload off;
    auto big = gso_frame(false, 65000, kAck, off, 1448);
    bool ok = true;
    EXPECT_TRUE(segment(big, off, 52 + 60, &ok).empty());  // 60-byte pieces: 1084 of them
    EXPECT_FALSE(ok);
    auto small = segment(big, off, 52 + 88, &ok);  // 88-byte pieces: 739
    EXPECT_TRUE(ok);
    EXPECT_EQ(small.size(), 739u);
    EXPECT_LE(small.size(), kMaxGsoSegments);
}

TEST(Offload, AHeaderOnlySegmentIsOneFrame) {
    Offload off;
    auto f = gso_frame(false, 0, kAck | kSyn, off, 1448);
    bool ok = false;
    auto pieces = segment(f, off, 1500, &ok);
    ASSERT_TRUE(ok);
    ASSERT_EQ(pieces.size(), 1u);
    auto tcp = TcpView::parse(Bytes(pieces[0].frame).subspan(kEthHeaderLen + 20));
    ASSERT_TRUE(tcp);
    EXPECT_TRUE(tcp->checksum_ok(kSrc4, kDst4));
}

}  // namespace
}  // namespace usernet::wire
