// Fuzzes the serial line decoders (ports/ppp.hpp, ports/slip.hpp): the
// input is a byte stream as the peer's UART would deliver it, fed in
// chunks whose sizes the first bytes pick.
//   - HdlcDecoder (FCS-16, and FCS-32 too when data[0] & 1; the receive
//     ACCM all or none by data[0] & 2): every frame it yields is no longer
//     than its buffer; parse_frame(), CtlPacket::parse() and OptionIter
//     walk it. A frame re-encoded with hdlc_encode() (the default framing,
//     and the compressed one) must decode to the same bytes.
//   - SlipDecoder: every packet fits its buffer; re-encoded with
//     slip_encode() it decodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_check.hpp"
#include "ports/ppp.hpp"
#include "ports/slip.hpp"

using namespace usernet;
using namespace usernet::ports;

namespace {

constexpr size_t kMax = 1508;

void walk(wire::Bytes frame) {
    auto pf = ppp::parse_frame(frame);
    if (!pf) return;
    FUZZ_CHECK(pf->info.size() < frame.size());
    auto c = ppp::CtlPacket::parse(pf->info);
    if (!c) return;
    FUZZ_CHECK(c->data.size() + 4 <= pf->info.size());
    ppp::OptionIter it(c->data);
    ppp::OptionIter::Option o;
    size_t total = 0;
    while (it.next(o)) {
        FUZZ_CHECK(o.whole.size() >= 2 && o.value.size() + 2 == o.whole.size());
        total += o.whole.size();
    }
    FUZZ_CHECK(total <= c->data.size());
    FUZZ_CHECK(it.malformed() || total == c->data.size());
}

void roundtrip_hdlc(wire::Bytes frame, bool fcs32) {
    auto pf = ppp::parse_frame(frame);
    if (!pf) return;
    for (int variant = 0; variant < 2; ++variant) {
        ppp::TxOptions o;
        o.fcs32 = fcs32;
        if (variant) {
            o.accm = 0;
            o.acfc = o.pfc = true;
        }
        std::vector<uint8_t> enc(ppp::hdlc_max_encoded(pf->info.size()));
        size_t n = ppp::hdlc_encode(enc, pf->protocol, pf->info, o);
        FUZZ_CHECK(n > 0 && n <= enc.size());
        ppp::HdlcDecoder d(kMax + 8);
        d.set_fcs32(fcs32);
        d.set_rx_accm(0);
        int got = 0;
        d.feed(wire::Bytes(enc.data(), n), [&](wire::Bytes f) {
            got++;
            auto back = ppp::parse_frame(f);
            FUZZ_CHECK(back && back->protocol == pf->protocol);
            FUZZ_CHECK(back->info.size() == pf->info.size());
            FUZZ_CHECK(std::equal(back->info.begin(), back->info.end(), pf->info.begin()));
        });
        FUZZ_CHECK(got == 1);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const bool fcs32 = data[0] & 1;
    const bool accm_all = data[0] & 2;
    const size_t chunk = 1 + data[1] % 64;
    wire::Bytes in(data + 2, size - 2);

    ppp::HdlcDecoder hd(kMax);
    hd.set_fcs32(fcs32);
    hd.set_rx_accm(accm_all ? 0xffffffff : 0);
    slip::SlipDecoder sd(kMax);
    for (size_t off = 0; off < in.size(); off += chunk) {
        wire::Bytes part = in.subspan(off, std::min(chunk, in.size() - off));
        hd.feed(part, [&](wire::Bytes f) {
            FUZZ_CHECK(f.size() <= kMax && f.size() >= 2);
            walk(f);
            roundtrip_hdlc(f, fcs32);
        });
        sd.feed(part, [&](wire::Bytes p) {
            FUZZ_CHECK(!p.empty() && p.size() <= kMax);
            std::vector<uint8_t> enc(slip::slip_max_encoded(p.size()));
            size_t n = slip::slip_encode(enc, p);
            FUZZ_CHECK(n > 0);
            slip::SlipDecoder back(kMax);
            int got = 0;
            back.feed(wire::Bytes(enc.data(), n), [&](wire::Bytes q) {
                got++;
                FUZZ_CHECK(q.size() == p.size() && std::equal(q.begin(), q.end(), p.begin()));
            });
            FUZZ_CHECK(got == 1);
        });
    }
    return 0;
}
