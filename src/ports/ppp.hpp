// PPP over an asynchronous serial line, as the far end of a dial-up link
// (the original slirp's use): HDLC-like framing (RFC 1662), LCP (RFC 1661),
// IPCP (RFC 1332) with the DNS options of RFC 1877. No I/O: the owner
// (serial_port.cpp) feeds received bytes to PppLink::input(), writes what
// PppLink hands to PppHost::ppp_write(), and runs the restart timers it asks
// for. Unit tests and the fuzzers drive it the same way.
//
// Framing (RFC 1662 section 4): each frame is [flag 0x7e] address 0xff,
// control 0x03, protocol, information, FCS [flag]. Between flags, 0x7d
// escapes the next byte (XOR 0x20); 0x7e, 0x7d and every control character
// in the sender's async control character map (ACCM) are escaped.
// Received: a frame is unescaped into a bounded buffer (kMaxFrame); an
// overlong one is discarded up to the next flag, "7d 7e" aborts one, and
// one with a bad FCS or fewer than 4 bytes is dropped (all counted).
// Control characters that our receive ACCM flags (all of 0x00-0x1f until
// LCP has agreed on ours, 0) arrive unescaped only if something on the line
// inserted them (XON/XOFF): they are dropped, as RFC 1662 says. Address
// and control are taken with or without ACFC, the protocol field in one or
// two bytes, whatever was negotiated (being liberal costs nothing here).
// FCS-16 by default; FCS-32 (RFC 1570's FCS-Alternatives) when the peer asks
// us to send it, or when we were configured to ask the peer for it.
// Sent: LCP packets with codes 1..7 always use the default ACCM (RFC 1662
// section 7.1); every LCP packet has full address, control and protocol
// fields (RFC 1661 sections 6.5 and 6.6); everything else uses the ACCM,
// PFC and ACFC the peer asked for.
//
// The option negotiation automaton (RFC 1661 section 4) is class Fsm, with
// the state table written out event by event; LCP and IPCP are two
// instances with their own options. Restart timer 3 s, Max-Configure 10,
// Max-Terminate 2, Max-Failure 5 (Naks turn into Rejects after that).
// usernet is the passive side of a dial-up server: it opens LCP as soon
// as the line is there, sends its Configure-Requests, and when the peer
// does not answer within Max-Configure it waits in Stopped for the peer's
// own Configure-Request.
//
// LCP: we ask for ACCM 0, a magic number, PFC and ACFC (and FCS-32 or an
// MRU other than 1500 when configured). We accept from the peer MRU (128
// or more; a smaller one is Nak'ed to 128, as pppd does), ACCM, magic
// number (a magic equal to ours means the line loops back: we Nak it with
// a new one and take a new one ourselves), PFC, ACFC and
// FCS-Alternatives; we reject authentication, quality protocols and
// anything unknown. Echo-Request is answered; Discard-Request,
// Identification and Time-Remaining are ignored; an unknown code gets a
// Code-Reject, an unknown protocol (IPv6CP, CCP, ...) a Protocol-Reject.
//
// IPCP: we offer our own address (the gateway's, the far end of the point to
// point link). The peer's IP-Address is the one usernet leased for it: 0.0.0.0
// or any other address is Nak'ed with it, so the peer takes it; until the
// address is known the peer's requests go unanswered (it retries). DNS
// servers (129, 131) are Nak'ed with usernet's DNS address; NBNS (130, 132),
// VJ compression (2) and the obsolete IP-Addresses (1) are rejected.
//
// Every length comes from a bounded view and is checked before it is used;
// a malformed packet is dropped (counted) and changes nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::ports::ppp {

// ---------------------------------------------------------------- FCS

inline constexpr uint16_t kFcs16Init = 0xffff;
inline constexpr uint16_t kFcs16Good = 0xf0b8;  // RFC 1662 C.2
inline constexpr uint32_t kFcs32Init = 0xffffffff;
inline constexpr uint32_t kFcs32Good = 0xdebb20e3;  // RFC 1662 C.3

uint16_t fcs16(uint16_t fcs, wire::Bytes data);
uint32_t fcs32(uint32_t fcs, wire::Bytes data);

// ---------------------------------------------------------------- protocols

namespace proto {
inline constexpr uint16_t ip = 0x0021;
inline constexpr uint16_t ipv6 = 0x0057;
inline constexpr uint16_t ipcp = 0x8021;
inline constexpr uint16_t ipv6cp = 0x8057;
inline constexpr uint16_t ccp = 0x80fd;
inline constexpr uint16_t lcp = 0xc021;
inline constexpr uint16_t pap = 0xc023;
inline constexpr uint16_t chap = 0xc223;
}  // namespace proto

namespace code {
inline constexpr uint8_t configure_request = 1;
inline constexpr uint8_t configure_ack = 2;
inline constexpr uint8_t configure_nak = 3;
inline constexpr uint8_t configure_reject = 4;
inline constexpr uint8_t terminate_request = 5;
inline constexpr uint8_t terminate_ack = 6;
inline constexpr uint8_t code_reject = 7;
inline constexpr uint8_t protocol_reject = 8;
inline constexpr uint8_t echo_request = 9;
inline constexpr uint8_t echo_reply = 10;
inline constexpr uint8_t discard_request = 11;
inline constexpr uint8_t identification = 12;
inline constexpr uint8_t time_remaining = 13;
}  // namespace code

namespace lcpopt {
inline constexpr uint8_t mru = 1;
inline constexpr uint8_t accm = 2;
inline constexpr uint8_t auth = 3;
inline constexpr uint8_t quality = 4;
inline constexpr uint8_t magic = 5;
inline constexpr uint8_t pfc = 7;
inline constexpr uint8_t acfc = 8;
inline constexpr uint8_t fcs_alt = 9;  // RFC 1570
}  // namespace lcpopt

namespace ipcpopt {
inline constexpr uint8_t addresses = 1;  // obsolete (RFC 1172)
inline constexpr uint8_t compression = 2;
inline constexpr uint8_t address = 3;
inline constexpr uint8_t dns1 = 129;  // RFC 1877
inline constexpr uint8_t nbns1 = 130;
inline constexpr uint8_t dns2 = 131;
inline constexpr uint8_t nbns2 = 132;
}  // namespace ipcpopt

// FCS-Alternatives bits (RFC 1570).
inline constexpr uint8_t kFcsNull = 1, kFcs16 = 2, kFcs32 = 4;

// ---------------------------------------------------------------- packets

// A control packet (LCP, IPCP): code, identifier, length, data. parse()
// checks the length field against the buffer and ignores padding after it.
struct CtlPacket {
    uint8_t code = 0;
    uint8_t id = 0;
    wire::Bytes data;
    static std::optional<CtlPacket> parse(wire::Bytes pkt);
};

// Walks configuration options (type, length >= 2, value). next() returns
// false at the end; malformed() tells whether it stopped on a bad length.
class OptionIter {
public:
    explicit OptionIter(wire::Bytes opts) : opts_(opts) {}
    struct Option {
        uint8_t type = 0;
        wire::Bytes value;  // without type and length
        wire::Bytes whole;  // with them
    };
    bool next(Option& out);
    bool malformed() const { return bad_; }
    // True when every option is well formed.
    static bool valid(wire::Bytes opts);

private:
    wire::Bytes opts_;
    size_t pos_ = 0;
    bool bad_ = false;
};

// ---------------------------------------------------------------- framing

struct HdlcStats {
    uint64_t frames = 0;      // good frames delivered
    uint64_t bad_fcs = 0;
    uint64_t too_long = 0;
    uint64_t runts = 0;       // fewer than 4 bytes between flags
    uint64_t aborted = 0;     // 7d 7e
    uint64_t ctl_dropped = 0; // unescaped control characters in the ACCM
};

// Unescapes and checks frames, in one buffer allocated at construction.
class HdlcDecoder {
public:
    // max_frame: the most bytes a frame may hold between flags once
    // unescaped, FCS included.
    explicit HdlcDecoder(size_t max_frame);

    // Calls on_frame(wire::Bytes) with each good frame, FCS removed (the
    // address, control and protocol fields are left in place). The span is
    // valid during the call only.
    template <class F>
    void feed(wire::Bytes in, F&& on_frame) {
        for (uint8_t c : in) {
            if (c == 0x7e) {
                if (escape_) {
                    stats_.aborted++;
                } else if (discard_) {
                    // the rest of an overlong frame: counted when it began
                } else if (len_ > 0) {
                    wire::Bytes f = finish();
                    if (!f.empty()) on_frame(f);
                }
                len_ = 0;
                escape_ = false;
                discard_ = false;
                continue;
            }
            if (discard_) continue;
            if (c < 0x20 && (rx_accm_ >> c) & 1u) {
                stats_.ctl_dropped++;
                continue;
            }
            if (c == 0x7d) {
                escape_ = true;
                continue;
            }
            if (escape_) {
                c ^= 0x20;
                escape_ = false;
            }
            if (len_ == cap_) {
                stats_.too_long++;
                discard_ = true;
                continue;
            }
            buf_[len_++] = c;
        }
    }

    void set_rx_accm(uint32_t accm) { rx_accm_ = accm; }
    // Which FCS the peer sends us: 16 or 32 bits.
    void set_fcs32(bool on) { fcs32_ = on; }
    const HdlcStats& stats() const { return stats_; }

private:
    wire::Bytes finish();

    std::unique_ptr<uint8_t[]> buf_;
    size_t cap_;
    size_t len_ = 0;
    bool escape_ = false;
    bool discard_ = false;
    bool fcs32_ = false;
    uint32_t rx_accm_ = 0xffffffff;
    HdlcStats stats_;
};

struct TxOptions {
    uint32_t accm = 0xffffffff;
    bool acfc = false;
    bool pfc = false;
    bool fcs32 = false;
};

// The most bytes encode() writes for `info_len` bytes of information.
constexpr size_t hdlc_max_encoded(size_t info_len) { return 2 * (info_len + 8) + 2; }

// Writes one whole frame (flags included) into out; returns its length, or
// 0 when out is shorter than hdlc_max_encoded(info.size()).
size_t hdlc_encode(wire::MutBytes out, uint16_t protocol, wire::Bytes info, const TxOptions& o);

// Splits a received frame (FCS removed) into protocol and information;
// accepts compressed address/control and protocol fields. Nothing when the
// frame is too short or the protocol field is not a valid one (its last
// byte must be odd, the first even).
struct PppFrame {
    uint16_t protocol = 0;
    wire::Bytes info;
};
std::optional<PppFrame> parse_frame(wire::Bytes frame);

// ---------------------------------------------------------------- the link

// What the link needs from its owner.
class PppHost {
public:
    // Bytes to write to the line (whole frames).
    virtual void ppp_write(wire::Bytes bytes) = 0;
    // The same for a frame carrying an IP packet, which the host may
    // refuse (false: a full output queue keeps its last room for LCP and
    // IPCP, whose echo replies keep the link up).
    virtual bool ppp_write_ip(wire::Bytes bytes) {
        ppp_write(bytes);
        return true;
    }
    // An IP packet from the peer (IPCP is open).
    virtual void ppp_ip_input(wire::Bytes packet) = 0;
    // IPCP opened (peer has its address) / went down.
    virtual void ppp_ip_up(wire::Ipv4 peer) = 0;
    virtual void ppp_ip_down() = 0;
    // Restart timer `which` (0 LCP, 1 IPCP): arm for ms, or cancel.
    virtual void ppp_arm_timer(int which, uint32_t ms) = 0;
    virtual void ppp_cancel_timer(int which) = 0;
    // A 32-bit random number (magic numbers, identifiers).
    virtual uint32_t ppp_random() = 0;
    // Our own LCP requests came back Lcp::kMaxLoops times in a row: the
    // line is looped back. Called from input(); the host must not destroy
    // the link before input() returns.
    virtual void ppp_looped() {}

protected:
    ~PppHost() = default;
};

struct PppConfig {
    wire::Ipv4 local_addr = 0;  // our IPCP address (the gateway's)
    wire::Ipv4 dns = 0;         // handed out as primary and secondary DNS
    uint16_t mru = 1500;        // what we take; asked for when not 1500
    bool request_fcs32 = false; // ask the peer to send FCS-32
};

enum class FsmState : uint8_t {
    initial, starting, closed, stopped, closing, stopping, req_sent, ack_rcvd, ack_sent, opened
};
const char* to_string(FsmState s);

struct PppStats {
    uint64_t rx_ip = 0;
    uint64_t tx_ip = 0;
    uint64_t rx_dropped = 0;     // malformed control packets, IP before IPCP, ...
    uint64_t proto_rejects_sent = 0;
    uint64_t code_rejects_sent = 0;
    uint64_t loops_detected = 0; // our magic number came back
    uint64_t echo_replies = 0;
};

class PppLink;

// The option negotiation automaton of RFC 1661 section 4.
class Fsm {
public:
    static constexpr uint32_t kRestartMs = 3000;
    static constexpr int kMaxConfigure = 10;
    static constexpr int kMaxTerminate = 2;
    static constexpr int kMaxFailure = 5;

    Fsm(PppLink& link, uint16_t protocol, int timer, const char* name)
        : link_(link), protocol_(protocol), timer_(timer), name_(name) {}
    virtual ~Fsm() = default;

    // Administrative and lower-layer events.
    void up();
    void down();
    void open();
    void close();
    void timeout();
    // A packet of this protocol from the peer.
    void input(wire::Bytes pkt);

    FsmState state() const { return state_; }
    const char* name() const { return name_; }

protected:
    // Writes our Configure-Request options into out; returns their length.
    virtual size_t build_request(wire::MutBytes out) = 0;
    // Judges the peer's request: writes the reply's options into out and
    // returns the reply code (ack / nak / reject), or 0 to drop the packet
    // silently. `failures` counts Naks sent in a row (Max-Failure).
    virtual uint8_t judge_request(wire::Bytes opts, wire::MutBytes out, size_t& out_len,
                                  bool nak_allowed) = 0;
    // The peer acked our request (contents already checked): take it.
    virtual void on_ack(wire::Bytes opts) = 0;
    // The peer naked / rejected options of our request.
    virtual void on_nak(wire::Bytes opts) = 0;
    virtual void on_reject(wire::Bytes opts) = 0;
    // This-Layer-Up / -Down / -Started / -Finished.
    virtual void tlu() {}
    virtual void tld() {}
    virtual void tls() {}
    virtual void tlf() {}
    // Codes other than 1..7 (LCP: echo, protocol-reject, ...). Returns
    // false for an unknown code (a Code-Reject goes back).
    virtual bool extra_code(const CtlPacket&) { return false; }

    void send(uint8_t code, uint8_t id, wire::Bytes data);
    PppLink& link_;

    // The actions and events of the state table.
    void irc(bool terminate) { restart_ = terminate ? kMaxTerminate : kMaxConfigure; }
    void scr();
    void sca(const CtlPacket& p);
    void str();
    void sta(uint8_t id);
    void scj(wire::Bytes pkt);
    void arm();
    void stop_timer();
    void set(FsmState s);
    void rcr(const CtlPacket& p);
    void rca(const CtlPacket& p);
    void rcn(const CtlPacket& p, bool reject);
    void rtr(const CtlPacket& p);
    void rta();
    void rxj(bool fatal);

private:
    const uint16_t protocol_;
    const int timer_;
    const char* name_;
    FsmState state_ = FsmState::initial;
    int restart_ = 0;
    int failures_ = 0;
    uint8_t req_id_ = 0;
    uint8_t next_id_ = 1;
    size_t req_len_ = 0;
    std::array<uint8_t, 256> req_{};  // our last Configure-Request's options

    friend class PppLink;
};

class Lcp final : public Fsm {
public:
    explicit Lcp(PppLink& link);

    // What the peer asked for and we acked (how we send).
    uint16_t peer_mru = 1500;
    uint32_t peer_accm = 0xffffffff;
    bool peer_pfc = false;
    bool peer_acfc = false;
    bool peer_fcs32 = false;
    uint32_t peer_magic = 0;
    // What we ask for.
    uint32_t magic = 0;
    // Requests with our own magic number in a row before the line counts
    // as looped back (RFC 1661 6.4; the Nak loop itself is exempt from
    // Max-Failure, which would otherwise make us reject our own magic).
    static constexpr int kMaxLoops = 10;

protected:
    size_t build_request(wire::MutBytes out) override;
    uint8_t judge_request(wire::Bytes opts, wire::MutBytes out, size_t& out_len,
                          bool nak_allowed) override;
    void on_ack(wire::Bytes opts) override;
    void on_nak(wire::Bytes opts) override;
    void on_reject(wire::Bytes opts) override;
    void tlu() override;
    void tld() override;
    bool extra_code(const CtlPacket& p) override;

private:
    friend class PppLink;
    bool want_mru_ = false, want_accm_ = true, want_magic_ = true, want_pfc_ = true,
         want_acfc_ = true, want_fcs32_ = false;
    uint16_t want_mru_value_ = 1500;
    uint32_t want_accm_value_ = 0;
    int loops_in_row_ = 0;
};

class Ipcp final : public Fsm {
public:
    explicit Ipcp(PppLink& link);

protected:
    size_t build_request(wire::MutBytes out) override;
    uint8_t judge_request(wire::Bytes opts, wire::MutBytes out, size_t& out_len,
                          bool nak_allowed) override;
    void on_ack(wire::Bytes) override {}
    void on_nak(wire::Bytes opts) override;
    void on_reject(wire::Bytes opts) override;
    void tlu() override;
    void tld() override;

private:
    bool want_addr_ = true;
};

// One PPP link: framing, LCP and IPCP. Bounded: the receive buffer holds
// one frame of the MRU, every reply is built in a fixed scratch buffer.
class PppLink {
public:
    PppLink(PppHost& host, const PppConfig& cfg);

    // The line is there (a connection, the pty): LCP starts negotiating.
    void start();
    // Bytes from the line.
    void input(wire::Bytes bytes);
    // Restart timer `which` fired.
    void timeout(int which);
    // Sends an IP packet to the peer; false (dropped) while IPCP is not
    // open, when the packet exceeds the peer's MRU, or when the host
    // refused the frame (PppHost::ppp_write_ip).
    bool send_ip(wire::Bytes packet);
    // The address to give the peer (0: not known yet; its requests wait).
    void set_peer_addr(wire::Ipv4 a) { peer_addr_ = a; }
    wire::Ipv4 peer_addr() const { return peer_addr_; }
    // Ends the link politely (Terminate-Request).
    void close() { lcp_.close(); }

    bool ip_up() const { return ipcp_.state() == FsmState::opened; }
    FsmState lcp_state() const { return lcp_.state(); }
    FsmState ipcp_state() const { return ipcp_.state(); }
    const Lcp& lcp() const { return lcp_; }
    const PppStats& stats() const { return stats_; }
    const HdlcStats& hdlc_stats() const { return rx_.stats(); }
    const PppConfig& config() const { return cfg_; }

    // For the FSMs.
    void send_packet(uint16_t protocol, wire::Bytes info);
    PppHost& host() { return host_; }
    PppStats& mutable_stats() { return stats_; }
    void lcp_opened();
    void lcp_closed();
    void ipcp_rejected() { ipcp_.rxj(true); }

private:
    friend class Fsm;
    friend class Lcp;
    friend class Ipcp;
    void frame(wire::Bytes f);
    void send_protocol_reject(uint16_t protocol, wire::Bytes info);

    PppHost& host_;
    PppConfig cfg_;
    Lcp lcp_;
    Ipcp ipcp_;
    HdlcDecoder rx_;
    wire::Ipv4 peer_addr_ = 0;
    uint8_t proto_reject_id_ = 0;
    PppStats stats_;
    std::unique_ptr<uint8_t[]> tx_;  // hdlc_max_encoded(kMaxInfo)
    std::array<uint8_t, 1600> scratch_{};  // control packets being built
};

}  // namespace usernet::ports::ppp
