// DHCPv6 wire layer: views over real dhclient messages, malformed option
// lists, and the builder's bounds.
#include "wire/dhcp6.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "captured_dhcp6.hpp"

namespace usernet::wire {
namespace {

// The DHCPv6 message of a captured frame (Ethernet, IPv6, UDP).
template <size_t N>
Bytes message(const std::array<uint8_t, N>& f) {
    return Bytes(f.data() + 62, N - 62);
}

TEST(Dhcp6, ParsesARealSolicit) {
    auto m = Dhcp6View::parse(message(testdata::kDhcp6Solicit));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), dhcp6type::solicit);
    EXPECT_EQ(m->xid(), 0x1257bcu);
    auto cid = m->options().find(dhcp6opt::client_id);
    ASSERT_TRUE(cid);
    EXPECT_EQ(cid->size(), 14u);  // DUID-LLT: type 1, hardware 1, time, MAC
    EXPECT_EQ(load16(&(*cid)[0]), 1);
    EXPECT_FALSE(m->options().find(dhcp6opt::server_id));
    auto oro = m->options().find(dhcp6opt::oro);
    ASSERT_TRUE(oro);
    bool asks_dns = false;
    for (size_t i = 0; i + 1 < oro->size(); i += 2)
        asks_dns |= load16(&(*oro)[i]) == dhcp6opt::dns_servers;
    EXPECT_TRUE(asks_dns);
    auto ia = Dhcp6IaNa::parse(*m->options().find(dhcp6opt::ia_na));
    ASSERT_TRUE(ia);
    EXPECT_EQ(ia->t1, 3600u);  // dhclient's hints
    EXPECT_EQ(ia->t2, 5400u);
}

TEST(Dhcp6, ParsesARealRequestWithItsAddress) {
    auto m = Dhcp6View::parse(message(testdata::kDhcp6Request));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), dhcp6type::request);
    auto sid = m->options().find(dhcp6opt::server_id);
    ASSERT_TRUE(sid);
    const std::vector<uint8_t> usernet_duid{0, 3, 0, 1, 0x52, 0x55, 10, 0, 2, 2};
    EXPECT_EQ(std::vector<uint8_t>(sid->begin(), sid->end()), usernet_duid);
    auto ia = Dhcp6IaNa::parse(*m->options().find(dhcp6opt::ia_na));
    ASSERT_TRUE(ia);
    auto a = Dhcp6IaAddr::parse(*ia->options.find(dhcp6opt::iaaddr));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->addr, *IpAddr::parse("fec0::1:0:1"));
}

TEST(Dhcp6, ParsesInformationRequestAndRelease) {
    auto i = Dhcp6View::parse(message(testdata::kDhcp6InformationRequest));
    ASSERT_TRUE(i);
    EXPECT_EQ(i->type(), dhcp6type::information_request);
    EXPECT_FALSE(i->options().find(dhcp6opt::ia_na));
    auto r = Dhcp6View::parse(message(testdata::kDhcp6Release));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->type(), dhcp6type::release);
}

TEST(Dhcp6, RefusesTruncatedAndOverlongOptionLists) {
    Bytes full = message(testdata::kDhcp6Solicit);
    std::vector<uint8_t> m(full.begin(), full.end());
    // Every truncation inside an option is refused; a cut at an option
    // boundary is a shorter, valid message.
    size_t valid = 0;
    for (size_t n = 0; n < m.size(); n++)
        valid += Dhcp6View::parse(Bytes(m.data(), n)).has_value();
    EXPECT_LE(valid, 8u);
    EXPECT_FALSE(Dhcp6View::parse(Bytes(m.data(), 3)));
    // An option length past the end.
    m[kDhcp6HeaderLen + 3] = 0xff;
    EXPECT_FALSE(Dhcp6View::parse(m));
    // More options than kMaxDhcp6Options.
    std::vector<uint8_t> many{dhcp6type::solicit, 0, 0, 1};
    many.resize(kDhcp6HeaderLen + 4 * (kMaxDhcp6Options + 1), 0);
    EXPECT_FALSE(Dhcp6View::parse(many));
    many.resize(kDhcp6HeaderLen + 4 * kMaxDhcp6Options);
    EXPECT_TRUE(Dhcp6View::parse(many));
    // Relay messages are not parsed.
    std::vector<uint8_t> relay{dhcp6type::relay_forw, 0, 0, 0};
    EXPECT_FALSE(Dhcp6View::parse(relay));
}

TEST(Dhcp6, IaNaAndIaAddrNeedTheirFixedParts) {
    std::vector<uint8_t> ia(11, 0);
    EXPECT_FALSE(Dhcp6IaNa::parse(ia));
    ia.resize(12);
    EXPECT_TRUE(Dhcp6IaNa::parse(ia));
    std::vector<uint8_t> addr(23, 0);
    EXPECT_FALSE(Dhcp6IaAddr::parse(addr));
    addr.resize(24);
    EXPECT_TRUE(Dhcp6IaAddr::parse(addr));
    addr.push_back(0);  // a nested option list of one byte
    EXPECT_FALSE(Dhcp6IaAddr::parse(addr));
}

TEST(Dhcp6, BuilderNestsOptionsAndNeverOverflows) {
    std::vector<uint8_t> out(64);
    Dhcp6Builder b(MutBytes(out), dhcp6type::reply, 0xabcdef);
    size_t ia = b.begin(dhcp6opt::ia_na);
    b.append32(7);
    b.append32(100);
    b.append32(160);
    b.put_status(dhcp6status::success, "ok");
    b.end(ia);
    size_t n = b.finish();
    ASSERT_GT(n, 0u);
    auto m = Dhcp6View::parse(Bytes(out.data(), n));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->xid(), 0xabcdefu);
    auto got = Dhcp6IaNa::parse(*m->options().find(dhcp6opt::ia_na));
    ASSERT_TRUE(got);
    EXPECT_EQ(got->iaid, 7u);
    EXPECT_EQ(got->t2, 160u);
    auto st = got->options.find(dhcp6opt::status_code);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->size(), 4u);
    // Whatever does not fit fails the whole message.
    for (size_t cap = 0; cap < 40; cap++) {
        std::vector<uint8_t> small(cap);
        Dhcp6Builder s(MutBytes(small), dhcp6type::reply, 1);
        s.put(dhcp6opt::server_id, Bytes(out.data(), 20));
        s.put16(dhcp6opt::preference, 255);
        EXPECT_EQ(s.finish(), cap >= 4 + 24 + 6 ? 4u + 24 + 6 : 0u) << cap;
    }
}

}  // namespace
}  // namespace usernet::wire
