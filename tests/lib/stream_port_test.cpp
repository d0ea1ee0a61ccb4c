// The stream attachment (QEMU -netdev stream framing): the framing parser
// under every chunking, the output ring, and the listener over real unix
// sockets: frames in and out, padding, a broken client closed alone, live
// and stale socket paths.
#include "ports/stream_port.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "../unit/captured_frames.hpp"

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;

Frame make_frame(size_t len, uint8_t src_last, uint8_t fill, uint8_t dst_last = 0xff) {
    Frame f(len);
    for (size_t i = 0; i < len; i++) f[i] = static_cast<uint8_t>(fill + i * 7);
    if (len >= 14) {
        wire::MacAddr dst = dst_last == 0xff ? wire::MacAddr::broadcast()
                                             : wire::MacAddr{{0x02, 0, 0, 0, 0, dst_last}};
        dst.store(f.data());
        wire::MacAddr{{0x02, 0, 0, 0, 0, src_last}}.store(f.data() + 6);
        f[12] = 0x08;
        f[13] = 0x00;
    }
    return f;
}

void append_framed(std::vector<uint8_t>& out, const Frame& f) {
    uint8_t hdr[4];
    wire::store32(hdr, static_cast<uint32_t>(f.size()));
    out.insert(out.end(), hdr, hdr + 4);
    out.insert(out.end(), f.begin(), f.end());
}

// Feeds `stream` to a parser in chunks of `chunk` bytes; returns the frames.
std::vector<Frame> feed(StreamFrameParser& p, const std::vector<uint8_t>& stream, size_t chunk,
                        bool* ok = nullptr) {
    std::vector<Frame> got;
    size_t off = 0;
    bool good = true;
    while (off < stream.size() && good) {
        wire::MutBytes w = p.writable();
        EXPECT_FALSE(w.empty());
        size_t n = std::min({chunk, w.size(), stream.size() - off});
        std::memcpy(w.data(), stream.data() + off, n);
        p.commit(n);
        off += n;
        good = p.drain([&](wire::Bytes f) { got.emplace_back(f.begin(), f.end()); });
    }
    if (ok) *ok = good;
    return got;
}

TEST(StreamFrameParser, StreamFrameParser_ReassemblesFramesUnderAnyChunking) {
    std::vector<Frame> frames = {make_frame(14, 1, 0), make_frame(60, 2, 1),
                                 make_frame(1514, 3, 2), make_frame(65535, 4, 3),
                                 make_frame(42, 5, 4), make_frame(9000, 6, 5)};
    std::vector<uint8_t> stream;
    for (int rep = 0; rep < 3; rep++)
        for (const auto& f : frames) append_framed(stream, f);

    for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{7}, size_t{100},
                         size_t{4096}, size_t{65539}, size_t{1} << 20}) {
        StreamFrameParser p;
        auto got = feed(p, stream, chunk);
        ASSERT_EQ(got.size(), frames.size() * 3) << "chunk " << chunk;
        for (size_t i = 0; i < got.size(); i++)
            EXPECT_EQ(got[i], frames[i % frames.size()]) << "chunk " << chunk << " frame " << i;
        EXPECT_EQ(p.buffered(), 0u);
    }
}

TEST(StreamFrameParser, StreamFrameParser_SmallestBufferStillHoldsALargestFrameAndAPartial) {
    // At the minimum capacity every read leaves a partial frame that has to
    // be moved to the front before the rest of it fits.
    std::vector<Frame> frames;
    std::vector<uint8_t> stream;
    for (int i = 0; i < 12; i++) {
        frames.push_back(make_frame(i % 2 ? 65535 : 30000 + 977 * i, 1, static_cast<uint8_t>(i)));
        append_framed(stream, frames.back());
    }
    for (size_t chunk : {size_t{65539}, size_t{70001}, size_t{1} << 20}) {
        StreamFrameParser p(StreamFrameParser::kMinCapacity);
        auto got = feed(p, stream, chunk);
        ASSERT_EQ(got, frames) << "chunk " << chunk;
    }
}

TEST(StreamFrameParser, StreamFrameParser_KeepsAPartialFrameUntilItCompletes) {
    StreamFrameParser p;
    std::vector<uint8_t> stream;
    append_framed(stream, make_frame(100, 1, 9));
    bool ok = false;
    auto got = feed(p, std::vector<uint8_t>(stream.begin(), stream.end() - 1), 1000, &ok);
    EXPECT_TRUE(ok);
    EXPECT_TRUE(got.empty());
    EXPECT_EQ(p.buffered(), stream.size() - 1);
    got = feed(p, std::vector<uint8_t>(stream.end() - 1, stream.end()), 1000, &ok);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], make_frame(100, 1, 9));
}

TEST(StreamFrameParser, StreamFrameParser_RejectsZeroRuntAndOversizeLengths) {
    for (uint32_t bad : {0u, 1u, 13u, 65536u, 0x7fffffffu, 0xffffffffu}) {
        StreamFrameParser p;
        std::vector<uint8_t> stream;
        append_framed(stream, make_frame(60, 1, 0));  // a good frame first
        uint8_t hdr[4];
        wire::store32(hdr, bad);
        stream.insert(stream.end(), hdr, hdr + 4);
        stream.resize(stream.size() + 100, 0);
        bool ok = true;
        auto got = feed(p, stream, 3, &ok);
        EXPECT_FALSE(ok) << bad;
        EXPECT_TRUE(p.error());
        EXPECT_EQ(p.bad_length(), bad);
        EXPECT_EQ(got.size(), 1u) << "the frame before the bad length still counts";
        EXPECT_FALSE(p.drain([](wire::Bytes) { FAIL(); })) << "an error is final";
    }
}

TEST(StreamFrameParser, StreamFrameParser_AcceptsTheBoundaryLengths) {
    StreamFrameParser p;
    std::vector<uint8_t> stream;
    append_framed(stream, make_frame(14, 1, 0));
    append_framed(stream, make_frame(65535, 1, 0));
    bool ok = false;
    auto got = feed(p, stream, 1 << 20, &ok);
    EXPECT_TRUE(ok);
    EXPECT_EQ(got.size(), 2u);
}

std::vector<uint8_t> drain_ring(StreamTxQueue& q, size_t max = SIZE_MAX) {
    std::vector<uint8_t> out;
    while (!q.empty() && out.size() < max) {
        iovec iov[2];
        int n = q.peek(iov);
        size_t take = 0;
        for (int i = 0; i < n; i++) {
            size_t l = std::min(iov[i].iov_len, max - out.size());
            auto* b = static_cast<uint8_t*>(iov[i].iov_base);
            out.insert(out.end(), b, b + l);
            take += l;
            if (l < iov[i].iov_len) break;
        }
        q.consume(take);
    }
    return out;
}

TEST(StreamTxQueue, StreamTxQueue_FramesAndPadsShortFramesToSixtyBytes) {
    StreamTxQueue q(1 << 17);
    Frame small = make_frame(42, 1, 3);
    Frame big = make_frame(1514, 2, 4);
    ASSERT_TRUE(q.push(small));
    ASSERT_TRUE(q.push(big));
    auto bytes = drain_ring(q);
    std::vector<uint8_t> want;
    Frame padded = small;
    padded.resize(60, 0);
    append_framed(want, padded);
    append_framed(want, big);
    EXPECT_EQ(bytes, want);
}

TEST(StreamTxQueue, StreamTxQueue_DropsWholeFramesWhenFullAndRefusesOversize) {
    StreamTxQueue q(1 << 17);  // 131072
    EXPECT_FALSE(q.push(Frame(65536, 0)));
    EXPECT_FALSE(q.push(Frame{}));
    ASSERT_TRUE(q.push(make_frame(65535, 1, 0)));
    ASSERT_TRUE(q.push(make_frame(65000, 1, 0)));
    size_t before = q.size();
    EXPECT_FALSE(q.push(make_frame(1514, 1, 0)));
    EXPECT_EQ(q.size(), before);
}

TEST(StreamTxQueue, StreamTxQueue_WrapsAroundTheRingIntact) {
    StreamTxQueue q(1 << 17);
    std::vector<uint8_t> want, got;
    // Consume in odd-sized pieces so frames straddle the end of the ring.
    for (int i = 0; i < 200; i++) {
        Frame f = make_frame(500 + static_cast<size_t>(i) * 331 % 3000, 1, static_cast<uint8_t>(i));
        ASSERT_TRUE(q.push(f));
        append_framed(want, f);
        auto part = drain_ring(q, 1777);
        got.insert(got.end(), part.begin(), part.end());
    }
    auto rest = drain_ring(q);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, want);
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

struct StreamListenerTest : ::testing::Test {
    core::EventLoop loop;
    sw::Switch sw{loop};
    RecordingPort rec;
    std::string dir;
    std::string path;

    void SetUp() override {
        char tmpl[] = "/tmp/usernet-stream-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        path = dir + "/sock";
        sw.attach(rec);
    }
    void TearDown() override {
        unlink(path.c_str());
        rmdir(dir.c_str());
    }

    int connect_client() {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.data(), path.size());
        EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
        return fd;
    }

    // Runs the loop until pred() or ~2 s.
    bool run_until(const std::function<bool()>& pred) {
        for (int i = 0; i < 200 && !pred(); i++) loop.run_once(10);
        return pred();
    }

    static void write_all(int fd, const std::vector<uint8_t>& b) {
        size_t off = 0;
        while (off < b.size()) {
            ssize_t n = write(fd, b.data() + off, b.size() - off);
            ASSERT_GT(n, 0) << strerror(errno);
            off += static_cast<size_t>(n);
        }
    }

    // Reads exactly n bytes from fd, running the loop meanwhile (usernet
    // only writes from the loop); false on timeout or EOF.
    bool read_exact(int fd, std::vector<uint8_t>& out, size_t n) {
        out.clear();
        for (int i = 0; i < 2000 && out.size() < n; i++) {
            loop.run_once(0);
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 5) <= 0) continue;
            uint8_t buf[65536];
            ssize_t r = read(fd, buf, std::min(sizeof(buf), n - out.size()));
            if (r <= 0) return false;
            out.insert(out.end(), buf, buf + r);
        }
        return out.size() == n;
    }

    // True once the peer closed fd (read returns 0 or an error).
    bool peer_closed(int fd) {
        return run_until([&] {
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 0) <= 0) return false;
            uint8_t b[4096];
            return read(fd, b, sizeof(b)) <= 0;
        });
    }
};

TEST_F(StreamListenerTest, StreamListener_ClientFramesReachTheSwitchExactly) {
    StreamListener l(loop, sw, path, 1500);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));

    std::vector<Frame> frames = {make_frame(60, 1, 0), make_frame(1514, 1, 1),
                                 make_frame(14, 1, 2), make_frame(65535, 1, 3)};
    std::vector<uint8_t> stream;
    for (const auto& f : frames) append_framed(stream, f);
    // Written in two uneven pieces: a frame straddles them.
    write_all(c, std::vector<uint8_t>(stream.begin(), stream.begin() + 700));
    loop.run_once(10);
    write_all(c, std::vector<uint8_t>(stream.begin() + 700, stream.end()));
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == frames.size(); }));
    EXPECT_EQ(rec.frames, frames);
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_FramesToAClientArriveFramedAndPadded) {
    StreamListener l(loop, sw, path, 1500);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    // The client announces its MAC, so unicast to it goes to its port only.
    std::vector<uint8_t> hello;
    append_framed(hello, make_frame(60, 7, 0));
    write_all(c, hello);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));

    Frame arp = make_frame(42, 9, 5, /*dst*/ 7);
    Frame full = make_frame(1514, 9, 6, 7);
    sw.input(rec.id(), arp);
    sw.input(rec.id(), full);
    std::vector<uint8_t> want;
    Frame padded = arp;
    padded.resize(60, 0);
    append_framed(want, padded);
    append_framed(want, full);
    std::vector<uint8_t> got;
    ASSERT_TRUE(read_exact(c, got, want.size()));
    EXPECT_EQ(got, want);
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_ClientMacIsTranslatedBothWays) {
    // ,mac=: the guest (52:54:00:12:34:56 in the captured ARP) is lan on the LAN.
    const wire::MacAddr lan{{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01}};
    StreamListener l(loop, sw, path, 1500);
    l.set_client_mac(lan);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    Frame req(testdata::kArpRequest.begin(), testdata::kArpRequest.end());
    std::vector<uint8_t> out;
    append_framed(out, req);
    write_all(c, out);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    Frame seen = rec.frames[0];
    EXPECT_EQ(wire::MacAddr::from(&seen[6]), lan);       // Ethernet source
    EXPECT_EQ(wire::MacAddr::from(&seen[14 + 8]), lan);  // ARP sender
    EXPECT_NE(sw.lookup(lan), sw::kNoPort);  // learned under the LAN MAC
    // The reply on the LAN is for lan; the guest gets it for its own MAC.
    Frame reply(testdata::kArpReply.begin(), testdata::kArpReply.end());
    Frame on_lan = reply;
    lan.store(&on_lan[0]);
    lan.store(&on_lan[14 + 18]);
    sw.input(rec.id(), on_lan);
    std::vector<uint8_t> want;
    Frame padded = reply;
    padded.resize(60, 0);
    append_framed(want, padded);
    std::vector<uint8_t> got;
    ASSERT_TRUE(read_exact(c, got, want.size()));
    EXPECT_EQ(got, want);
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_TwoClientsShareTheLan) {
    StreamListener l(loop, sw, path, 1500);
    int a = connect_client();
    int b = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 2; }));
    std::vector<uint8_t> s;
    Frame bcast = make_frame(100, 1, 3);
    append_framed(s, bcast);
    write_all(a, s);
    std::vector<uint8_t> got;
    ASSERT_TRUE(read_exact(b, got, s.size()));
    EXPECT_EQ(got, s);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    close(a);
    close(b);
}

TEST_F(StreamListenerTest, StreamListener_BadLengthClosesOnlyThatClient) {
    StreamListener l(loop, sw, path, 1500);
    int bad = connect_client();
    int good = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 2; }));
    std::vector<uint8_t> s = {0, 0, 0, 0, 1, 2, 3, 4};  // length 0
    write_all(bad, s);
    EXPECT_TRUE(peer_closed(bad));
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    EXPECT_EQ(l.stats().protocol_errors, 1u);

    std::vector<uint8_t> ok;
    append_framed(ok, make_frame(80, 2, 1));
    write_all(good, ok);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));
    close(bad);
    close(good);
}

TEST_F(StreamListenerTest, StreamListener_DisconnectDetachesTheClientPort) {
    StreamListener l(loop, sw, path, 1500);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    int ports = 0;
    sw.for_each_port([&](sw::Port&) { ports++; });
    EXPECT_EQ(ports, 2);
    close(c);
    ASSERT_TRUE(run_until([&] { return l.client_count() == 0; }));
    ports = 0;
    sw.for_each_port([&](sw::Port&) { ports++; });
    EXPECT_EQ(ports, 1);
    // And a reconnect just works.
    c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_SlowReaderGetsWholeFramesAndDropsAreCounted) {
    StreamListener l(loop, sw, path, 1500);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    std::vector<uint8_t> hello;
    append_framed(hello, make_frame(60, 7, 0));
    write_all(c, hello);
    ASSERT_TRUE(run_until([&] { return rec.frames.size() == 1; }));

    // Far more than the socket buffer and the 4 MiB ring hold.
    constexpr int kFrames = 16000;
    for (int i = 0; i < kFrames; i++) {
        Frame f = make_frame(1514, 9, static_cast<uint8_t>(i), 7);
        wire::store32(&f[14], static_cast<uint32_t>(i));
        sw.input(rec.id(), f);
        if (i % 64 == 0) loop.run_once(0);
    }
    sw::Port* client = nullptr;
    sw.for_each_port([&](sw::Port& p) {
        if (&p != &rec) client = &p;
    });
    ASSERT_NE(client, nullptr);
    uint64_t dropped = client->stats().tx_dropped;
    EXPECT_GT(dropped, 0u);

    // Everything that was queued arrives as whole frames, in order.
    uint64_t received = 0;
    int last = -1;
    std::vector<uint8_t> got;
    while (received + dropped < kFrames) {
        ASSERT_TRUE(read_exact(c, got, 4));
        ASSERT_EQ(wire::load32(got.data()), 1514u);
        ASSERT_TRUE(read_exact(c, got, 1514));
        int seq = static_cast<int>(wire::load32(&got[14]));
        EXPECT_GT(seq, last);
        last = seq;
        received++;
    }
    EXPECT_EQ(received + dropped, static_cast<uint64_t>(kFrames));
    // What went out and what was dropped, each counted once (the
    // attachment's "left" log line reports both).
    EXPECT_EQ(client->stats().tx_frames, received);
    EXPECT_EQ(client->stats().tx_bytes, received * 1514);
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_RefusesAPathALiveProcessListensOn) {
    StreamListener l(loop, sw, path, 1500);
    try {
        StreamListener again(loop, sw, path, 1500);
        FAIL() << "a second listener on a live path";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("is in use by another process"), std::string::npos)
            << e.what();
    }
    // The first one still works.
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_ReplacesAStaleSocketFile) {
    {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.data(), path.size());
        ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        close(s);  // the file stays: stale
    }
    StreamListener l(loop, sw, path, 1500);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l.client_count() == 1; }));
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_RefusesAPathThatIsNotASocket) {
    { std::ofstream(path) << "precious"; }
    EXPECT_THROW(StreamListener(loop, sw, path, 1500), std::runtime_error);
    std::ifstream in(path);
    std::string s;
    in >> s;
    EXPECT_EQ(s, "precious");
}

TEST_F(StreamListenerTest, StreamListener_CreatesAnOwnerOnlySocketAndUnlinksItOnExit) {
    {
        StreamListener l(loop, sw, path, 1500);
        struct stat st {};
        ASSERT_EQ(stat(path.c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 0077, 0u) << "owner only";
    }
    struct stat st {};
    EXPECT_NE(stat(path.c_str(), &st), 0);
}

TEST_F(StreamListenerTest, StreamListener_OutOfDescriptorsPausesAndThenAccepts) {
#ifdef USERNET_SANITIZED_BUILD
    // The sanitizers' own memory checks need free descriptors (they probe
    // readability through a pipe): with RLIMIT_NOFILE exhausted they report
    // bogus errors. The release build runs this test. A known limitation of
    // the sanitized build, not a missing prerequisite: it skips under CI too
    // (CI's release pass runs it).
    GTEST_SKIP() << "known limitation of the sanitized build only (the release build runs this "
                    "test): the sanitizer runtime needs the free descriptors it exhausts";
#endif
    StreamListener l(loop, sw, path, 1500);
    int c = connect_client();  // waits in the backlog
    rlimit saved{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int next = dup(0);
    close(next);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(next);  // the next descriptor is over the limit
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    int wakeups = 0;
    for (core::Millis end = core::monotonic_ms() + 300; core::monotonic_ms() < end;) {
        loop.run_once(50);
        wakeups++;
    }
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    EXPECT_EQ(l.client_count(), 0u);
    EXPECT_LT(wakeups, 20) << "the loop spun on the listener";
    for (int i = 0; i < 300 && l.client_count() == 0; i++) loop.run_once(10);
    EXPECT_EQ(l.client_count(), 1u) << "accepting resumes";
    close(c);
}

TEST_F(StreamListenerTest, StreamListener_DestroyedWithClientsQueuedInTheLoop) {
    // A client with output pending is in the loop's deferred work when the
    // listener goes away; the loop must finish it without touching freed
    // memory (ASan proves it).
    auto l = std::make_unique<StreamListener>(loop, sw, path, 1500);
    int c = connect_client();
    ASSERT_TRUE(run_until([&] { return l->client_count() == 1; }));
    sw.input(rec.id(), make_frame(60, 9, 0));  // flooded to the client: queued
    l.reset();
    loop.run_once(0);
    EXPECT_TRUE(peer_closed(c));
    close(c);
}

}  // namespace
}  // namespace usernet::ports
