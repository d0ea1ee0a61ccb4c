// The VDE attachment: the request parser (every field checked, every
// prefix of a good request incomplete, never bad), the output queue, and
// the switch over real sockets doing libvdeplug's handshake: frames both
// ways, ports leaving with their socket files, bad requests counted and
// closed, stale and live ctl sockets, and what is left on disk at exit.
#include "ports/vde_port.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "app/options.hpp"
#include "wire/addr.hpp"

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;

Frame make_frame(size_t len, uint8_t src_last, uint8_t fill, bool broadcast = true) {
    Frame f(len);
    for (size_t i = 0; i < len; i++) f[i] = static_cast<uint8_t>(fill + i * 7);
    wire::MacAddr dst = broadcast ? wire::MacAddr::broadcast()
                                  : wire::MacAddr{{0x02, 0, 0, 0, 0, 0x77}};
    dst.store(f.data());
    wire::MacAddr{{0x02, 0, 0, 0, 0, src_last}}.store(f.data() + 6);
    f[12] = 0x08;
    f[13] = 0x00;
    return f;
}

std::vector<uint8_t> request_v1(const std::string& path, uint32_t type, const std::string& d) {
    std::vector<uint8_t> b(kVdeV1Fixed + d.size(), 0);
    uint32_t magic = kVdeMagic;
    std::memcpy(b.data(), &magic, 4);
    std::memcpy(b.data() + 4, &type, 4);
    sa_family_t fam = AF_UNIX;
    std::memcpy(b.data() + 14, &fam, sizeof fam);
    std::memcpy(b.data() + 14 + sizeof fam, path.data(), path.size());
    std::memcpy(b.data() + kVdeV1Fixed, d.data(), d.size());
    return b;
}

// ---------------------------------------------------------------- parser

TEST(VdeRequest, ParsesTheRequestLibvdeplugSends) {
    auto b = make_vde_request_v3("/tmp/sw/.01234-00000", "QEMU user=me PID=1234");
    ASSERT_EQ(b.size(), kVdeV3Fixed + 21);
    VdeParse p = parse_vde_request(b);
    ASSERT_EQ(p.status, VdeParse::ok) << p.error;
    EXPECT_EQ(p.req.version, 3);
    EXPECT_EQ(p.req.type, 0u);
    EXPECT_EQ(p.req.port, 0u);
    EXPECT_EQ(p.req.path, "/tmp/sw/.01234-00000");
    EXPECT_EQ(p.req.description, "QEMU user=me PID=1234");
}

TEST(VdeRequest, EveryPrefixOfAGoodRequestIsIncompleteNeverBad) {
    auto b = make_vde_request_v3("/tmp/sw/.1-0", "");
    for (size_t n = 0; n < b.size(); n++) {
        VdeParse p = parse_vde_request(wire::Bytes(b.data(), n));
        EXPECT_EQ(p.status, VdeParse::need_more) << n;
    }
    auto v1 = request_v1("/tmp/sw/.1-0", 0, "");
    for (size_t n = 0; n < v1.size(); n++)
        EXPECT_EQ(parse_vde_request(wire::Bytes(v1.data(), n)).status, VdeParse::need_more) << n;
}

TEST(VdeRequest, AcceptsTheV1FormAndThePortRequestsOfTheTypeField) {
    VdeParse p = parse_vde_request(request_v1("/x/.1-2", 1, "old"));
    ASSERT_EQ(p.status, VdeParse::ok) << p.error;
    EXPECT_EQ(p.req.version, 1);
    EXPECT_EQ(p.req.type, 1u);
    EXPECT_EQ(p.req.path, "/x/.1-2");
    EXPECT_EQ(p.req.description, "old");
    VdeParse q = parse_vde_request(make_vde_request_v3("/x/s", "", (7u << 8) | 0));
    ASSERT_EQ(q.status, VdeParse::ok);
    EXPECT_EQ(q.req.port, 7u);
    EXPECT_EQ(parse_vde_request(make_vde_request_v3("/x/s", "", 1)).status, VdeParse::ok);
}

TEST(VdeRequest, RejectsBadMagicVersionTypeAndPort) {
    auto b = make_vde_request_v3("/x/s", "d");
    auto bad = [](std::vector<uint8_t> v) { return parse_vde_request(v).status == VdeParse::bad; };
    auto m = b;
    m[0] ^= 1;
    EXPECT_TRUE(bad(m));
    EXPECT_TRUE(bad(std::vector<uint8_t>(m.begin(), m.begin() + 4)));  // known bad at once
    for (uint32_t version : {2u, 4u, 0xfeedfaceu}) {
        auto v = b;
        std::memcpy(v.data() + 4, &version, 4);
        EXPECT_TRUE(bad(v)) << version;
    }
    for (uint32_t type : {2u, 0xffu, 0x1000000u}) {
        auto v = make_vde_request_v3("/x/s", "d", type);
        EXPECT_TRUE(bad(v)) << type;
    }
    EXPECT_TRUE(bad(request_v1("/x/s", 0x100, "")));  // v1 has no port requests
}

TEST(VdeRequest, RejectsASocketAddressThatIsNotAnAbsoluteUnixPath) {
    auto b = make_vde_request_v3("/x/s", "");
    auto fam = b;
    sa_family_t inet = AF_INET;
    std::memcpy(fam.data() + 12, &inet, sizeof inet);
    EXPECT_EQ(parse_vde_request(fam).status, VdeParse::bad);
    // 108 path bytes without a NUL
    auto unterminated = make_vde_request_v3(std::string(1, '/') + std::string(107, 'a'), "");
    EXPECT_EQ(parse_vde_request(unterminated).status, VdeParse::bad);
    // 107 bytes and the NUL: the longest good path
    auto longest = make_vde_request_v3(std::string(1, '/') + std::string(106, 'a'), "");
    EXPECT_EQ(parse_vde_request(longest).status, VdeParse::ok);
    EXPECT_EQ(parse_vde_request(make_vde_request_v3("", "")).status, VdeParse::bad);  // unnamed
    auto abstract = make_vde_request_v3("", "");
    abstract[12 + sizeof(sa_family_t) + 1] = 'x';  // "\0x": abstract
    EXPECT_EQ(parse_vde_request(abstract).status, VdeParse::bad);
    EXPECT_EQ(parse_vde_request(make_vde_request_v3("rel/s", "")).status, VdeParse::bad);
}

TEST(VdeRequest, DescriptionIsBoundedAndMadePrintable) {
    EXPECT_EQ(parse_vde_request(make_vde_request_v3("/x/s", std::string(128, 'd'))).status,
              VdeParse::ok);
    EXPECT_EQ(parse_vde_request(make_vde_request_v3("/x/s", std::string(129, 'd'))).status,
              VdeParse::bad);
    VdeParse p = parse_vde_request(make_vde_request_v3("/x/s", std::string("a\x1b[2Jb\n", 7)));
    ASSERT_EQ(p.status, VdeParse::ok);
    EXPECT_EQ(p.req.description, "a?[2Jb?");
    VdeParse q = parse_vde_request(make_vde_request_v3("/x/s", std::string("ab\0cd", 5)));
    ASSERT_EQ(q.status, VdeParse::ok);
    EXPECT_EQ(q.req.description, "ab");
    EXPECT_EQ(parse_vde_request(std::vector<uint8_t>(kVdeMaxRequest + 1, 0xce)).status,
              VdeParse::bad);
}

// ---------------------------------------------------------------- tx queue

std::vector<Frame> drain(VdeTxQueue& q, size_t max = 64) {
    std::vector<Frame> out;
    mmsghdr msgs[64];
    iovec iov[128];
    size_t n = q.peek(msgs, iov, std::min<size_t>(max, 64));
    for (size_t i = 0; i < n; i++) {
        Frame f;
        for (size_t k = 0; k < msgs[i].msg_hdr.msg_iovlen; k++) {
            auto* b = static_cast<uint8_t*>(msgs[i].msg_hdr.msg_iov[k].iov_base);
            f.insert(f.end(), b, b + msgs[i].msg_hdr.msg_iov[k].iov_len);
        }
        out.push_back(std::move(f));
    }
    q.pop(n);
    return out;
}

TEST(VdeTxQueue, PadsShortFramesToSixtyBytes) {
    VdeTxQueue q(1 << 16, 16);
    Frame small = make_frame(42, 1, 3);
    Frame big = make_frame(1514, 2, 4);
    ASSERT_TRUE(q.push(small));
    ASSERT_TRUE(q.push(big));
    auto got = drain(q);
    ASSERT_EQ(got.size(), 2u);
    Frame padded = small;
    padded.resize(60, 0);
    EXPECT_EQ(got[0], padded);
    EXPECT_EQ(got[1], big);
    EXPECT_TRUE(q.empty());
}

TEST(VdeTxQueue, IsBoundedInFramesAndBytesAndRefusesOversize) {
    VdeTxQueue q(1 << 16, 4);
    EXPECT_FALSE(q.push(Frame{}));
    EXPECT_FALSE(q.push(Frame(65536, 0)));
    for (int i = 0; i < 4; i++) ASSERT_TRUE(q.push(make_frame(100, 1, 0)));
    EXPECT_FALSE(q.push(make_frame(100, 1, 0)));  // 4 frames
    EXPECT_EQ(q.frames(), 4u);
    VdeTxQueue b(1 << 16, 1000);
    ASSERT_TRUE(b.push(make_frame(65000, 1, 0)));
    EXPECT_FALSE(b.push(make_frame(1514, 1, 0)));  // 65536 bytes
    EXPECT_EQ(b.frames(), 1u);
}

TEST(VdeTxQueue, FramesStraddlingTheRingsEndComeOutWhole) {
    VdeTxQueue q(1 << 17, 64);
    std::vector<Frame> want, got;
    for (int i = 0; i < 500; i++) {
        Frame f = make_frame(60 + static_cast<size_t>(i) * 331 % 9000, 1, static_cast<uint8_t>(i));
        ASSERT_TRUE(q.push(f));
        want.push_back(f);
        if (q.frames() > 8 + static_cast<size_t>(i % 5)) {
            auto part = drain(q, 1 + static_cast<size_t>(i % 7));
            got.insert(got.end(), part.begin(), part.end());
        }
    }
    while (!q.empty()) {
        auto part = drain(q);
        got.insert(got.end(), part.begin(), part.end());
    }
    EXPECT_EQ(got, want);
}

// A frame given as head and tail (MAC translation's copied head and the
// untouched rest) comes out as one, also across the ring's end and when
// short enough to be padded.
TEST(VdeTxQueue, AFrameInTwoPiecesComesOutWhole) {
    VdeTxQueue q(1 << 14, 64);
    std::vector<Frame> want, got;
    for (int i = 0; i < 200; i++) {
        Frame f = make_frame(20 + static_cast<size_t>(i) * 97 % 3000, 1, static_cast<uint8_t>(i));
        size_t cut = static_cast<size_t>(i) % f.size();
        ASSERT_TRUE(q.push(wire::Bytes(f.data(), cut), wire::Bytes(f.data() + cut, f.size() - cut)));
        if (f.size() < 60) f.resize(60, 0);
        want.push_back(f);
        auto part = drain(q);
        got.insert(got.end(), part.begin(), part.end());
    }
    EXPECT_EQ(got, want);
    EXPECT_FALSE(q.push(Frame(40000, 0), Frame(30000, 0)));  // over 65535 together
}

// ---------------------------------------------------------------- sockets

class RecordingPort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "recorder"; }
    std::vector<Frame> frames;
};

sockaddr_un addr_of(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    return a;
}

bool exists(const std::string& path) {
    struct stat st {};
    return lstat(path.c_str(), &st) == 0;
}

// A client as libvdeplug's vde module is: a datagram socket bound in the
// directory, a control connection, a request, the switch's answer.
struct Plug {
    int ctl = -1;
    int data = -1;
    std::string path;
    ~Plug() {
        if (ctl >= 0) close(ctl);
        if (data >= 0) close(data);
        if (!path.empty()) unlink(path.c_str());
    }
};

struct VdeSwitchTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    RecordingPort rec;
    std::string base;
    std::string dir;
    int plugs = 0;

    void SetUp() override {
        char tmpl[] = "/tmp/usernet-vde-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        base = tmpl;
        dir = base + "/sw";
        sw.attach(rec);
    }
    void TearDown() override {
        rmdir(dir.c_str());
        rmdir(base.c_str());
    }

    bool run_until(const std::function<bool()>& pred) {
        for (int i = 0; i < 200 && !pred(); i++) loop.run_once(10);
        return pred();
    }

    // Connects and sends `req` (the request for the plug's own socket when
    // empty). Returns with the control connection open; answered() reads
    // the switch's reply.
    void start(Plug& p, std::vector<uint8_t> req = {}) {
        p.data = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        p.path = dir + "/.test-" + std::to_string(++plugs);
        sockaddr_un a = addr_of(p.path);
        ASSERT_EQ(bind(p.data, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
        p.ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un c = addr_of(dir + "/ctl");
        ASSERT_EQ(connect(p.ctl, reinterpret_cast<sockaddr*>(&c), sizeof c), 0) << strerror(errno);
        if (req.empty()) req = make_vde_request_v3(p.path, "test plug");
        ASSERT_EQ(send(p.ctl, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    }

    // The switch's answer: its socket address; the plug connects to it.
    std::string answered(Plug& p) {
        sockaddr_un out{};
        bool readable = run_until([&] {
            pollfd pf{p.ctl, POLLIN, 0};
            return poll(&pf, 1, 0) == 1;
        });
        EXPECT_TRUE(readable);
        ssize_t n = recv(p.ctl, &out, sizeof out, MSG_DONTWAIT);
        if (n != static_cast<ssize_t>(sizeof out)) {
            ADD_FAILURE() << "answer of " << n << " bytes";
            return {};
        }
        EXPECT_EQ(out.sun_family, AF_UNIX);
        EXPECT_EQ(connect(p.data, reinterpret_cast<sockaddr*>(&out), sizeof out), 0)
            << strerror(errno);
        return out.sun_path;
    }

    // Whether the switch closed the plug's control connection.
    bool closed_by_switch(Plug& p) {
        return run_until([&] {
            char c;
            return recv(p.ctl, &c, 1, MSG_DONTWAIT) == 0;
        });
    }

    std::vector<Frame> receive(Plug& p, size_t count) {
        std::vector<Frame> got;
        run_until([&] {
            uint8_t buf[70000];
            ssize_t n;
            while ((n = recv(p.data, buf, sizeof buf, MSG_DONTWAIT)) > 0) got.emplace_back(buf, buf + n);
            return got.size() >= count;
        });
        return got;
    }
};

TEST_F(VdeSwitchTest, CreatesTheDirectoryAndCtlAndRemovesBothAtExit) {
    {
        VdeSwitch vs(loop, sw, dir, 1500);
        struct stat st {};
        ASSERT_EQ(stat(dir.c_str(), &st), 0);
        EXPECT_TRUE(S_ISDIR(st.st_mode));
        EXPECT_EQ(st.st_mode & 0777, 0700u);
        ASSERT_EQ(lstat((dir + "/ctl").c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 077, 0u);
        EXPECT_EQ(vs.ctl_path(), dir + "/ctl");
    }
    EXPECT_FALSE(exists(dir));
}

TEST_F(VdeSwitchTest, LeavesADirectoryItDidNotCreate) {
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    { VdeSwitch vs(loop, sw, dir, 1500); }
    EXPECT_TRUE(exists(dir));
    EXPECT_FALSE(exists(dir + "/ctl"));
}

TEST_F(VdeSwitchTest, HandshakeMakesAPortAndFramesGoBothWays) {
    VdeSwitch vs(loop, sw, dir, 1500);
    Plug p;
    start(p);
    std::string data = answered(p);
    EXPECT_EQ(data.rfind(dir + "/001.", 0), 0u) << data;
    EXPECT_TRUE(exists(data));
    ASSERT_EQ(vs.port_count(), 1u);

    Frame f = make_frame(1514, 1, 9);
    ASSERT_EQ(send(p.data, f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
    Frame runt(13, 0);
    ASSERT_EQ(send(p.data, runt.data(), runt.size(), 0), 13);
    ASSERT_TRUE(run_until([&] { return !rec.frames.empty(); }));
    loop.run_once(10);
    ASSERT_EQ(rec.frames.size(), 1u);
    EXPECT_EQ(rec.frames[0], f);

    // Toward the plug: padded to 60, one datagram per frame.
    Frame small = make_frame(42, 0x77, 1);
    Frame large = make_frame(1514, 0x77, 2);
    sw.input(rec.id(), small);
    sw.input(rec.id(), large);
    auto got = receive(p, 2);
    ASSERT_EQ(got.size(), 2u);
    Frame padded = small;
    padded.resize(60, 0);
    EXPECT_EQ(got[0], padded);
    EXPECT_EQ(got[1], large);
    vs.for_each_client([](const VdeClient& c) {
        EXPECT_EQ(c.description(), "test plug");
        EXPECT_EQ(c.stats().rx_dropped, 1u);  // the runt
    });
}

// --vde DIR,mac=LANMAC: the LAN sees every client as lan, and frames for
// lan reach the client for its own MAC.
TEST_F(VdeSwitchTest, MacSuffixShowsTheLanOneMacBothWays) {
    const wire::MacAddr lan{{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x04}};
    const wire::MacAddr guest{{0x02, 0, 0, 0, 0, 1}};
    VdeSwitch vs(loop, sw, dir, 1500);
    vs.set_client_mac(lan);
    Plug p;
    start(p);
    answered(p);
    ASSERT_EQ(vs.port_count(), 1u);
    Frame f = make_frame(200, 1, 9);
    ASSERT_EQ(send(p.data, f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
    ASSERT_TRUE(run_until([&] { return !rec.frames.empty(); }));
    EXPECT_EQ(wire::MacAddr::from(&rec.frames[0][6]), lan);
    EXPECT_TRUE(std::equal(f.begin() + 12, f.end(), rec.frames[0].begin() + 12));
    EXPECT_NE(sw.lookup(lan), sw::kNoPort);
    EXPECT_EQ(sw.lookup(guest), sw::kNoPort);

    Frame back = make_frame(1514, 0x77, 2);
    lan.store(back.data());
    sw.input(rec.id(), back);
    auto got = receive(p, 1);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].size(), back.size());
    EXPECT_EQ(wire::MacAddr::from(got[0].data()), guest);
    EXPECT_TRUE(std::equal(back.begin() + 6, back.end(), got[0].begin() + 6));
    vs.for_each_client([](const VdeClient& c) { EXPECT_NE(c.mac_translator(), nullptr); });
}

TEST_F(VdeSwitchTest, ClosingTheControlStreamRemovesThePortAndItsFileAtOnce) {
    VdeSwitch vs(loop, sw, dir, 1500);
    Plug a, b;
    start(a);
    std::string da = answered(a);
    start(b);
    std::string db = answered(b);
    EXPECT_NE(da, db);
    ASSERT_EQ(vs.port_count(), 2u);
    close(a.ctl);
    a.ctl = -1;
    ASSERT_TRUE(run_until([&] { return vs.client_count() == 1; }));
    EXPECT_FALSE(exists(da));
    EXPECT_TRUE(exists(db));
    // b still works
    Frame f = make_frame(100, 2, 5);
    ASSERT_EQ(send(b.data, f.data(), f.size(), 0), 100);
    ASSERT_TRUE(run_until([&] { return !rec.frames.empty(); }));
    // a new client reuses the VDE port number 1
    Plug c;
    start(c);
    std::string dc = answered(c);
    EXPECT_EQ(dc.rfind(dir + "/001.", 0), 0u) << dc;
    EXPECT_NE(dc, da);
}

TEST_F(VdeSwitchTest, ABadRequestClosesOnlyThatConnectionAndIsCounted) {
    VdeSwitch vs(loop, sw, dir, 1500);
    Plug good;
    start(good);
    answered(good);

    auto bad_req = make_vde_request_v3("/nonexistent", "x");
    bad_req[0] ^= 0xff;  // magic
    Plug bad;
    start(bad, bad_req);
    EXPECT_TRUE(closed_by_switch(bad));

    Plug notsock;  // a path that is not a socket
    std::string file = base + "/plain";
    close(open(file.c_str(), O_CREAT | O_WRONLY, 0600));
    start(notsock, make_vde_request_v3(file, "x"));
    EXPECT_TRUE(closed_by_switch(notsock));
    unlink(file.c_str());

    Plug missing;
    start(missing, make_vde_request_v3(dir + "/.nobody", "x"));
    EXPECT_TRUE(closed_by_switch(missing));

    EXPECT_EQ(vs.stats().bad_requests, 3u);
    EXPECT_EQ(vs.port_count(), 1u);
    // The refused clients left no port socket: only the good one's is there.
    int ports = 0;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) ports += e->d_name[0] >= '0' && e->d_name[0] <= '9';
        closedir(d);
    }
    EXPECT_EQ(ports, 1);
}

TEST_F(VdeSwitchTest, DataAfterTheRequestBeyondARequestsSizeClosesTheClient) {
    VdeSwitch vs(loop, sw, dir, 1500);
    Plug p;
    start(p);
    std::string data = answered(p);
    std::vector<uint8_t> junk(300, 1);
    ASSERT_EQ(send(p.ctl, junk.data(), junk.size(), 0), 300);
    EXPECT_TRUE(closed_by_switch(p));
    EXPECT_FALSE(exists(data));
    EXPECT_EQ(vs.stats().bad_requests, 1u);
}

TEST_F(VdeSwitchTest, ARequestSplitAcrossWritesIsAssembled) {
    VdeSwitch vs(loop, sw, dir, 1500);
    Plug p;
    p.data = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    p.path = dir + "/.split";
    sockaddr_un a = addr_of(p.path);
    ASSERT_EQ(bind(p.data, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    p.ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un c = addr_of(dir + "/ctl");
    ASSERT_EQ(connect(p.ctl, reinterpret_cast<sockaddr*>(&c), sizeof c), 0);
    auto req = make_vde_request_v3(p.path, "split");
    ASSERT_EQ(send(p.ctl, req.data(), 50, 0), 50);
    for (int i = 0; i < 5; i++) loop.run_once(5);
    EXPECT_EQ(vs.port_count(), 0u);
    ASSERT_EQ(send(p.ctl, req.data() + 50, req.size() - 50, 0),
              static_cast<ssize_t>(req.size() - 50));
    std::string data = answered(p);
    EXPECT_FALSE(data.empty());
    EXPECT_EQ(vs.port_count(), 1u);
}

TEST_F(VdeSwitchTest, AStaleCtlIsReplacedWithItsDeadPortsAndALiveOneRefused) {
    ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
    // What a killed switch leaves: ctl and a port socket, nobody behind them.
    for (const char* name : {"/ctl", "/003.17"}) {
        int fd = socket(AF_UNIX, name[1] == 'c' ? SOCK_STREAM : SOCK_DGRAM, 0);
        sockaddr_un a = addr_of(dir + name);
        ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        close(fd);
    }
    {
        VdeSwitch vs(loop, sw, dir, 1500);
        EXPECT_FALSE(exists(dir + "/003.17"));
        try {
            VdeSwitch second(loop, sw, dir, 1500);
            ADD_FAILURE() << "a second switch took a live ctl";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
        }
        EXPECT_TRUE(exists(dir + "/ctl"));  // the failed one left it alone
        Plug p;
        start(p);
        EXPECT_FALSE(answered(p).empty());
    }
    EXPECT_FALSE(exists(dir + "/ctl"));
    EXPECT_TRUE(exists(dir));  // not ours to remove
}

TEST_F(VdeSwitchTest, RefusesAPathThatIsNotADirectory) {
    close(open(dir.c_str(), O_CREAT | O_WRONLY, 0600));
    EXPECT_THROW(VdeSwitch(loop, sw, dir, 1500), std::runtime_error);
    unlink(dir.c_str());
}

TEST_F(VdeSwitchTest, AtExitEveryPortFileIsRemoved) {
    std::string d1, d2;
    {
        VdeSwitch vs(loop, sw, dir, 1500);
        Plug a, b;
        start(a);
        d1 = answered(a);
        start(b);
        d2 = answered(b);
        ASSERT_TRUE(exists(d1) && exists(d2));
        // The plugs go first (their own sockets with them, as libvdeplug
        // unlinks its own), unnoticed: the switch still holds both ports.
    }
    EXPECT_FALSE(exists(d1));
    EXPECT_FALSE(exists(d2));
    EXPECT_FALSE(exists(dir));
}

// ---------------------------------------------------------------- --vde

TEST(VdeOption, ParsesDirectoriesWithTheirMtuInOrder) {
    app::Config c = app::parse_options({"--socket", "/tmp/q.sock", "--vde", "/tmp/sw1",
                                        "--vde", "rel/sw2,mtu=9000"});
    ASSERT_EQ(c.attachments.size(), 3u);
    EXPECT_EQ(c.attachments[1].kind, app::AttachmentKind::vde);
    EXPECT_EQ(c.attachments[1].target, "/tmp/sw1");
    EXPECT_EQ(c.attachments[1].mtu, app::kWireMtu);
    EXPECT_EQ(c.attachments[2].target, "rel/sw2");
    EXPECT_EQ(c.attachments[2].mtu, 9000u);
    EXPECT_THROW(app::parse_options({"--vde", "/a", "--vde", "/a"}), app::OptionError);
    EXPECT_THROW(app::parse_options({"--vde", ",mtu=1500"}), app::OptionError);
    EXPECT_THROW(app::parse_options({"--vde", "/" + std::string(95, 'd')}), app::OptionError);
}

}  // namespace
}  // namespace usernet::ports
