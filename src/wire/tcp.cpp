#include "wire/tcp.hpp"

namespace usernet::wire {

namespace {
namespace opt {
constexpr uint8_t end = 0, nop = 1, mss = 2, wscale = 3, sack_ok = 4, sack = 5, timestamp = 8;
}
}  // namespace

TcpOptions parse_tcp_options(Bytes opts) {
    TcpOptions o;
    size_t i = 0;
    while (i < opts.size()) {
        uint8_t kind = opts[i];
        if (kind == opt::end) break;
        if (kind == opt::nop) {
            i++;
            continue;
        }
        if (i + 1 >= opts.size()) break;
        size_t len = opts[i + 1];
        if (len < 2 || i + len > opts.size()) break;
        const uint8_t* v = &opts[i + 2];
        switch (kind) {
        case opt::mss:
            if (len == 4) o.mss = load16(v);
            break;
        case opt::wscale:
            if (len == 3) o.wscale = v[0] > 14 ? uint8_t{14} : v[0];
            break;
        case opt::sack_ok:
            if (len == 2) o.sack_permitted = true;
            break;
        case opt::sack:
            if (len >= 10 && (len - 2) % 8 == 0) {
                o.sack_blocks = 0;
                for (size_t b = 0; b < (len - 2) / 8 && b < o.sack.size(); b++) {
                    o.sack[b] = {load32(v + 8 * b), load32(v + 8 * b + 4)};
                    o.sack_blocks++;
                }
            }
            break;
        case opt::timestamp:
            if (len == 10) {
                o.ts_val = load32(v);
                o.ts_ecr = load32(v + 4);
            }
            break;
        default:
            break;
        }
        i += len;
    }
    return o;
}

size_t build_tcp(uint8_t* p, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                 uint8_t flags, uint16_t window, const TcpOptionsOut* opts) {
    size_t olen = 0;
    uint8_t* o = p + kTcpHeaderLen;
    if (opts) {
        if (opts->mss) {
            o[olen++] = opt::mss;
            o[olen++] = 4;
            store16(o + olen, opts->mss);
            olen += 2;
        }
        if (opts->sack_permitted) {
            o[olen++] = opt::nop;
            o[olen++] = opt::nop;
            o[olen++] = opt::sack_ok;
            o[olen++] = 2;
        }
        if (opts->wscale >= 0) {
            o[olen++] = opt::nop;
            o[olen++] = opt::wscale;
            o[olen++] = 3;
            o[olen++] = static_cast<uint8_t>(opts->wscale);
        }
        while (olen % 4) o[olen++] = opt::end;
    }
    size_t hl = kTcpHeaderLen + olen;
    store16(p, sport);
    store16(p + 2, dport);
    store32(p + 4, seq);
    store32(p + 8, ack);
    p[12] = static_cast<uint8_t>((hl / 4) << 4);
    p[13] = flags;
    store16(p + 14, window);
    store16(p + 16, 0);
    store16(p + 18, 0);
    return hl;
}

}  // namespace usernet::wire
