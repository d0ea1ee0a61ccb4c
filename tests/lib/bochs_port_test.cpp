// The Bochs attachment (--bochs PORT[,count=N][,mtu=N]): its option text,
// the port numbering (instance i: Bochs on PORT+2i, usernet on PORT+2i+1),
// the bochsrc lines, and the instances over real loopback UDP sockets
// standing in for Bochs (bound where Bochs binds, sending where it sends):
// each instance is its own switch port, frames toward Bochs are padded to
// 60 bytes, datagrams from anywhere else are dropped.
#include "ports/bochs_port.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "app/options.hpp"
#include "ports/dgram_port.hpp"

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;

TEST(BochsSpec, ParsesPortCountAndMtuInAnyOrder) {
    std::string err;
    auto s = parse_bochs_spec("40000", &err);
    ASSERT_TRUE(s) << err;
    EXPECT_EQ(s->base_port, 40000);
    EXPECT_EQ(s->count, 1u);
    EXPECT_FALSE(s->mtu);
    s = parse_bochs_spec("40000,count=3,mtu=1400", &err);
    ASSERT_TRUE(s) << err;
    EXPECT_EQ(s->count, 3u);
    EXPECT_EQ(s->mtu, 1400u);
    s = parse_bochs_spec("1,mtu=68,count=64", &err);
    ASSERT_TRUE(s) << err;
    EXPECT_EQ(s->base_port, 1);
    EXPECT_EQ(s->count, 64u);
    EXPECT_EQ(s->mtu, 68u);
    // the last instance's usernet port is 65535 exactly
    s = parse_bochs_spec("65532,count=2", &err);
    ASSERT_TRUE(s) << err;
}

TEST(BochsSpec, RefusesBadTextWithWhatToDo) {
    struct Case {
        const char* text;
        const char* says;
    } cases[] = {
        {"", "not a UDP port"},
        {"0", "not a UDP port"},
        {"65536", "not a UDP port"},
        {"-1", "not a UDP port"},
        {"40000x", "not a UDP port"},
        // Bochs 2.7 would read this ethdev as port 127 (atoi)
        {"127.0.0.1:40000", "not a UDP port"},
        {"localhost:40000", "not a UDP port"},
        {"65535", "past 65535"},
        {"65533,count=2", "past 65535"},
        {"40000,count=0", "count '0'"},
        {"40000,count=65", "count '65'"},
        {"40000,count=", "count ''"},
        {"40000,count=2,count=3", "count is given twice"},
        {"40000,mtu=67", "MTU '67'"},
        {"40000,mtu=1501", "MTU '1501'"},
        {"40000,mtu=1500,mtu=1400", "mtu is given twice"},
        {"40000,host=x", "unknown parameter 'host=x'"},
        {"40000,count", "unknown parameter 'count'"},
        {"40000,", "unknown parameter ''"},
    };
    for (const Case& c : cases) {
        std::string err;
        EXPECT_FALSE(parse_bochs_spec(c.text, &err)) << c.text;
        EXPECT_NE(err.find(c.says), std::string::npos) << c.text << ": " << err;
        EXPECT_NE(err.find("; "), std::string::npos) << "no remedy: " << err;
    }
}

TEST(BochsPorts, InstanceIUsesBasePlusTwoIAndTheNextPort) {
    EXPECT_EQ(bochs_ethdev_port(40000, 0), 40000);
    EXPECT_EQ(bochs_usernet_port(40000, 0), 40001);
    EXPECT_EQ(bochs_ethdev_port(40000, 3), 40006);
    EXPECT_EQ(bochs_usernet_port(40000, 3), 40007);
    EXPECT_EQ(bochs_mac(0).to_string(), "b0:c4:20:00:00:00");
    EXPECT_EQ(bochs_mac(11).to_string(), "b0:c4:20:00:00:0b");
    auto lines = bochsrc_lines(40000, 2);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0], "pci: enabled=1, chipset=i440fx, slot1=ne2k");
    // a bare port: Bochs 2.7 reads "127.0.0.1:PORT" as port 127
    EXPECT_EQ(lines[1], "ne2k: enabled=1, mac=b0:c4:20:00:00:02, ethmod=socket, ethdev=40004");
    DgramConfig c = bochs_dgram_config(40000, 2, 1500);
    EXPECT_EQ(c.kind, DgramKind::udp);
    EXPECT_EQ(c.local.to_string(), "127.0.0.1:40005");
    ASSERT_TRUE(c.remote);
    EXPECT_EQ(c.remote->to_string(), "127.0.0.1:40004");
    EXPECT_TRUE(c.peer_only);
}

// ---------------------------------------------------------------- options

app::Config parse(std::vector<std::string> args) { return app::parse_options(args); }

TEST(BochsOption, BecomesAnAttachmentInCommandLineOrder) {
    auto c = parse({"--socket", "/tmp/x.sock", "--bochs", "40000,count=2", "--bochs", "41000"});
    ASSERT_EQ(c.attachments.size(), 3u);
    const app::Attachment& a = c.attachments[1];
    EXPECT_EQ(a.kind, app::AttachmentKind::bochs);
    EXPECT_EQ(a.bochs_port, 40000);
    EXPECT_EQ(a.bochs_count, 2u);
    EXPECT_EQ(a.mtu, 1500u);
    EXPECT_EQ(c.attachments[2].bochs_port, 41000);
    EXPECT_EQ(c.attachments[2].bochs_count, 1u);
}

TEST(BochsOption, MtuFromTheSuffixElseMtuCappedAt1500) {
    EXPECT_EQ(parse({"--bochs", "40000,mtu=1400"}).attachments[0].mtu, 1400u);
    EXPECT_EQ(parse({"--mtu", "1200", "--bochs", "40000"}).attachments[0].mtu, 1200u);
    EXPECT_EQ(parse({"--mtu", "9000", "--bochs", "40000"}).attachments[0].mtu, 1500u);
    EXPECT_EQ(parse({"--mtu", "9000", "--bochs", "40000,mtu=1000"}).attachments[0].mtu, 1000u);
}

TEST(BochsOption, OverlappingPortRangesAreRefused) {
    for (auto args : std::vector<std::vector<std::string>>{
             {"--bochs", "40000", "--bochs", "40000"},
             {"--bochs", "40000,count=2", "--bochs", "40002"},
             {"--bochs", "40003", "--bochs", "40000,count=2"},
             {"--bochs", "40001", "--bochs", "40000"}}) {
        try {
            parse(args);
            ADD_FAILURE() << args[1] << " " << args[3] << " accepted";
        } catch (const app::OptionError& e) {
            EXPECT_EQ(e.option(), "--bochs");
            EXPECT_NE(std::string(e.what()).find("same UDP ports"), std::string::npos) << e.what();
        }
    }
    // adjacent ranges are fine
    EXPECT_EQ(parse({"--bochs", "40000,count=2", "--bochs", "40004"}).attachments.size(), 2u);
}

TEST(BochsOption, BadValueNamesTheOption) {
    try {
        parse({"--bochs", "127.0.0.1:40000"});
        ADD_FAILURE() << "accepted";
    } catch (const app::OptionError& e) {
        EXPECT_EQ(e.option(), "--bochs");
        EXPECT_EQ(std::string(e.what()).rfind("--bochs: ", 0), 0u) << e.what();
    }
}

// ---------------------------------------------------------------- sockets

class RecordingPort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta& meta) override {
        frames.emplace_back(frame.begin(), frame.end());
        ingress.push_back(meta.ingress);
    }
    uint32_t mtu() const override { return 1500; }
    std::string describe() const override { return "recorder"; }
    std::vector<Frame> frames;
    std::vector<sw::PortId> ingress;
};

Frame make_frame(size_t len, wire::MacAddr dst, wire::MacAddr src, uint8_t fill) {
    Frame f(len);
    for (size_t i = 0; i < len; i++) f[i] = static_cast<uint8_t>(fill + i * 3);
    dst.store(f.data());
    src.store(f.data() + 6);
    f[12] = 0x08;
    f[13] = 0x06;
    return f;
}

// A UDP socket on 127.0.0.1:port, as Bochs binds it (non-blocking).
int udp_socket(uint16_t port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void send_to(int fd, uint16_t port, const Frame& f) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(sendto(fd, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
              static_cast<ssize_t>(f.size()))
        << strerror(errno);
}

struct BochsSocketsTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    RecordingPort rec;
    uint16_t base = 0;
    std::vector<int> fds;  // the stand-in Bochs instances, fds[i] on base + 2i

    void SetUp() override { sw.attach(rec); }
    void TearDown() override {
        for (int fd : fds) close(fd);
    }

    // Picks a base port whose 2*count ports are free, and binds the Bochs
    // side of each instance there.
    std::unique_ptr<BochsAttachment> start(uint32_t count) {
        std::mt19937 rng(std::random_device{}());
        for (int attempt = 0; attempt < 50; ++attempt) {
            base = static_cast<uint16_t>(20000 + 2 * (rng() % 5000));
            std::vector<int> got;
            for (uint32_t i = 0; i < count; ++i) {
                int fd = udp_socket(bochs_ethdev_port(base, i));
                if (fd < 0) break;
                got.push_back(fd);
            }
            if (got.size() == count) {
                BochsSpec spec;
                spec.base_port = base;
                spec.count = count;
                try {
                    auto att = std::make_unique<BochsAttachment>(loop, sw, spec, 1500);
                    fds = got;
                    return att;
                } catch (const std::exception&) {
                }
            }
            for (int fd : got) close(fd);
        }
        ADD_FAILURE() << "no free ports";
        return nullptr;
    }

    bool run_until(const std::function<bool()>& pred) {
        for (int i = 0; i < 200 && !pred(); i++) loop.run_once(10);
        return pred();
    }

    // The next datagram on fd within ~2 s (running the loop meanwhile), or empty.
    Frame receive(int fd) {
        for (int i = 0; i < 400; i++) {
            loop.run_once(0);
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 5) <= 0) continue;
            uint8_t buf[2048];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n >= 0) return Frame(buf, buf + n);
        }
        return {};
    }

    bool nothing_on(int fd) {
        for (int i = 0; i < 20; i++) loop.run_once(5);
        uint8_t buf[2048];
        return recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0;
    }
};

TEST_F(BochsSocketsTest, EachInstanceIsItsOwnSwitchPortOnItsOwnPorts) {
    auto att = start(3);
    ASSERT_TRUE(att);
    ASSERT_EQ(att->instance_count(), 3u);
    for (uint32_t i = 0; i < 3; ++i) {
        EXPECT_EQ(att->instance(i).local_address().to_string(),
                  "127.0.0.1:" + std::to_string(base + 2 * i + 1));
        ASSERT_TRUE(att->instance(i).peer());
        EXPECT_EQ(att->instance(i).peer()->to_string(), "127.0.0.1:" + std::to_string(base + 2 * i));
    }
    // What each instance sends (to its ethdev + 1) arrives on its own port.
    for (uint32_t i = 0; i < 3; ++i) {
        Frame f = make_frame(100 + i, wire::MacAddr{{0x02, 0, 0, 0, 0, 0x99}}, bochs_mac(i),
                             static_cast<uint8_t>(i));
        send_to(fds[i], bochs_usernet_port(base, i), f);
        ASSERT_TRUE(run_until([&] { return rec.frames.size() == i + 1; }));
        EXPECT_EQ(rec.frames.back(), f);
        EXPECT_EQ(rec.ingress.back(), att->instance(i).id());
    }
    EXPECT_NE(att->instance(0).id(), att->instance(1).id());
}

TEST_F(BochsSocketsTest, FramesToBochsArriveAtTheRightInstancePaddedTo60) {
    auto att = start(2);
    ASSERT_TRUE(att);
    // Both instances announce their MACs (the switch learns them).
    for (uint32_t i = 0; i < 2; ++i)
        send_to(fds[i], bochs_usernet_port(base, i),
                make_frame(60, wire::MacAddr{{0x02, 0, 0, 0, 0, 0x99}}, bochs_mac(i), 1));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 2; }));
    // (each saw the other's, flooded: nobody has shown 02:..:99 yet)
    EXPECT_EQ(receive(fds[1]).size(), 60u);
    EXPECT_EQ(receive(fds[0]).size(), 60u);
    EXPECT_TRUE(nothing_on(fds[0]));
    EXPECT_TRUE(nothing_on(fds[1]));

    // A 42-byte ARP reply to instance 1: it alone gets it, zero-padded to 60.
    Frame arp = make_frame(42, bochs_mac(1), wire::MacAddr{{0x02, 0, 0, 0, 0, 0x99}}, 7);
    sw.input(rec.id(), arp);
    Frame got = receive(fds[1]);
    Frame want = arp;
    want.resize(60, 0);
    EXPECT_EQ(got, want);
    EXPECT_TRUE(nothing_on(fds[0]));

    // A full-size frame goes out whole; a broadcast reaches both.
    Frame full = make_frame(1514, bochs_mac(0), wire::MacAddr{{0x02, 0, 0, 0, 0, 0x99}}, 9);
    sw.input(rec.id(), full);
    EXPECT_EQ(receive(fds[0]), full);
    Frame bcast = make_frame(42, wire::MacAddr::broadcast(), wire::MacAddr{{0x02, 0, 0, 0, 0, 0x99}}, 3);
    sw.input(rec.id(), bcast);
    Frame bpad = bcast;
    bpad.resize(60, 0);
    EXPECT_EQ(receive(fds[0]), bpad);
    EXPECT_EQ(receive(fds[1]), bpad);

    // Instance 0's broadcast reaches instance 1 (one LAN), padded.
    Frame from0 = make_frame(50, wire::MacAddr::broadcast(), bochs_mac(0), 5);
    send_to(fds[0], bochs_usernet_port(base, 0), from0);
    Frame pad0 = from0;
    pad0.resize(60, 0);
    EXPECT_EQ(receive(fds[1]), pad0);
    EXPECT_TRUE(nothing_on(fds[0]));
}

TEST_F(BochsSocketsTest, DatagramsFromAnyOtherSourceAreDropped) {
    auto att = start(2);
    ASSERT_TRUE(att);
    // instance 1's Bochs socket sending to instance 0's usernet port, and
    // an unbound socket: neither is instance 0's Bochs
    Frame f = make_frame(60, wire::MacAddr::broadcast(), bochs_mac(1), 2);
    send_to(fds[1], bochs_usernet_port(base, 0), f);
    int stranger = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_to(stranger, bochs_usernet_port(base, 0), f);
    close(stranger);
    ASSERT_TRUE(run_until([&] { return att->instance(0).dgram_stats().foreign == 2; }));
    EXPECT_TRUE(rec.frames.empty());
}

TEST_F(BochsSocketsTest, APortInUseIsAStartupErrorNamingTheInstance) {
    auto att = start(1);
    ASSERT_TRUE(att);
    // The same ports again: instance 0's usernet port is taken.
    BochsSpec spec;
    spec.base_port = base;
    spec.count = 1;
    try {
        BochsAttachment again(loop, sw, spec, 1500);
        ADD_FAILURE() << "bound twice";
    } catch (const std::runtime_error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("Bochs instance 0 (ethdev=" + std::to_string(base) + ")"),
                  std::string::npos)
            << what;
    }
}

}  // namespace
}  // namespace usernet::ports
