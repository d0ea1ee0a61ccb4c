// The WebSocket attachment: the RFC 6455 handshake (parsing, the accept
// key, Origin checks), then real clients over TCP on 127.0.0.1 against a
// WsListener on a switch: frames both ways, padding, ping/pong, close, a
// text message, an oversized message, the rate limits (a shaper), the send queue cap
// and the client cap. The client side's frames are built here by hand
// (masked, as RFC 6455 section 5.3 requires of a client).
#include "ports/websocket_port.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "switch/switch.hpp"

namespace usernet::ports {
namespace {

using Frame = std::vector<uint8_t>;

const std::vector<std::string> kAny;  // no origin=: this host's pages only

std::string request(const std::string& extra = "", const std::string& key = "dGhlIHNhbXBsZSBub25jZQ==",
                    const std::string& method = "GET") {
    return method + " /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: " +
           key + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n";
}

TEST(WsHandshake, AcceptKeyIsRfc6455Example) {
    EXPECT_EQ(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsHandshake, KeyMustBeSixteenBase64Bytes) {
    EXPECT_TRUE(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    EXPECT_TRUE(ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    EXPECT_FALSE(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ="));    // 23 characters
    EXPECT_FALSE(ws_key_valid("dGhlIHNhbXBsZSBub25jZR=="));   // low bits set: not 16 bytes
    EXPECT_FALSE(ws_key_valid("dGhlIHNhbXBsZSBub25j*Q=="));
    EXPECT_FALSE(ws_key_valid("dGhlIHNhbXBsZSBub25jZQAA"));
    EXPECT_FALSE(ws_key_valid(""));
}

TEST(WsHandshake, HeadLength) {
    EXPECT_EQ(ws_request_head_length("GET / HTTP/1.1\r\nHost: a\r\n"), 0u);
    EXPECT_EQ(ws_request_head_length("GET / HTTP/1.1\r\nHost: a\r\n\r\nxyz"), 27u);
    EXPECT_EQ(ws_request_head_length("GET / HTTP/1.1\nHost: a\n\nxyz"), 24u);
    EXPECT_EQ(ws_request_head_length(""), 0u);
    EXPECT_EQ(ws_request_head_length("\n"), 0u);
}

TEST(WsHandshake, Rfc6455ExampleRequestUpgrades) {
    std::string r = request("Origin: http://example.com\r\nSec-WebSocket-Protocol: chat\r\n");
    WsHandshake hs = ws_check_handshake(r, {"http://example.com"});
    ASSERT_EQ(hs.status, 101) << hs.reason;
    EXPECT_EQ(hs.key, "dGhlIHNhbXBsZSBub25jZQ==");
    EXPECT_EQ(hs.origin, "http://example.com");
    EXPECT_EQ(hs.target, "/chat");
    std::string resp = ws_http_response(hs);
    EXPECT_EQ(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                    "Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
}

TEST(WsHandshake, HeaderNamesAndTokensAreCaseInsensitiveLists) {
    std::string r =
        "GET / HTTP/1.1\r\nhOST: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
        "sec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==   \r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n";
    EXPECT_EQ(ws_check_handshake(r, kAny).status, 101);
}

TEST(WsHandshake, RefusesWhatIsNotAnUpgrade) {
    auto status = [](const std::string& r) { return ws_check_handshake(r, kAny).status; };
    EXPECT_EQ(status(request("", "dGhlIHNhbXBsZSBub25jZQ==", "POST")), 405);
    EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 426);  // a plain page request
    EXPECT_EQ(status("GET / HTTP/1.0\r\nHost: x\r\n\r\n"), 400);
    EXPECT_EQ(status("GET  / HTTP/1.1\r\n\r\n"), 400);
    EXPECT_EQ(status("GET http://x/ HTTP/1.1\r\n\r\n"), 400);
    EXPECT_EQ(status("\r\n\r\n"), 400);
    // Version 8 is not ours: 426 naming 13.
    std::string v8 = request();
    v8.replace(v8.find("Version: 13"), 11, "Version: 8");
    WsHandshake hs = ws_check_handshake(v8, kAny);
    EXPECT_EQ(hs.status, 426);
    EXPECT_NE(ws_http_response(hs).find("Sec-WebSocket-Version: 13\r\n"), std::string::npos);
    // No Host, two keys, a bad key, a folded line, a control character.
    std::string no_host = request();
    no_host.erase(no_host.find("Host:"), std::strlen("Host: server.example.com\r\n"));
    EXPECT_EQ(status(no_host), 400);
    EXPECT_EQ(status(request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")), 400);
    EXPECT_EQ(status(request("", "short")), 400);
    EXPECT_EQ(status(request("X-A: b\r\n c\r\n")), 400);
    EXPECT_EQ(status(request(std::string("X-A: b\x01\r\n"))), 400);
    EXPECT_EQ(status(request("Bad Name: x\r\n")), 400);
    EXPECT_EQ(status(request(": x\r\n")), 400);
    std::string many;
    for (int i = 0; i < 70; i++) many += "X-" + std::to_string(i) + ": y\r\n";
    EXPECT_EQ(status(request(many)), 431);
}

// Without origin=, a page of another site may not become a guest (its
// guest would reach the host's loopback through the gateway): only
// clients that send no Origin (not browsers) and pages of this host.
TEST(WsHandshake, WithoutAnAllowListOnlyThisHostsPagesAndNonBrowsers) {
    for (const char* ok : {"", "http://localhost", "http://localhost:8000", "https://LOCALHOST/",
                           "http://v86.localhost:8080", "http://127.0.0.1:8000",
                           "http://127.1.2.3", "http://[::1]:8000", "http://[::1]"})
        EXPECT_TRUE(ws_origin_allowed(ok, kAny)) << ok;
    for (const char* bad : {"null", "https://evil.example", "http://localhost.evil.example",
                            "http://127.0.0.1.evil.example", "http://128.0.0.1", "http://[::2]",
                            "http://[::1]x", "http://10.0.2.2:8000", "localhost", "http://"})
        EXPECT_FALSE(ws_origin_allowed(bad, kAny)) << bad;
    WsHandshake bad = ws_check_handshake(request("Origin: https://evil.example\r\n"), kAny);
    EXPECT_EQ(bad.status, 403);
    EXPECT_NE(bad.reason.find("origin=https://evil.example"), std::string::npos) << bad.reason;
    EXPECT_EQ(ws_check_handshake(request("Origin: http://localhost:8000\r\n"), kAny).status, 101);
}

TEST(WsHandshake, OriginAllowList) {
    std::vector<std::string> allowed = {"https://copy.sh", "http://localhost:8000/"};
    EXPECT_TRUE(ws_origin_allowed("https://copy.sh", allowed));
    EXPECT_TRUE(ws_origin_allowed("HTTPS://COPY.SH", allowed));
    EXPECT_TRUE(ws_origin_allowed("http://localhost:8000", allowed));
    EXPECT_FALSE(ws_origin_allowed("https://copy.sh.evil.example", allowed));
    EXPECT_FALSE(ws_origin_allowed("http://localhost:8001", allowed));
    EXPECT_FALSE(ws_origin_allowed("null", allowed));
    EXPECT_FALSE(ws_origin_allowed("", allowed));
    const std::vector<std::string> star = {"*"};
    EXPECT_TRUE(ws_origin_allowed("", star));
    EXPECT_TRUE(ws_origin_allowed("https://anything", star));
    EXPECT_TRUE(ws_origin_allowed("null", star));

    EXPECT_EQ(ws_check_handshake(request("Origin: https://copy.sh\r\n"), allowed).status, 101);
    WsHandshake bad = ws_check_handshake(request("Origin: https://evil.example\r\n"), allowed);
    EXPECT_EQ(bad.status, 403);
    EXPECT_EQ(ws_http_response(bad).rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u);
    EXPECT_EQ(ws_check_handshake(request(), allowed).status, 403);  // no Origin at all
    EXPECT_EQ(ws_check_handshake(request("Origin: a\r\nOrigin: b\r\n"), kAny).status, 400);
}

TEST(WsHandshake, ForwardedForIsSanitised) {
    WsHandshake hs = ws_check_handshake(
        request("X-Forwarded-For: 203.0.113.7, <script>\x7f\r\n"), kAny);
    // (0x7f makes it a control character: refused as a whole)
    EXPECT_EQ(hs.status, 400);
    hs = ws_check_handshake(request("X-Forwarded-For: 203.0.113.7, <script>\r\n"), kAny);
    ASSERT_EQ(hs.status, 101);
    EXPECT_EQ(hs.forwarded, "203.0.113.7, c");
}

// ---------------------------------------------------------------- over TCP

class RecordingPort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "recorder"; }
    std::vector<Frame> frames;
};

Frame eth_frame(size_t len, uint8_t src_last, uint8_t fill) {
    Frame f(len, fill);
    if (len >= 14) {
        std::memset(f.data(), 0xff, 6);  // broadcast: the switch floods it to the recorder
        const uint8_t src[6] = {0x02, 0, 0, 0, 0, src_last};
        std::memcpy(f.data() + 6, src, 6);
        f[12] = 0x08;
        f[13] = 0x00;
    }
    return f;
}

// A client frame: FIN, opcode, masked payload.
std::string client_frame(uint8_t opcode, const Frame& payload, bool fin = true) {
    std::string out;
    out += static_cast<char>((fin ? 0x80 : 0) | opcode);
    size_t n = payload.size();
    if (n < 126) {
        out += static_cast<char>(0x80 | n);
    } else if (n <= 0xffff) {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>(n >> 8);
        out += static_cast<char>(n & 0xff);
    } else {
        out += static_cast<char>(0x80 | 127);
        for (int i = 7; i >= 0; i--) out += static_cast<char>((n >> (8 * i)) & 0xff);
    }
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    out.append(reinterpret_cast<const char*>(mask), 4);
    for (size_t i = 0; i < n; i++) out += static_cast<char>(payload[i] ^ mask[i % 4]);
    return out;
}

struct ServerFrame {
    uint8_t opcode = 0;
    bool fin = false;
    Frame payload;
};

// Parses unmasked server frames off the front of buf.
bool take_server_frame(std::string& buf, ServerFrame& f) {
    if (buf.size() < 2) return false;
    auto b = [&](size_t i) { return static_cast<uint8_t>(buf[i]); };
    EXPECT_EQ(b(1) & 0x80, 0) << "server frames are never masked";
    size_t len = b(1) & 0x7f, hdr = 2;
    if (len == 126) {
        if (buf.size() < 4) return false;
        len = (size_t{b(2)} << 8) | b(3);
        hdr = 4;
    } else if (len == 127) {
        if (buf.size() < 10) return false;
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | b(2 + i);
        hdr = 10;
    }
    if (buf.size() < hdr + len) return false;
    f.fin = b(0) & 0x80;
    f.opcode = b(0) & 0x0f;
    f.payload.assign(buf.begin() + hdr, buf.begin() + hdr + len);
    buf.erase(0, hdr + len);
    return true;
}

class WsFixture : public ::testing::Test {
protected:
    void SetUp() override { sw.attach(recorder); }

    void listen(WsConfig cfg = {}) {
        cfg.name = "test";
        listener = std::make_unique<WsListener>(loop, sw, "127.0.0.1", 0, cfg);
    }

    int connect_tcp() {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(listener->port());
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        fds.push_back(fd);
        return fd;
    }

    size_t ports() const {
        size_t n = 0;
        sw.for_each_port([&](const sw::Port&) { n++; });
        return n;
    }

    void pump_until(const std::function<bool()>& pred, int rounds = 300) {
        for (int i = 0; i < rounds && !pred(); i++) loop.run_once(10);
    }

    void send_all(int fd, const std::string& s) {
        size_t off = 0;
        while (off < s.size()) {
            ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) off += static_cast<size_t>(n);
            else loop.run_once(1);
        }
    }

    // What the server sent so far on fd (pumping the loop meanwhile), until
    // pred(buffer) holds or the peer closed; closed is set on EOF.
    std::string read_until(int fd, const std::function<bool(const std::string&)>& pred,
                           bool* closed = nullptr) {
        std::string& buf = bufs[fd];
        for (int i = 0; i < 500 && !pred(buf); i++) {
            loop.run_once(5);
            char tmp[65536];
            ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
            if (n > 0) buf.append(tmp, static_cast<size_t>(n));
            if (n == 0) {
                if (closed) *closed = true;
                break;
            }
        }
        return buf;
    }

    // Connects and completes a handshake; returns the socket.
    int open_ws(const std::string& extra = "") {
        int fd = connect_tcp();
        send_all(fd, request(extra));
        std::string got = read_until(fd, [](const std::string& b) {
            return b.find("\r\n\r\n") != std::string::npos;
        });
        EXPECT_EQ(got.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << got;
        bufs[fd].erase(0, got.find("\r\n\r\n") + 4);
        return fd;
    }

    ServerFrame next_frame(int fd, bool* closed = nullptr) {
        ServerFrame f;
        read_until(fd, [&](const std::string& b) {
            std::string copy = b;
            ServerFrame tmp;
            return take_server_frame(copy, tmp);
        }, closed);
        EXPECT_TRUE(take_server_frame(bufs[fd], f)) << "no frame from the server";
        return f;
    }

    void TearDown() override {
        for (int fd : fds) close(fd);
        listener.reset();
        loop.run_once(0);
    }

    core::EventLoop loop;
    sw::Switch sw{loop};
    RecordingPort recorder;
    std::unique_ptr<WsListener> listener;
    std::vector<int> fds;
    std::map<int, std::string> bufs;
};

TEST_F(WsFixture, FramesBothWaysAndOnePortPerClient) {
    listen();
    int a = open_ws();
    int b = open_ws();
    pump_until([&] { return listener->client_count() == 2; });
    ASSERT_EQ(listener->client_count(), 2u);
    EXPECT_EQ(ports(), 3u);  // recorder + two clients

    Frame f1 = eth_frame(1514, 1, 0xa1);
    Frame f2 = eth_frame(42, 2, 0xb2);
    send_all(a, client_frame(WSLAY_BINARY_FRAME, f1));
    send_all(b, client_frame(WSLAY_BINARY_FRAME, f2));
    pump_until([&] { return recorder.frames.size() >= 2; });
    ASSERT_EQ(recorder.frames.size(), 2u);
    EXPECT_TRUE(std::find(recorder.frames.begin(), recorder.frames.end(), f1) !=
                recorder.frames.end());
    EXPECT_TRUE(std::find(recorder.frames.begin(), recorder.frames.end(), f2) !=
                recorder.frames.end());
    // Each broadcast was flooded to the other client too.
    ServerFrame flooded = next_frame(b);
    EXPECT_EQ(flooded.payload, f1);
    flooded = next_frame(a);
    EXPECT_EQ(flooded.payload, f2.size() < 60 ? [&] {
        Frame p = f2;
        p.resize(60, 0);
        return p;
    }() : f2);

    // A frame from a to b's MAC goes out of b's port only, one message,
    // padded to 60 bytes.
    Frame to_b = eth_frame(42, 1, 0xc3);
    const uint8_t mac_b[6] = {0x02, 0, 0, 0, 0, 2};
    std::memcpy(to_b.data(), mac_b, 6);
    send_all(a, client_frame(WSLAY_BINARY_FRAME, to_b));
    ServerFrame got = next_frame(b);
    EXPECT_EQ(got.opcode, WSLAY_BINARY_FRAME);
    EXPECT_TRUE(got.fin);
    ASSERT_EQ(got.payload.size(), 60u);
    EXPECT_TRUE(std::equal(to_b.begin(), to_b.end(), got.payload.begin()));
    EXPECT_TRUE(std::all_of(got.payload.begin() + 42, got.payload.end(),
                            [](uint8_t x) { return x == 0; }));

    // A fragmented binary message is one frame.
    Frame big = eth_frame(1000, 1, 0xd4);
    Frame part1(big.begin(), big.begin() + 300), part2(big.begin() + 300, big.end());
    send_all(a, client_frame(WSLAY_BINARY_FRAME, part1, false) +
                    client_frame(WSLAY_CONTINUATION_FRAME, part2, true));
    pump_until([&] { return recorder.frames.size() >= 3; });
    ASSERT_EQ(recorder.frames.size(), 3u);
    EXPECT_EQ(recorder.frames[2], big);

    // Client a leaves: its port leaves the switch, b's stays.
    close(a);
    fds.erase(fds.begin());
    pump_until([&] { return listener->client_count() == 1; });
    EXPECT_EQ(listener->client_count(), 1u);
    EXPECT_EQ(ports(), 2u);
}

TEST_F(WsFixture, PingGetsPongAndCloseIsEchoed) {
    listen();
    int a = open_ws();
    send_all(a, client_frame(WSLAY_PING, Frame{'h', 'i'}));
    ServerFrame pong = next_frame(a);
    EXPECT_EQ(pong.opcode, WSLAY_PONG);
    EXPECT_EQ(pong.payload, (Frame{'h', 'i'}));
    send_all(a, client_frame(WSLAY_CONNECTION_CLOSE, Frame{0x03, 0xe8}));
    bool closed = false;
    ServerFrame c = next_frame(a, &closed);
    EXPECT_EQ(c.opcode, WSLAY_CONNECTION_CLOSE);
    ASSERT_GE(c.payload.size(), 2u);
    EXPECT_EQ((c.payload[0] << 8) | c.payload[1], 1000);
    read_until(a, [](const std::string&) { return false; }, &closed);
    EXPECT_TRUE(closed);
    pump_until([&] { return listener->client_count() == 0; });
    EXPECT_EQ(listener->client_count(), 0u);
}

TEST_F(WsFixture, TextMessageAndOversizedMessageCloseTheClient) {
    listen();
    int a = open_ws();
    send_all(a, client_frame(WSLAY_TEXT_FRAME, Frame{'h', 'e', 'l', 'l', 'o'}));
    ServerFrame c = next_frame(a);
    EXPECT_EQ(c.opcode, WSLAY_CONNECTION_CLOSE);
    ASSERT_GE(c.payload.size(), 2u);
    EXPECT_EQ((c.payload[0] << 8) | c.payload[1], 1003);
    EXPECT_TRUE(recorder.frames.empty());

    int b = open_ws();
    send_all(b, client_frame(WSLAY_BINARY_FRAME, eth_frame(1519, 3, 0)));  // MTU 1500: 1518 max
    c = next_frame(b);
    EXPECT_EQ(c.opcode, WSLAY_CONNECTION_CLOSE);
    ASSERT_GE(c.payload.size(), 2u);
    EXPECT_EQ((c.payload[0] << 8) | c.payload[1], 1009);

    // Fragments that only add up to too much.
    int d = open_ws();
    Frame part = eth_frame(1000, 4, 0);
    send_all(d, client_frame(WSLAY_BINARY_FRAME, part, false) +
                    client_frame(WSLAY_CONTINUATION_FRAME, part, true));
    c = next_frame(d);
    EXPECT_EQ(c.opcode, WSLAY_CONNECTION_CLOSE);
    EXPECT_EQ((c.payload[0] << 8) | c.payload[1], 1009);
    pump_until([&] { return listener->client_count() == 0; });
    EXPECT_EQ(listener->client_count(), 0u);
    EXPECT_TRUE(recorder.frames.empty());
    WsStats s = listener->stats();
    EXPECT_EQ(s.text_closed, 1u);
    EXPECT_EQ(s.too_big_closed, 1u);  // the single frame is wslay's own 1009
}

TEST_F(WsFixture, UnmaskedClientFrameIsAProtocolError) {
    listen();
    int a = open_ws();
    Frame f = eth_frame(60, 1, 0);
    std::string raw;
    raw += static_cast<char>(0x82);
    raw += static_cast<char>(60);
    raw.append(f.begin(), f.end());
    send_all(a, raw);
    ServerFrame c = next_frame(a);
    EXPECT_EQ(c.opcode, WSLAY_CONNECTION_CLOSE);
    EXPECT_EQ((c.payload[0] << 8) | c.payload[1], 1002);
    EXPECT_TRUE(recorder.frames.empty());
}

TEST_F(WsFixture, RateLimitsHoldBackAClientOverTheRateAndDropNothing) {
    // A shaper, not a policer: what was read goes through; then the client
    // is not read until the frame bucket's debt (3 frames at 2 a second)
    // is repaid, 1.5 s later.
    WsConfig cfg;
    cfg.limits.rx_frames_burst = 3;
    cfg.limits.rx_frames_per_sec = 2;
    listen(cfg);
    int a = open_ws();
    std::string burst;
    for (int i = 0; i < 6; i++) burst += client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 1, i));
    send_all(a, burst);
    pump_until([&] { return recorder.frames.size() >= 6; });
    ASSERT_EQ(recorder.frames.size(), 6u);
    EXPECT_EQ(listener->stats().rate_paused, 0u);
    send_all(a, client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 1, 6)));
    pump_until([] { return false; }, 20);  // 200 ms: still held back
    EXPECT_EQ(recorder.frames.size(), 6u);
    EXPECT_EQ(listener->stats().rate_paused, 1u);
    pump_until([&] { return recorder.frames.size() >= 7; });
    EXPECT_EQ(recorder.frames.size(), 7u);
    EXPECT_EQ(recorder.frames.back()[14], 6);  // the held-back frame (its first payload byte), intact

    // Bytes: the same with a 3000-byte burst at 100 bytes a second.
    WsConfig by;
    by.limits.rx_bytes_burst = 3000;
    by.limits.rx_bytes_per_sec = 100;
    listener.reset();
    recorder.frames.clear();
    listen(by);
    int b = open_ws();
    send_all(b, client_frame(WSLAY_BINARY_FRAME, eth_frame(1514, 2, 0)) +
                    client_frame(WSLAY_BINARY_FRAME, eth_frame(1514, 2, 1)));
    pump_until([&] { return recorder.frames.size() >= 2; });
    ASSERT_EQ(recorder.frames.size(), 2u);
    send_all(b, client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 2, 2)));
    pump_until([] { return false; }, 5);  // 28 bytes of debt: 280 ms
    EXPECT_EQ(recorder.frames.size(), 2u);
    EXPECT_EQ(listener->stats().rate_paused, 1u);
    pump_until([&] { return recorder.frames.size() >= 3; });
    EXPECT_EQ(recorder.frames.size(), 3u);
}

TEST_F(WsFixture, PingFloodClosesTheClient) {
    WsConfig cfg;
    cfg.limits.rx_pings_burst = 5;
    cfg.limits.rx_pings_per_sec = 1;
    listen(cfg);
    int a = open_ws();
    std::string pings;
    for (int i = 0; i < 20; i++) pings += client_frame(WSLAY_PING, Frame{'p'});
    send_all(a, pings);
    ServerFrame f;
    int pongs = 0;
    do {
        f = next_frame(a);
        if (f.opcode == WSLAY_PONG) pongs++;
    } while (f.opcode == WSLAY_PONG);
    EXPECT_EQ(f.opcode, WSLAY_CONNECTION_CLOSE);
    ASSERT_GE(f.payload.size(), 2u);
    EXPECT_EQ((f.payload[0] << 8) | f.payload[1], 1008);
    EXPECT_LE(pongs, 5);
    pump_until([&] { return listener->client_count() == 0; });
    EXPECT_EQ(listener->stats().ping_flood_closed, 1u);
}

TEST_F(WsFixture, SendQueueTowardAClientThatDoesNotReadIsBounded) {
    WsConfig cfg;
    cfg.limits.tx_queue_bytes = 64 * 1024;
    listen(cfg);
    int a = open_ws();
    int rcv = 4096;
    setsockopt(a, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    // The client's MAC, so that frames to it go to its port.
    send_all(a, client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 9, 0)));
    pump_until([&] { return recorder.frames.size() == 1; });
    Frame to_a = eth_frame(1514, 1, 0x55);
    const uint8_t mac_a[6] = {0x02, 0, 0, 0, 0, 9};
    std::memcpy(to_a.data(), mac_a, 6);
    // Enough to fill the kernel's buffers, our output buffer and the cap.
    for (int i = 0; i < 2000; i++) {
        sw.input(recorder.id(), wire::Bytes(to_a.data(), to_a.size()));
        if (i % 50 == 0) loop.run_once(0);
    }
    loop.run_once(0);
    EXPECT_GT(listener->stats().tx_full_dropped, 0u);
    EXPECT_EQ(listener->client_count(), 1u);  // dropped frames, not the client
}

TEST_F(WsFixture, RefusedHandshakesGetAnHttpErrorAndNoPort) {
    WsConfig cfg;
    cfg.origins = {"https://copy.sh"};
    listen(cfg);
    int a = connect_tcp();
    send_all(a, request("Origin: https://evil.example\r\n"));
    bool closed = false;
    std::string got = read_until(a, [](const std::string&) { return false; }, &closed);
    EXPECT_EQ(got.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << got;
    EXPECT_TRUE(closed);
    EXPECT_EQ(ports(), 1u);

    int b = connect_tcp();
    send_all(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    closed = false;
    got = read_until(b, [](const std::string&) { return false; }, &closed);
    EXPECT_EQ(got.rfind("HTTP/1.1 426 Upgrade Required\r\n", 0), 0u) << got;

    // A head that never ends within the bound: 431.
    int c = connect_tcp();
    send_all(c, "GET / HTTP/1.1\r\nX: " + std::string(kWsMaxRequestHead, 'a'));
    closed = false;
    got = read_until(c, [](const std::string&) { return false; }, &closed);
    EXPECT_EQ(got.rfind("HTTP/1.1 431 ", 0), 0u) << got;

    int d = open_ws("Origin: https://copy.sh\r\n");
    (void)d;
    EXPECT_EQ(ports(), 2u);
    EXPECT_EQ(listener->stats().handshakes_refused, 3u);
}

TEST_F(WsFixture, SlowHandshakeTimesOut) {
    WsConfig cfg;
    cfg.limits.handshake_timeout_ms = 50;
    listen(cfg);
    int a = connect_tcp();
    send_all(a, "GET / HTTP/1.1\r\n");
    pump_until([&] { return listener->client_count() == 1; });
    bool closed = false;
    read_until(a, [](const std::string&) { return false; }, &closed);
    EXPECT_TRUE(closed);
    EXPECT_EQ(listener->client_count(), 0u);
}

TEST_F(WsFixture, ClientCapAnswers503) {
    WsConfig cfg;
    cfg.limits.max_clients = 1;
    listen(cfg);
    open_ws();
    int b = connect_tcp();
    bool closed = false;
    std::string got = read_until(b, [](const std::string&) { return false; }, &closed);
    EXPECT_EQ(got.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << got;
    EXPECT_EQ(listener->refused(), 1u);
    EXPECT_EQ(listener->client_count(), 1u);
}

// Connections that never send a request cannot lock clients out: at the
// cap, the oldest of them makes room for a newcomer.
TEST_F(WsFixture, SilentConnectionsMakeRoomForARealClient) {
    WsConfig cfg;
    cfg.limits.max_clients = 3;
    listen(cfg);
    int ws = open_ws();
    int s1 = connect_tcp(), s2 = connect_tcp();
    pump_until([&] { return listener->client_count() == 3; });
    int c = open_ws();  // the fourth: s1 goes
    ASSERT_GE(c, 0);
    bool closed = false;
    read_until(s1, [](const std::string&) { return false; }, &closed);
    EXPECT_TRUE(closed) << "the oldest silent connection";
    EXPECT_EQ(listener->refused(), 0u);
    send_all(c, client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 3, 0)));
    pump_until([&] { return !recorder.frames.empty(); });
    EXPECT_EQ(recorder.frames.size(), 1u);
    (void)ws;
    (void)s2;
}

// Control frames and empty continuations count against the frame rate as
// data frames do: a flood of pongs is held back, not read at full speed.
TEST_F(WsFixture, ControlFramesAndFragmentsCountAgainstTheFrameRate) {
    WsConfig cfg;
    cfg.limits.rx_frames_burst = 3;
    cfg.limits.rx_frames_per_sec = 2;
    listen(cfg);
    int a = open_ws();
    std::string pongs;
    for (int i = 0; i < 6; i++) pongs += client_frame(WSLAY_PONG, Frame{'p'});
    send_all(a, pongs);
    pump_until([] { return false; }, 5);
    send_all(a, client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 4, 9)));
    pump_until([] { return false; }, 20);  // 200 ms: held back
    EXPECT_EQ(listener->stats().rate_paused, 1u);
    EXPECT_TRUE(recorder.frames.empty());
    // A message cut into 4 fragments is 4 frames.
    WsConfig one;
    one.limits.rx_frames_burst = 3;
    one.limits.rx_frames_per_sec = 2;
    listener.reset();
    listen(one);
    int b = open_ws();
    Frame f = eth_frame(60, 4, 0);
    std::string parts = client_frame(WSLAY_BINARY_FRAME, Frame(f.begin(), f.begin() + 20), false);
    parts += client_frame(WSLAY_CONTINUATION_FRAME, Frame(f.begin() + 20, f.begin() + 40), false);
    parts += client_frame(WSLAY_CONTINUATION_FRAME, Frame(), false);
    parts += client_frame(WSLAY_CONTINUATION_FRAME, Frame(f.begin() + 40, f.end()), true);
    send_all(b, parts);
    pump_until([&] { return !recorder.frames.empty(); });
    ASSERT_EQ(recorder.frames.size(), 1u);
    EXPECT_EQ(recorder.frames[0], f);
    send_all(b, client_frame(WSLAY_BINARY_FRAME, eth_frame(60, 4, 1)));
    pump_until([] { return false; }, 20);
    EXPECT_EQ(listener->stats().rate_paused, 1u) << "4 frames against a burst of 3";
}

// usernet stopping says so: a close frame with 1001 (going away), not a
// bare EOF that a browser reports as 1006.
TEST_F(WsFixture, StoppingSendsGoingAway) {
    listen();
    int a = open_ws();
    listener.reset();
    ServerFrame f = next_frame(a);
    EXPECT_EQ(f.opcode, WSLAY_CONNECTION_CLOSE);
    ASSERT_GE(f.payload.size(), 2u);
    EXPECT_EQ((f.payload[0] << 8) | f.payload[1], 1001);
}

TEST_F(WsFixture, UrlForTheBanner) {
    listen();
    EXPECT_EQ(listener->url(), "ws://127.0.0.1:" + std::to_string(listener->port()) + "/");
    // A wildcard listener is reached at this host's loopback, not at the
    // wildcard itself (which no browser can connect to).
    WsListener any4(loop, sw, "0.0.0.0", 0, WsConfig{});
    EXPECT_EQ(any4.url(), "ws://127.0.0.1:" + std::to_string(any4.port()) + "/");
    WsListener any6(loop, sw, "::", 0, WsConfig{});
    EXPECT_EQ(any6.url(), "ws://[::1]:" + std::to_string(any6.port()) + "/");
}

}  // namespace
}  // namespace usernet::ports
