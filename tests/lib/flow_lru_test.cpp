// FlowLru: which flow the NAT evicts at its limits, and the recency order
// its idle sweep walks.
#include <gtest/gtest.h>

#include <array>

#include "nat/udp_nat.hpp"

namespace usernet::nat {
namespace {

struct TestFlow : FlowLru::Entry {
    int id = 0;
};

// Owners are switch ports.
constexpr FlowLru::Owner kA = 3;
constexpr FlowLru::Owner kB = 4;

int id_of(FlowLru::Entry* e) { return e ? static_cast<TestFlow*>(e)->id : -1; }

TEST(FlowLru, FlowLru_RoomUntilTheLimits) {
    FlowLru lru(3, 2);
    std::array<TestFlow, 3> f;
    EXPECT_EQ(lru.victim_for(kA), nullptr);
    lru.insert(f[0], kA, 1);
    EXPECT_EQ(lru.victim_for(kA), nullptr);
    lru.insert(f[1], kA, 2);
    EXPECT_EQ(lru.size(), 2u);
    EXPECT_EQ(lru.owner_size(kA), 2u);
    EXPECT_EQ(lru.owners(), 1u);
    EXPECT_EQ(lru.victim_for(kA), &f[0]);  // A is at its own limit
    EXPECT_EQ(lru.victim_for(kB), nullptr);
}

TEST(FlowLru, FlowLru_OwnerAtItsLimitEvictsItsOwnLeastRecentlyUsed) {
    FlowLru lru(100, 3);
    std::array<TestFlow, 4> f;
    for (int i = 0; i < 4; i++) f[i].id = i;
    lru.insert(f[0], kA, 1);
    lru.insert(f[3], kB, 2);  // B's flow is the oldest of all but not A's to evict
    lru.insert(f[1], kA, 3);
    lru.insert(f[2], kA, 4);
    // f[0] is touched: f[1] becomes A's least recently used
    lru.touch(f[0], 5);
    EXPECT_EQ(id_of(lru.victim_for(kA)), 1);
    EXPECT_EQ(lru.victim_for(kB), nullptr);
}

TEST(FlowLru, FlowLru_FullTableEvictsTheGlobalLeastRecentlyUsed) {
    FlowLru lru(3, 3);
    std::array<TestFlow, 3> f;
    for (int i = 0; i < 3; i++) f[i].id = i;
    lru.insert(f[0], kA, 1);
    lru.insert(f[1], kB, 2);
    lru.insert(f[2], kB, 3);
    EXPECT_EQ(id_of(lru.victim_for(kA)), 0);
    lru.touch(f[0], 4);
    EXPECT_EQ(id_of(lru.victim_for(kA)), 1);
    EXPECT_EQ(id_of(lru.victim_for(99)), 1);
}

TEST(FlowLru, FlowLru_OldestToNewestFollowsUse) {
    FlowLru lru(10, 10);
    std::array<TestFlow, 4> f;
    for (int i = 0; i < 4; i++) {
        f[i].id = i;
        lru.insert(f[i], i % 2 ? kA : kB, static_cast<core::Millis>(i));
    }
    lru.touch(f[1], 10);
    lru.touch(f[0], 11);
    std::vector<int> order;
    for (FlowLru::Entry* e = lru.oldest(); e; e = FlowLru::newer(*e)) order.push_back(id_of(e));
    EXPECT_EQ(order, (std::vector<int>{2, 3, 1, 0}));
    EXPECT_EQ(f[0].last_used(), 11u);
    EXPECT_EQ(f[0].owner(), kB);
}

TEST(FlowLru, FlowLru_EraseUnlinksAndForgetsEmptyOwners) {
    FlowLru lru(10, 10);
    std::array<TestFlow, 3> f;
    for (int i = 0; i < 3; i++) f[i].id = i;
    lru.insert(f[0], kA, 1);
    lru.insert(f[1], kA, 2);
    lru.insert(f[2], kB, 3);
    lru.erase(f[1]);  // middle of A's list and of the global list
    EXPECT_FALSE(f[1].linked());
    EXPECT_EQ(lru.owner_size(kA), 1u);
    EXPECT_EQ(id_of(lru.oldest()), 0);
    EXPECT_EQ(id_of(FlowLru::newer(*lru.oldest())), 2);
    lru.erase(f[0]);
    EXPECT_EQ(lru.owners(), 1u);
    EXPECT_EQ(lru.owner_size(kA), 0u);
    lru.erase(f[2]);
    EXPECT_EQ(lru.size(), 0u);
    EXPECT_EQ(lru.oldest(), nullptr);
    lru.erase(f[2]);  // idempotent
    // Reusable after erase.
    lru.insert(f[1], kB, 9);
    EXPECT_EQ(lru.oldest(), &f[1]);
}

TEST(FlowLru, FlowLru_ZeroLimitsCountAsOne) {
    FlowLru lru(0, 0);
    EXPECT_EQ(lru.max_total(), 1u);
    EXPECT_EQ(lru.max_per_owner(), 1u);
    TestFlow f;
    EXPECT_EQ(lru.victim_for(kA), nullptr);
    lru.insert(f, kA, 1);
    EXPECT_EQ(lru.victim_for(kA), &f);
    EXPECT_EQ(lru.victim_for(kB), &f);
    lru.erase(f);
}

}  // namespace
}  // namespace usernet::nat
