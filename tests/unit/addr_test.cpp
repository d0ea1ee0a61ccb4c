// MacAddr and IpAddr: parsing, formatting, the IPv4-mapped representation.
#include "wire/addr.hpp"

#include <gtest/gtest.h>

#include <string>
#include <unordered_set>

using namespace usernet::wire;

TEST(Ipv4Text, ParsesAndFormatsDottedQuad) {
    auto a = ipv4_parse("10.0.2.15");
    ASSERT_TRUE(a);
    EXPECT_EQ(*a, 0x0a00020fu);
    EXPECT_EQ(ipv4_to_string(*a), "10.0.2.15");
    EXPECT_EQ(ipv4_to_string(0xffffffff), "255.255.255.255");
    EXPECT_EQ(ipv4_to_string(0), "0.0.0.0");
}

TEST(Ipv4Text, RejectsMalformedText) {
    for (const char* s : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", " 1.2.3.4", "1.2.3.4 ",
                          "a.b.c.d", "1..2.3", "10.0.2.15/24", "1.2.3.4.", "0x1.2.3.4",
                          "1234567890123456"}) {
        EXPECT_FALSE(ipv4_parse(s)) << s;
    }
}

TEST(IpAddr, StoresIpv4AsMapped) {
    IpAddr a = IpAddr::v4(0x0a000202);
    EXPECT_TRUE(a.is_v4());
    EXPECT_EQ(a.as_v4(), 0x0a000202u);
    EXPECT_EQ(a.b[10], 0xff);
    EXPECT_EQ(a.b[11], 0xff);
    EXPECT_EQ(a.to_string(), "10.0.2.2");
    const uint8_t raw[] = {10, 0, 2, 3};
    EXPECT_EQ(IpAddr::v4_from(raw), IpAddr::v4(0x0a000203));
}

TEST(IpAddr, ParsesMappedTextAsIpv4) {
    auto a = IpAddr::parse("::ffff:10.0.2.2");
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->is_v4());
    EXPECT_EQ(*a, IpAddr::v4(0x0a000202));
    EXPECT_EQ(a->to_string(), "10.0.2.2");
}

TEST(IpAddr, ParsesAndFormatsIpv6) {
    auto a = IpAddr::parse("fec0::2");
    ASSERT_TRUE(a);
    EXPECT_FALSE(a->is_v4());
    EXPECT_EQ(a->b[0], 0xfe);
    EXPECT_EQ(a->b[1], 0xc0);
    EXPECT_EQ(a->b[15], 0x02);
    EXPECT_EQ(a->to_string(), "fec0::2");
    auto full = IpAddr::parse("2606:2800:0220:0001:0248:1893:25C8:1946");
    ASSERT_TRUE(full);
    EXPECT_EQ(full->to_string(), "2606:2800:220:1:248:1893:25c8:1946");
    auto longest = IpAddr::parse("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
    ASSERT_TRUE(longest);
    EXPECT_FALSE(longest->is_v4());
}

TEST(IpAddr, AcceptsBracketedAddresses) {
    auto a = IpAddr::parse("[fec0::3]");
    ASSERT_TRUE(a);
    EXPECT_EQ(*a, *IpAddr::parse("fec0::3"));
    auto b = IpAddr::parse("[10.0.2.2]");
    ASSERT_TRUE(b);
    EXPECT_EQ(*b, IpAddr::v4(0x0a000202));
}

TEST(IpAddr, RejectsInvalidText) {
    for (const char* s : {"", "[]", "[", "]", "[fec0::2", "fec0::2]", "fec0::2::3", "fec0::g",
                          "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3", "fec0::2%eth0", "[[::1]]",
                          "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555",
                          "0000000000000000000000000000000000000000000000000000::1"}) {
        EXPECT_FALSE(IpAddr::parse(s)) << s;
    }
}

TEST(IpAddr, RecognisesLoopbackAndUnspecified) {
    EXPECT_TRUE(IpAddr::parse("127.0.0.1")->is_loopback());
    EXPECT_TRUE(IpAddr::parse("127.255.0.9")->is_loopback());
    EXPECT_TRUE(IpAddr::parse("::1")->is_loopback());
    EXPECT_FALSE(IpAddr::parse("::2")->is_loopback());
    EXPECT_FALSE(IpAddr::parse("10.0.2.2")->is_loopback());
    EXPECT_TRUE(IpAddr::parse("0.0.0.0")->is_unspecified());
    EXPECT_TRUE(IpAddr::parse("::")->is_unspecified());
    EXPECT_TRUE(IpAddr{}.is_unspecified());
    EXPECT_FALSE(IpAddr::parse("::ffff:0.0.0.1")->is_unspecified());
}

TEST(IpAddr, EqualAddressesHashEqualAndOrderConsistently) {
    IpAddrHash h;
    EXPECT_EQ(h(*IpAddr::parse("fec0::2")), h(*IpAddr::parse("[fec0:0::2]")));
    EXPECT_LT(*IpAddr::parse("10.0.2.2"), *IpAddr::parse("10.0.2.3"));
    std::unordered_set<IpAddr, IpAddrHash> set;
    for (uint32_t i = 0; i < 1000; i++) set.insert(IpAddr::v4(0x0a000000 + i));
    EXPECT_EQ(set.size(), 1000u);
    EXPECT_TRUE(set.count(IpAddr::v4(0x0a000100)));
}

TEST(MacAddr, ParsesAndFormats) {
    auto m = MacAddr::parse("52:54:00:12:34:56");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->b, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    EXPECT_EQ(m->to_string(), "52:54:00:12:34:56");
    auto upper = MacAddr::parse("AA-BB-CC-DD-EE-0F");
    ASSERT_TRUE(upper);
    EXPECT_EQ(upper->to_string(), "aa:bb:cc:dd:ee:0f");
}

TEST(MacAddr, RejectsMalformedText) {
    for (const char* s : {"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54:00:12:34:5g",
                          "52.54.00.12.34.56", "5:54:00:12:34:567", "52:54:00:12:34:56 "}) {
        EXPECT_FALSE(MacAddr::parse(s)) << s;
    }
}

TEST(MacAddr, ClassifiesBroadcastMulticastAndZero) {
    EXPECT_TRUE(MacAddr::broadcast().is_broadcast());
    EXPECT_TRUE(MacAddr::broadcast().is_multicast());
    EXPECT_TRUE(MacAddr::parse("33:33:00:00:00:01")->is_multicast());
    EXPECT_FALSE(MacAddr::parse("33:33:00:00:00:01")->is_broadcast());
    EXPECT_FALSE(MacAddr::parse("52:54:00:12:34:56")->is_multicast());
    EXPECT_TRUE(MacAddr{}.is_zero());
    uint8_t out[6];
    MacAddr::parse("52:54:00:12:34:56")->store(out);
    EXPECT_EQ(MacAddr::from(out), *MacAddr::parse("52:54:00:12:34:56"));
}
