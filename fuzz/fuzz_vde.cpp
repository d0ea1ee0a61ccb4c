// Fuzzes the VDE control handshake parser (ports/vde_port.hpp,
// parse_vde_request: what a client sends on DIR/ctl) and the VDE output
// queue.
//
// Parser: the input is the bytes a client sent. Checked properties:
// - an ok request names an absolute path shorter than sun_path, without a
//   NUL, and a description of at most 128 printable bytes;
// - the verdict is monotone in the bytes received: a prefix of an ok
//   request is ok or incomplete (same path once ok), a prefix that is bad
//   stays bad however much follows, and an incomplete one is shorter than
//   the fixed part of its version;
// - nothing reads outside the buffer (ASan: the parser gets an exact-size
//   copy).
//
// Queue (data[0] == 'Q'): the rest of the input is a script of pushes
// (length from two bytes) and pops; the frames that come out must equal a
// plain FIFO model of what was accepted, each padded to 60 bytes, and the
// queue must refuse exactly what does not fit its bounds.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "fuzz_check.hpp"
#include "ports/vde_port.hpp"

using namespace usernet;
using namespace usernet::ports;

namespace {

VdeParse parse_copy(const uint8_t* data, size_t n) {
    std::vector<uint8_t> copy(data, data + n);  // exact size for ASan
    return parse_vde_request(wire::Bytes(copy.data(), copy.size()));
}

void check_ok(const VdeParse& p) {
    FUZZ_CHECK(p.req.version == 1 || p.req.version == 3);
    FUZZ_CHECK((p.req.type & 0xff) <= 1);
    FUZZ_CHECK(p.req.port == p.req.type >> 8);
    FUZZ_CHECK(!p.req.path.empty() && p.req.path[0] == '/');
    FUZZ_CHECK(p.req.path.size() < kVdeSunPathLen);
    FUZZ_CHECK(p.req.path.find('\0') == std::string::npos);
    FUZZ_CHECK(p.req.description.size() <= kVdeDescrMax);
    for (char c : p.req.description) FUZZ_CHECK(c >= 0x20 && c < 0x7f);
}

void fuzz_parser(const uint8_t* data, size_t size) {
    VdeParse full = parse_copy(data, size);
    if (full.status == VdeParse::ok) check_ok(full);
    if (full.status == VdeParse::bad) FUZZ_CHECK(full.error != nullptr);
    if (full.status == VdeParse::need_more) FUZZ_CHECK(size < kVdeV1Fixed);
    // Prefixes: a few cut points, and every one for short inputs.
    std::vector<size_t> cuts;
    if (size <= 300) {
        for (size_t n = 0; n < size; n++) cuts.push_back(n);
    } else {
        cuts = {0, 4, 8, 12, kVdeV3Fixed, kVdeV1Fixed, size / 2, size - 1};
    }
    for (size_t n : cuts) {
        if (n >= size) continue;
        VdeParse p = parse_copy(data, n);
        if (p.status == VdeParse::bad) FUZZ_CHECK(full.status == VdeParse::bad);
        if (full.status == VdeParse::ok) {
            FUZZ_CHECK(p.status != VdeParse::bad);
            if (p.status == VdeParse::ok) {
                FUZZ_CHECK(p.req.path == full.req.path);
                FUZZ_CHECK(p.req.version == full.req.version);
                FUZZ_CHECK(p.req.description.size() <= full.req.description.size());
                FUZZ_CHECK(full.req.description.compare(0, p.req.description.size(),
                                                        p.req.description) == 0);
            }
        }
    }
}

void fuzz_queue(const uint8_t* data, size_t size) {
    constexpr size_t kBytes = 1 << 16, kFrames = 8;
    VdeTxQueue q(kBytes, kFrames);
    std::deque<std::vector<uint8_t>> model;
    size_t model_bytes = 0;
    size_t i = 0;
    uint8_t fill = 0;
    auto take = [&](size_t n) {
        mmsghdr msgs[8];
        iovec iov[16];
        size_t got = q.peek(msgs, iov, n);
        FUZZ_CHECK(got == std::min(n, model.size()));
        for (size_t k = 0; k < got; k++) {
            std::vector<uint8_t> f;
            for (size_t v = 0; v < msgs[k].msg_hdr.msg_iovlen; v++) {
                auto* b = static_cast<uint8_t*>(msgs[k].msg_hdr.msg_iov[v].iov_base);
                f.insert(f.end(), b, b + msgs[k].msg_hdr.msg_iov[v].iov_len);
            }
            FUZZ_CHECK(f == model.front());
            model_bytes -= f.size();
            model.pop_front();
        }
        q.pop(got);
    };
    while (i < size) {
        uint8_t op = data[i++];
        if (op & 1) {
            take((op >> 1) % 9);
            continue;
        }
        size_t len = (i + 1 < size) ? ((size_t{data[i]} << 8) | data[i + 1]) : 0;
        i += 2;
        if (op & 2) len = len % 2000;  // mostly ordinary frames
        std::vector<uint8_t> f(len);
        for (auto& b : f) b = fill++;
        size_t padded = std::max<size_t>(len, 60);
        bool fits = len > 0 && len <= 65535 && model.size() < kFrames &&
                    model_bytes + padded <= kBytes;
        FUZZ_CHECK(q.push(f) == fits);
        if (fits) {
            f.resize(padded, 0);
            model_bytes += padded;
            model.push_back(std::move(f));
        }
        FUZZ_CHECK(q.frames() == model.size() && q.bytes() == model_bytes);
    }
    take(8);
    take(8);
    FUZZ_CHECK(q.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 0 && data[0] == 'Q') {
        fuzz_queue(data + 1, size - 1);
        return 0;
    }
    fuzz_parser(data, size);
    return 0;
}
