// Internet checksum: RFC 1071 vectors, real headers, pseudo-headers and
// RFC 1624 incremental updates.
#include "wire/checksum.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

TEST(Checksum, MatchesRfc1071Example) {
    // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    uint32_t sum = csum_partial(Bytes(data, sizeof data));
    EXPECT_EQ(static_cast<uint16_t>(~csum_fold(sum)), 0xddf2);
    EXPECT_EQ(csum_fold(sum), 0x220d);
}

TEST(Checksum, PadsOddTrailingByteWithZero) {
    const uint8_t odd[] = {0x12, 0x34, 0x56};
    const uint8_t even[] = {0x12, 0x34, 0x56, 0x00};
    EXPECT_EQ(csum_fold(csum_partial(Bytes(odd, 3))), csum_fold(csum_partial(Bytes(even, 4))));
    EXPECT_EQ(csum_fold(csum_partial(Bytes(odd, 3))), static_cast<uint16_t>(~(0x1234 + 0x5600)));
}

TEST(Checksum, EmptyBufferSumsToZero) {
    EXPECT_EQ(csum_partial(Bytes()), 0u);
    EXPECT_EQ(csum_fold(0), 0xffff);
}

TEST(Checksum, ReproducesCapturedIpv4HeaderChecksum) {
    std::vector<uint8_t> hdr(kDnsQueryA.begin() + kEth, kDnsQueryA.begin() + kEth + 20);
    EXPECT_EQ(csum_fold(csum_partial(bytes(hdr))), 0) << "a correct header sums to zero";
    hdr[10] = hdr[11] = 0;
    EXPECT_EQ(csum_fold(csum_partial(bytes(hdr))), 0x9b0b);
}

TEST(Checksum, SumsSplitBuffersLikeOneBuffer) {
    Bytes all = bytes(kTcpSyn);
    for (size_t cut = 0; cut <= all.size(); cut += 2) {
        uint32_t s = csum_partial(all.subspan(cut), csum_partial(all.first(cut)));
        EXPECT_EQ(csum_fold(s), csum_fold(csum_partial(all))) << "cut at " << cut;
    }
}

TEST(Checksum, AccumulatorDoesNotOverflowOnLargeBuffers) {
    std::vector<uint8_t> ff(65536 * 4, 0xff);
    // One's complement sum of all-ones words is all ones: checksum 0.
    EXPECT_EQ(csum_fold(csum_partial(bytes(ff))), 0);
    std::vector<uint8_t> v(70000);
    for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<uint8_t>(i * 7 + 3);
    uint64_t ref = 0;
    for (size_t i = 0; i + 1 < v.size(); i += 2) ref += (uint32_t{v[i]} << 8) | v[i + 1];
    while (ref >> 16) ref = (ref & 0xffff) + (ref >> 16);
    EXPECT_EQ(csum_fold(csum_partial(bytes(v))), static_cast<uint16_t>(~ref));
}

TEST(Checksum, L4ChecksumOfCapturedUdpMatches) {
    Bytes ip = ip_of(kDnsQueryA);
    std::vector<uint8_t> seg(ip.begin() + 20, ip.end());
    seg[6] = seg[7] = 0;
    EXPECT_EQ(csum_l4(IpAddr::v4(0x0a00020f), IpAddr::v4(0x0a000202), 17, bytes(seg)), 0xc8dd);
}

TEST(Checksum, L4ChecksumOfCapturedTcpSynMatches) {
    Bytes ip = ip_of(kTcpSyn);
    std::vector<uint8_t> seg(ip.begin() + 20, ip.end());
    seg[16] = seg[17] = 0;
    EXPECT_EQ(csum_l4(IpAddr::v4(0x0a00020f), IpAddr::v4(0x0a000202), 6, bytes(seg)), 0x525f);
}

TEST(Checksum, Ipv6PseudoHeaderEqualsSumOfItsBytes) {
    // RFC 8200 8.1: src, dst, 32-bit length, 3 zero bytes, next header.
    IpAddr src = *IpAddr::parse("fec0::15");
    IpAddr dst = *IpAddr::parse("2001:db8:1234::ffff:1");
    uint32_t len = 0x12345;
    std::vector<uint8_t> ph(40, 0);
    std::copy(src.b.begin(), src.b.end(), ph.begin());
    std::copy(dst.b.begin(), dst.b.end(), ph.begin() + 16);
    store32(&ph[32], len);
    ph[39] = 6;
    EXPECT_EQ(csum_fold(csum_pseudo(src, dst, 6, len)), csum_fold(csum_partial(bytes(ph))));
}

TEST(Checksum, Ipv4PseudoHeaderEqualsSumOfItsBytes) {
    IpAddr src = IpAddr::v4(0xc0a80001), dst = IpAddr::v4(0xfffffffe);
    std::vector<uint8_t> ph(12, 0);
    store32(&ph[0], 0xc0a80001);
    store32(&ph[4], 0xfffffffe);
    ph[9] = 17;
    store16(&ph[10], 1480);
    EXPECT_EQ(csum_fold(csum_pseudo(src, dst, 17, 1480)), csum_fold(csum_partial(bytes(ph))));
}

TEST(Checksum, Update16EqualsFullRecomputeOverRandomWords) {
    std::mt19937 rng(1624);
    std::vector<uint8_t> buf(40);
    for (int iter = 0; iter < 20000; iter++) {
        for (auto& b : buf) b = static_cast<uint8_t>(rng());
        uint16_t old_csum = csum_fold(csum_partial(bytes(buf)));
        size_t w = (rng() % 20) * 2;
        uint16_t old_word = load16(&buf[w]);
        uint16_t new_word = static_cast<uint16_t>(rng());
        store16(&buf[w], new_word);
        EXPECT_EQ(csum_update16(old_csum, old_word, new_word), csum_fold(csum_partial(bytes(buf))))
            << "iteration " << iter;
        if (HasFailure()) break;
    }
}

TEST(Checksum, Update32EqualsFullRecomputeForAddressRewrite) {
    std::mt19937 rng(3022);
    std::vector<uint8_t> hdr(kTcpSyn.begin() + kEth, kTcpSyn.begin() + kEth + 20);
    for (int iter = 0; iter < 5000; iter++) {
        uint16_t old_csum = load16(&hdr[10]);
        uint32_t old_src = load32(&hdr[12]);
        uint32_t new_src = static_cast<uint32_t>(rng());
        store32(&hdr[12], new_src);
        uint16_t updated = csum_update32(old_csum, old_src, new_src);
        store16(&hdr[10], 0);
        uint16_t full = csum_fold(csum_partial(bytes(hdr)));
        EXPECT_EQ(updated, full) << "iteration " << iter;
        store16(&hdr[10], full);
        EXPECT_EQ(csum_fold(csum_partial(bytes(hdr))), 0);
        if (HasFailure()) break;
    }
}

TEST(Checksum, UpdatedTtlKeepsCapturedHeaderValid) {
    std::vector<uint8_t> hdr(kIcmpEchoRequest.begin() + kEth, kIcmpEchoRequest.begin() + kEth + 20);
    uint16_t old_word = load16(&hdr[8]);  // TTL, protocol
    hdr[8]--;
    store16(&hdr[10], csum_update16(load16(&hdr[10]), old_word, load16(&hdr[8])));
    EXPECT_EQ(csum_fold(csum_partial(bytes(hdr))), 0);
}
