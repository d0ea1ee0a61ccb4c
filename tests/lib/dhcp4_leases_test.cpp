// The DHCPv4 lease table on its own: which client gets which address, and
// when an address comes back to the pool.
#include <gtest/gtest.h>

#include <set>

#include "gateway/dhcp4_server.hpp"

namespace usernet::gw {
namespace {

wire::MacAddr mac(uint8_t last) { return wire::MacAddr{{0x52, 0x54, 0, 0x12, 0x34, last}}; }
Dhcp4ClientKey key(uint8_t last) { return Dhcp4ClientKey::from_mac(mac(last)); }
wire::Ipv4 ip(const char* s) { return *wire::ipv4_parse(s); }

NetConfig cfg(uint32_t count = 16, uint32_t lease = 3600) {
    NetConfig c;
    c.dhcp_count = count;
    c.lease_seconds = lease;
    return c;
}

TEST(Dhcp4Leases, DistinctClientsGetDistinctAddressesFromTheStart) {
    Dhcp4Leases l(cfg());
    std::set<wire::Ipv4> seen;
    for (uint8_t i = 1; i <= 16; i++) {
        auto a = l.offer(key(i), mac(i), std::nullopt, 1000);
        ASSERT_TRUE(a) << int(i);
        EXPECT_TRUE(seen.insert(*a).second);
        EXPECT_TRUE(l.bind(key(i), mac(i), *a, 1000));
    }
    EXPECT_EQ(*seen.begin(), ip("10.0.2.15"));
    EXPECT_EQ(*seen.rbegin(), ip("10.0.2.30"));
}

TEST(Dhcp4Leases, SameClientGetsTheSameAddressBack) {
    Dhcp4Leases l(cfg());
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    ASSERT_TRUE(a);
    EXPECT_EQ(l.offer(key(1), mac(1), std::nullopt, 10), a);  // DISCOVER again
    ASSERT_TRUE(l.bind(key(1), mac(1), *a, 20));
    l.offer(key(2), mac(2), std::nullopt, 30);
    EXPECT_EQ(l.offer(key(1), mac(1), std::nullopt, 40), a);  // lost its state
    // Even long after the lease ended, while nobody else took it.
    EXPECT_EQ(l.offer(key(1), mac(1), std::nullopt, 3600'000 * 5), a);
    EXPECT_TRUE(l.bind(key(1), mac(1), *a, 3600'000 * 5));
}

TEST(Dhcp4Leases, RenewalExtendsTheLease) {
    Dhcp4Leases l(cfg(16, 100));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    ASSERT_TRUE(l.bind(key(1), mac(1), *a, 0));
    ASSERT_TRUE(l.bind(key(1), mac(1), *a, 90'000));  // renew at 90 s
    // At 150 s the renewed lease still holds: nobody else may have it.
    EXPECT_FALSE(l.bind(key(2), mac(2), *a, 150'000));
    EXPECT_EQ(l.lookup(key(1), 150'000), a);
}

TEST(Dhcp4Leases, RequestingAnAddressHeldByAnotherClientIsRefused) {
    Dhcp4Leases l(cfg());
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    ASSERT_TRUE(l.bind(key(1), mac(1), *a, 0));
    EXPECT_FALSE(l.bind(key(2), mac(2), *a, 10));
    // Outside the pool, or one of the router's own addresses.
    EXPECT_FALSE(l.bind(key(2), mac(2), ip("10.0.2.100"), 10));
    EXPECT_FALSE(l.bind(key(2), mac(2), ip("10.0.2.2"), 10));
    EXPECT_FALSE(l.bind(key(2), mac(2), ip("192.168.1.20"), 10));
    // A free address in the pool is fine (INIT-REBOOT of a known address).
    EXPECT_TRUE(l.bind(key(2), mac(2), ip("10.0.2.20"), 10));
}

TEST(Dhcp4Leases, OfferedAddressIsHeldForTheClientThenLapses) {
    Dhcp4Leases l(cfg(1));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    ASSERT_TRUE(a);
    EXPECT_FALSE(l.offer(key(2), mac(2), std::nullopt, 1000));
    EXPECT_EQ(l.offer(key(2), mac(2), std::nullopt, Dhcp4Leases::kOfferHoldMs + 1), a);
}

TEST(Dhcp4Leases, ExpiredLeaseIsReusedWhenThePoolIsFull) {
    Dhcp4Leases l(cfg(2, 60));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    auto b = l.offer(key(2), mac(2), std::nullopt, 0);
    ASSERT_TRUE(l.bind(key(1), mac(1), *a, 0));
    ASSERT_TRUE(l.bind(key(2), mac(2), *b, 0));
    EXPECT_FALSE(l.offer(key(3), mac(3), std::nullopt, 59'000));
    l.bind(key(2), mac(2), *b, 30'000);  // client 2 renews, client 1 does not
    auto c = l.offer(key(3), mac(3), std::nullopt, 61'000);
    EXPECT_EQ(c, a);
    EXPECT_TRUE(l.bind(key(3), mac(3), *c, 61'000));
    EXPECT_FALSE(l.lookup(key(1), 61'000));
}

TEST(Dhcp4Leases, ExhaustedPoolOffersNothing) {
    Dhcp4Leases l(cfg(3));
    for (uint8_t i = 1; i <= 3; i++) ASSERT_TRUE(l.offer(key(i), mac(i), std::nullopt, 0));
    EXPECT_FALSE(l.offer(key(4), mac(4), std::nullopt, 0));
    EXPECT_FALSE(l.offer(key(4), mac(4), ip("10.0.2.15"), 0));
}

TEST(Dhcp4Leases, ReleaseFreesTheAddress) {
    Dhcp4Leases l(cfg(1));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    ASSERT_TRUE(l.bind(key(1), mac(1), *a, 0));
    EXPECT_FALSE(l.release(key(2), *a, 5, mac(2)));  // not its lease
    EXPECT_FALSE(l.offer(key(2), mac(2), std::nullopt, 10));
    EXPECT_TRUE(l.release(key(1), *a, 10, mac(1)));
    EXPECT_FALSE(l.lookup(key(1), 10));
    EXPECT_EQ(l.offer(key(2), mac(2), std::nullopt, 20), a);
}

TEST(Dhcp4Leases, FreeAddressesGoInOrderOfLongestUnused) {
    Dhcp4Leases l(cfg(3));
    for (uint8_t i = 1; i <= 3; i++) {
        auto a = l.offer(key(i), mac(i), std::nullopt, 0);
        l.bind(key(i), mac(i), *a, 0);
    }
    l.release(key(2), ip("10.0.2.16"), 100, mac(2));
    l.release(key(1), ip("10.0.2.15"), 200, mac(1));
    // .16 has been free the longest; .15's owner may still come back.
    EXPECT_EQ(l.offer(key(9), mac(9), std::nullopt, 300), ip("10.0.2.16"));
    EXPECT_EQ(l.offer(key(1), mac(1), std::nullopt, 300), ip("10.0.2.15"));
}

// The gateway lets a MAC use one address: a second client identifier on
// the same MAC (firmware without option 61, then an OS with a DUID; two
// clients on one interface) gets the address the MAC holds, and the
// identifier before it is still granted that address when it renews.
TEST(Dhcp4Leases, AMacHoldsOneAddressWhateverIdentifiersItSends) {
    Dhcp4Leases l(cfg());
    const uint8_t id_a[] = {0xff, 0, 0, 0, 1, 0, 4, 'a', 'b', 'c', 'd'};
    const uint8_t id_b[] = {0xff, 0, 0, 0, 2, 0, 4, 'a', 'b', 'c', 'd'};
    auto ka = Dhcp4ClientKey::from_client_id(id_a);
    auto kb = Dhcp4ClientKey::from_client_id(id_b);
    auto m0 = l.offer(key(1), mac(1), std::nullopt, 0);  // no identifier: the MAC
    ASSERT_TRUE(m0);
    ASSERT_TRUE(l.bind(key(1), mac(1), *m0, 0));
    auto a = l.offer(ka, mac(1), std::nullopt, 10);
    EXPECT_EQ(a, m0);
    ASSERT_TRUE(l.bind(ka, mac(1), *a, 10));
    auto b = l.offer(kb, mac(1), std::nullopt, 20);
    EXPECT_EQ(b, m0);
    ASSERT_TRUE(l.bind(kb, mac(1), *b, 20));
    EXPECT_TRUE(l.bind(ka, mac(1), *m0, 30)) << "a renewal under the identifier before";
    EXPECT_TRUE(l.bind(kb, mac(1), *m0, 40));
    // Asking for another address moves the MAC there; the old one is free
    // and keeps its last identifier, which gets it back.
    ASSERT_TRUE(l.bind(ka, mac(1), ip("10.0.2.29"), 50));
    EXPECT_EQ(l.lookup(ka, 50), ip("10.0.2.29"));
    EXPECT_FALSE(l.lookup(kb, 50));
    auto other = l.offer(key(2), mac(2), *m0, 60);
    EXPECT_EQ(other, m0) << "the MAC's previous address is free for others";
    // The same client id from another MAC does not take the live lease:
    // client identifiers travel in broadcasts every guest sees.
    auto c = l.offer(ka, mac(7), std::nullopt, 70);
    ASSERT_TRUE(c);
    EXPECT_NE(*c, ip("10.0.2.29"));
    EXPECT_TRUE(l.bind(ka, mac(1), ip("10.0.2.29"), 70));
}

TEST(Dhcp4Leases, LongClientIdentifiersStayDistinct) {
    std::vector<uint8_t> x(200, 0x42), y(200, 0x42);
    y.back() = 0x43;
    auto kx = Dhcp4ClientKey::from_client_id(x);
    auto ky = Dhcp4ClientKey::from_client_id(y);
    EXPECT_FALSE(kx == ky);
    EXPECT_TRUE(kx == Dhcp4ClientKey::from_client_id(x));
    EXPECT_FALSE(Dhcp4ClientKey::from_mac(mac(1)) ==
                 Dhcp4ClientKey::from_client_id(wire::Bytes(mac(1).b.data(), 6)));
}

TEST(Dhcp4Leases, DeclinedAddressRestsThenReturns) {
    Dhcp4Leases l(cfg(2));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    EXPECT_FALSE(l.decline(key(2), *a, 5, mac(2)));  // only its holder may decline it
    EXPECT_TRUE(l.decline(key(1), *a, 10, mac(1)));
    auto b = l.offer(key(1), mac(1), std::nullopt, 20);
    ASSERT_TRUE(b);
    EXPECT_NE(*b, *a);
    ASSERT_TRUE(l.bind(key(1), mac(1), *b, 20));
    EXPECT_FALSE(l.offer(key(3), mac(3), std::nullopt, 30));
    EXPECT_EQ(l.offer(key(3), mac(3), std::nullopt, 10 + Dhcp4Leases::kDeclineHoldMs), a);
}

TEST(Dhcp4Leases, AddressALiveNeighborUsesIsNotHandedOut) {
    Dhcp4Leases l(cfg(3));
    wire::MacAddr squatter = mac(0x99);
    l.set_busy_check([&](wire::Ipv4 a, const wire::MacAddr& m, Dhcp4Leases::PortId) {
        return a == ip("10.0.2.15") && m != squatter;
    });
    EXPECT_EQ(l.offer(key(1), mac(1), ip("10.0.2.15"), 0), ip("10.0.2.16"));
    EXPECT_FALSE(l.bind(key(2), mac(2), ip("10.0.2.15"), 0));
    // The host using it may have it.
    EXPECT_TRUE(l.bind(Dhcp4ClientKey::from_mac(squatter), squatter, ip("10.0.2.15"), 0));
}

TEST(Dhcp4Leases, PoolNeverContainsRouterNetworkOrBroadcast) {
    NetConfig c;
    c.dhcp_start = ip("10.0.2.0");
    c.dhcp_count = 300;  // runs past the /24
    Dhcp4Leases l(c);
    EXPECT_EQ(l.pool_size(), 256u - 4u);
    for (const char* s : {"10.0.2.0", "10.0.2.2", "10.0.2.3", "10.0.2.255", "10.0.3.1"})
        EXPECT_FALSE(l.in_pool(ip(s))) << s;
    EXPECT_TRUE(l.in_pool(ip("10.0.2.1")));
    EXPECT_TRUE(l.in_pool(ip("10.0.2.254")));
}

TEST(Dhcp4Leases, OneMacCannotDrainThePoolWithMadeUpClientIds) {
    Dhcp4Leases l(cfg(16));
    std::optional<wire::Ipv4> first;
    for (uint8_t i = 0; i < 20; i++) {
        const uint8_t id[] = {1, i};
        auto a = l.offer(Dhcp4ClientKey::from_client_id(id), mac(1), std::nullopt, i);
        ASSERT_TRUE(a) << int(i);
        if (!first) first = a;
        EXPECT_EQ(a, first) << "one address per MAC, whatever the identifier";
    }
    const uint8_t bound_id[] = {1, 100};
    EXPECT_TRUE(l.bind(Dhcp4ClientKey::from_client_id(bound_id), mac(1), ip("10.0.2.30"), 20));
    EXPECT_FALSE(l.lookup(Dhcp4ClientKey::from_client_id(bound_id), 20) != ip("10.0.2.30"));
    // 16 addresses, one to this MAC: the others still get theirs.
    for (uint8_t m = 2; m < 17; m++) EXPECT_TRUE(l.offer(key(m), mac(m), std::nullopt, 30)) << int(m);
}

// An uplink's network asks for addresses it never requests (its hosts
// have their own DHCP server): with the pool exhausted by those offers, a
// guest's port takes back the oldest one; a lease the uplink's hosts
// took is kept, and the uplink cannot take back another port's offers.
TEST(Dhcp4Leases, AnUplinksUnrequestedOffersDoNotHoldThePoolAgainstGuests) {
    Dhcp4Leases l(cfg(8));
    constexpr Dhcp4Leases::PortId kUplink = 7, kGuestPort = 1;
    l.set_port_quota(kUplink, 8);
    ASSERT_TRUE(l.offer(key(100), mac(100), std::nullopt, 0, kUplink));
    ASSERT_TRUE(l.bind(key(100), mac(100), *l.lookup(key(100), 0), 0, kUplink));
    for (uint8_t i = 101; i < 108; i++) ASSERT_TRUE(l.offer(key(i), mac(i), std::nullopt, i, kUplink));
    auto g = l.offer(key(1), mac(1), std::nullopt, 300, kGuestPort);
    ASSERT_TRUE(g);
    EXPECT_FALSE(l.lookup(key(101), 300)) << "the oldest unrequested offer went";
    EXPECT_TRUE(l.lookup(key(100), 300)) << "a lease is kept";
    ASSERT_TRUE(l.bind(key(1), mac(1), *g, 300, kGuestPort));
    // The uplink does not take back the guest's.
    EXPECT_FALSE(l.offer(key(121), mac(121), std::nullopt, 400, kUplink));
    EXPECT_TRUE(l.lookup(key(1), 400));
    EXPECT_TRUE(l.lookup(key(100), 400));
}

TEST(Dhcp4Leases, ChoosingAnotherServerWithdrawsTheOffer) {
    Dhcp4Leases l(cfg(1));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0);
    l.withdraw_offer(key(1));
    EXPECT_EQ(l.offer(key(2), mac(2), std::nullopt, 10), a);
}


// --- a hostile guest on one port ----------------------------------------------

TEST(Dhcp4Leases, StormFromOnePortKeepsWithinItsQuotaAndSparesEveryLeaseHeld) {
    NetConfig c = cfg(16);
    c.dhcp_leases_per_port = 3;
    Dhcp4Leases l(c);
    core::Millis guest_heard = 0;  // the real guest keeps talking
    l.set_heard_check([&](const wire::MacAddr& m) {
        return m == mac(1) ? guest_heard : core::Millis{0};
    });
    auto g = l.offer(key(1), mac(1), std::nullopt, 0, 1);  // the guest on port 1
    ASSERT_TRUE(g && l.bind(key(1), mac(1), *g, 0, 1));
    auto n = l.offer(key(2), mac(2), std::nullopt, 0, 2);  // a neighbor on port 2
    ASSERT_TRUE(n && l.bind(key(2), mac(2), *n, 0, 2));
    core::Millis t = 0;
    for (uint32_t i = 0; i < 5000; i++) {  // DISCOVER + REQUEST from made-up MACs
        t = 1000 + i;
        guest_heard = t;
        wire::MacAddr m{{0x02, 0, 0, uint8_t(i >> 16), uint8_t(i >> 8), uint8_t(i)}};
        auto k = Dhcp4ClientKey::from_mac(m);
        if (auto a = l.offer(k, m, std::nullopt, t, 1)) l.bind(k, m, *a, t, 1);
    }
    EXPECT_EQ(l.port_count(1, t), 3u);
    EXPECT_EQ(l.lookup(key(1), t), g);
    EXPECT_EQ(l.lookup(key(2), t), n);
    EXPECT_EQ(l.offer(key(1), mac(1), std::nullopt, t, 1), g);  // its DISCOVER finds it
    auto other = l.offer(key(3), mac(3), std::nullopt, t, 3);   // another port still gets one
    ASSERT_TRUE(other);
    EXPECT_NE(*other, *g);
    EXPECT_NE(*other, *n);
    // Once the storm's leases have been idle long enough, port 1's next
    // client recycles one of them, not the guest's.
    t += Dhcp4Leases::kIdleMs + 1;
    guest_heard = t;
    auto fresh = l.offer(key(4), mac(4), std::nullopt, t, 1);
    ASSERT_TRUE(fresh);
    EXPECT_NE(*fresh, *g);
    EXPECT_EQ(l.lookup(key(1), t), g);
    EXPECT_EQ(l.port_count(1, t), 3u);
}

TEST(Dhcp4Leases, AnIdlePortLeaseIsRecycledOnlyForItsOwnPort) {
    NetConfig c = cfg(16);
    c.dhcp_leases_per_port = 1;
    Dhcp4Leases l(c);
    auto a = l.offer(key(1), mac(1), std::nullopt, 0, 1);
    ASSERT_TRUE(a && l.bind(key(1), mac(1), *a, 0, 1));
    core::Millis later = Dhcp4Leases::kIdleMs + 10;
    // Port 2 has its own quota: port 1's idle lease is not its to take.
    auto b = l.offer(key(2), mac(2), std::nullopt, later, 2);
    ASSERT_TRUE(b);
    EXPECT_NE(*b, *a);
    EXPECT_EQ(l.lookup(key(1), later), a);
    // Port 1's next client recycles port 1's idle lease.
    auto c3 = l.offer(key(3), mac(3), std::nullopt, later, 1);
    ASSERT_TRUE(c3);
    EXPECT_FALSE(l.lookup(key(1), later));
}

// v86 in a browser: each page load is a new attachment with a new MAC. With
// the pool exhausted, a lease whose attachment has gone and whose holder
// has been silent for kIdleMs goes to the newcomer; a lease of an
// attachment still there never does.
TEST(Dhcp4Leases, AGoneAttachmentsIdleLeaseServesANewcomerWhenThePoolIsExhausted) {
    Dhcp4Leases l(cfg(2));
    auto a = l.offer(key(1), mac(1), std::nullopt, 0, 1);
    ASSERT_TRUE(a && l.bind(key(1), mac(1), *a, 0, 1));
    auto b = l.offer(key(2), mac(2), std::nullopt, 0, 2);
    ASSERT_TRUE(b && l.bind(key(2), mac(2), *b, 0, 2));
    l.port_gone(1);
    EXPECT_FALSE(l.offer(key(3), mac(3), std::nullopt, 1000, 3)) << "its holder spoke just now";
    const core::Millis later = Dhcp4Leases::kIdleMs + 10;
    auto c = l.offer(key(3), mac(3), std::nullopt, later, 3);
    ASSERT_TRUE(c);
    EXPECT_EQ(*c, *a);
    EXPECT_FALSE(l.lookup(key(1), later));
    EXPECT_EQ(l.lookup(key(2), later), b);
    EXPECT_FALSE(l.offer(key(4), mac(4), std::nullopt, later, 4)) << "port 2 is still there";
}

TEST(Dhcp4Leases, ClientIdOfTypeOneIsTheMacItself) {
    const uint8_t id[] = {1, 0x52, 0x54, 0, 0x12, 0x34, 7};
    EXPECT_TRUE(Dhcp4ClientKey::from_client_id(id) == key(7));
}

TEST(Dhcp4Leases, ReleaseAndDeclineCountOnlyFromTheHoldersMacAndPort) {
    Dhcp4Leases l(cfg());
    auto a = l.offer(key(1), mac(1), std::nullopt, 0, 1);
    ASSERT_TRUE(a && l.bind(key(1), mac(1), *a, 0, 1));
    EXPECT_FALSE(l.release(key(1), *a, 5, mac(9), 1));  // its client id, another MAC
    EXPECT_FALSE(l.release(key(1), *a, 5, mac(1), 2));  // another port
    EXPECT_FALSE(l.decline(key(1), *a, 5, mac(9), 1));
    EXPECT_FALSE(l.decline(key(1), *a, 5, mac(1), 2));
    EXPECT_EQ(l.lookup(key(1), 5), a);
    EXPECT_TRUE(l.release(key(1), *a, 5, mac(1), 1));
}

TEST(Dhcp4Leases, DecliningInTurnCannotDrainThePool) {
    // A hostile guest offers itself address after address under new MACs
    // and declines each: it keeps only its quota (4) resting, and another
    // port's client still gets an address.
    Dhcp4Leases l(cfg(8));
    for (uint8_t i = 1; i <= 20; i++) {
        auto a = l.offer(key(i), mac(i), std::nullopt, i, 1);
        ASSERT_TRUE(a) << int(i);
        ASSERT_TRUE(l.decline(key(i), *a, i, mac(i), 1));
    }
    size_t free = 0;
    for (uint8_t i = 100; i < 120; i++) {
        auto a = l.offer(key(i), mac(i), std::nullopt, 50, 2);
        if (!a || !l.bind(key(i), mac(i), *a, 50, 2)) break;
        free++;
    }
    EXPECT_EQ(free, 8u - l.quota(1));
}

}  // namespace
}  // namespace usernet::gw
