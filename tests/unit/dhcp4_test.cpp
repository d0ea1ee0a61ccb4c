// DHCPv4: real udhcpc and dnsmasq messages, malformed options, overload,
// and the builder's bounds.
#include "wire/dhcp4.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "captured_frames.hpp"
#include "test_util.hpp"

using namespace usernet::wire;
using namespace usernet::testutil;
using namespace usernet::testdata;

namespace {
constexpr size_t kDhcpInFrame = kEthIp + 8;  // after the UDP header

template <typename Array>
Bytes dhcp_of(const Array& frame) {
    return bytes(frame).subspan(kDhcpInFrame);
}

std::vector<uint8_t> vec_of(Bytes b) { return std::vector<uint8_t>(b.begin(), b.end()); }

// A minimal message: fixed header, cookie, then the given option bytes.
std::vector<uint8_t> message_with_options(std::initializer_list<uint8_t> opts) {
    std::vector<uint8_t> m(kDhcp4OptionsOffset + opts.size(), 0);
    m[0] = dhcp4op::boot_request;
    m[1] = 1;
    m[2] = 6;
    store32(&m[236], kDhcp4MagicCookie);
    // Copied by index: g++ 12 misreports vector::insert here (-Warray-bounds).
    size_t i = kDhcp4OptionsOffset;
    for (uint8_t o : opts) m[i++] = o;
    return m;
}

const MacAddr kGuestMac = *MacAddr::parse("52:54:00:12:34:56");
}  // namespace

TEST(Dhcp4View, ParsesUdhcpcDiscoverHeader) {
    auto d = Dhcp4View::parse(dhcp_of(kDhcpDiscoverUdhcpc));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->op(), dhcp4op::boot_request);
    EXPECT_EQ(d->htype(), 1);
    EXPECT_EQ(d->hlen(), 6);
    EXPECT_EQ(d->hops(), 0);
    EXPECT_EQ(d->xid(), 0x25af816du);
    EXPECT_EQ(d->secs(), 0);
    EXPECT_EQ(d->flags(), 0);
    EXPECT_FALSE(d->broadcast());
    EXPECT_EQ(d->ciaddr(), 0u);
    EXPECT_EQ(d->yiaddr(), 0u);
    EXPECT_EQ(d->siaddr(), 0u);
    EXPECT_EQ(d->giaddr(), 0u);
    ASSERT_TRUE(d->chaddr());
    EXPECT_EQ(*d->chaddr(), kGuestMac);
    EXPECT_EQ(d->chaddr_raw().size(), 16u);
    EXPECT_EQ(d->message().size(), 300u);
}

TEST(Dhcp4View, ParsesUdhcpcDiscoverOptions) {
    auto d = Dhcp4View::parse(dhcp_of(kDhcpDiscoverUdhcpc));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), dhcp4msg::discover);
    EXPECT_EQ(d->max_message_size(), 576);
    EXPECT_EQ(d->hostname(), "guest");
    auto prl = d->param_request_list();
    ASSERT_TRUE(prl);
    EXPECT_EQ(vec_of(*prl), (std::vector<uint8_t>{1, 3, 6, 12, 15, 28, 42}));
    auto cid = d->client_id();
    ASSERT_TRUE(cid);
    EXPECT_EQ(vec_of(*cid), (std::vector<uint8_t>{1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    auto vendor = d->find(dhcp4opt::vendor_class);
    ASSERT_TRUE(vendor);
    EXPECT_EQ(std::string(vendor->begin(), vendor->end()), "udhcp 1.35.0");
    EXPECT_FALSE(d->requested_ip());
    EXPECT_FALSE(d->server_id());
    EXPECT_FALSE(d->find(dhcp4opt::end));
    EXPECT_FALSE(d->find(dhcp4opt::pad));
}

TEST(Dhcp4View, IteratesUdhcpcDiscoverOptionsInOrder) {
    auto d = Dhcp4View::parse(dhcp_of(kDhcpDiscoverUdhcpc));
    ASSERT_TRUE(d);
    std::vector<uint8_t> codes;
    Dhcp4OptionIter it = d->options();
    Dhcp4Option o;
    while (it.next(o)) codes.push_back(o.code);
    EXPECT_EQ(codes, (std::vector<uint8_t>{53, 57, 55, 12, 60, 61}));
    EXPECT_FALSE(it.next(o)) << "an exhausted iterator stays exhausted";
}

TEST(Dhcp4View, ParsesUdhcpcRequest) {
    auto d = Dhcp4View::parse(dhcp_of(kDhcpRequestUdhcpc));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), dhcp4msg::request);
    EXPECT_EQ(d->requested_ip(), 0x0a000229u);
    EXPECT_EQ(d->server_id(), 0x0a000202u);
    EXPECT_EQ(d->secs(), 3);
    EXPECT_EQ(d->xid(), 0x25af816du);
}

TEST(Dhcp4View, ParsesDnsmasqAck) {
    auto d = Dhcp4View::parse(dhcp_of(kDhcpAckDnsmasq));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->op(), dhcp4op::boot_reply);
    EXPECT_EQ(d->message_type(), dhcp4msg::ack);
    EXPECT_EQ(d->yiaddr(), 0x0a000229u);
    EXPECT_EQ(d->server_id(), 0x0a000202u);
    auto u32 = [&](uint8_t code) { return load32(d->find(code)->data()); };
    EXPECT_EQ(u32(dhcp4opt::lease_time), 3600u);
    EXPECT_EQ(u32(dhcp4opt::renewal_time), 1800u);
    EXPECT_EQ(u32(dhcp4opt::rebinding_time), 3150u);
    EXPECT_EQ(u32(dhcp4opt::subnet_mask), 0xffffff00u);
    EXPECT_EQ(u32(dhcp4opt::router), 0x0a000202u);
    EXPECT_EQ(u32(dhcp4opt::dns_server), 0x0a000202u);
    EXPECT_EQ(d->hostname(), "guest");
}

TEST(Dhcp4View, RejectsMessageShorterThanCookie) {
    Bytes m = dhcp_of(kDhcpDiscoverUdhcpc);
    for (size_t n : {0, 1, 100, 235, 236, 239})
        EXPECT_FALSE(Dhcp4View::parse(m.first(n))) << n;
    auto bare = Dhcp4View::parse(m.first(240));
    ASSERT_TRUE(bare);
    EXPECT_FALSE(bare->message_type()) << "no options at all";
}

// Without the cookie a message is a plain BOOTP one (RFC 951) if it has
// BOOTP's 300 bytes: the header, and no options at all.
TEST(Dhcp4View, WithoutTheMagicCookieIsPlainBootpWithNoOptions) {
    std::vector<uint8_t> m = vec_of(dhcp_of(kDhcpDiscoverUdhcpc));
    ASSERT_GE(m.size(), kDhcp4MinLen);
    m[239] ^= 1;
    auto d = Dhcp4View::parse(bytes(m));
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->has_cookie());
    EXPECT_TRUE(d->options_field().empty());
    EXPECT_FALSE(d->message_type());
    EXPECT_FALSE(d->client_id());
    EXPECT_EQ(d->chaddr(), Dhcp4View::parse(dhcp_of(kDhcpDiscoverUdhcpc))->chaddr());
    for (size_t n : {240, 299}) EXPECT_FALSE(Dhcp4View::parse(bytes(m).first(n))) << n;
    EXPECT_TRUE(Dhcp4View::parse(bytes(m).first(300)));
}

TEST(Dhcp4View, TruncatedOptionEndsWalkWithoutReadingPastBuffer) {
    Bytes full = dhcp_of(kDhcpDiscoverUdhcpc);
    // Cut inside every option in turn: what lies before the cut stays
    // readable, the cut option and everything after it are gone.
    for (size_t n = 240; n < full.size(); n++) {
        std::vector<uint8_t> m(full.begin(), full.begin() + static_cast<long>(n));
        auto d = Dhcp4View::parse(bytes(m));
        ASSERT_TRUE(d);
        size_t count = 0;
        Dhcp4OptionIter it = d->options();
        Dhcp4Option o;
        while (it.next(o)) {
            EXPECT_LE(o.data.data() + o.data.size(), m.data() + m.size());
            count++;
        }
        EXPECT_LE(count, 6u);
        EXPECT_EQ(d->message_type().has_value(), n >= 243) << n;
        EXPECT_EQ(d->client_id().has_value(), n >= 286) << n;  // option 61 ends at 286
    }
}

TEST(Dhcp4View, LengthRunningPastEndIsIgnored) {
    auto m = message_with_options({53, 1, 3, 12, 200, 'a', 'b'});
    auto d = Dhcp4View::parse(bytes(m));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), dhcp4msg::request);
    EXPECT_FALSE(d->hostname());
    auto lone_code = message_with_options({53, 1, 1, 12});
    EXPECT_FALSE(Dhcp4View::parse(bytes(lone_code))->hostname());
}

TEST(Dhcp4View, SkipsPadAndStopsAtEnd) {
    auto m = message_with_options({0, 0, 53, 1, 1, 0, 255, 12, 3, 'e', 'v', 'l'});
    auto d = Dhcp4View::parse(bytes(m));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), dhcp4msg::discover);
    EXPECT_FALSE(d->hostname()) << "options after END are not options";
}

TEST(Dhcp4View, TypedAccessorsRejectWrongLengths) {
    auto m = message_with_options({53, 2, 1, 1, 50, 3, 10, 0, 2, 54, 5, 10, 0, 2, 2, 2, 57, 1, 2,
                                   61, 0, 255});
    auto d = Dhcp4View::parse(bytes(m));
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->message_type());
    EXPECT_FALSE(d->requested_ip());
    EXPECT_FALSE(d->server_id());
    EXPECT_FALSE(d->max_message_size());
    EXPECT_FALSE(d->client_id()) << "an empty client id is no client id";
    EXPECT_TRUE(d->find(dhcp4opt::client_id)) << "find() still reports it";
}

TEST(Dhcp4View, HostnameDropsTrailingNuls) {
    auto m = message_with_options({12, 6, 'h', 'o', 's', 't', 0, 0, 255});
    EXPECT_EQ(Dhcp4View::parse(bytes(m))->hostname(), "host");
    auto empty = message_with_options({12, 0, 255});
    EXPECT_EQ(Dhcp4View::parse(bytes(empty))->hostname(), "");
}

TEST(Dhcp4View, ChaddrIsMacOnlyForEthernet) {
    std::vector<uint8_t> m = vec_of(dhcp_of(kDhcpDiscoverUdhcpc));
    m[1] = 6;  // IEEE 802
    EXPECT_FALSE(Dhcp4View::parse(bytes(m))->chaddr());
    m[1] = 1;
    m[2] = 16;
    EXPECT_FALSE(Dhcp4View::parse(bytes(m))->chaddr());
}

TEST(Dhcp4View, FollowsOptionOverloadIntoFileAndSname) {
    auto m = message_with_options({53, 1, 1, 52, 1, 3, 255});
    // file (offset 108): hostname, then END; sname (offset 44): server id.
    const uint8_t file_opts[] = {12, 4, 'f', 'i', 'l', 'e', 255};
    const uint8_t sname_opts[] = {0, 54, 4, 10, 0, 2, 2};  // no END: area ends
    std::copy(std::begin(file_opts), std::end(file_opts), m.begin() + 108);
    std::copy(std::begin(sname_opts), std::end(sname_opts), m.begin() + 44);
    auto d = Dhcp4View::parse(bytes(m));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->message_type(), dhcp4msg::discover);
    EXPECT_EQ(d->hostname(), "file");
    EXPECT_EQ(d->server_id(), 0x0a000202u);
    // Overload 1 (file only) hides sname's options.
    m[kDhcp4OptionsOffset + 5] = 1;
    d = Dhcp4View::parse(bytes(m));
    EXPECT_EQ(d->hostname(), "file");
    EXPECT_FALSE(d->server_id());
}

TEST(Dhcp4View, IgnoresMalformedOverload) {
    auto m = message_with_options({52, 2, 3, 3, 255});
    const uint8_t file_opts[] = {12, 1, 'x', 255};
    std::copy(std::begin(file_opts), std::end(file_opts), m.begin() + 108);
    EXPECT_FALSE(Dhcp4View::parse(bytes(m))->hostname());
    auto bad_value = message_with_options({52, 1, 7, 255});
    std::copy(std::begin(file_opts), std::end(file_opts), bad_value.begin() + 108);
    EXPECT_FALSE(Dhcp4View::parse(bytes(bad_value))->hostname());
}

TEST(Dhcp4Builder, ReproducesDnsmasqOfferByteForByte) {
    auto discover = Dhcp4View::parse(dhcp_of(kDhcpDiscoverUdhcpc));
    ASSERT_TRUE(discover);
    std::vector<uint8_t> buf(576, 0xee);
    Dhcp4Builder b{MutBytes(buf)};
    b.reply_to(*discover);
    b.set_yiaddr(0x0a000229);
    b.set_siaddr(0x0a000202);
    b.add_u8(dhcp4opt::message_type, dhcp4msg::offer);
    b.add_ipv4(dhcp4opt::server_id, 0x0a000202);
    b.add_u32(dhcp4opt::lease_time, 3600);
    b.add_u32(dhcp4opt::renewal_time, 1800);
    b.add_u32(dhcp4opt::rebinding_time, 3150);
    b.add_ipv4(dhcp4opt::subnet_mask, 0xffffff00);
    b.add_ipv4(dhcp4opt::broadcast_addr, 0x0a0002ff);
    b.add_ipv4(dhcp4opt::router, 0x0a000202);
    const Ipv4 dns[] = {0x0a000202};
    b.add_ipv4_list(dhcp4opt::dns_server, dns);
    ASSERT_TRUE(b.ok());
    size_t n = b.finish();
    ASSERT_EQ(n, 300u);
    Bytes real = dhcp_of(kDhcpOfferDnsmasq);
    ASSERT_EQ(real.size(), 300u);
    for (size_t i = 0; i < n; i++) EXPECT_EQ(buf[i], real[i]) << "byte " << i;
    EXPECT_EQ(buf[300], 0xee) << "nothing written past the message";
}

TEST(Dhcp4Builder, RoundTripsHeaderAndOptions) {
    std::vector<uint8_t> buf(576);
    Dhcp4Builder b{MutBytes(buf)};
    b.set_op(dhcp4op::boot_request);
    b.set_xid(0xdeadbeef);
    b.set_secs(7);
    b.set_flags(kDhcp4FlagBroadcast);
    b.set_hops(1);
    b.set_ciaddr(0x01020304);
    b.set_yiaddr(0x05060708);
    b.set_siaddr(0x090a0b0c);
    b.set_giaddr(0x0d0e0f10);
    b.set_chaddr(kGuestMac);
    EXPECT_TRUE(b.add_u8(dhcp4opt::message_type, dhcp4msg::inform));
    EXPECT_TRUE(b.add_u16(dhcp4opt::max_message_size, 1500));
    EXPECT_TRUE(b.add_u16(dhcp4opt::mtu, 1500));
    EXPECT_TRUE(b.add_string(dhcp4opt::domain_name, "example.internal"));
    const Ipv4 routers[] = {0x0a000202, 0x0a000203};
    EXPECT_TRUE(b.add_ipv4_list(dhcp4opt::router, routers));
    size_t n = b.finish();
    ASSERT_EQ(n, 300u);
    auto d = Dhcp4View::parse(Bytes(buf.data(), n));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->xid(), 0xdeadbeefu);
    EXPECT_EQ(d->secs(), 7);
    EXPECT_TRUE(d->broadcast());
    EXPECT_EQ(d->hops(), 1);
    EXPECT_EQ(d->ciaddr(), 0x01020304u);
    EXPECT_EQ(d->yiaddr(), 0x05060708u);
    EXPECT_EQ(d->siaddr(), 0x090a0b0cu);
    EXPECT_EQ(d->giaddr(), 0x0d0e0f10u);
    EXPECT_EQ(d->chaddr(), kGuestMac);
    EXPECT_EQ(d->message_type(), dhcp4msg::inform);
    EXPECT_EQ(d->max_message_size(), 1500);
    auto dn = d->find(dhcp4opt::domain_name);
    ASSERT_TRUE(dn);
    EXPECT_EQ(std::string(dn->begin(), dn->end()), "example.internal");
    auto r = d->find(dhcp4opt::router);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->size(), 8u);
    EXPECT_EQ(load32(r->data() + 4), 0x0a000203u);
}

TEST(Dhcp4Builder, PadsToBootpMinimumWithZeros) {
    std::vector<uint8_t> buf(400, 0xee);
    Dhcp4Builder b{MutBytes(buf)};
    b.add_u8(dhcp4opt::message_type, dhcp4msg::nak);
    size_t n = b.finish();
    ASSERT_EQ(n, kDhcp4MinLen);
    EXPECT_EQ(buf[243], dhcp4opt::end);
    for (size_t i = 244; i < 300; i++) EXPECT_EQ(buf[i], 0) << i;
    EXPECT_EQ(buf[300], 0xee);
}

TEST(Dhcp4Builder, GrowsPastMinimumWithoutPadding) {
    std::vector<uint8_t> buf(1000);
    Dhcp4Builder b{MutBytes(buf)};
    std::string big(200, 'x');
    b.add_string(dhcp4opt::hostname, big);
    EXPECT_EQ(b.finish(), 240u + 202 + 1);
}

TEST(Dhcp4Builder, SplitsLongOptionPerRfc3396) {
    std::vector<uint8_t> buf(1000);
    Dhcp4Builder b{MutBytes(buf)};
    std::vector<uint8_t> data(300);
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i);
    ASSERT_TRUE(b.add_option(dhcp4opt::domain_search, bytes(data)));
    size_t n = b.finish();
    ASSERT_EQ(n, 240u + 2 + 255 + 2 + 45 + 1);
    auto d = Dhcp4View::parse(Bytes(buf.data(), n));
    Dhcp4OptionIter it = d->options();
    Dhcp4Option o;
    ASSERT_TRUE(it.next(o));
    EXPECT_EQ(o.code, dhcp4opt::domain_search);
    EXPECT_EQ(o.data.size(), 255u);
    ASSERT_TRUE(it.next(o));
    EXPECT_EQ(o.code, dhcp4opt::domain_search);
    ASSERT_EQ(o.data.size(), 45u);
    EXPECT_EQ(o.data[0], 255);
    EXPECT_FALSE(it.next(o));
}

TEST(Dhcp4Builder, EmptyOptionIsWritten) {
    std::vector<uint8_t> buf(300);
    Dhcp4Builder b{MutBytes(buf)};
    EXPECT_TRUE(b.add_option(dhcp4opt::client_id, Bytes()));
    size_t n = b.finish();
    ASSERT_EQ(n, 300u);
    EXPECT_EQ(buf[240], dhcp4opt::client_id);
    EXPECT_EQ(buf[241], 0);
    EXPECT_EQ(buf[242], dhcp4opt::end);
}

TEST(Dhcp4Builder, FailsOnBufferBelowBootpMinimum) {
    std::vector<uint8_t> buf(299, 0xee);
    Dhcp4Builder b{MutBytes(buf)};
    EXPECT_FALSE(b.ok());
    b.set_xid(1);
    b.set_chaddr(kGuestMac);
    EXPECT_FALSE(b.add_u8(dhcp4opt::message_type, dhcp4msg::offer));
    EXPECT_EQ(b.finish(), 0u);
    for (uint8_t c : buf) ASSERT_EQ(c, 0xee) << "a failed builder writes nothing";
}

TEST(Dhcp4Builder, NeverWritesPastCapacityAndFailsWhenFull) {
    // The builder sees 300 bytes of a larger buffer; the rest is a guard.
    std::vector<uint8_t> backing(400, 0xee);
    Dhcp4Builder b{MutBytes(backing.data(), 300)};
    // 60 bytes of option space minus END: 9 six-byte options fit (54).
    int added = 0;
    while (b.add_u32(dhcp4opt::lease_time, 1)) added++;
    EXPECT_EQ(added, 9);
    EXPECT_FALSE(b.ok());
    EXPECT_FALSE(b.add_u8(dhcp4opt::message_type, 1)) << "failure is sticky";
    EXPECT_EQ(b.finish(), 0u);
    for (size_t i = 300; i < backing.size(); i++) ASSERT_EQ(backing[i], 0xee) << i;
}

TEST(Dhcp4Builder, ExactFitLeavesRoomForEnd) {
    std::vector<uint8_t> backing(310, 0xee);
    Dhcp4Builder b{MutBytes(backing.data(), 300)};
    std::vector<uint8_t> data(57);  // 2 + 57 + END = 60: exactly full
    EXPECT_TRUE(b.add_option(200, bytes(data)));
    EXPECT_EQ(b.finish(), 300u);
    EXPECT_EQ(backing[299], dhcp4opt::end);
    EXPECT_EQ(backing[300], 0xee);
    Dhcp4Builder c{MutBytes(backing.data(), 300)};
    std::vector<uint8_t> one_more(58);
    EXPECT_FALSE(c.add_option(200, bytes(one_more)));
    EXPECT_EQ(c.finish(), 0u);
}

TEST(Dhcp4Builder, AcceptsNothingAfterFinish) {
    std::vector<uint8_t> buf(400);
    Dhcp4Builder b{MutBytes(buf)};
    ASSERT_EQ(b.finish(), 300u);
    EXPECT_FALSE(b.add_u8(dhcp4opt::message_type, 1));
    EXPECT_EQ(buf[240], dhcp4opt::end);
}

TEST(Dhcp4Builder, RefusesOverlongAddressList) {
    std::vector<uint8_t> buf(2000);
    Dhcp4Builder b{MutBytes(buf)};
    std::vector<Ipv4> many(65, 0x0a000202);
    EXPECT_FALSE(b.add_ipv4_list(dhcp4opt::dns_server, many));
    EXPECT_EQ(b.finish(), 0u);
}
