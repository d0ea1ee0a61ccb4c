// The DHCPv6 server through the gateway: real dhclient messages, rapid
// commit, the address that goes with a guest's IPv4 lease, and what a
// hostile guest may not do (another server's messages, another
// attachment's binding, draining the table).
#include "gateway/dhcp6_server.hpp"

#include <gtest/gtest.h>

#include "../unit/captured_dhcp6.hpp"
#include "gateway/gateway.hpp"
#include "nat_harness.hpp"

namespace usernet::testing {
namespace {

namespace t = wire::dhcp6type;
namespace o = wire::dhcp6opt;

const wire::MacAddr kClientMac{{0xda, 0x0d, 0xa1, 0x0e, 0x18, 0xf1}};  // the capture's
const wire::IpAddr kAllDhcp = *wire::IpAddr::parse("ff02::1:2");

struct Dhcp6Test : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    CapturePort guest;
    CapturePort other;
    gw::NetConfig cfg;
    std::unique_ptr<gw::Gateway> gw;

    void SetUp() override {
        sw.attach(guest);
        sw.attach(other);
        cfg.domain = "example.test";
        gw = std::make_unique<gw::Gateway>(loop, sw, cfg);
    }
    template <size_t N>
    void input(const std::array<uint8_t, N>& f) {
        sw.input(guest.id(), wire::Bytes(f.data(), N));
    }
    // A client message from mac's link-local address, through port p.
    [[gnu::noinline]] void send(const std::vector<uint8_t>& msg, const wire::MacAddr& mac,
                                sw::Port& p) {
        const wire::IpAddr src = wire::link_local_of(mac);
        std::vector<uint8_t> f(62 + msg.size());
        std::memcpy(f.data() + 62, msg.data(), msg.size());
        wire::build_udp(f.data() + 54, src, kAllDhcp, 546, 547, msg.size());
        wire::build_ethernet(f.data(), wire::multicast_mac(kAllDhcp), mac, wire::ethertype::ipv6);
        wire::build_ipv6(f.data() + 14, src, kAllDhcp, wire::ipproto::udp, 8 + msg.size(), 1);
        sw.input(p.id(), f);
    }
    // The DHCPv6 replies that reached port p.
    static std::vector<std::vector<uint8_t>> replies(const CapturePort& p) {
        std::vector<std::vector<uint8_t>> out;
        for (const auto& f : p.frames)
            if (f.size() > 62 && f[12] == 0x86 && f[13] == 0xdd && f[20] == wire::ipproto::udp &&
                wire::load16(&f[54]) == 547)
                out.emplace_back(f.begin() + 62, f.end());
        return out;
    }
};

// A client message: type, xid 1, client id (DUID-LL of mac) and what follows.
[[gnu::noinline]] std::vector<uint8_t> client_msg(uint8_t type, const wire::MacAddr& mac,
                                                  std::vector<uint8_t> tail = {}) {
    std::vector<uint8_t> m{type, 0, 0, 1, 0, o::client_id, 0, 10, 0, 3, 0, 1};
    m.resize(m.size() + 6);
    mac.store(&m[m.size() - 6]);
    m.insert(m.end(), tail.begin(), tail.end());
    return m;
}
[[gnu::noinline]] std::vector<uint8_t> ia_na_opt(uint32_t iaid) {
    std::vector<uint8_t> v{0, o::ia_na, 0, 12};
    v.resize(16);
    wire::store32(&v[4], iaid);
    return v;
}
[[gnu::noinline]] std::vector<uint8_t> server_id_opt(const wire::Bytes duid) {
    std::vector<uint8_t> v(4 + duid.size());
    wire::store16(&v[0], o::server_id);
    wire::store16(&v[2], static_cast<uint16_t>(duid.size()));
    std::copy(duid.begin(), duid.end(), v.begin() + 4);
    return v;
}
[[gnu::noinline]] std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// The address of the first IA_NA in a reply, unspecified if none.
wire::IpAddr ia_address(const std::vector<uint8_t>& reply) {
    auto m = wire::Dhcp6View::parse(reply);
    if (!m) return {};
    auto ia = m->options().find(o::ia_na);
    if (!ia) return {};
    auto na = wire::Dhcp6IaNa::parse(*ia);
    auto a = na ? na->options.find(o::iaaddr) : std::nullopt;
    auto addr = a ? wire::Dhcp6IaAddr::parse(*a) : std::nullopt;
    return addr ? addr->addr : wire::IpAddr{};
}
// The status code inside the first IA_NA (or at the top with top=true).
std::optional<uint16_t> status(const std::vector<uint8_t>& reply, bool top = false) {
    auto m = wire::Dhcp6View::parse(reply);
    if (!m) return std::nullopt;
    std::optional<wire::Bytes> st;
    if (top) {
        st = m->options().find(o::status_code);
    } else if (auto ia = m->options().find(o::ia_na)) {
        if (auto na = wire::Dhcp6IaNa::parse(*ia)) st = na->options.find(o::status_code);
    }
    if (!st || st->size() < 2) return std::nullopt;
    return wire::load16(st->data());
}

TEST_F(Dhcp6Test, Dhcp6_AnswersDhclientsSolicitRequestInformationRequestAndRelease) {
    input(testdata::kDhcp6Solicit);
    auto r = replies(guest);
    ASSERT_EQ(r.size(), 1u);
    auto adv = wire::Dhcp6View::parse(r[0]);
    ASSERT_TRUE(adv);
    EXPECT_EQ(adv->type(), t::advertise);
    EXPECT_EQ(adv->xid(), 0x1257bcu);
    EXPECT_EQ(ia_address(r[0]), *wire::IpAddr::parse("fec0::1:0:1"));  // no IPv4: the pool
    auto dns = adv->options().find(o::dns_servers);
    ASSERT_TRUE(dns);
    EXPECT_EQ(wire::IpAddr::v6_from(dns->data()), cfg.dns6);
    auto dom = adv->options().find(o::domain_list);
    ASSERT_TRUE(dom);
    EXPECT_EQ(std::string(dom->begin(), dom->end()), std::string("\x07" "example\x04test\x00", 14));
    // From the gateway's link-local address to the client's, port 546.
    const auto& f = guest.frames.back();
    EXPECT_EQ(wire::IpAddr::v6_from(&f[22]), gw->link_local());
    EXPECT_EQ(wire::IpAddr::v6_from(&f[38]), wire::link_local_of(kClientMac));
    EXPECT_EQ(wire::load16(&f[56]), 546);
    // Advertised only: the address waits a minute for the Request, not the
    // lease time (a Solicit flood cannot hold bindings).
    ASSERT_EQ(gw->dhcp6().leases().size(), 1u);
    EXPECT_LE(gw->dhcp6().leases()[0].until, loop.now() + gw::Dhcp6Server::kOfferHoldMs);

    guest.frames.clear();
    input(testdata::kDhcp6Request);
    r = replies(guest);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0][0], t::reply);
    EXPECT_EQ(ia_address(r[0]), *wire::IpAddr::parse("fec0::1:0:1"));
    ASSERT_EQ(gw->dhcp6().leases().size(), 1u);
    EXPECT_GE(gw->dhcp6().leases()[0].until,
              loop.now() + core::Millis{cfg.lease_seconds} * 1000);

    guest.frames.clear();
    input(testdata::kDhcp6InformationRequest);
    r = replies(guest);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0][0], t::reply);
    EXPECT_FALSE(wire::Dhcp6View::parse(r[0])->options().find(o::ia_na));
    EXPECT_TRUE(wire::Dhcp6View::parse(r[0])->options().find(o::dns_servers));

    guest.frames.clear();
    input(testdata::kDhcp6Release);
    r = replies(guest);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(status(r[0], true), wire::dhcp6status::success);
    EXPECT_TRUE(gw->dhcp6().leases().empty());
}

TEST_F(Dhcp6Test, Dhcp6_RapidCommitAnswersASolicitWithAReplyAndTheIpv4LeasesPartner) {
    gw->learn_neighbor(0x0a000210, kGuestMac, 1500, guest.id());  // 10.0.2.16
    send(cat(client_msg(t::solicit, kGuestMac, ia_na_opt(1)), {0, o::rapid_commit, 0, 0}),
         kGuestMac, guest);
    auto r = replies(guest);
    ASSERT_EQ(r.size(), 1u);
    auto m = wire::Dhcp6View::parse(r[0]);
    EXPECT_EQ(m->type(), t::reply);
    EXPECT_TRUE(m->options().find(o::rapid_commit));
    EXPECT_EQ(ia_address(r[0]), *wire::IpAddr::parse("fec0::10"));
    // A second IA of the same client comes from the pool.
    guest.frames.clear();
    send(cat(client_msg(t::solicit, kGuestMac, ia_na_opt(2)), {0, o::rapid_commit, 0, 0}),
         kGuestMac, guest);
    EXPECT_EQ(ia_address(replies(guest).at(0)), *wire::IpAddr::parse("fec0::1:0:1"));
}

TEST_F(Dhcp6Test, Dhcp6_MessagesForAnotherServerOrWithoutOursAreIgnored) {
    const std::vector<uint8_t> foreign{0, 3, 0, 1, 2, 0, 0, 0, 0, 9};
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), server_id_opt(foreign)), kGuestMac,
         guest);
    send(client_msg(t::request, kGuestMac, ia_na_opt(1)), kGuestMac, guest);  // no server id
    send(cat(client_msg(t::solicit, kGuestMac, ia_na_opt(1)), server_id_opt(gw->dhcp6().duid())),
         kGuestMac, guest);
    // An Information-Request may not ask for addresses (RFC 8415 16.12).
    send(cat(client_msg(t::information_request, kGuestMac), ia_na_opt(1)), kGuestMac, guest);
    // Server messages from a guest.
    send(client_msg(t::advertise, kGuestMac), kGuestMac, guest);
    EXPECT_TRUE(replies(guest).empty());
    EXPECT_EQ(gw->dhcp6().stats().dropped_not_for_us, 5u);
    EXPECT_TRUE(gw->dhcp6().leases().empty());
}

TEST_F(Dhcp6Test, Dhcp6_AnotherAttachmentCannotRenewOrReleaseABinding) {
    const auto sid = server_id_opt(gw->dhcp6().duid());
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), sid), kGuestMac, guest);
    const wire::IpAddr mine = ia_address(replies(guest).at(0));
    ASSERT_FALSE(mine.is_unspecified());
    // The same DUID and IAID from the other attachment (DHCPv6 goes to a
    // multicast group every guest hears).
    const wire::MacAddr thief{{0x02, 0, 0, 0, 0, 0x66}};
    send(cat(client_msg(t::renew, kGuestMac, ia_na_opt(1)), sid), thief, other);
    auto r = replies(other);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(status(r[0]), wire::dhcp6status::no_binding);
    send(cat(client_msg(t::release, kGuestMac, ia_na_opt(1)), sid), thief, other);
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), sid), thief, other);
    EXPECT_NE(ia_address(replies(other).back()), mine);
    ASSERT_FALSE(gw->dhcp6().leases().empty());
    EXPECT_EQ(gw->dhcp6().leases()[0].addr, mine);
    EXPECT_EQ(gw->dhcp6().leases()[0].port, guest.id());
}

TEST_F(Dhcp6Test, Dhcp6_AnAttachmentHoldsAtMostItsQuotaOfBindings) {
    for (uint8_t i = 0; i < 20; i++) {
        wire::MacAddr m{{0x02, 0, 0, 0, 1, i}};
        send(client_msg(t::solicit, m, ia_na_opt(i)), m, guest);
        loop.advance_clock_for_tests(2000);  // past the DHCP rate limit
        loop.run_once(0);
    }
    size_t mine = 0;
    for (const auto& l : gw->dhcp6().leases()) mine += l.port == guest.id();
    EXPECT_EQ(mine, cfg.dhcp_leases_per_port);
    // The other attachment is not affected.
    send(client_msg(t::solicit, kGuestMac, ia_na_opt(1)), kGuestMac, other);
    EXPECT_FALSE(ia_address(replies(other).at(0)).is_unspecified());
}

TEST_F(Dhcp6Test, Dhcp6_ConfirmSaysWhetherTheAddressesAreOnThisLink) {
    auto confirm = [&](const char* a) {
        std::vector<uint8_t> ia{0, o::ia_na, 0, 12 + 28, 0, 0, 0, 1};
        ia.resize(16 + 28);
        ia[17] = o::iaaddr;
        ia[19] = 24;
        auto ip = *wire::IpAddr::parse(a);
        std::memcpy(&ia[20], ip.b.data(), 16);
        guest.frames.clear();
        send(client_msg(t::confirm, kGuestMac, ia), kGuestMac, guest);
        return status(replies(guest).at(0), true);
    };
    EXPECT_EQ(confirm("fec0::1:0:1"), wire::dhcp6status::success);
    loop.advance_clock_for_tests(2000);
    loop.run_once(0);
    EXPECT_EQ(confirm("2001:db8::1"), wire::dhcp6status::not_on_link);
}

// RFC 5970: the boot file URL, only to a client whose ORO asks for it; a
// name on our TFTP server becomes a tftp:// URL at the IPv6 gateway.
TEST_F(Dhcp6Test, Dhcp6_BootfileUrlOnlyWhenAskedFor) {
    gw.reset();
    cfg.bootfile = "boot.efi";
    gw = std::make_unique<gw::Gateway>(loop, sw, cfg);
    auto url_in = [](const std::vector<uint8_t>& reply) -> std::string {
        auto m = wire::Dhcp6View::parse(reply);
        auto u = m ? m->options().find(o::bootfile_url) : std::nullopt;
        return u ? std::string(u->begin(), u->end()) : "(none)";
    };
    send(client_msg(t::information_request, kClientMac), kClientMac, guest);
    ASSERT_EQ(replies(guest).size(), 1u);
    EXPECT_EQ(url_in(replies(guest)[0]), "(none)");
    guest.frames.clear();
    const std::vector<uint8_t> oro{0, o::oro, 0, 4, 0, o::dns_servers, 0, o::bootfile_url};
    send(client_msg(t::information_request, kClientMac, oro), kClientMac, guest);
    ASSERT_EQ(replies(guest).size(), 1u);
    EXPECT_EQ(url_in(replies(guest)[0]), "tftp://[fec0::2]/boot.efi");
    // A URL goes as it is.
    gw.reset();
    cfg.bootfile = "http://[fec0::2]:8080/boot.efi";
    gw = std::make_unique<gw::Gateway>(loop, sw, cfg);
    guest.frames.clear();
    send(client_msg(t::information_request, kClientMac, oro), kClientMac, guest);
    ASSERT_EQ(replies(guest).size(), 1u);
    EXPECT_EQ(url_in(replies(guest)[0]), cfg.bootfile);
}

TEST_F(Dhcp6Test, Dhcp6_ADeclinedAddressGoesToNobodyAndUnknownIasGetNoBinding) {
    const auto sid = server_id_opt(gw->dhcp6().duid());
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), sid), kGuestMac, guest);
    const wire::IpAddr declined = ia_address(replies(guest).at(0));
    ASSERT_FALSE(declined.is_unspecified());
    // Decline names the IA and its address (RFC 8415 18.2.8); an IA the
    // client holds nothing for gets NoBinding in the Reply (18.3.8).
    std::vector<uint8_t> ia{0, o::ia_na, 0, 12 + 28, 0, 0, 0, 1};
    ia.resize(16 + 28);
    wire::store16(&ia[16], o::iaaddr);
    wire::store16(&ia[18], 24);
    std::copy(declined.b.begin(), declined.b.end(), ia.begin() + 20);
    // Naming an address the IA does not hold declines nothing (18.3.8:
    // the server ignores it): the binding stays.
    auto stranger = ia;
    stranger[20 + 15] ^= 0x5a;
    guest.frames.clear();
    send(cat(client_msg(t::decline, kGuestMac, stranger), sid), kGuestMac, guest);
    ASSERT_EQ(replies(guest).size(), 1u);
    guest.frames.clear();
    send(cat(client_msg(t::renew, kGuestMac, ia_na_opt(1)), sid), kGuestMac, guest);
    EXPECT_EQ(ia_address(replies(guest).at(0)), declined);
    guest.frames.clear();
    send(cat(cat(client_msg(t::decline, kGuestMac, ia), ia_na_opt(7)), sid), kGuestMac, guest);
    auto r = replies(guest);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(status(r[0], true), wire::dhcp6status::success);
    EXPECT_EQ(status(r[0]), wire::dhcp6status::no_binding);  // the only IA_NA back: IAID 7
    // The address rests: neither this client nor another gets it.
    guest.frames.clear();
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), sid), kGuestMac, guest);
    const wire::IpAddr again = ia_address(replies(guest).at(0));
    EXPECT_FALSE(again.is_unspecified());
    EXPECT_NE(again, declined);
    const wire::MacAddr next{{0x02, 0, 0, 0, 0, 0x42}};
    send(client_msg(t::solicit, next, ia_na_opt(1)), next, other);
    EXPECT_NE(ia_address(replies(other).at(0)), declined);
    // Released for an IA it does not hold: NoBinding too (18.3.7).
    guest.frames.clear();
    send(cat(client_msg(t::release, kGuestMac, ia_na_opt(9)), sid), kGuestMac, guest);
    EXPECT_EQ(status(replies(guest).at(0)), wire::dhcp6status::no_binding);
    // After the rest, the address is given again.
    loop.advance_clock_for_tests(gw::Dhcp6Server::kDeclineHoldMs + 1000);
    loop.run_once(0);
    const wire::MacAddr later{{0x02, 0, 0, 0, 0, 0x43}};
    bool seen = false;
    for (uint32_t iaid = 1; iaid <= 4 && !seen; iaid++) {
        other.frames.clear();
        send(client_msg(t::solicit, later, ia_na_opt(iaid)), later, other);
        seen = ia_address(replies(other).at(0)) == declined;
    }
    EXPECT_TRUE(seen);
}

TEST_F(Dhcp6Test, Dhcp6_DecliningInTurnKeepsOnlyTheQuotaResting) {
    const auto sid = server_id_opt(gw->dhcp6().duid());
    for (uint8_t i = 0; i < 20; i++) {
        guest.frames.clear();
        send(cat(client_msg(t::request, kGuestMac, ia_na_opt(i)), sid), kGuestMac, guest);
        const wire::IpAddr a = ia_address(replies(guest).at(0));
        ASSERT_FALSE(a.is_unspecified());
        std::vector<uint8_t> ia{0, o::ia_na, 0, 12 + 28, 0, 0, 0, i};
        ia.resize(16 + 28);
        wire::store16(&ia[16], o::iaaddr);
        wire::store16(&ia[18], 24);
        std::copy(a.b.begin(), a.b.end(), ia.begin() + 20);
        send(cat(client_msg(t::decline, kGuestMac, ia), sid), kGuestMac, guest);
        loop.advance_clock_for_tests(2000);  // past the DHCP rate limit
        loop.run_once(0);
    }
    size_t resting = 0;
    for (const auto& l : gw->dhcp6().leases()) resting += l.declined;
    EXPECT_EQ(resting, cfg.dhcp_leases_per_port);
}

TEST_F(Dhcp6Test, Dhcp6_AGuestThatComesBackOnANewAttachmentGetsItsAddressAgain) {
    const auto sid = server_id_opt(gw->dhcp6().duid());
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), sid), kGuestMac, guest);
    const wire::IpAddr mine = ia_address(replies(guest).at(0));
    ASSERT_FALSE(mine.is_unspecified());
    sw.detach(guest);  // QEMU restarted: its stream reconnects as a new port
    CapturePort again;
    sw.attach(again);
    send(cat(client_msg(t::renew, kGuestMac, ia_na_opt(1)), sid), kGuestMac, again);
    auto r = replies(again);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_FALSE(status(r[0]).has_value());
    EXPECT_EQ(ia_address(r[0]), mine);
    // Another MAC with that identity does not inherit it.
    sw.detach(again);
    CapturePort third;
    sw.attach(third);
    const wire::MacAddr thief{{0x02, 0, 0, 0, 0, 0x66}};
    send(cat(client_msg(t::request, kGuestMac, ia_na_opt(1)), sid), thief, third);
    EXPECT_NE(ia_address(replies(third).at(0)), mine);
}

}  // namespace
}  // namespace usernet::testing
