// The event loop: descriptors, timers in deadline order, re-arming,
// cancelling, deferred work running once per batch.
#include "core/event_loop.hpp"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <unistd.h>

#include <vector>

namespace usernet::core {
namespace {

TEST(EventLoop, EventLoop_TimersFireInDeadlineOrder) {
    EventLoop loop;
    std::vector<int> order;
    Timer t1([&] { order.push_back(1); });
    Timer t2([&] { order.push_back(2); });
    Timer t3([&] { order.push_back(3); });
    loop.arm(t2, 20);
    loop.arm(t1, 5);
    loop.arm(t3, 40);
    Timer stop([&] { loop.stop(); });
    loop.arm(stop, 60);
    loop.run();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

// The fuzz harnesses' clock: advancing it fires a timer hours away at the
// next wakeup, without waiting, and now() moves with it.
TEST(EventLoop, EventLoop_AdvancedClockFiresLaterTimersAtOnce) {
    EventLoop loop;
    int fired = 0;
    Timer t([&] { fired++; });
    loop.arm(t, 3'600'000);
    Millis before = loop.now();
    loop.run_once(0);
    EXPECT_EQ(fired, 0);
    loop.advance_clock_for_tests(3'600'000);
    loop.run_once(0);
    EXPECT_EQ(fired, 1);
    EXPECT_GE(loop.now(), before + 3'600'000);
}

TEST(EventLoop, EventLoop_CancelledAndRearmedTimersFireOnceAtTheNewTime) {
    EventLoop loop;
    int fired_a = 0, fired_b = 0;
    Timer a([&] { fired_a++; });
    Timer b([&] { fired_b++; });
    loop.arm(a, 5);
    loop.cancel(a);
    loop.cancel(a);  // idempotent
    loop.arm(b, 50);
    loop.arm(b, 1);  // re-arm earlier
    EXPECT_TRUE(b.armed());
    Millis start = monotonic_ms();
    while (fired_b == 0 && monotonic_ms() - start < 1000) loop.run_once(10);
    EXPECT_EQ(fired_a, 0);
    EXPECT_EQ(fired_b, 1);
    EXPECT_FALSE(b.armed());
}

TEST(EventLoop, EventLoop_DestroyedTimerLeavesTheHeap) {
    EventLoop loop;
    int fired = 0;
    {
        Timer t([&] { fired++; });
        loop.arm(t, 1);
    }
    Timer other([&] { fired += 10; });
    loop.arm(other, 2);
    Millis start = monotonic_ms();
    while (fired == 0 && monotonic_ms() - start < 1000) loop.run_once(10);
    EXPECT_EQ(fired, 10);
}

struct PipeReader : IoHandler {
    int fd;
    int reads = 0;
    void on_io(uint32_t) override {
        char buf[64];
        while (read(fd, buf, sizeof buf) > 0) {
        }
        reads++;
    }
};

struct CountingDeferred : Deferred {
    int runs = 0;
    void run_deferred() override { runs++; }
};

TEST(EventLoop, EventLoop_DispatchesReadableDescriptorsAndRunsDeferredOncePerBatch) {
    EventLoop loop;
    int p[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
    PipeReader r;
    r.fd = p[0];
    loop.add(p[0], EPOLLIN, &r);
    CountingDeferred d;
    loop.defer(d);
    loop.defer(d);  // queued once
    ASSERT_EQ(write(p[1], "x", 1), 1);
    loop.run_once(100);
    EXPECT_EQ(r.reads, 1);
    EXPECT_EQ(d.runs, 1);
    loop.run_once(0);
    EXPECT_EQ(d.runs, 1);
    loop.remove(p[0]);
    close(p[0]);
    close(p[1]);
}

}  // namespace
}  // namespace usernet::core
