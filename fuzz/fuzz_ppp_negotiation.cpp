// Fuzzes LCP and IPCP (ports/ppp.hpp): the option parsers and the
// negotiation automaton, through a whole PppLink as usernet runs it, with
// a host that records what the link sends.
//
// The input is a sequence of operations, each [op][len][len bytes]:
//   op % 8 == 0  the bytes as raw line input (framing and all)
//            1  an LCP packet, framed correctly (default framing)
//            2  an IPCP packet, framed correctly
//            3  an IP packet (compressed framing when the byte says so)
//            4  the LCP restart timer fires
//            5  the IPCP restart timer fires
//            6  the peer's address becomes known (10.0.2.15)
//            7  another protocol (its number from the first two bytes)
// Checked after every operation: each frame the link wrote decodes with a
// good FCS; each LCP/IPCP packet in it has a consistent length and, for
// codes 1..4, well-formed options; Configure-Ack/Nak/Reject answer a
// request of the peer's (same identifier); IP is only delivered while IPCP
// is open, and ip_up() says the same as the host's callbacks.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_check.hpp"
#include "ports/ppp.hpp"

using namespace usernet;
using namespace usernet::ports;

namespace {

struct Host : ppp::PppHost {
    ppp::HdlcDecoder dec{70000};
    bool up = false;
    int ip_in = 0;
    int frames = 0;
    std::vector<uint8_t> peer_ids;  // identifiers of the peer's requests

    Host() {
        dec.set_rx_accm(0);
        dec.set_fcs32(true);
    }
    void ppp_write(wire::Bytes b) override {
        int before = frames;
        dec.feed(b, [&](wire::Bytes f) {
            frames++;
            auto pf = ppp::parse_frame(f);
            FUZZ_CHECK(pf);
            if (pf->protocol != ppp::proto::lcp && pf->protocol != ppp::proto::ipcp) return;
            auto c = ppp::CtlPacket::parse(pf->info);
            FUZZ_CHECK(c && c->data.size() + 4 == pf->info.size());
            if (c->code >= ppp::code::configure_request && c->code <= ppp::code::configure_reject)
                FUZZ_CHECK(ppp::OptionIter::valid(c->data));
            if (c->code >= ppp::code::configure_ack && c->code <= ppp::code::configure_reject) {
                bool known = false;
                for (uint8_t id : peer_ids) known |= id == c->id;
                FUZZ_CHECK(known);
            }
        });
        FUZZ_CHECK(frames == before + 1);  // one whole frame per write
        FUZZ_CHECK(dec.stats().bad_fcs == 0);
    }
    void ppp_ip_input(wire::Bytes) override {
        FUZZ_CHECK(up);  // IP only while IPCP is open
        ip_in++;
    }
    void ppp_ip_up(wire::Ipv4) override { up = true; }
    void ppp_ip_down() override { up = false; }
    void ppp_arm_timer(int, uint32_t) override {}
    void ppp_cancel_timer(int) override {}
    uint32_t ppp_random() override { return rnd = rnd * 1103515245u + 12345u; }
    uint32_t rnd = 1;
};

std::vector<uint8_t> frame(uint16_t protocol, wire::Bytes info, bool compressed) {
    ppp::TxOptions o;
    if (compressed) {
        o.accm = 0;
        o.acfc = o.pfc = true;
    }
    std::vector<uint8_t> out(ppp::hdlc_max_encoded(info.size()));
    out.resize(ppp::hdlc_encode(out, protocol, info, o));
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Host host;
    ppp::PppConfig cfg{0x0a000202, 0x0a000203, 1500, (size & 1) != 0};
    ppp::PppLink link(host, cfg);
    // Two mirrors of the link's decoder, one per receive ACCM it may use:
    // the identifiers of every request it can have seen.
    ppp::HdlcDecoder mirror[2] = {ppp::HdlcDecoder(1508), ppp::HdlcDecoder(1508)};
    mirror[0].set_rx_accm(0);
    for (auto& m : mirror) m.set_fcs32(true);
    auto line = [&](wire::Bytes b) {
        for (auto& m : mirror)
            m.feed(b, [&](wire::Bytes f) {
                auto pf = ppp::parse_frame(f);
                if (!pf) return;
                auto c = ppp::CtlPacket::parse(pf->info);
                if (c && c->code == ppp::code::configure_request) host.peer_ids.push_back(c->id);
            });
        link.input(b);
    };
    link.start();
    size_t i = 0;
    while (i + 2 <= size) {
        uint8_t op = data[i] % 8;
        size_t len = std::min<size_t>(data[i + 1], size - i - 2);
        wire::Bytes body(data + i + 2, len);
        i += 2 + len;
        switch (op) {
        case 0:
            line(body);
            break;
        case 1:
        case 2:
            line(frame(op == 1 ? ppp::proto::lcp : ppp::proto::ipcp, body, false));
            break;
        case 3:
            line(frame(ppp::proto::ip, body, !body.empty() && (body[0] & 1)));
            break;
        case 4:
            link.timeout(0);
            break;
        case 5:
            link.timeout(1);
            break;
        case 6:
            link.set_peer_addr(0x0a00020f);
            break;
        default:
            if (body.size() >= 2)
                line(frame(static_cast<uint16_t>((body[0] << 8) | body[1] | 1), body.subspan(2),
                           false));
        }
        FUZZ_CHECK(host.up == link.ip_up());
    }
    return 0;
}
