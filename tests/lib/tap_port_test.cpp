// The TAP attachment and the namespace dance: a TAP created inside a
// scratch network namespace comes up with the --config-net address, route,
// MTU and queue length; frames flow both ways through TapPort; the errors a
// user meets (unknown namespace, missing or busy TAP) say what is wrong.
// Tests that need CAP_NET_ADMIN / CAP_SYS_ADMIN skip without them, except
// under CI (CI=true), where they fail.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ports/netns.hpp"
#include "ports/tap_port.hpp"
#include "wire/arp.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"

namespace usernet::ports {
namespace {

// A network namespace held by a child process that waits for us to go.
class ScratchNetns {
public:
    ScratchNetns() {
        int ready[2];
        if (pipe2(keep_, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) return;
        pid_ = fork();
        if (pid_ == 0) {
            close(keep_[1]);
            close(ready[0]);
            char ok = unshare(CLONE_NEWNET) == 0 ? 1 : 0;
            if (write(ready[1], &ok, 1) != 1) _exit(1);
            char b;
            while (read(keep_[0], &b, 1) > 0) {
            }
            _exit(0);
        }
        close(keep_[0]);
        close(ready[1]);
        char ok = 0;
        if (read(ready[0], &ok, 1) != 1) ok = 0;
        close(ready[0]);
        ok_ = ok == 1;
    }
    ~ScratchNetns() {
        close(keep_[1]);
        if (pid_ > 0) waitpid(pid_, nullptr, 0);
    }
    bool ok() const { return ok_; }
    std::string pid() const { return std::to_string(pid_); }
    std::string path() const { return "/proc/" + pid() + "/ns/net"; }

private:
    int keep_[2] = {-1, -1};
    pid_t pid_ = -1;
    bool ok_ = false;
};

// Runs the calling thread inside a namespace for the guard's lifetime.
class InNetns {
public:
    explicit InNetns(const std::string& path) {
        own_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        int t = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        EXPECT_EQ(setns(t, CLONE_NEWNET), 0) << strerror(errno);
        close(t);
    }
    ~InNetns() {
        if (setns(own_, CLONE_NEWNET) != 0) std::abort();
        close(own_);
    }

private:
    int own_;
};

bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci && (std::string(ci) == "true" || std::string(ci) == "1" || std::string(ci) == "yes");
}

// Without the privileges these tests skip -- except under CI (CI=true),
// where the tests run as root and a skip must not pass.
#define REQUIRE_SCRATCH_NETNS(ns)                                                       \
    ScratchNetns ns;                                                                    \
    if (!ns.ok() && in_ci()) FAIL() << "CI=true: cannot create a network namespace (run as root)"; \
    if (!ns.ok()) GTEST_SKIP() << "cannot create a network namespace (needs privileges)"

ifreq ifr_for(const char* name) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    return ifr;
}

class RecordingPort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "recorder"; }
    std::vector<std::vector<uint8_t>> frames;
};

TEST(Netns, Netns_PathForNamePidAndPath) {
    EXPECT_EQ(netns_path("guest"), "/run/netns/guest");
    EXPECT_EQ(netns_path("1234"), "/proc/1234/ns/net");
    EXPECT_EQ(netns_path("/var/run/netns/x"), "/var/run/netns/x");
}

TEST(Netns, Netns_UnknownNamespaceIsOneClearSentence) {
    try {
        open_tap_in_netns("usernet-no-such-ns", "tap0", 65520, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(),
                     "network namespace 'usernet-no-such-ns' not found: "
                     "/run/netns/usernet-no-such-ns does not exist");
    }
    EXPECT_THROW(open_tap_in_netns("999999999", "tap0", 65520, nullptr), std::runtime_error);
}

TEST(Netns, Netns_NotANamespaceFileIsRefused) {
    REQUIRE_SCRATCH_NETNS(ns);
    try {
        open_tap_in_netns("/proc/self/status", "tap0", 65520, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("is not a network namespace"), std::string::npos)
            << e.what();
    }
}

TEST(Netns, NetnsTap_ConfigNetGivesAddressRouteMtuQueueAndLinkUp) {
    REQUIRE_SCRATCH_NETNS(ns);
    TapNetConfig cfg;  // 10.0.2.15/24 via 10.0.2.2
    std::string name;
    int fd = open_tap_in_netns(ns.pid(), "tap0", 65520, &cfg, &name);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(name, "tap0");
    EXPECT_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    {
        InNetns in(ns.path());
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifreq ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
        EXPECT_TRUE(ifr.ifr_flags & IFF_UP);
        ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFMTU, &ifr), 0);
        EXPECT_EQ(ifr.ifr_mtu, 65520);
        ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFTXQLEN, &ifr), 0);
        EXPECT_EQ(static_cast<uint32_t>(ifr.ifr_qlen), kTapTxQueueLen);
        ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFADDR, &ifr), 0);
        EXPECT_EQ(ntohl(reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr)->sin_addr.s_addr),
                  0x0a00020fu);
        ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFNETMASK, &ifr), 0);
        EXPECT_EQ(ntohl(reinterpret_cast<sockaddr_in*>(&ifr.ifr_netmask)->sin_addr.s_addr),
                  0xffffff00u);
        ifr = ifr_for("lo");
        ASSERT_EQ(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
        EXPECT_TRUE(ifr.ifr_flags & IFF_UP) << "lo is up too";
        close(s);

        std::ifstream routes("/proc/thread-self/net/route");
        std::string line;
        bool found = false;
        while (std::getline(routes, line)) {
            std::istringstream f(line);
            std::string iface, dst, gw;
            f >> iface >> dst >> gw;
            if (iface == "tap0" && dst == "00000000") {
                found = true;
                EXPECT_EQ(gw, "0202000A");  // 10.0.2.2, little-endian hex
            }
        }
        EXPECT_TRUE(found) << "default route via tap0";
    }
    close(fd);
}

TEST(Netns, NetnsTap_WithoutConfigTheLinkIsUpAndUnaddressed) {
    REQUIRE_SCRATCH_NETNS(ns);
    int fd = open_tap_in_netns(ns.path(), "tap0", 1500, nullptr);
    {
        InNetns in(ns.path());
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifreq ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
        EXPECT_TRUE(ifr.ifr_flags & IFF_UP);
        ifr = ifr_for("tap0");
        ASSERT_EQ(ioctl(s, SIOCGIFMTU, &ifr), 0);
        EXPECT_EQ(ifr.ifr_mtu, 1500);
        ifr = ifr_for("tap0");
        EXPECT_NE(ioctl(s, SIOCGIFADDR, &ifr), 0);
        close(s);
    }
    close(fd);
}

TEST(Netns, NetnsTap_SecondTapOfTheSameNameIsInUse) {
    REQUIRE_SCRATCH_NETNS(ns);
    int fd = open_tap_in_netns(ns.pid(), "tap0", 65520, nullptr);
    try {
        open_tap_in_netns(ns.pid(), "tap0", 65520, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "TAP 'tap0' in network namespace '" + ns.pid() +
                                             "' is in use by another process");
    }
    close(fd);
}

TEST(Netns, NetnsTap_TheThreadIsBackInItsOwnNamespaceAfterAnError) {
    REQUIRE_SCRATCH_NETNS(ns);
    auto ino = [](const char* p) {
        struct stat st {};
        stat(p, &st);
        return st.st_ino;
    };
    auto before = ino("/proc/thread-self/ns/net");
    TapNetConfig bad;
    bad.prefix_len = 40;
    EXPECT_THROW(open_tap_in_netns(ns.pid(), "tap0", 65520, &bad), std::runtime_error);
    EXPECT_EQ(ino("/proc/thread-self/ns/net"), before);
    int fd = open_tap_in_netns(ns.pid(), "tap0", 65520, nullptr);
    EXPECT_EQ(ino("/proc/thread-self/ns/net"), before);
    close(fd);
}

TEST(TapPort, OpenExistingTap_MissingDeviceIsOneClearSentence) {
    try {
        open_existing_tap("usernetnx0");
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("TAP device 'usernetnx0' does not exist"),
                  std::string::npos)
            << e.what();
    }
}

TEST(TapPort, OpenExistingTap_AttachesToATapAndRefusesTunAndBusy) {
    REQUIRE_SCRATCH_NETNS(ns);
    InNetns in(ns.path());
    // A persistent TAP and a persistent TUN, as `ip tuntap add` makes them.
    for (auto [name, flags] : {std::pair{"ptap0", IFF_TAP}, std::pair{"ptun0", IFF_TUN}}) {
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        ifreq ifr = ifr_for(name);
        ifr.ifr_flags = static_cast<short>(flags | IFF_NO_PI);
        ASSERT_EQ(ioctl(fd, TUNSETIFF, &ifr), 0) << strerror(errno);
        ASSERT_EQ(ioctl(fd, TUNSETPERSIST, 1), 0);
        close(fd);
    }
    int fd = open_existing_tap("ptap0");
    EXPECT_GE(fd, 0);
    try {
        open_existing_tap("ptap0");
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "TAP 'ptap0' is in use by another process");
    }
    try {
        open_existing_tap("ptun0");
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("is not a TAP device"), std::string::npos)
            << e.what();
    }
    close(fd);
}

TEST(TapPort, TapPort_FramesFlowBetweenTheNamespaceAndTheSwitch) {
    REQUIRE_SCRATCH_NETNS(ns);
    core::EventLoop loop;
    sw::Switch sw(loop);
    RecordingPort rec;
    sw.attach(rec);
    TapNetConfig cfg;
    TapPort tap(loop, sw, open_tap_in_netns(ns.pid(), "tap0", 65520, &cfg), "tap0 in test", 65520);

    // A UDP datagram to the gateway: the kernel first asks for its MAC.
    int udp;
    {
        InNetns in(ns.path());
        udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    to.sin_addr.s_addr = htonl(0x0a000202);
    const char payload[] = "hello through the tap";
    ASSERT_EQ(sendto(udp, payload, sizeof(payload), 0, reinterpret_cast<sockaddr*>(&to),
                     sizeof(to)),
              static_cast<ssize_t>(sizeof(payload)));

    auto find = [&](auto pred) -> const std::vector<uint8_t>* {
        for (int i = 0; i < 300; i++) {
            for (const auto& f : rec.frames)
                if (pred(f)) return &f;
            loop.run_once(10);
        }
        return nullptr;
    };
    const auto* req = find([](const std::vector<uint8_t>& f) {
        auto eth = wire::EthernetView::parse(f);
        return eth && eth->ethertype() == wire::ethertype::arp;
    });
    ASSERT_NE(req, nullptr) << "no ARP request from the namespace";
    auto eth = wire::EthernetView::parse(*req);
    auto arp = wire::ArpView::parse(eth->payload());
    ASSERT_TRUE(arp);
    EXPECT_EQ(arp->sender_ip(), 0x0a00020fu);
    EXPECT_EQ(arp->target_ip(), 0x0a000202u);
    wire::MacAddr tap_mac = eth->src();

    // Answer it with a 42-byte ARP reply: the port pads it and the kernel
    // takes it, then sends the datagram to the gateway's MAC.
    const wire::MacAddr gw{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
    std::vector<uint8_t> reply(42);
    wire::build_ethernet(reply.data(), tap_mac, gw, wire::ethertype::arp);
    wire::build_arp(reply.data() + 14, wire::arpop::reply, gw, 0x0a000202, tap_mac, 0x0a00020f);
    sw.input(rec.id(), reply);

    const auto* dgram = find([&](const std::vector<uint8_t>& f) {
        auto e = wire::EthernetView::parse(f);
        if (!e || e->ethertype() != wire::ethertype::ipv4 || e->dst() != gw) return false;
        auto ip = wire::Ipv4View::parse(e->payload());
        return ip && ip->protocol() == wire::ipproto::udp && ip->dst() == 0x0a000202u;
    });
    ASSERT_NE(dgram, nullptr) << "the datagram never left the namespace";
    EXPECT_EQ(std::memcmp(dgram->data() + dgram->size() - sizeof(payload), payload,
                          sizeof(payload)),
              0);
    EXPECT_GE(tap.stats().rx_frames, 2u);
    EXPECT_EQ(tap.stats().tx_dropped, 0u);
    close(udp);
}

}  // namespace
}  // namespace usernet::ports
