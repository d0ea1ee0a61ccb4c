// Fuzzes the WebSocket attachment (ports/websocket_port.hpp).
//
// Input: one flags byte, then data.
//   flags bit 0: an Origin allow-list is configured.
//   flags bit 7 clear, handshake mode: data is what a client sends first.
//     ws_request_head_length() finds the head; ws_check_handshake() checks
//     it. Invariants: the head length is within the data and ends in a
//     blank line; an upgrade (101) has a valid key, an allowed Origin and a
//     target starting with '/', and its response carries the accept key;
//     every refusal is an HTTP error status with a response that says
//     "Connection: close" and never echoes the request.
//   flags bit 7 set, session mode: a valid handshake is sent, then data as
//     the WebSocket byte stream (in chunks whose sizes the flags pick), over
//     a socketpair to a real WsClient on a switch (wslay doing the
//     framing). Invariants: the client answers 101; every frame reaching
//     another port is 14..max_frame bytes; the client never crashes, and
//     closes cleanly when told or when the stream breaks the protocol.
// USERNET_FUZZ_DEBUG=1 in the environment logs what the client does.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "fuzz_check.hpp"
#include "ports/websocket_port.hpp"
#include "switch/switch.hpp"

using namespace usernet;
using namespace usernet::ports;

namespace {

const std::vector<std::string> kNone;
const std::vector<std::string> kSome = {"https://copy.sh", "http://localhost:8000"};

void check_handshake(std::string_view data, const std::vector<std::string>& origins) {
    size_t len = ws_request_head_length(data);
    FUZZ_CHECK(len <= data.size());
    if (len == 0) return;
    FUZZ_CHECK(data[len - 1] == '\n' && (data[len - 2] == '\n' || data[len - 2] == '\r'));
    std::string_view head = data.substr(0, len);
    WsHandshake hs = ws_check_handshake(head, origins);
    std::string resp = ws_http_response(hs);
    if (hs.status == 101) {
        FUZZ_CHECK(ws_key_valid(hs.key));
        FUZZ_CHECK(ws_origin_allowed(hs.origin, origins));
        FUZZ_CHECK(!hs.target.empty() && hs.target[0] == '/');
        FUZZ_CHECK(resp.find(ws_accept_key(hs.key)) != std::string::npos);
        FUZZ_CHECK(resp.ends_with("\r\n\r\n"));
    } else {
        FUZZ_CHECK(hs.status >= 400 && hs.status < 500);
        FUZZ_CHECK(!hs.reason.empty());
        FUZZ_CHECK(resp.find("Connection: close\r\n") != std::string::npos);
        // The body is our own text: nothing of the request comes back.
        for (char c : resp) FUZZ_CHECK(c == '\r' || c == '\n' || (c >= ' ' && c < 0x7f));
    }
    // What a proxy forwarded is logged: only address characters.
    for (char c : hs.forwarded) FUZZ_CHECK(std::strchr("0123456789abcdefABCDEF.:, ", c));
}

class CapturePort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        sizes.push_back(frame.size());
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "capture"; }
    std::vector<size_t> sizes;
};

void check_session(std::string_view data, uint8_t flags) {
    core::EventLoop loop;
    sw::Switch sw(loop);
    CapturePort cap;
    sw.attach(cap);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    WsConfig cfg;
    cfg.name = "fuzz";
    cfg.mtu = (flags & 2) ? 1500 : 9000;
    cfg.limits.rx_frames_burst = (flags & 4) ? 5 : 2000;
    cfg.limits.tx_queue_bytes = 8192;
    bool closed_cb = false;
    auto client = std::make_unique<WsClient>(loop, sw, sv[0], "fuzz", cfg,
                                             [&](WsClient&) { closed_cb = true; });
    std::string stream =
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.append(data);
    size_t chunk = (flags & 0x38) ? ((flags >> 3) & 7) * 7 + 1 : 65536;
    size_t fed = 0;
    std::string got;
    char buf[65536];
    for (int round = 0; round < 20000 && !client->closed(); round++) {
        if (fed < stream.size()) {
            size_t n = std::min(stream.size() - fed, chunk);
            ssize_t k = send(sv[1], stream.data() + fed, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0) fed += static_cast<size_t>(k);
        }
        loop.run_once(0);
        ssize_t r = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0 && got.size() < 4096) got.append(buf, static_cast<size_t>(std::min<ssize_t>(r, 4096)));
        if (fed == stream.size() && r <= 0) break;
    }
    if (getenv("USERNET_FUZZ_DEBUG")) fprintf(stderr, "fed %zu/%zu got %zu closed %d [%.60s]\n", fed, stream.size(), got.size(), client->closed(), got.c_str());
    FUZZ_CHECK(got.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
    for (size_t s : cap.sizes) FUZZ_CHECK(s >= 14 && s <= client->max_frame());
    if (!client->closed()) {
        // The way back still works: a broadcast goes out as one binary message.
        uint8_t frame[42] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06};
        sw.input(cap.id(), wire::Bytes(frame, sizeof frame));
        loop.run_once(0);
    }
    if (client->closed()) {
        loop.run_once(0);
        FUZZ_CHECK(closed_cb);
    }
    client->set_on_closed([](WsClient&) {});
    if (client->shut_down("end of input")) loop.run_once(0);
    client.reset();
    close(sv[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static bool quiet = [] {
        spdlog::set_level(getenv("USERNET_FUZZ_DEBUG") ? spdlog::level::debug : spdlog::level::off);
        return true;
    }();
    (void)quiet;
    if (size < 1) return 0;
    uint8_t flags = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    if (flags & 0x80) check_session(rest, flags);
    else check_handshake(rest, (flags & 1) ? kSome : kNone);
    return 0;
}
