// PPP: framing, the option negotiation automaton, LCP and IPCP (see ppp.hpp).
#include "ports/ppp.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

namespace usernet::ports::ppp {
namespace {

constexpr std::array<uint16_t, 256> make_fcs16_table() {
    std::array<uint16_t, 256> t{};
    for (uint32_t b = 0; b < 256; ++b) {
        uint32_t v = b;
        for (int i = 0; i < 8; ++i) v = (v & 1) ? (v >> 1) ^ 0x8408 : v >> 1;
        t[b] = static_cast<uint16_t>(v);
    }
    return t;
}
constexpr std::array<uint32_t, 256> make_fcs32_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t b = 0; b < 256; ++b) {
        uint32_t v = b;
        for (int i = 0; i < 8; ++i) v = (v & 1) ? (v >> 1) ^ 0xedb88320u : v >> 1;
        t[b] = v;
    }
    return t;
}
constexpr auto kFcs16Table = make_fcs16_table();
constexpr auto kFcs32Table = make_fcs32_table();

// The largest information field we send (an IP packet of the largest MTU).
constexpr size_t kMaxInfo = 65535;

bool in_accm(uint32_t accm, uint8_t c) { return c < 0x20 && ((accm >> c) & 1u); }

// Appends an option to out at len; false when it does not fit.
bool put_option(wire::MutBytes out, size_t& len, wire::Bytes whole) {
    if (out.size() - len < whole.size()) return false;
    if (!whole.empty()) std::memcpy(out.data() + len, whole.data(), whole.size());
    len += whole.size();
    return true;
}
bool put_u32_option(wire::MutBytes out, size_t& len, uint8_t type, uint32_t v) {
    uint8_t o[6] = {type, 6, 0, 0, 0, 0};
    wire::store32(o + 2, v);
    return put_option(out, len, wire::Bytes(o, 6));
}
bool put_u16_option(wire::MutBytes out, size_t& len, uint8_t type, uint16_t v) {
    uint8_t o[4] = {type, 4, 0, 0};
    wire::store16(o + 2, v);
    return put_option(out, len, wire::Bytes(o, 4));
}

// Collects a reply to a Configure-Request: rejects win over naks, naks over
// the ack (which echoes the request).
struct Judge {
    wire::MutBytes rej, nak;
    size_t rej_len = 0, nak_len = 0;
    bool overflow = false;
    void reject(const OptionIter::Option& o) {
        overflow |= !put_option(rej, rej_len, o.whole);
    }
    void nak_u32(uint8_t type, uint32_t v) { overflow |= !put_u32_option(nak, nak_len, type, v); }
    void nak_u16(uint8_t type, uint16_t v) { overflow |= !put_u16_option(nak, nak_len, type, v); }
    void nak_u8(uint8_t type, uint8_t v) {
        uint8_t o[3] = {type, 3, v};
        overflow |= !put_option(nak, nak_len, wire::Bytes(o, 3));
    }
    // The reply code, its options left in out. nak_allowed false turns naks
    // into rejects of the options concerned (Max-Failure).
    uint8_t finish(wire::Bytes request, wire::MutBytes out, size_t& out_len, bool nak_allowed,
                   wire::Bytes rejected_on_failure) {
        if (overflow) return 0;
        out_len = 0;
        if (rej_len == 0 && nak_len > 0 && !nak_allowed) {
            if (rejected_on_failure.empty()) return 0;
            put_option(out, out_len, rejected_on_failure);
            return code::configure_reject;
        }
        wire::Bytes src = rej_len ? wire::Bytes(rej.data(), rej_len)
                          : nak_len ? wire::Bytes(nak.data(), nak_len)
                                    : request;
        if (src.size() > out.size()) return 0;
        if (!src.empty()) std::memcpy(out.data(), src.data(), src.size());
        out_len = src.size();
        return rej_len ? code::configure_reject : nak_len ? code::configure_nak : code::configure_ack;
    }
};

}  // namespace

// ---------------------------------------------------------------- FCS

uint16_t fcs16(uint16_t fcs, wire::Bytes data) {
    for (uint8_t b : data) fcs = static_cast<uint16_t>((fcs >> 8) ^ kFcs16Table[(fcs ^ b) & 0xff]);
    return fcs;
}

uint32_t fcs32(uint32_t fcs, wire::Bytes data) {
    for (uint8_t b : data) fcs = (fcs >> 8) ^ kFcs32Table[(fcs ^ b) & 0xff];
    return fcs;
}

// ---------------------------------------------------------------- packets

std::optional<CtlPacket> CtlPacket::parse(wire::Bytes pkt) {
    if (pkt.size() < 4) return std::nullopt;
    size_t len = wire::load16(&pkt[2]);
    if (len < 4 || len > pkt.size()) return std::nullopt;
    CtlPacket p;
    p.code = pkt[0];
    p.id = pkt[1];
    p.data = pkt.subspan(4, len - 4);
    return p;
}

bool OptionIter::next(Option& out) {
    if (bad_ || pos_ >= opts_.size()) return false;
    if (opts_.size() - pos_ < 2) {
        bad_ = true;
        return false;
    }
    size_t len = opts_[pos_ + 1];
    if (len < 2 || len > opts_.size() - pos_) {
        bad_ = true;
        return false;
    }
    out.type = opts_[pos_];
    out.whole = opts_.subspan(pos_, len);
    out.value = out.whole.subspan(2);
    pos_ += len;
    return true;
}

bool OptionIter::valid(wire::Bytes opts) {
    OptionIter it(opts);
    Option o;
    while (it.next(o)) {
    }
    return !it.malformed();
}

// ---------------------------------------------------------------- framing

HdlcDecoder::HdlcDecoder(size_t max_frame) : cap_(std::max<size_t>(max_frame, 8)) {
    buf_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
}

wire::Bytes HdlcDecoder::finish() {
    wire::Bytes f(buf_.get(), len_);
    if (len_ < 4) {
        stats_.runts++;
        return {};
    }
    if (fcs32_ && len_ >= 6 && fcs32(kFcs32Init, f) == kFcs32Good) {
        stats_.frames++;
        return f.first(len_ - 4);
    }
    if (fcs16(kFcs16Init, f) == kFcs16Good) {
        stats_.frames++;
        return f.first(len_ - 2);
    }
    stats_.bad_fcs++;
    return {};
}

size_t hdlc_encode(wire::MutBytes out, uint16_t protocol, wire::Bytes info, const TxOptions& o) {
    if (out.size() < hdlc_max_encoded(info.size())) return 0;
    uint8_t hdr[4];
    size_t h = 0;
    if (!o.acfc) {
        hdr[h++] = 0xff;
        hdr[h++] = 0x03;
    }
    // A compressed protocol field with no address, control or information
    // would leave one byte before the FCS: a runt to the peer (RFC 1662
    // 4.3: fewer than 4 octets with FCS-16 are discarded), so it stays
    // two bytes then.
    if (o.pfc && protocol < 0x100 && (h > 0 || !info.empty())) {
        hdr[h++] = static_cast<uint8_t>(protocol);
    } else {
        hdr[h++] = static_cast<uint8_t>(protocol >> 8);
        hdr[h++] = static_cast<uint8_t>(protocol);
    }
    uint8_t* p = out.data();
    size_t n = 0;
    auto put = [&](uint8_t c) {
        if (c == 0x7e || c == 0x7d || in_accm(o.accm, c)) {
            p[n++] = 0x7d;
            p[n++] = static_cast<uint8_t>(c ^ 0x20);
        } else {
            p[n++] = c;
        }
    };
    p[n++] = 0x7e;
    for (size_t i = 0; i < h; ++i) put(hdr[i]);
    for (uint8_t c : info) put(c);
    if (o.fcs32) {
        uint32_t f = ~fcs32(fcs32(kFcs32Init, wire::Bytes(hdr, h)), info);
        for (int i = 0; i < 4; ++i) put(static_cast<uint8_t>(f >> (8 * i)));
    } else {
        uint16_t f = static_cast<uint16_t>(~fcs16(fcs16(kFcs16Init, wire::Bytes(hdr, h)), info));
        put(static_cast<uint8_t>(f));
        put(static_cast<uint8_t>(f >> 8));
    }
    p[n++] = 0x7e;
    return n;
}

std::optional<PppFrame> parse_frame(wire::Bytes f) {
    size_t i = 0;
    if (f.size() >= 2 && f[0] == 0xff && f[1] == 0x03) i = 2;
    if (i >= f.size()) return std::nullopt;
    uint16_t p = f[i];
    if (p & 1) {
        i += 1;
    } else {
        if (i + 1 >= f.size()) return std::nullopt;
        p = static_cast<uint16_t>((p << 8) | f[i + 1]);
        if (!(p & 1)) return std::nullopt;
        i += 2;
    }
    return PppFrame{p, f.subspan(i)};
}

const char* to_string(FsmState s) {
    switch (s) {
    case FsmState::initial: return "Initial";
    case FsmState::starting: return "Starting";
    case FsmState::closed: return "Closed";
    case FsmState::stopped: return "Stopped";
    case FsmState::closing: return "Closing";
    case FsmState::stopping: return "Stopping";
    case FsmState::req_sent: return "Req-Sent";
    case FsmState::ack_rcvd: return "Ack-Rcvd";
    case FsmState::ack_sent: return "Ack-Sent";
    case FsmState::opened: return "Opened";
    }
    return "?";
}

// ---------------------------------------------------------------- Fsm

void Fsm::set(FsmState s) {
    if (s != state_) spdlog::debug("ppp {}: {} -> {}", name_, to_string(state_), to_string(s));
    state_ = s;
    switch (s) {
    case FsmState::closing:
    case FsmState::stopping:
    case FsmState::req_sent:
    case FsmState::ack_rcvd:
    case FsmState::ack_sent:
        break;  // the restart timer runs
    default:
        stop_timer();
    }
}

void Fsm::arm() { link_.host().ppp_arm_timer(timer_, kRestartMs); }
void Fsm::stop_timer() { link_.host().ppp_cancel_timer(timer_); }

void Fsm::send(uint8_t c, uint8_t id, wire::Bytes data) {
    auto& buf = link_.scratch_;
    size_t n = std::min(data.size(), buf.size() - 4);
    buf[0] = c;
    buf[1] = id;
    wire::store16(&buf[2], static_cast<uint16_t>(n + 4));
    if (n) std::memcpy(&buf[4], data.data(), n);
    link_.send_packet(protocol_, wire::Bytes(buf.data(), n + 4));
}

void Fsm::scr() {
    req_len_ = build_request(wire::MutBytes(req_.data(), req_.size()));
    req_id_ = next_id_++;
    restart_--;
    send(code::configure_request, req_id_, wire::Bytes(req_.data(), req_len_));
    arm();
}

void Fsm::str() {
    restart_--;
    send(code::terminate_request, next_id_++, {});
    arm();
}

void Fsm::sta(uint8_t id) { send(code::terminate_ack, id, {}); }

void Fsm::scj(wire::Bytes pkt) {
    link_.stats_.code_rejects_sent++;
    size_t room = std::max<size_t>(link_.lcp_.peer_mru, 64) - 4;
    send(code::code_reject, next_id_++, pkt.first(std::min(pkt.size(), room)));
}

void Fsm::up() {
    switch (state_) {
    case FsmState::initial:
        set(FsmState::closed);
        break;
    case FsmState::starting:
        irc(false);
        failures_ = 0;
        scr();
        set(FsmState::req_sent);
        break;
    default:
        break;
    }
}

void Fsm::down() {
    switch (state_) {
    case FsmState::closed:
    case FsmState::closing:
        set(FsmState::initial);
        break;
    case FsmState::stopped:
        set(FsmState::starting);
        tls();
        break;
    case FsmState::stopping:
    case FsmState::req_sent:
    case FsmState::ack_rcvd:
    case FsmState::ack_sent:
        set(FsmState::starting);
        break;
    case FsmState::opened:
        set(FsmState::starting);
        tld();
        break;
    default:
        break;
    }
}

void Fsm::open() {
    switch (state_) {
    case FsmState::initial:
        set(FsmState::starting);
        tls();
        break;
    case FsmState::closed:
        irc(false);
        failures_ = 0;
        scr();
        set(FsmState::req_sent);
        break;
    case FsmState::closing:
        set(FsmState::stopping);
        break;
    default:
        break;
    }
}

void Fsm::close() {
    switch (state_) {
    case FsmState::starting:
        set(FsmState::initial);
        tlf();
        break;
    case FsmState::stopped:
        set(FsmState::closed);
        break;
    case FsmState::stopping:
        set(FsmState::closing);
        break;
    case FsmState::req_sent:
    case FsmState::ack_rcvd:
    case FsmState::ack_sent:
        irc(true);
        str();
        set(FsmState::closing);
        break;
    case FsmState::opened:
        tld();
        irc(true);
        str();
        set(FsmState::closing);
        break;
    default:
        break;
    }
}

void Fsm::timeout() {
    if (restart_ > 0) {  // TO+
        switch (state_) {
        case FsmState::closing:
        case FsmState::stopping:
            str();
            break;
        case FsmState::req_sent:
        case FsmState::ack_rcvd:
            scr();
            set(FsmState::req_sent);
            break;
        case FsmState::ack_sent:
            scr();
            break;
        default:
            break;
        }
        return;
    }
    switch (state_) {  // TO-
    case FsmState::closing:
        set(FsmState::closed);
        tlf();
        break;
    case FsmState::stopping:
    case FsmState::req_sent:
    case FsmState::ack_rcvd:
    case FsmState::ack_sent:
        set(FsmState::stopped);
        tlf();
        break;
    default:
        break;
    }
}

void Fsm::input(wire::Bytes pkt) {
    auto p = CtlPacket::parse(pkt);
    if (!p || state_ == FsmState::initial || state_ == FsmState::starting) {
        link_.stats_.rx_dropped++;
        return;
    }
    switch (p->code) {
    case code::configure_request:
        rcr(*p);
        break;
    case code::configure_ack:
        rca(*p);
        break;
    case code::configure_nak:
        rcn(*p, false);
        break;
    case code::configure_reject:
        rcn(*p, true);
        break;
    case code::terminate_request:
        rtr(*p);
        break;
    case code::terminate_ack:
        rta();
        break;
    case code::code_reject:
        // Rejecting a code we cannot do without is fatal (RXJ-).
        rxj(!p->data.empty() && p->data[0] >= code::configure_request &&
            p->data[0] <= code::code_reject);
        break;
    default:
        if (!extra_code(*p)) scj(pkt.first(std::min<size_t>(pkt.size(), 4 + p->data.size())));
    }
}

void Fsm::rcr(const CtlPacket& p) {
    switch (state_) {
    case FsmState::closed:
        sta(p.id);
        return;
    case FsmState::closing:
    case FsmState::stopping:
        return;
    default:
        break;
    }
    std::array<uint8_t, 1600> reply;
    size_t reply_len = 0;
    uint8_t c = judge_request(p.data, wire::MutBytes(reply.data(), reply.size()), reply_len,
                              failures_ < kMaxFailure);
    if (c == 0) {
        link_.stats_.rx_dropped++;
        return;
    }
    const bool good = c == code::configure_ack;
    // Max-Failure counts the Naks sent without an Ack between (RFC 1661
    // 4.6): an Ack starts it again, so renegotiations on one connection
    // do not add up to Rejects.
    if (c == code::configure_nak) failures_++;
    if (good) failures_ = 0;
    const wire::Bytes r(reply.data(), reply_len);
    switch (state_) {
    case FsmState::stopped:
        irc(false);
        scr();
        send(c, p.id, r);
        set(good ? FsmState::ack_sent : FsmState::req_sent);
        break;
    case FsmState::req_sent:
        send(c, p.id, r);
        if (good) set(FsmState::ack_sent);
        break;
    case FsmState::ack_rcvd:
        send(c, p.id, r);
        if (good) {
            set(FsmState::opened);
            tlu();
        }
        break;
    case FsmState::ack_sent:
        send(c, p.id, r);
        if (!good) set(FsmState::req_sent);
        break;
    case FsmState::opened:
        tld();
        scr();
        send(c, p.id, r);
        set(good ? FsmState::ack_sent : FsmState::req_sent);
        break;
    default:
        break;
    }
}

void Fsm::rca(const CtlPacket& p) {
    // An ack must echo our current request exactly.
    if (p.id != req_id_ || p.data.size() != req_len_ ||
        !std::equal(p.data.begin(), p.data.end(), req_.begin())) {
        link_.stats_.rx_dropped++;
        return;
    }
    switch (state_) {
    case FsmState::closed:
    case FsmState::stopped:
        sta(p.id);
        break;
    case FsmState::req_sent:
        irc(false);
        on_ack(p.data);
        set(FsmState::ack_rcvd);
        break;
    case FsmState::ack_rcvd:
        scr();
        set(FsmState::req_sent);
        break;
    case FsmState::ack_sent:
        irc(false);
        on_ack(p.data);
        set(FsmState::opened);
        tlu();
        break;
    case FsmState::opened:
        tld();
        scr();
        set(FsmState::req_sent);
        break;
    default:
        break;
    }
}

void Fsm::rcn(const CtlPacket& p, bool reject) {
    if (p.id != req_id_ || !OptionIter::valid(p.data)) {
        link_.stats_.rx_dropped++;
        return;
    }
    auto apply = [&] {
        if (reject) on_reject(p.data);
        else on_nak(p.data);
    };
    switch (state_) {
    case FsmState::closed:
    case FsmState::stopped:
        sta(p.id);
        break;
    case FsmState::req_sent:
    case FsmState::ack_sent:
        irc(false);
        apply();
        scr();
        break;
    case FsmState::ack_rcvd:
        apply();
        scr();
        set(FsmState::req_sent);
        break;
    case FsmState::opened:
        tld();
        apply();
        scr();
        set(FsmState::req_sent);
        break;
    default:
        break;
    }
}

void Fsm::rtr(const CtlPacket& p) {
    switch (state_) {
    case FsmState::closed:
    case FsmState::stopped:
    case FsmState::closing:
    case FsmState::stopping:
        sta(p.id);
        break;
    case FsmState::req_sent:
    case FsmState::ack_rcvd:
    case FsmState::ack_sent:
        sta(p.id);
        set(FsmState::req_sent);
        break;
    case FsmState::opened:
        tld();
        restart_ = 0;  // zrc: one restart period, then Stopped
        sta(p.id);
        set(FsmState::stopping);
        arm();
        break;
    default:
        break;
    }
}

void Fsm::rta() {
    switch (state_) {
    case FsmState::closing:
        set(FsmState::closed);
        tlf();
        break;
    case FsmState::stopping:
        set(FsmState::stopped);
        tlf();
        break;
    case FsmState::ack_rcvd:
        set(FsmState::req_sent);
        break;
    case FsmState::opened:
        tld();
        scr();
        set(FsmState::req_sent);
        break;
    default:
        break;
    }
}

void Fsm::rxj(bool fatal) {
    if (!fatal) {
        if (state_ == FsmState::ack_rcvd) set(FsmState::req_sent);
        return;
    }
    switch (state_) {
    case FsmState::closed:
    case FsmState::stopped:
        tlf();
        break;
    case FsmState::closing:
        set(FsmState::closed);
        tlf();
        break;
    case FsmState::stopping:
    case FsmState::req_sent:
    case FsmState::ack_rcvd:
    case FsmState::ack_sent:
        set(FsmState::stopped);
        tlf();
        break;
    case FsmState::opened:
        tld();
        irc(true);
        str();
        set(FsmState::stopping);
        break;
    default:
        break;
    }
}

// ---------------------------------------------------------------- LCP

Lcp::Lcp(PppLink& link) : Fsm(link, proto::lcp, 0, "LCP") {}

size_t Lcp::build_request(wire::MutBytes out) {
    if (magic == 0) magic = link_.host().ppp_random() | 1;
    size_t n = 0;
    if (want_mru_) put_u16_option(out, n, lcpopt::mru, want_mru_value_);
    if (want_accm_) put_u32_option(out, n, lcpopt::accm, want_accm_value_);
    if (want_magic_) put_u32_option(out, n, lcpopt::magic, magic);
    if (want_pfc_) put_option(out, n, std::array<uint8_t, 2>{lcpopt::pfc, 2});
    if (want_acfc_) put_option(out, n, std::array<uint8_t, 2>{lcpopt::acfc, 2});
    if (want_fcs32_) put_option(out, n, std::array<uint8_t, 3>{lcpopt::fcs_alt, 3, kFcs32});
    return n;
}

uint8_t Lcp::judge_request(wire::Bytes opts, wire::MutBytes out, size_t& out_len,
                           bool nak_allowed) {
    std::array<uint8_t, 1600> rej, nak;
    Judge j{rej, nak};
    uint16_t mru = 1500;
    uint32_t accm = 0xffffffff, his_magic = 0;
    bool pfc = false, acfc = false, fcs32 = false, looped = false;
    wire::Bytes last_nak;  // the option to reject instead, past Max-Failure
    OptionIter it(opts);
    OptionIter::Option o;
    while (it.next(o)) {
        const size_t vlen = o.value.size();
        switch (o.type) {
        case lcpopt::mru:
            if (vlen != 2) {
                j.reject(o);
            } else if (wire::load16(o.value.data()) < 128) {
                j.nak_u16(lcpopt::mru, 128);
                last_nak = o.whole;
            } else {
                mru = wire::load16(o.value.data());
            }
            break;
        case lcpopt::accm:
            if (vlen != 4) j.reject(o);
            else accm = wire::load32(o.value.data());
            break;
        case lcpopt::magic:
            if (vlen != 4) {
                j.reject(o);
                break;
            }
            his_magic = wire::load32(o.value.data());
            if (his_magic == 0 || his_magic == magic) {
                // Equal to ours: our own request came back, the line loops
                // (or the peer is unlucky). Nak with another number; a Nak
                // of ours that loops back makes us take a new one too.
                if (his_magic != 0) {
                    link_.stats_.loops_detected++;
                    looped = true;
                }
                j.nak_u32(lcpopt::magic, link_.host().ppp_random() | 2);
                last_nak = o.whole;
            }
            break;
        case lcpopt::pfc:
            if (vlen != 0) j.reject(o);
            else pfc = true;
            break;
        case lcpopt::acfc:
            if (vlen != 0) j.reject(o);
            else acfc = true;
            break;
        case lcpopt::fcs_alt:
            if (vlen != 1) {
                j.reject(o);
            } else if (o.value[0] == kFcs32) {
                fcs32 = true;
            } else if (o.value[0] == kFcs16) {
                fcs32 = false;
            } else {
                j.nak_u8(lcpopt::fcs_alt, (o.value[0] & kFcs32) ? kFcs32 : kFcs16);
                last_nak = o.whole;
            }
            break;
        default:  // authentication, quality protocols, anything unknown
            j.reject(o);
        }
    }
    if (it.malformed()) return 0;
    loops_in_row_ = looped ? loops_in_row_ + 1 : 0;
    if (loops_in_row_ >= kMaxLoops) {
        loops_in_row_ = 0;
        link_.host().ppp_looped();
        return 0;
    }
    uint8_t c = j.finish(opts, out, out_len, nak_allowed || looped, last_nak);
    if (c == code::configure_ack) {
        peer_mru = mru;
        peer_accm = accm;
        peer_pfc = pfc;
        peer_acfc = acfc;
        peer_fcs32 = fcs32;
        peer_magic = his_magic;
    }
    return c;
}

void Lcp::on_ack(wire::Bytes) {}

void Lcp::on_nak(wire::Bytes opts) {
    OptionIter it(opts);
    OptionIter::Option o;
    while (it.next(o)) {
        switch (o.type) {
        case lcpopt::mru:
            if (o.value.size() == 2 && wire::load16(o.value.data()) >= 128 &&
                wire::load16(o.value.data()) <= link_.config().mru) {
                want_mru_ = true;
                want_mru_value_ = wire::load16(o.value.data());
            }
            break;
        case lcpopt::accm:
            if (o.value.size() == 4) want_accm_value_ |= wire::load32(o.value.data());
            break;
        case lcpopt::magic:
            magic = link_.host().ppp_random() | 1;
            break;
        case lcpopt::fcs_alt:
            if (o.value.size() != 1 || !(o.value[0] & kFcs32)) want_fcs32_ = false;
            break;
        case lcpopt::pfc:
            want_pfc_ = false;
            break;
        case lcpopt::acfc:
            want_acfc_ = false;
            break;
        default:
            break;  // options we did not ask for: we do not want them
        }
    }
}

void Lcp::on_reject(wire::Bytes opts) {
    OptionIter it(opts);
    OptionIter::Option o;
    while (it.next(o)) {
        switch (o.type) {
        case lcpopt::mru: want_mru_ = false; break;
        case lcpopt::accm: want_accm_ = false; break;
        case lcpopt::magic: want_magic_ = false; break;
        case lcpopt::pfc: want_pfc_ = false; break;
        case lcpopt::acfc: want_acfc_ = false; break;
        case lcpopt::fcs_alt: want_fcs32_ = false; break;
        default: break;
        }
    }
}

void Lcp::tlu() { link_.lcp_opened(); }
void Lcp::tld() { link_.lcp_closed(); }

bool Lcp::extra_code(const CtlPacket& p) {
    switch (p.code) {
    case code::protocol_reject:
        if (state() == FsmState::opened && p.data.size() >= 2) {
            uint16_t rejected = wire::load16(p.data.data());
            spdlog::debug("ppp: the peer rejected protocol {:#06x}", rejected);
            if (rejected == proto::ipcp) link_.ipcp_rejected();
            else if (rejected == proto::lcp) rxj(true);
        }
        return true;
    case code::echo_request: {
        if (state() != FsmState::opened || p.data.size() < 4) return true;
        uint32_t m = wire::load32(p.data.data());
        if (m != 0 && m == magic) link_.stats_.loops_detected++;
        std::array<uint8_t, 1500> reply;
        size_t n = std::min({p.data.size(), reply.size(), size_t{peer_mru} - 4});
        if (n) std::memcpy(reply.data(), p.data.data(), n);
        wire::store32(reply.data(), want_magic_ ? magic : 0);
        link_.stats_.echo_replies++;
        send(code::echo_reply, p.id, wire::Bytes(reply.data(), n));
        return true;
    }
    case code::echo_reply:
    case code::discard_request:
    case code::identification:
    case code::time_remaining:
        return true;
    default:
        return false;
    }
}

// ---------------------------------------------------------------- IPCP

Ipcp::Ipcp(PppLink& link) : Fsm(link, proto::ipcp, 1, "IPCP") {}

size_t Ipcp::build_request(wire::MutBytes out) {
    size_t n = 0;
    if (want_addr_ && link_.config().local_addr != 0)
        put_u32_option(out, n, ipcpopt::address, link_.config().local_addr);
    return n;
}

uint8_t Ipcp::judge_request(wire::Bytes opts, wire::MutBytes out, size_t& out_len,
                            bool nak_allowed) {
    const wire::Ipv4 peer = link_.peer_addr();
    if (peer == 0) return 0;  // no address to give yet: the peer retries
    const wire::Ipv4 dns = link_.config().dns;
    std::array<uint8_t, 1600> rej, nak;
    Judge j{rej, nak};
    bool has_addr = false;
    wire::Bytes last_nak;
    OptionIter it(opts);
    OptionIter::Option o;
    while (it.next(o)) {
        const bool v4 = o.value.size() == 4;
        switch (o.type) {
        case ipcpopt::address:
            if (!v4) {
                j.reject(o);
                break;
            }
            has_addr = true;
            if (wire::load32(o.value.data()) != peer) {
                j.nak_u32(ipcpopt::address, peer);
                last_nak = o.whole;
            }
            break;
        case ipcpopt::dns1:
        case ipcpopt::dns2:
            if (!v4 || dns == 0) {
                j.reject(o);
            } else if (wire::load32(o.value.data()) != dns) {
                j.nak_u32(o.type, dns);
                last_nak = o.whole;
            }
            break;
        default:  // VJ compression, NBNS, the old IP-Addresses, unknown
            j.reject(o);
        }
    }
    if (it.malformed()) return 0;
    // A peer that asks for no address is told which one it has (RFC 1661
    // 5.3: a Nak may carry options the request did not).
    if (!has_addr && nak_allowed) j.nak_u32(ipcpopt::address, peer);
    return j.finish(opts, out, out_len, nak_allowed, last_nak);
}

void Ipcp::on_nak(wire::Bytes) {
    // We keep our own address: it is the gateway's, the peer's routes
    // point at it.
}

void Ipcp::on_reject(wire::Bytes opts) {
    OptionIter it(opts);
    OptionIter::Option o;
    while (it.next(o))
        if (o.type == ipcpopt::address) want_addr_ = false;
}

void Ipcp::tlu() { link_.host().ppp_ip_up(link_.peer_addr()); }
void Ipcp::tld() { link_.host().ppp_ip_down(); }

// ---------------------------------------------------------------- PppLink

PppLink::PppLink(PppHost& host, const PppConfig& cfg)
    : host_(host), cfg_(cfg), lcp_(*this), ipcp_(*this),
      rx_(std::max<size_t>(cfg.mru, 1500) + 8) {
    tx_ = std::make_unique_for_overwrite<uint8_t[]>(hdlc_max_encoded(kMaxInfo));
    if (cfg_.mru != 1500) {
        lcp_.want_mru_ = true;
        lcp_.want_mru_value_ = cfg_.mru;
    }
    lcp_.want_fcs32_ = cfg_.request_fcs32;
    rx_.set_fcs32(cfg_.request_fcs32);
}

void PppLink::start() {
    lcp_.up();
    lcp_.open();
}

void PppLink::input(wire::Bytes bytes) {
    rx_.feed(bytes, [this](wire::Bytes f) { frame(f); });
}

void PppLink::timeout(int which) {
    if (which == 0) lcp_.timeout();
    else ipcp_.timeout();
}

void PppLink::frame(wire::Bytes f) {
    auto pf = parse_frame(f);
    if (!pf) {
        stats_.rx_dropped++;
        return;
    }
    const bool lcp_open = lcp_.state() == FsmState::opened;
    switch (pf->protocol) {
    case proto::lcp:
        lcp_.input(pf->info);
        return;
    case proto::ipcp:
        if (lcp_open) ipcp_.input(pf->info);
        else stats_.rx_dropped++;
        return;
    case proto::ip:
        if (ip_up()) {
            stats_.rx_ip++;
            host_.ppp_ip_input(pf->info);
        } else {
            stats_.rx_dropped++;
        }
        return;
    default:
        if (lcp_open) send_protocol_reject(pf->protocol, pf->info);
        else stats_.rx_dropped++;
    }
}

void PppLink::send_protocol_reject(uint16_t protocol, wire::Bytes info) {
    stats_.proto_rejects_sent++;
    spdlog::debug("ppp: rejecting protocol {:#06x} from the peer", protocol);
    std::array<uint8_t, 1500> data;
    wire::store16(data.data(), protocol);
    size_t room = std::min(data.size(), size_t{lcp_.peer_mru} - 4) - 2;
    size_t n = std::min(info.size(), room);
    if (n) std::memcpy(data.data() + 2, info.data(), n);
    lcp_.send(code::protocol_reject, ++proto_reject_id_, wire::Bytes(data.data(), n + 2));
}

void PppLink::send_packet(uint16_t protocol, wire::Bytes info) {
    TxOptions o;  // the defaults: LCP configuration packets, and before LCP is open
    const bool lcp_config = protocol == proto::lcp && !info.empty() &&
                            info[0] >= code::configure_request && info[0] <= code::code_reject;
    if (lcp_.state() == FsmState::opened && !lcp_config) {
        o.accm = lcp_.peer_accm;
        o.fcs32 = lcp_.peer_fcs32;
        // Never compressed in any LCP packet (RFC 1661 6.5, 6.6): an echo
        // reply or a protocol reject keeps its address, control and full
        // protocol fields.
        if (protocol != proto::lcp) {
            o.acfc = lcp_.peer_acfc;
            o.pfc = lcp_.peer_pfc;
        }
    }
    size_t n = hdlc_encode(wire::MutBytes(tx_.get(), hdlc_max_encoded(kMaxInfo)), protocol, info, o);
    if (n) host_.ppp_write(wire::Bytes(tx_.get(), n));
}

bool PppLink::send_ip(wire::Bytes packet) {
    if (!ip_up() || packet.size() > lcp_.peer_mru || packet.size() > kMaxInfo) return false;
    TxOptions o;
    o.accm = lcp_.peer_accm;
    o.fcs32 = lcp_.peer_fcs32;
    o.acfc = lcp_.peer_acfc;
    o.pfc = lcp_.peer_pfc;
    size_t n = hdlc_encode(wire::MutBytes(tx_.get(), hdlc_max_encoded(kMaxInfo)), proto::ip, packet, o);
    if (n == 0 || !host_.ppp_write_ip(wire::Bytes(tx_.get(), n))) return false;
    stats_.tx_ip++;
    return true;
}

void PppLink::lcp_opened() {
    rx_.set_rx_accm(lcp_.want_accm_ ? lcp_.want_accm_value_ : 0xffffffff);
    spdlog::debug("ppp: LCP open (peer MRU {}, ACCM {:#010x}{}{}{})", lcp_.peer_mru,
                  lcp_.peer_accm, lcp_.peer_pfc ? ", PFC" : "", lcp_.peer_acfc ? ", ACFC" : "",
                  lcp_.peer_fcs32 ? ", FCS-32" : "");
    ipcp_.up();
    ipcp_.open();
}

void PppLink::lcp_closed() {
    rx_.set_rx_accm(0xffffffff);
    ipcp_.down();
}

}  // namespace usernet::ports::ppp
