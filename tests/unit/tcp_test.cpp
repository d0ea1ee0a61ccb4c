// TCP: real segments and their options, malformed options, the builder.
#include "wire/tcp.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

namespace {
const IpAddr kGuest = IpAddr::v4(0x0a00020f);
const IpAddr kGateway = IpAddr::v4(0x0a000202);

template <typename Array>
Bytes tcp_of(const Array& frame) {
    return bytes(frame).subspan(kEthIp);
}
}  // namespace

TEST(TcpView, DecodesCapturedLinuxSyn) {
    auto t = TcpView::parse(tcp_of(kTcpSyn));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->src_port(), 39294);
    EXPECT_EQ(t->dst_port(), 8080);
    EXPECT_EQ(t->seq(), 947847980u);
    EXPECT_EQ(t->ack(), 0u);
    EXPECT_EQ(t->flags(), tcpflag::syn);
    EXPECT_TRUE(t->has(tcpflag::syn));
    EXPECT_FALSE(t->has(tcpflag::ack));
    EXPECT_EQ(t->window(), 64240);
    EXPECT_EQ(t->checksum(), 0x525f);
    EXPECT_EQ(t->urgent(), 0);
    EXPECT_EQ(t->header_len(), 40u);
    EXPECT_EQ(t->options().size(), 20u);
    EXPECT_TRUE(t->payload().empty());
    EXPECT_EQ(t->seg_len(), 1u);
    EXPECT_TRUE(t->checksum_ok(kGuest, kGateway));
    EXPECT_FALSE(t->checksum_ok(kGuest, IpAddr::v4(0x0a000203)));
}

TEST(TcpView, DecodesMssSackTimestampAndWindowScaleOfLinuxSyn) {
    TcpOptions o = TcpView::parse(tcp_of(kTcpSyn))->parse_options();
    ASSERT_TRUE(o.mss);
    EXPECT_EQ(*o.mss, 1460);
    EXPECT_TRUE(o.sack_permitted);
    ASSERT_TRUE(o.ts_val);
    EXPECT_EQ(*o.ts_val, 2282907088u);
    ASSERT_TRUE(o.ts_ecr);
    EXPECT_EQ(*o.ts_ecr, 0u);
    ASSERT_TRUE(o.wscale);
    EXPECT_EQ(*o.wscale, 10);
}

TEST(TcpView, DecodesCapturedSynAck) {
    auto t = TcpView::parse(tcp_of(kTcpSynAck));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->flags(), tcpflag::syn | tcpflag::ack);
    EXPECT_EQ(t->ack(), 947847981u);
    EXPECT_TRUE(t->checksum_ok(kGateway, kGuest));
    TcpOptions o = t->parse_options();
    EXPECT_EQ(o.mss.value_or(0), 1460);
    EXPECT_EQ(o.ts_ecr.value_or(0), 2282907088u);
}

TEST(TcpView, DecodesCapturedDataSegment) {
    auto t = TcpView::parse(tcp_of(kTcpData));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->flags(), tcpflag::psh | tcpflag::ack);
    EXPECT_EQ(t->header_len(), 32u);
    std::string data(t->payload().begin(), t->payload().end());
    EXPECT_EQ(data, "hello-usernet\n");
    EXPECT_EQ(t->seg_len(), 14u);
    EXPECT_TRUE(t->checksum_ok(kGuest, kGateway));
    TcpOptions o = t->parse_options();
    EXPECT_FALSE(o.mss);
    EXPECT_FALSE(o.wscale);
    EXPECT_FALSE(o.sack_permitted);
    EXPECT_EQ(o.ts_val.value_or(0), 2282907088u);
}

TEST(TcpView, DecodesCapturedRst) {
    auto t = TcpView::parse(tcp_of(kTcpRstAck));
    ASSERT_TRUE(t);
    EXPECT_TRUE(t->has(tcpflag::rst));
    EXPECT_TRUE(t->has(tcpflag::ack));
    EXPECT_EQ(t->window(), 0);
    EXPECT_EQ(t->seg_len(), 0u);
    EXPECT_TRUE(t->options().empty());
    EXPECT_TRUE(t->checksum_ok(kGateway, kGuest));
}

TEST(TcpView, DetectsCorruptedPayload) {
    std::vector<uint8_t> seg = vec(tcp_of(kTcpData));
    seg.back() ^= 0x20;
    EXPECT_FALSE(TcpView::parse(bytes(seg))->checksum_ok(kGuest, kGateway));
}

TEST(TcpView, RejectsShortSegmentAndBadDataOffset) {
    for (size_t n = 0; n < 20; n++) EXPECT_FALSE(TcpView::parse(tcp_of(kTcpRstAck).first(n)));
    std::vector<uint8_t> seg = vec(tcp_of(kTcpSyn));
    for (uint8_t off = 0; off < 5; off++) {
        seg[12] = static_cast<uint8_t>(off << 4);
        EXPECT_FALSE(TcpView::parse(bytes(seg))) << int{off};
    }
    seg[12] = 0xb0;  // 44 bytes of header in a 40-byte segment
    EXPECT_FALSE(TcpView::parse(bytes(seg)));
    seg[12] = 0xa0;
    EXPECT_TRUE(TcpView::parse(bytes(seg)));
    EXPECT_FALSE(TcpView::parse(bytes(seg).first(39)));
}

TEST(TcpOptionsParse, StopsAtZeroOrOneLengthButKeepsEarlierOptions) {
    for (uint8_t bad_len : {0, 1}) {
        std::vector<uint8_t> o{2, 4, 0x05, 0xb4, 8, bad_len, 3, 3, 7, 0, 0, 0};
        TcpOptions p = parse_tcp_options(bytes(o));
        EXPECT_EQ(p.mss.value_or(0), 1460) << int{bad_len};
        EXPECT_FALSE(p.wscale) << "the walk stops at the bad option";
        EXPECT_FALSE(p.ts_val);
    }
}

TEST(TcpOptionsParse, StopsAtLengthRunningPastEnd) {
    std::vector<uint8_t> o{1, 3, 3, 6, 8, 10, 0, 0, 0, 1};
    TcpOptions p = parse_tcp_options(bytes(o));
    EXPECT_EQ(p.wscale.value_or(0), 6);
    EXPECT_FALSE(p.ts_val);
    std::vector<uint8_t> kind_only{1, 1, 2};  // a kind with no length byte
    p = parse_tcp_options(bytes(kind_only));
    EXPECT_FALSE(p.mss);
}

TEST(TcpOptionsParse, IgnoresKnownKindsWithWrongLength) {
    std::vector<uint8_t> o{2, 3, 5, 3, 4, 0, 0, 4, 2, 2, 4, 0x02, 0x18};
    TcpOptions p = parse_tcp_options(bytes(o));
    EXPECT_FALSE(p.wscale) << "wscale with length 4 is ignored";
    EXPECT_TRUE(p.sack_permitted);
    EXPECT_EQ(p.mss.value_or(0), 0x0218) << "the walk went on past the odd-length options";
}

TEST(TcpOptionsParse, StopsAtEndOfOptionList) {
    std::vector<uint8_t> o{0, 2, 4, 5, 0xb4};
    EXPECT_FALSE(parse_tcp_options(bytes(o)).mss);
}

TEST(TcpOptionsParse, SkipsUnknownKinds) {
    std::vector<uint8_t> o{30, 6, 1, 2, 3, 4, 254, 2, 2, 4, 1, 0};
    EXPECT_EQ(parse_tcp_options(bytes(o)).mss.value_or(0), 256);
}

TEST(TcpOptionsParse, ReadsSackBlocksAndIgnoresAMalformedSackOption) {
    // NOP NOP SACK with two blocks, after a timestamp.
    std::vector<uint8_t> o{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 5, 18,
                           0, 0, 0x10, 0, 0, 0, 0x20, 0, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0x10};
    TcpOptions p = parse_tcp_options(bytes(o));
    ASSERT_EQ(p.sack_blocks, 2);
    EXPECT_EQ(p.sack[0].left, 0x1000u);
    EXPECT_EQ(p.sack[0].right, 0x2000u);
    EXPECT_EQ(p.sack[1].left, 0xfffffff0u);  // a block across the wrap
    EXPECT_EQ(p.sack[1].right, 0x10u);
    EXPECT_EQ(p.ts_val.value_or(0), 1u);
    // A length that is not 2 + 8n: no blocks, the walk goes on.
    std::vector<uint8_t> bad{5, 6, 0, 0, 0, 1, 2, 4, 1, 0};
    p = parse_tcp_options(bytes(bad));
    EXPECT_EQ(p.sack_blocks, 0);
    EXPECT_EQ(p.mss.value_or(0), 256);
}

TEST(TcpOptionsParse, ClampsWindowScaleTo14) {
    std::vector<uint8_t> o{3, 3, 20, 0};
    EXPECT_EQ(parse_tcp_options(bytes(o)).wscale.value_or(0), 14);
}

TEST(TcpBuild, SynWithOptionsRoundTripsAndChecksums) {
    uint8_t buf[kTcpMaxHeaderLen];
    TcpOptionsOut opts{1460, 7, true};
    size_t hl = build_tcp(buf, 8080, 39294, 1297453632, 947847981, tcpflag::syn | tcpflag::ack,
                          65160, &opts);
    EXPECT_EQ(hl, 32u);
    finish_tcp_checksum(buf, hl, kGateway, kGuest);
    auto t = TcpView::parse(Bytes(buf, hl));
    ASSERT_TRUE(t);
    EXPECT_TRUE(t->checksum_ok(kGateway, kGuest));
    EXPECT_EQ(t->seq(), 1297453632u);
    EXPECT_EQ(t->ack(), 947847981u);
    EXPECT_EQ(t->flags(), tcpflag::syn | tcpflag::ack);
    EXPECT_EQ(t->window(), 65160);
    TcpOptions o = t->parse_options();
    EXPECT_EQ(o.mss.value_or(0), 1460);
    EXPECT_EQ(o.wscale.value_or(0), 7);
    EXPECT_TRUE(o.sack_permitted);
    EXPECT_FALSE(o.ts_val);
}

TEST(TcpBuild, DataSegmentChecksumVerifiesOverIpv6) {
    IpAddr src = *IpAddr::parse("fec0::2"), dst = *IpAddr::parse("fec0::15");
    std::vector<uint8_t> seg(kTcpHeaderLen + 11);
    size_t hl = build_tcp(seg.data(), 80, 1234, 1, 2, tcpflag::ack | tcpflag::psh, 512);
    ASSERT_EQ(hl, kTcpHeaderLen);
    std::copy_n("odd-payload", 11, seg.begin() + static_cast<long>(hl));
    finish_tcp_checksum(seg.data(), seg.size(), src, dst);
    auto t = TcpView::parse(bytes(seg));
    ASSERT_TRUE(t);
    EXPECT_TRUE(t->checksum_ok(src, dst));
    EXPECT_EQ(t->payload().size(), 11u);
    EXPECT_TRUE(t->options().empty());
}

TEST(TcpBuild, OptionAreaIsPaddedToFourBytes) {
    uint8_t buf[kTcpMaxHeaderLen];
    TcpOptionsOut mss_only{536, -1, false};
    EXPECT_EQ(build_tcp(buf, 1, 2, 0, 0, tcpflag::syn, 0, &mss_only), 24u);
    TcpOptionsOut ws_only{0, 0, false};
    EXPECT_EQ(build_tcp(buf, 1, 2, 0, 0, tcpflag::syn, 0, &ws_only), 24u);
    EXPECT_EQ(TcpView::parse(Bytes(buf, 24))->parse_options().wscale.value_or(99), 0);
    TcpOptionsOut none{};
    EXPECT_EQ(build_tcp(buf, 1, 2, 0, 0, tcpflag::syn, 0, &none), 20u);
}

TEST(TcpSeq, ComparesAcrossWraparound) {
    EXPECT_TRUE(seq_lt(0xfffffff0u, 0x10u));
    EXPECT_TRUE(seq_gt(0x10u, 0xfffffff0u));
    EXPECT_TRUE(seq_le(5u, 5u));
    EXPECT_TRUE(seq_ge(5u, 5u));
    EXPECT_FALSE(seq_lt(5u, 5u));
    EXPECT_TRUE(seq_lt(0x7fffffffu, 0x80000000u));
}
