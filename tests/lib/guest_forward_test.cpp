// CommandRunner (nat/guest_forward.*): commands run on a loopback TCP
// connection, are reaped when they exit, and a guest cannot start more
// than its share or faster than its rate.
#include "nat/guest_forward.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace usernet::nat {
namespace {

// Reads what fd says until EOF (at most ms).
std::string read_all(core::EventLoop& loop, int fd, int ms) {
    std::string out;
    const core::Millis end = core::monotonic_ms() + static_cast<core::Millis>(ms);
    while (core::monotonic_ms() < end) {
        loop.run_once(0);
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 20) != 1) continue;
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

TEST(CommandRunner, CommandRunner_TalksOverTcpAndIsReaped) {
    core::EventLoop loop;
    CommandRunner run(loop);
    // The command's stdin and stdout are a TCP socket (what smbd needs).
    int fd = run.spawn("read line; echo \"got $line\"; python3 -c "
                       "'import socket; s = socket.socket(fileno=0); print(s.type == socket.SOCK_STREAM, s.family == socket.AF_INET)'",
                       1);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(send(fd, "hello\n", 6, MSG_NOSIGNAL), 6);
    EXPECT_EQ(read_all(loop, fd, 5000), "got hello\nTrue True\n");
    close(fd);
    const core::Millis end = core::monotonic_ms() + 5000;
    while (run.running() > 0 && core::monotonic_ms() < end) loop.run_once(20);
    EXPECT_EQ(run.running(), 0u);
    EXPECT_EQ(run.started(), 1u);
}

// A host program that reaps children itself (SIGCHLD ignored, or its own
// waitpid(-1)) takes ours too: the runner then forgets the child at once,
// without spinning on its pidfd or signalling a group id that may be
// another process's by now.
TEST(CommandRunner, CommandRunner_AChildReapedByTheHostProgramIsForgotten) {
    core::EventLoop loop;
    CommandRunner run(loop);
    struct sigaction ign{}, old{};
    ign.sa_handler = SIG_IGN;
    ASSERT_EQ(sigaction(SIGCHLD, &ign, &old), 0);  // the kernel reaps every child
    int fd = run.spawn("exit 0", 1);
    ASSERT_GE(fd, 0);
    int wakeups = 0;
    const core::Millis end = core::monotonic_ms() + 5000;
    while (run.running() > 0 && core::monotonic_ms() < end) {
        loop.run_once(50);
        wakeups++;
    }
    sigaction(SIGCHLD, &old, nullptr);
    EXPECT_EQ(run.running(), 0u);
    EXPECT_LT(wakeups, 50) << "spun on the pidfd";
    // The guest's share is free again (past the spawn rate's burst first).
    loop.advance_clock_for_tests(60'000);
    loop.run_once(0);
    for (size_t i = 0; i < CommandRunner::kMaxCommandsPerGuest; i++) {
        int f = run.spawn("exec sleep 30", 1);
        ASSERT_GE(f, 0) << i;
        close(f);
    }
    close(fd);
}

TEST(CommandRunner, CommandRunner_LimitsPerGuestAndInAll) {
    core::EventLoop loop;
    std::vector<int> fds;
    {
        CommandRunner run(loop);
        for (size_t i = 0; i < CommandRunner::kMaxCommandsPerGuest; i++) {
            int fd = run.spawn("exec sleep 30", 1);
            ASSERT_GE(fd, 0) << i;
            fds.push_back(fd);
        }
        EXPECT_EQ(run.spawn("exec sleep 30", 1), -EAGAIN);  // this guest's share
        // Others still may, up to kMaxCommands in all.
        for (uint32_t owner = 2; run.running() < CommandRunner::kMaxCommands; owner++) {
            int fd = run.spawn("exec sleep 30", owner);
            ASSERT_GE(fd, 0);
            fds.push_back(fd);
        }
        EXPECT_EQ(run.spawn("exec sleep 30", 99), -EAGAIN);
        // Stopping kills them (the destructor waits for them).
    }
    for (int fd : fds) {
        char c;
        EXPECT_EQ(recv(fd, &c, 1, MSG_DONTWAIT), 0);  // the command is gone: EOF
        close(fd);
    }
}

TEST(CommandRunner, CommandRunner_SpawnRateIsLimitedPerGuest) {
    core::EventLoop loop;
    CommandRunner run(loop);
    // A guest that connects and resets over and over: each command exits at
    // once, but the guest gets only its burst, then kSpawnPerSecond.
    // The loop's clock runs on while commands start and exit (slowly under
    // a sanitizer), so the bucket may refill by a token or two meanwhile.
    const core::Millis start = loop.now();
    uint32_t ok = 0;
    for (uint32_t i = 0; i < CommandRunner::kSpawnBurst + 10; i++) {
        int fd = run.spawn("exit 0", 7);
        if (fd >= 0) {
            ok++;
            close(fd);
        }
        const core::Millis end = core::monotonic_ms() + 2000;
        while (run.running() > 0 && core::monotonic_ms() < end) loop.run_once(10);
    }
    const auto refilled =
        static_cast<uint32_t>((loop.now() - start) * CommandRunner::kSpawnPerSecond / 1000);
    EXPECT_GE(ok, CommandRunner::kSpawnBurst);
    EXPECT_LE(ok, CommandRunner::kSpawnBurst + refilled);
    EXPECT_LT(ok, CommandRunner::kSpawnBurst + 10);
    loop.advance_clock_for_tests(1000);
    loop.run_once(0);
    EXPECT_GE(run.spawn("exit 0", 7), 0);
}

}  // namespace
}  // namespace usernet::nat
