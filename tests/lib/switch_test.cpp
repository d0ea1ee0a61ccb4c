// The learning switch: flooding, learning, limits, and what a hostile port
// may not do (steal a live MAC, take the gateway's pinned MAC, flood the
// table with random source addresses).
#include "switch/switch.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <vector>

#include "wire/checksum.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"

namespace usernet::sw {
namespace {

class RecordingPort : public Port {
public:
    explicit RecordingPort(uint32_t mtu = 1500, bool offload = false)
        : mtu_(mtu), offload_(offload) {}
    bool takes_offload() const override { return offload_; }
    void deliver(wire::Bytes frame, const FrameMeta& meta) override {
        frames.emplace_back(frame.begin(), frame.end());
        metas.push_back(meta);
    }
    uint32_t mtu() const override { return mtu_; }
    std::string describe() const override { return "test"; }
    std::vector<std::vector<uint8_t>> frames;
    std::vector<FrameMeta> metas;

private:
    uint32_t mtu_;
    bool offload_;
};

std::vector<uint8_t> frame(const wire::MacAddr& dst, const wire::MacAddr& src, size_t len = 60) {
    std::vector<uint8_t> f(len, 0);
    dst.store(f.data());
    src.store(f.data() + 6);
    f[12] = 0x08;
    return f;
}

wire::MacAddr mac(uint8_t last) { return wire::MacAddr{{0x02, 0, 0, 0, 0, last}}; }

struct SwitchTest : ::testing::Test {
    core::EventLoop loop;
    Switch sw{loop};
    RecordingPort a, b, c;
    void SetUp() override {
        sw.attach(a);
        sw.attach(b);
        sw.attach(c);
    }
};

TEST_F(SwitchTest, Switch_FloodsBroadcastToEveryOtherPort) {
    auto f = frame(wire::MacAddr::broadcast(), mac(1));
    sw.input(a.id(), f);
    EXPECT_EQ(a.frames.size(), 0u);
    EXPECT_EQ(b.frames.size(), 1u);
    EXPECT_EQ(c.frames.size(), 1u);
    EXPECT_EQ(b.metas[0].ingress, a.id());
}

TEST_F(SwitchTest, Switch_FloodsUnknownUnicastThenLearnsAndForwardsToOnePort) {
    sw.input(a.id(), frame(mac(2), mac(1)));  // b's MAC unknown: flood
    EXPECT_EQ(b.frames.size(), 1u);
    EXPECT_EQ(c.frames.size(), 1u);
    sw.input(b.id(), frame(mac(1), mac(2)));  // a's MAC learned: only a
    EXPECT_EQ(a.frames.size(), 1u);
    EXPECT_EQ(c.frames.size(), 1u);
    sw.input(a.id(), frame(mac(2), mac(1)));  // now b is known too
    EXPECT_EQ(b.frames.size(), 2u);
    EXPECT_EQ(c.frames.size(), 1u);
}

TEST_F(SwitchTest, Switch_DropsRuntFramesAndCountsThem) {
    std::vector<uint8_t> runt(10, 0xff);
    sw.input(a.id(), runt);
    EXPECT_EQ(b.frames.size(), 0u);
    EXPECT_EQ(sw.stats().dropped_runt, 1u);
    EXPECT_EQ(a.stats().rx_dropped, 1u);
}

TEST_F(SwitchTest, Switch_RejectsMulticastSourceAddress) {
    sw.input(a.id(), frame(mac(2), wire::MacAddr::broadcast()));
    EXPECT_EQ(b.frames.size(), 0u);
    EXPECT_EQ(sw.stats().dropped_bad_src, 1u);
}

TEST_F(SwitchTest, Switch_PinnedMacCannotBeStolenByAnotherPort) {
    sw.pin(mac(9), c.id());
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(9)));  // a claims c's MAC
    EXPECT_EQ(b.frames.size(), 0u);
    sw.input(b.id(), frame(mac(9), mac(2)));
    ASSERT_EQ(c.frames.size(), 1u);  // still goes to c
    EXPECT_EQ(a.frames.size(), 0u);
}

TEST_F(SwitchTest, Switch_LiveGuestMacCannotBeTakenOverByAnotherPort) {
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(1)));  // b spoofs a's MAC
    EXPECT_EQ(sw.lookup(mac(1)), a.id());
    sw.input(c.id(), frame(mac(1), mac(3)));
    EXPECT_EQ(a.frames.size(), 1u);
}

// The clash is logged, naming both ports, at most every 10 s per port: two
// QEMUs with the default MAC would otherwise fail without a word.
TEST_F(SwitchTest, Switch_AMacClashIsLoggedOncePerIntervalWithBothPorts) {
    std::ostringstream out;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    auto saved = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    for (int i = 0; i < 5; i++) sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    spdlog::set_default_logger(saved);
    const std::string log = out.str();
    EXPECT_NE(log.find("frames from MAC 02:00:00:00:00:01 dropped: test has that MAC"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("mac="), std::string::npos) << log;
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
    EXPECT_EQ(sw.stats().dropped_bad_src, 5u);
}

// Silence does not give a live port's MAC away: another port copying it is
// refused until the entry has aged out (kMacAgeMs); a detached port's MACs
// move at once.
TEST_F(SwitchTest, Switch_AnIdleGuestsMacStaysWithItsPortUntilItAgesOut) {
    loop.run_once(0);
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    loop.advance_clock_for_tests(10'000);  // a idle for 10 s
    loop.run_once(0);
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    EXPECT_EQ(sw.lookup(mac(1)), a.id());
    loop.advance_clock_for_tests(Switch::kMacAgeMs);
    loop.run_once(0);
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    EXPECT_EQ(sw.lookup(mac(1)), b.id()) << "aged out: the MAC may move";
    sw.detach(b);
    sw.input(c.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    EXPECT_EQ(sw.lookup(mac(1)), c.id()) << "its port gone: the MAC moves at once";
    sw.attach(b);
}

TEST_F(SwitchTest, Switch_LimitsMacsPerPortSoAStormCannotFillTheTable) {
    for (uint32_t i = 0; i < 1000; i++) {
        wire::MacAddr m{{0x02, 1, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                         static_cast<uint8_t>(i), 0}};
        sw.input(a.id(), frame(wire::MacAddr::broadcast(), m));
    }
    EXPECT_EQ(sw.stats().dropped_mac_limit, 1000u - Switch::kMaxMacsPerPort);
    // Another port still learns.
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(2)));
    EXPECT_EQ(sw.lookup(mac(2)), b.id());
}

TEST(Switch, APortMayLearnMoreMacsWhenItSaysSo) {
    // An uplink to a real LAN (ports/uplink_port.hpp) has a LAN's worth.
    struct WidePort : RecordingPort {
        size_t max_macs() const override { return 1000; }
    };
    core::EventLoop loop;
    Switch sw{loop};
    WidePort wide;
    RecordingPort guest;
    sw.attach(wide);
    sw.attach(guest);
    for (uint32_t i = 0; i < 1200; i++) {
        wire::MacAddr m{{0x02, 1, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                         static_cast<uint8_t>(i), 0}};
        sw.input(wide.id(), frame(wire::MacAddr::broadcast(), m));
        sw.input(guest.id(), frame(wire::MacAddr::broadcast(), wire::MacAddr{{0x02, 2, 0, 0, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)}}));
    }
    EXPECT_EQ(sw.stats().dropped_mac_limit, (1200u - 1000u) + (1200u - Switch::kMaxMacsPerPort));
}

wire::MacAddr storm_mac(uint32_t i) {
    return wire::MacAddr{{0x02, 1, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                          static_cast<uint8_t>(i), 0}};
}

// Runs the loop until its clock has moved past `ms` from `from`.
void run_past(core::EventLoop& loop, core::Millis from, core::Millis ms) {
    while (loop.now() - from <= ms) loop.run_once(static_cast<int>(ms / 2 + 1));
}

TEST_F(SwitchTest, Switch_AtTheLimitAPortReusesItsOwnAgedEntryAndOnlyThat) {
    sw.set_mac_age(100);
    loop.run_once(0);
    const core::Millis t0 = loop.now();
    for (uint32_t i = 0; i < Switch::kMaxMacsPerPort; i++)
        sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(i)));
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(2)));  // b's own, as old
    EXPECT_EQ(sw.stats().dropped_mac_limit, 0u);
    run_past(loop, t0, 100);
    // All but the first of a's MACs are heard again: only storm_mac(0) is
    // aged now. The clock does not move from here on (no run_once).
    for (uint32_t i = 1; i < Switch::kMaxMacsPerPort; i++)
        sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(i)));
    EXPECT_EQ(sw.lookup(storm_mac(0)), kNoPort);
    // A new MAC takes the aged entry's place...
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(1000)));
    EXPECT_EQ(sw.stats().dropped_mac_limit, 0u);
    EXPECT_EQ(sw.lookup(storm_mac(1000)), a.id());
    // ... and the next is refused: every other entry of a is live, and b's
    // aged entry is not a's to take.
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(1001)));
    EXPECT_EQ(sw.stats().dropped_mac_limit, 1u);
    EXPECT_EQ(sw.lookup(storm_mac(1001)), kNoPort);
    // A's live MACs still pass, and b can still learn anew.
    size_t before = c.frames.size();
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(5)));
    EXPECT_EQ(c.frames.size(), before + 1);
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(3)));
    EXPECT_EQ(sw.lookup(mac(3)), b.id());
    EXPECT_EQ(sw.stats().dropped_mac_limit, 1u);
}

TEST_F(SwitchTest, Switch_AtTheLimitTheLeastRecentlySeenEntryIsTheOneReused) {
    sw.set_mac_age(100);
    loop.run_once(0);
    const core::Millis t0 = loop.now();
    for (uint32_t i = 0; i < Switch::kMaxMacsPerPort; i++)
        sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(i)));
    run_past(loop, t0, 100);
    // Heard again in another order: 7 and 3 stay aged, and the two new
    // MACs take exactly their places.
    for (uint32_t i = Switch::kMaxMacsPerPort; i-- > 0;) {
        if (i != 7 && i != 3) sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(i)));
    }
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(2000)));
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(2001)));
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), storm_mac(2002)));
    EXPECT_EQ(sw.lookup(storm_mac(2000)), a.id());
    EXPECT_EQ(sw.lookup(storm_mac(2001)), a.id());
    EXPECT_EQ(sw.lookup(storm_mac(2002)), kNoPort);
    EXPECT_EQ(sw.stats().dropped_mac_limit, 1u);
    for (uint32_t i = 0; i < Switch::kMaxMacsPerPort; i++) {
        if (i == 7 || i == 3) continue;
        EXPECT_EQ(sw.lookup(storm_mac(i)), a.id()) << i;
    }
    // The port's list survives a detach and attach of another port.
    sw.detach(b);
    sw.attach(b);
    sw.input(b.id(), frame(wire::MacAddr::broadcast(), mac(9)));
    EXPECT_EQ(sw.lookup(mac(9)), b.id());
    EXPECT_EQ(sw.lookup(storm_mac(2000)), a.id());
}

TEST_F(SwitchTest, Switch_DetachForgetsThePortsMacs) {
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    EXPECT_EQ(sw.lookup(mac(1)), a.id());
    sw.detach(a);
    EXPECT_EQ(sw.lookup(mac(1)), kNoPort);
    size_t before = c.frames.size();
    sw.input(b.id(), frame(mac(1), mac(2)));  // unknown again: floods to c
    EXPECT_EQ(c.frames.size(), before + 1);
    EXPECT_EQ(a.frames.size(), 0u);
}

TEST_F(SwitchTest, Switch_DropsFramesLargerThanTheEgressPortMtu) {
    RecordingPort small(576);
    sw.attach(small);
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(1), 14 + 1000));
    EXPECT_EQ(b.frames.size(), 1u);
    EXPECT_EQ(small.frames.size(), 0u);
    EXPECT_EQ(small.stats().tx_dropped, 1u);
}

TEST_F(SwitchTest, Switch_ObserverSeesEveryForwardedFrame) {
    int seen = 0;
    sw.set_observer([&](wire::Bytes) { seen++; });
    sw.input(a.id(), frame(wire::MacAddr::broadcast(), mac(1)));
    sw.input(a.id(), std::vector<uint8_t>(5, 0));  // runt: not observed
    EXPECT_EQ(seen, 1);
}

// A 64 KiB TCP segment as a guest's kernel hands it to a TAP with TSO on:
// IPv4, the checksum partial, gso_size as given.
std::vector<uint8_t> gso_frame(const wire::MacAddr& dst, const wire::MacAddr& src,
                               uint16_t gso_size, wire::Offload& off) {
    const size_t payload = 65000;
    std::vector<uint8_t> f(wire::kEthHeaderLen + 20 + 20 + payload, 0x5a);
    wire::build_ethernet(f.data(), dst, src, wire::ethertype::ipv4);
    uint8_t* ip = f.data() + wire::kEthHeaderLen;
    wire::build_ipv4(ip, 0x0a00020f, 0x0a000210, 6, 20 + payload, 64, 1);
    wire::build_tcp(ip + 20, 40000, 80, 1, 1, 0x10, 512);
    wire::store16(ip + 20 + 16,
                  wire::csum_pseudo_partial(wire::IpAddr::v4(0x0a00020f),
                                            wire::IpAddr::v4(0x0a000210), 6, 20 + payload));
    off = wire::Offload{};
    off.csum_partial = true;
    off.csum_start = wire::kEthHeaderLen + 20;
    off.csum_offset = 16;
    off.hdr_len = wire::kEthHeaderLen + 40;
    off.gso_type = wire::Offload::gso_tcp4;
    off.gso_size = gso_size;
    return f;
}

struct OffloadSwitchTest : ::testing::Test {
    core::EventLoop loop;
    Switch sw{loop};
    RecordingPort guest{1500, true};  // a TAP with offload
    RecordingPort qemu{1500, false};  // a QEMU socket
    RecordingPort other{1500, true};  // another guest's offload TAP
    void SetUp() override {
        sw.attach(guest);
        sw.attach(qemu);
        sw.attach(other);
    }
};

TEST_F(OffloadSwitchTest, Switch_CutsASaneGsoFrameForAPortWithoutOffload) {
    wire::Offload off;
    auto f = gso_frame(mac(2), mac(1), 1460, off);  // unknown destination: flooded
    sw.input(guest.id(), f, off);
    EXPECT_EQ(qemu.frames.size(), (65000u + 1459) / 1460);
    for (auto& m : qemu.metas) EXPECT_FALSE(m.off.any());
    ASSERT_EQ(other.frames.size(), 1u);  // as it is
    EXPECT_EQ(other.metas[0].off.gso_size, 1460);
    EXPECT_EQ(sw.stats().dropped_bad_offload, 0u);
}

TEST_F(OffloadSwitchTest, Switch_DropsAOneByteGsoFrameInsteadOfMakingThousandsOfSegments) {
    wire::Offload off;
    auto f = gso_frame(mac(2), mac(1), 1, off);
    sw.input(guest.id(), f, off);
    EXPECT_EQ(qemu.frames.size(), 0u) << "one frame became " << qemu.frames.size();
    EXPECT_GE(sw.stats().dropped_bad_offload, 1u);
    EXPECT_EQ(qemu.stats().tx_dropped, 1u);
}

TEST_F(OffloadSwitchTest, Switch_PassesAGsoFrameOfASmallMssOnAsItIsOrCut) {
    // iperf3 -M 400 with timestamps: gso_size 348, 187 pieces.
    wire::Offload off;
    auto f = gso_frame(mac(2), mac(1), 348, off);
    sw.input(guest.id(), f, off);
    EXPECT_EQ(qemu.frames.size(), (65000u + 347) / 348);
    ASSERT_EQ(other.frames.size(), 1u);  // as it is
    EXPECT_EQ(other.metas[0].off.gso_size, 348);
    EXPECT_EQ(sw.stats().dropped_bad_offload, 0u);
}

TEST_F(OffloadSwitchTest, Switch_DropsATinyGsoFrameTowardAnOffloadPortToo) {
    // Learn `other`'s MAC so the frame goes to that port alone.
    sw.input(other.id(), frame(wire::MacAddr::broadcast(), mac(3)));
    wire::Offload off;
    auto f = gso_frame(mac(3), mac(1), 1, off);
    sw.input(guest.id(), f, off);
    EXPECT_EQ(other.frames.size(), 0u) << "another guest's kernel saw gso_size 1";
    EXPECT_EQ(sw.stats().dropped_bad_offload, 1u);
}

TEST_F(OffloadSwitchTest, Switch_DropsOffloadFieldsThatDoNotDescribeTheFrame) {
    sw.input(other.id(), frame(wire::MacAddr::broadcast(), mac(3)));
    wire::Offload off;
    auto f = gso_frame(mac(3), mac(1), 1460, off);
    wire::Offload bad = off;
    bad.csum_offset = 40;  // not the TCP checksum field
    sw.input(guest.id(), f, bad);
    bad = off;
    wire::store16(&f[wire::kEthHeaderLen + 2], 1000);  // IP length not the frame's
    sw.input(guest.id(), f, bad);
    EXPECT_EQ(other.frames.size(), 0u);
    EXPECT_EQ(sw.stats().dropped_bad_offload, 2u);
}

TEST_F(OffloadSwitchTest, Switch_DropsAGsoFrameSentToABroadcastAddress) {
    wire::Offload off;
    auto f = gso_frame(wire::MacAddr::broadcast(), mac(1), 1460, off);
    sw.input(guest.id(), f, off);
    EXPECT_EQ(qemu.frames.size(), 0u);
    EXPECT_EQ(other.frames.size(), 0u);
    EXPECT_EQ(sw.stats().dropped_bad_offload, 1u);
}

}  // namespace
}  // namespace usernet::sw
