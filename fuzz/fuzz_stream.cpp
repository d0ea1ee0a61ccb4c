// Fuzzes the QEMU stream framing (ports/stream_port.hpp: a 4-byte
// big-endian length, then the frame) both ways, without a socket: the
// parser and the output ring are pure.
//
// Receiving: the input describes a byte stream as records [len32][fill]
// [body16]: a length field as the peer wrote it, then body16 bytes of
// `fill` (so a record may lie about its length, and streams of megabytes
// come from small inputs). The stream goes into StreamFrameParser through
// writable()/commit() in chunks whose sizes the input also picks, the way
// read() would return them. What drain() yields must equal what a plain
// reading of the whole stream yields: the same frames in order, an error
// at the first bad length and nothing after it.
//
// Through a socket (data[0] bit 0x40): the same stream written in the same
// chunks into a socketpair whose other end is a real StreamClient on a
// switch: every frame another port receives must be one of the reference
// frames, in order; the client must close on a bad length and only then;
// and a frame the switch sends to the client must come out of the socket
// framed.
//
// Sending: the frames pushed into a small StreamTxQueue (whole or not at
// all), taken out through peek()/consume() in fuzzed amounts, must read
// back as [padded length][frame][padding to 60] exactly.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "fuzz_check.hpp"
#include "ports/stream_port.hpp"
#include "switch/switch.hpp"
#include "wire/bytes.hpp"

using namespace usernet;
using namespace usernet::ports;

namespace {

struct Reader {
    const uint8_t* p;
    size_t n;
    uint8_t u8() { return n ? (n--, *p++) : 0; }
    uint16_t u16() { return static_cast<uint16_t>((u8() << 8) | u8()); }
    uint32_t u32() { return (uint32_t{u16()} << 16) | u16(); }
};

struct Frame {
    size_t off;  // in the stream
    size_t len;
};

// The plain reading: every complete frame, and whether a bad length stops it.
void reference(const std::vector<uint8_t>& s, std::vector<Frame>& out, bool& error) {
    size_t i = 0;
    error = false;
    while (s.size() - i >= kStreamLenBytes) {
        uint32_t len = wire::load32(&s[i]);
        if (len < kStreamMinFrame || len > kStreamMaxFrame) {
            error = true;
            return;
        }
        if (s.size() - i - kStreamLenBytes < len) return;
        out.push_back({i + kStreamLenBytes, len});
        i += kStreamLenBytes + len;
    }
}

void check_rx(const std::vector<uint8_t>& stream, Reader& chunks, size_t capacity) {
    std::vector<Frame> want;
    bool want_error = false;
    reference(stream, want, want_error);

    StreamFrameParser parser(capacity);
    size_t fed = 0, got = 0;
    bool ok = true;
    while (fed < stream.size() && ok) {
        wire::MutBytes w = parser.writable();
        FUZZ_CHECK(!w.empty());
        // 1..4096 bytes, or all that fits when the chunk byte is 0.
        size_t want_chunk = chunks.u16() % 4096;
        size_t n = std::min({w.size(), stream.size() - fed, want_chunk ? want_chunk : w.size()});
        std::memcpy(w.data(), &stream[fed], n);
        parser.commit(n);
        fed += n;
        ok = parser.drain([&](wire::Bytes f) {
            FUZZ_CHECK(got < want.size());
            FUZZ_CHECK(f.size() == want[got].len);
            FUZZ_CHECK(std::memcmp(f.data(), &stream[want[got].off], f.size()) == 0);
            got++;
        });
        // What stays buffered is less than one whole frame.
        if (ok && parser.buffered() >= kStreamLenBytes) {
            FUZZ_CHECK(parser.buffered() < kStreamLenBytes + kStreamMaxFrame);
        }
    }
    FUZZ_CHECK(got == want.size());
    FUZZ_CHECK(parser.error() == want_error);
    FUZZ_CHECK(ok == !want_error);
    FUZZ_CHECK(!parser.drain([](wire::Bytes) { FUZZ_CHECK(false); }) == parser.error());
}

class CapturePort : public sw::Port {
public:
    void deliver(wire::Bytes frame, const sw::FrameMeta&) override {
        frames.emplace_back(frame.begin(), frame.end());
    }
    uint32_t mtu() const override { return 65520; }
    std::string describe() const override { return "capture"; }
    std::vector<std::vector<uint8_t>> frames;
};

void check_socket(const std::vector<uint8_t>& stream, Reader& chunks) {
    std::vector<Frame> want;
    bool want_error = false;
    reference(stream, want, want_error);

    core::EventLoop loop;
    sw::Switch sw(loop);
    CapturePort cap;
    sw.attach(cap);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    bool closed_cb = false;
    auto client = std::make_unique<StreamClient>(loop, sw, sv[0], "fuzz", 1500,
                                                 [&](StreamClient&) { closed_cb = true; });
    size_t fed = 0;
    for (int round = 0; round < 100000 && fed < stream.size() && !client->closed(); round++) {
        size_t c = chunks.u16() % 8192;
        size_t n = std::min(stream.size() - fed, c ? c : size_t{65536});
        ssize_t k = send(sv[1], &stream[fed], n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0) fed += static_cast<size_t>(k);
        else if (errno != EAGAIN && errno != EWOULDBLOCK) break;
        loop.run_once(0);
    }
    for (int i = 0; i < 64 && !client->closed(); i++) loop.run_once(0);

    if (fed == stream.size()) FUZZ_CHECK(client->closed() == want_error);
    if (client->closed()) {
        FUZZ_CHECK(want_error && client->protocol_errors() == 1);
        loop.run_once(0);  // on_closed runs from the loop's deferred work
        FUZZ_CHECK(closed_cb);
    }
    // What reached the other port is what the peer framed, in order (the
    // switch may drop some: runts, multicast sources).
    size_t j = 0;
    for (const auto& f : cap.frames) {
        while (j < want.size() &&
               (want[j].len != f.size() || std::memcmp(&stream[want[j].off], f.data(), f.size())))
            j++;
        FUZZ_CHECK(j < want.size());
        j++;
    }
    if (!client->closed()) {
        // The way back: a short frame to the client's MACs goes out framed and padded.
        uint8_t frame[42] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06};
        sw.input(cap.id(), wire::Bytes(frame, sizeof frame));
        loop.run_once(0);
        uint8_t buf[64];
        ssize_t k = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
        FUZZ_CHECK(k == 64);
        FUZZ_CHECK(wire::load32(buf) == 60);
        FUZZ_CHECK(std::memcmp(buf + 4, frame, sizeof frame) == 0);
    }
    if (client->shut_down("end of input")) loop.run_once(0);
    client.reset();
    close(sv[1]);
}

void check_tx(const std::vector<uint8_t>& stream, Reader& r) {
    std::vector<Frame> frames;
    bool error = false;
    reference(stream, frames, error);
    StreamTxQueue q(16 * 1024 + (r.u8() & 1) * 200 * 1024);
    std::vector<uint8_t> expect, out;
    for (const Frame& f : frames) {
        wire::Bytes frame(&stream[f.off], f.len);
        size_t before = q.size();
        if (q.push(frame)) {
            uint8_t len[4];
            // The length field counts the padding: the peer sees a 60-byte frame.
            wire::store32(len, static_cast<uint32_t>(std::max<size_t>(f.len, 60)));
            expect.insert(expect.end(), len, len + 4);
            expect.insert(expect.end(), frame.begin(), frame.end());
            if (f.len < 60) expect.insert(expect.end(), 60 - f.len, 0);
            FUZZ_CHECK(q.size() == before + 4 + std::max<size_t>(f.len, 60));
        } else {
            FUZZ_CHECK(q.size() == before);
            FUZZ_CHECK(before + 4 + std::max<size_t>(f.len, 60) > q.capacity());
        }
        // The socket takes some of it.
        iovec iov[2];
        int k = q.peek(iov);
        size_t take = r.u16();
        for (int i = 0; i < k && take > 0; i++) {
            size_t n = std::min(take, iov[i].iov_len);
            auto* b = static_cast<uint8_t*>(iov[i].iov_base);
            out.insert(out.end(), b, b + n);
            q.consume(n);
            take -= n;
        }
    }
    iovec iov[2];
    int k = q.peek(iov);
    for (int i = 0; i < k; i++) {
        auto* b = static_cast<uint8_t*>(iov[i].iov_base);
        out.insert(out.end(), b, b + iov[i].iov_len);
        q.consume(iov[i].iov_len);
    }
    FUZZ_CHECK(q.empty());
    FUZZ_CHECK(out == expect);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    // data[0]: the buffer size (top bit) and how many control bytes follow
    // (chunk sizes, then the output side's amounts); then the records.
    size_t ctl = std::min<size_t>(size - 1, data[0] & 0x3f);
    Reader chunks{data + 1, ctl};
    Reader tx{data + 1, ctl};
    Reader rec{data + 1 + ctl, size - 1 - ctl};
    static std::vector<uint8_t> stream;
    stream.clear();
    while (rec.n > 0 && stream.size() < 4 * 1024 * 1024) {
        uint32_t len = rec.u32();
        uint8_t fill = rec.u8();
        uint16_t body = rec.u16();
        uint8_t field[4];
        wire::store32(field, len);
        stream.insert(stream.end(), field, field + 4);
        stream.insert(stream.end(), body, fill);
    }
    // The smallest buffer that holds a whole frame wraps most often.
    size_t capacity = (data[0] & 0x80) ? StreamFrameParser::kDefaultCapacity
                                       : StreamFrameParser::kMinCapacity;
    if (data[0] & 0x40) {
        Reader sock_chunks{data + 1, ctl};
        if (stream.size() <= 1024 * 1024) check_socket(stream, sock_chunks);
    }
    check_rx(stream, chunks, capacity);
    check_tx(stream, tx);
    return 0;
}
