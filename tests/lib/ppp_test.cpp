// PPP framing, FCS, LCP and IPCP negotiation against hand-built peer
// messages; SLIP framing; the --serial transport syntax.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "app/options.hpp"
#include "ports/ppp.hpp"
#include "ports/serial_config.hpp"
#include "ports/slip.hpp"

using namespace usernet;
using namespace usernet::ports;
using namespace usernet::ports::ppp;
using Vec = std::vector<uint8_t>;

namespace {

Vec bytes(const char* s) { return Vec(s, s + std::strlen(s)); }

// Appends the complemented FCS, least significant byte first (RFC 1662 C.2).
Vec with_fcs16(Vec v) {
    uint16_t f = static_cast<uint16_t>(~fcs16(kFcs16Init, v));
    v.push_back(static_cast<uint8_t>(f));
    v.push_back(static_cast<uint8_t>(f >> 8));
    return v;
}

Vec encode(uint16_t protocol, const Vec& info, const TxOptions& o = {}) {
    Vec out(hdlc_max_encoded(info.size()));
    out.resize(hdlc_encode(out, protocol, info, o));
    return out;
}

Vec ctl(uint8_t code, uint8_t id, const Vec& data) {
    Vec p(4 + data.size());
    p[0] = code;
    p[1] = id;
    wire::store16(&p[2], static_cast<uint16_t>(4 + data.size()));
    std::copy(data.begin(), data.end(), p.begin() + 4);
    return p;
}

Vec opt32(uint8_t type, uint32_t v) {
    Vec o = {type, 6, 0, 0, 0, 0};
    wire::store32(&o[2], v);
    return o;
}

Vec cat(std::initializer_list<Vec> parts) {
    Vec v;
    for (const Vec& p : parts) v.insert(v.end(), p.begin(), p.end());
    return v;
}

struct Sent {
    uint16_t protocol;
    Vec info;
    uint8_t code() const { return info.size() > 0 ? info[0] : 0; }
    uint8_t id() const { return info.size() > 1 ? info[1] : 0; }
    Vec data() const { return info.size() >= 4 ? Vec(info.begin() + 4, info.end()) : Vec{}; }
};

// The far end of the line as the tests see it: decodes what the link
// writes, records callbacks and timers.
struct TestHost : PppHost {
    HdlcDecoder dec{70000};
    std::vector<Sent> sent;
    std::vector<Vec> ip_in;
    wire::Ipv4 up_addr = 0;
    int downs = 0;
    bool timer_armed[2] = {false, false};
    uint32_t rnd = 0x12345670;

    TestHost() {
        dec.set_rx_accm(0);
        dec.set_fcs32(true);
    }
    Vec raw;
    void ppp_write(wire::Bytes b) override {
        raw.insert(raw.end(), b.begin(), b.end());
        dec.feed(b, [&](wire::Bytes f) {
            auto pf = parse_frame(f);
            ASSERT_TRUE(pf);
            sent.push_back({pf->protocol, Vec(pf->info.begin(), pf->info.end())});
        });
    }
    void ppp_ip_input(wire::Bytes p) override { ip_in.emplace_back(p.begin(), p.end()); }
    void ppp_ip_up(wire::Ipv4 a) override { up_addr = a; }
    void ppp_ip_down() override { downs++; }
    void ppp_arm_timer(int w, uint32_t) override { timer_armed[w] = true; }
    void ppp_cancel_timer(int w) override { timer_armed[w] = false; }
    uint32_t ppp_random() override { return rnd += 0x1111; }
    int looped = 0;
    void ppp_looped() override { looped++; }

    const Sent& last(uint16_t protocol) const {
        for (auto it = sent.rbegin(); it != sent.rend(); ++it)
            if (it->protocol == protocol) return *it;
        static Sent none{0, {}};
        return none;
    }
};

constexpr wire::Ipv4 kGw = 0x0a000202, kDns = 0x0a000203, kPeer = 0x0a00020f;

struct LinkFixture : ::testing::Test {
    TestHost host;
    PppConfig cfg{kGw, kDns, 1500, false};
    PppLink link{host, cfg};

    void peer(uint16_t protocol, const Vec& info, const TxOptions& o = {}) {
        link.input(encode(protocol, info, o));
    }
    // LCP up in both directions with the usual pppd options.
    void open_lcp() {
        link.start();
        ASSERT_EQ(host.last(proto::lcp).code(), code::configure_request);
        Sent ours = host.last(proto::lcp);
        peer(proto::lcp, ctl(code::configure_request, 1,
                             cat({opt32(lcpopt::accm, 0), opt32(lcpopt::magic, 0xabcdef01),
                                  Vec{lcpopt::pfc, 2}, Vec{lcpopt::acfc, 2}})));
        ASSERT_EQ(host.last(proto::lcp).code(), code::configure_ack);
        peer(proto::lcp, ctl(code::configure_ack, ours.id(), ours.data()));
        ASSERT_EQ(link.lcp_state(), FsmState::opened);
    }
    void open_ipcp() {
        open_lcp();
        Sent ours = host.last(proto::ipcp);
        ASSERT_EQ(ours.code(), code::configure_request);
        link.set_peer_addr(kPeer);
        peer(proto::ipcp, ctl(code::configure_request, 7,
                              cat({opt32(ipcpopt::address, kPeer), opt32(ipcpopt::dns1, kDns)})));
        ASSERT_EQ(host.last(proto::ipcp).code(), code::configure_ack);
        peer(proto::ipcp, ctl(code::configure_ack, ours.id(), ours.data()));
        ASSERT_TRUE(link.ip_up());
    }
};

}  // namespace

// ---------------------------------------------------------------- FCS

TEST(PppFcs, CheckValuesOfRfc1662) {
    // The CRC catalogue's check values for "123456789": CRC-16/X-25 (the
    // PPP FCS-16) 0x906e and CRC-32 0xcbf43926.
    Vec s = bytes("123456789");
    EXPECT_EQ(static_cast<uint16_t>(~fcs16(kFcs16Init, s)), 0x906e);
    EXPECT_EQ(~fcs32(kFcs32Init, s), 0xcbf43926u);
    // A frame with its FCS appended checks to the "good" constant (C.2, C.3).
    EXPECT_EQ(fcs16(kFcs16Init, with_fcs16(s)), kFcs16Good);
    Vec t = s;
    uint32_t f = ~fcs32(kFcs32Init, s);
    for (int i = 0; i < 4; ++i) t.push_back(static_cast<uint8_t>(f >> (8 * i)));
    EXPECT_EQ(fcs32(kFcs32Init, t), kFcs32Good);
    // Any flipped bit breaks it.
    Vec bad = with_fcs16(s);
    bad[3] ^= 0x10;
    EXPECT_NE(fcs16(kFcs16Init, bad), kFcs16Good);
}

// ---------------------------------------------------------------- framing

TEST(PppHdlc, EncodeEscapesFlagEscapeAndAccmCharacters) {
    Vec info = {0x7e, 0x7d, 0x01, 0x11, 0x20, 0x41};
    Vec enc = encode(proto::ip, info, TxOptions{0x00020000, false, false, false});  // only 0x11 mapped
    ASSERT_GE(enc.size(), 2u);
    EXPECT_EQ(enc.front(), 0x7e);
    EXPECT_EQ(enc.back(), 0x7e);
    // ff 03 00 21 | 7d 5e | 7d 5d | 01 | 7d 31 | 20 | 41 ...
    Vec body(enc.begin() + 1, enc.begin() + 15);
    Vec want = {0xff, 0x03, 0x00, 0x21, 0x7d, 0x5e, 0x7d, 0x5d, 0x01, 0x7d, 0x31, 0x20, 0x41};
    EXPECT_TRUE(std::equal(want.begin(), want.end(), body.begin()));
    // Compressed headers: no ff 03, one-byte protocol.
    Vec c = encode(proto::ip, {0x45}, TxOptions{0, true, true, false});
    EXPECT_EQ(c[1], 0x21);
}

TEST(PppHdlc, DecodeRoundTripAndChecks) {
    HdlcDecoder d(1508);
    d.set_rx_accm(0);
    std::vector<Vec> got;
    auto sink = [&](wire::Bytes f) { got.emplace_back(f.begin(), f.end()); };
    Vec info(300);
    for (size_t i = 0; i < info.size(); ++i) info[i] = static_cast<uint8_t>(i);
    Vec enc = encode(proto::ip, info);
    // Fed a byte at a time, in two frames sharing nothing.
    for (uint8_t c : enc) d.feed(wire::Bytes(&c, 1), sink);
    ASSERT_EQ(got.size(), 1u);
    auto pf = parse_frame(got[0]);
    ASSERT_TRUE(pf);
    EXPECT_EQ(pf->protocol, proto::ip);
    EXPECT_EQ(Vec(pf->info.begin(), pf->info.end()), info);

    // A corrupted byte: dropped, counted.
    Vec bad = enc;
    bad[20] ^= 1;
    d.feed(bad, sink);
    EXPECT_EQ(got.size(), 1u);
    EXPECT_EQ(d.stats().bad_fcs, 1u);
    // 7d 7e aborts; a runt between flags is counted.
    d.feed(Vec{0x7e, 0xff, 0x03, 0x7d, 0x7e, 0x7e, 0x01, 0x02, 0x7e}, sink);
    EXPECT_EQ(d.stats().aborted, 1u);
    EXPECT_EQ(d.stats().runts, 1u);
    // Longer than the buffer: discarded to the next flag, then all is well.
    Vec big = encode(proto::ip, Vec(2000, 0x55));
    d.feed(big, sink);
    EXPECT_EQ(d.stats().too_long, 1u);
    d.feed(enc, sink);
    EXPECT_EQ(got.size(), 2u);
}

TEST(PppHdlc, ControlCharactersInTheReceiveMapAreDropped) {
    HdlcDecoder d(100);  // default map: all of 0x00-0x1f
    std::vector<Vec> got;
    Vec enc = encode(proto::lcp, {1, 2, 0, 4});
    Vec noisy;
    for (uint8_t c : enc) {
        noisy.push_back(c);
        noisy.push_back(0x11);  // XON inserted by something on the line
    }
    d.feed(noisy, [&](wire::Bytes f) { got.emplace_back(f.begin(), f.end()); });
    ASSERT_EQ(got.size(), 1u);
    EXPECT_GT(d.stats().ctl_dropped, 0u);
}

TEST(PppHdlc, Fcs32FramesDecodeWhenExpected) {
    HdlcDecoder d(100);
    d.set_fcs32(true);
    std::vector<Vec> got;
    d.feed(encode(proto::ip, {0x45, 0, 1}, TxOptions{0xffffffff, false, false, true}),
           [&](wire::Bytes f) { got.emplace_back(f.begin(), f.end()); });
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].size(), 2u + 2u + 3u);
    HdlcDecoder d16(100);  // not negotiated: an FCS-32 frame is a bad frame
    d16.feed(encode(proto::ip, {0x45, 0, 1}, TxOptions{0xffffffff, false, false, true}),
             [&](wire::Bytes) { FAIL(); });
    EXPECT_EQ(d16.stats().bad_fcs, 1u);
}

TEST(PppHdlc, ParseFrameFields) {
    auto a = parse_frame(Vec{0xff, 0x03, 0xc0, 0x21, 1});
    ASSERT_TRUE(a);
    EXPECT_EQ(a->protocol, proto::lcp);
    auto b = parse_frame(Vec{0x21, 0x45});  // ACFC + PFC
    ASSERT_TRUE(b);
    EXPECT_EQ(b->protocol, proto::ip);
    EXPECT_FALSE(parse_frame(Vec{0xff, 0x03, 0x00, 0x20}));  // even last protocol byte
    EXPECT_FALSE(parse_frame(Vec{0xff, 0x03}));
    EXPECT_FALSE(parse_frame(Vec{0xff, 0x03, 0x80}));
}

TEST(PppOptions, IteratorRejectsBadLengths) {
    EXPECT_TRUE(OptionIter::valid(cat({opt32(3, 1), Vec{7, 2}})));
    EXPECT_FALSE(OptionIter::valid(Vec{3, 1}));         // length below 2
    EXPECT_FALSE(OptionIter::valid(Vec{3, 6, 0, 0}));   // runs past the end
    EXPECT_FALSE(OptionIter::valid(Vec{3}));            // no length
    EXPECT_FALSE(CtlPacket::parse(Vec{1, 1, 0, 3}));    // length below 4
    EXPECT_FALSE(CtlPacket::parse(Vec{1, 1, 0, 9, 0})); // longer than the data
    auto p = CtlPacket::parse(Vec{1, 1, 0, 4, 0xee});   // padding ignored
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->data.empty());
}

// ---------------------------------------------------------------- LCP

TEST_F(LinkFixture, LcpRequestsAccmMagicPfcAcfc) {
    link.start();
    EXPECT_EQ(link.lcp_state(), FsmState::req_sent);
    EXPECT_TRUE(host.timer_armed[0]);
    const Sent& cr = host.last(proto::lcp);
    ASSERT_EQ(cr.code(), code::configure_request);
    Vec d = cr.data();
    OptionIter it(d);
    OptionIter::Option o;
    std::vector<uint8_t> types;
    while (it.next(o)) types.push_back(o.type);
    EXPECT_EQ(types, (std::vector<uint8_t>{lcpopt::accm, lcpopt::magic, lcpopt::pfc, lcpopt::acfc}));
}

TEST_F(LinkFixture, LcpOpensAndIpcpGivesAddressAndDns) {
    open_lcp();
    // IPCP starts with our address, the gateway's.
    const Sent ours = host.last(proto::ipcp);
    ASSERT_EQ(ours.code(), code::configure_request);
    EXPECT_EQ(ours.data(), opt32(ipcpopt::address, kGw));
    // No address for the peer yet: its request waits (no answer).
    size_t before = host.sent.size();
    Vec req0 = cat({opt32(ipcpopt::address, 0), opt32(ipcpopt::dns1, 0), opt32(ipcpopt::dns2, 0)});
    peer(proto::ipcp, ctl(code::configure_request, 1, req0));
    EXPECT_EQ(host.sent.size(), before);
    link.set_peer_addr(kPeer);
    // VJ compression and NBNS are rejected, alone.
    Vec vj = {ipcpopt::compression, 6, 0x00, 0x2d, 0x0f, 0x01};
    peer(proto::ipcp, ctl(code::configure_request, 2, cat({req0, vj, opt32(ipcpopt::nbns1, 0)})));
    EXPECT_EQ(host.last(proto::ipcp).code(), code::configure_reject);
    EXPECT_EQ(host.last(proto::ipcp).data(), cat({vj, opt32(ipcpopt::nbns1, 0)}));
    // 0.0.0.0 everywhere: Nak with the lease and the DNS address (RFC 1877).
    peer(proto::ipcp, ctl(code::configure_request, 3, req0));
    EXPECT_EQ(host.last(proto::ipcp).code(), code::configure_nak);
    EXPECT_EQ(host.last(proto::ipcp).data(), cat({opt32(ipcpopt::address, kPeer),
                                                  opt32(ipcpopt::dns1, kDns),
                                                  opt32(ipcpopt::dns2, kDns)}));
    // Another address is not allowed either.
    peer(proto::ipcp, ctl(code::configure_request, 4, opt32(ipcpopt::address, 0x0a000263)));
    EXPECT_EQ(host.last(proto::ipcp).code(), code::configure_nak);
    // The peer takes them: Ack, and with its Ack of ours IPCP opens.
    Vec good = cat({opt32(ipcpopt::address, kPeer), opt32(ipcpopt::dns1, kDns),
                    opt32(ipcpopt::dns2, kDns)});
    peer(proto::ipcp, ctl(code::configure_request, 5, good));
    EXPECT_EQ(host.last(proto::ipcp).code(), code::configure_ack);
    EXPECT_EQ(host.last(proto::ipcp).data(), good);
    EXPECT_EQ(host.up_addr, 0u);
    peer(proto::ipcp, ctl(code::configure_ack, ours.id(), ours.data()));
    EXPECT_TRUE(link.ip_up());
    EXPECT_EQ(host.up_addr, kPeer);
    EXPECT_FALSE(host.timer_armed[1]);
}

TEST_F(LinkFixture, AckWithOtherContentsIsIgnored) {
    link.start();
    Sent ours = host.last(proto::lcp);
    Vec other = ours.data();
    ASSERT_FALSE(other.empty());
    other[other.size() - 1] = static_cast<uint8_t>(other[other.size() - 1] ^ 1);
    peer(proto::lcp, ctl(code::configure_ack, ours.id(), other));
    EXPECT_EQ(link.lcp_state(), FsmState::req_sent);
    peer(proto::lcp, ctl(code::configure_ack, static_cast<uint8_t>(ours.id() + 1), ours.data()));
    EXPECT_EQ(link.lcp_state(), FsmState::req_sent);
    peer(proto::lcp, ctl(code::configure_ack, ours.id(), ours.data()));
    EXPECT_EQ(link.lcp_state(), FsmState::ack_rcvd);
}

TEST_F(LinkFixture, LcpRejectsAuthAndQualityNaksSmallMru) {
    link.start();
    Vec chap = {lcpopt::auth, 5, 0xc2, 0x23, 5};
    Vec lqr = {lcpopt::quality, 8, 0xc0, 0x25, 0, 0, 0, 10};
    peer(proto::lcp, ctl(code::configure_request, 1, cat({chap, opt32(lcpopt::magic, 5), lqr})));
    EXPECT_EQ(host.last(proto::lcp).code(), code::configure_reject);
    EXPECT_EQ(host.last(proto::lcp).data(), cat({chap, lqr}));
    Vec mru = {lcpopt::mru, 4, 0, 20};
    peer(proto::lcp, ctl(code::configure_request, 2, mru));
    EXPECT_EQ(host.last(proto::lcp).code(), code::configure_nak);
    EXPECT_EQ(host.last(proto::lcp).data(), (Vec{lcpopt::mru, 4, 0, 128}));
    // A malformed option list: the packet is dropped, no answer.
    size_t before = host.sent.size();
    peer(proto::lcp, ctl(code::configure_request, 3, Vec{lcpopt::mru, 9, 0}));
    EXPECT_EQ(host.sent.size(), before);
}

// Max-Failure counts the Naks sent without an Ack between (RFC 1661
// 4.6): four Naks, an Ack, and after the peer renegotiates, a small MRU is
// Nak'ed again rather than rejected.
TEST_F(LinkFixture, AnAckStartsTheNakCountAgain) {
    link.start();
    const Vec small = {lcpopt::mru, 4, 0, 20};
    for (uint8_t id = 1; id <= 4; id++) {
        peer(proto::lcp, ctl(code::configure_request, id, small));
        ASSERT_EQ(host.last(proto::lcp).code(), code::configure_nak) << int(id);
    }
    peer(proto::lcp, ctl(code::configure_request, 5, Vec{lcpopt::mru, 4, 0x05, 0xdc}));
    ASSERT_EQ(host.last(proto::lcp).code(), code::configure_ack);
    for (uint8_t id = 6; id <= 9; id++) {
        peer(proto::lcp, ctl(code::configure_request, id, small));
        EXPECT_EQ(host.last(proto::lcp).code(), code::configure_nak) << int(id);
    }
}

TEST_F(LinkFixture, MagicNumberLoopIsDetected) {
    link.start();
    Sent ours = host.last(proto::lcp);
    // Our own request comes back (a looped-back line).
    peer(proto::lcp, ours.info);
    EXPECT_EQ(host.last(proto::lcp).code(), code::configure_nak);
    EXPECT_EQ(link.stats().loops_detected, 1u);
    // Magic 0 is not allowed either.
    peer(proto::lcp, ctl(code::configure_request, 9, opt32(lcpopt::magic, 0)));
    EXPECT_EQ(host.last(proto::lcp).code(), code::configure_nak);
}

// A line that echoes everything: our requests and Naks come back, the Nak
// loop goes on past Max-Failure (we never reject or ack our own magic
// number), and after Lcp::kMaxLoops the host hears the line is looped.
TEST_F(LinkFixture, ALoopedBackLineNeverOpensAndIsReported) {
    link.start();
    for (int i = 0; i < 200 && host.looped == 0; i++) {
        const Sent s = host.sent.back();
        peer(s.protocol, s.info);  // the line hands back what we sent last
        if (host.sent.back().info == s.info) break;  // nothing new to echo
    }
    EXPECT_EQ(host.looped, 1);
    EXPECT_NE(link.lcp_state(), FsmState::opened);
    EXPECT_GE(link.stats().loops_detected, static_cast<uint64_t>(Lcp::kMaxLoops));
    for (const Sent& s : host.sent)
        if (s.protocol == proto::lcp) {
            EXPECT_NE(s.code(), code::configure_reject) << "our own magic number rejected";
            EXPECT_NE(s.code(), code::configure_ack) << "our own request acked";
        }
}

TEST_F(LinkFixture, NakAndRejectOfOurOptionsAreTaken) {
    link.start();
    Sent ours = host.last(proto::lcp);
    peer(proto::lcp, ctl(code::configure_reject, ours.id(), Vec{lcpopt::pfc, 2, lcpopt::acfc, 2}));
    Sent again = host.last(proto::lcp);
    ASSERT_EQ(again.code(), code::configure_request);
    EXPECT_NE(again.id(), ours.id());
    EXPECT_EQ(again.data().size(), 12u);  // ACCM and magic only
    peer(proto::lcp, ctl(code::configure_nak, again.id(), opt32(lcpopt::accm, 0x000a0000)));
    Vec third = host.last(proto::lcp).data();
    ASSERT_GE(third.size(), 6u);
    EXPECT_EQ(Vec(third.begin(), third.begin() + 6), opt32(lcpopt::accm, 0x000a0000));
}

TEST_F(LinkFixture, OpenLinkUsesPeerOptionsAndCarriesIp) {
    open_ipcp();
    // An IP packet each way, with compressed headers both ways.
    Vec ip = {0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2};
    peer(proto::ip, ip, TxOptions{0, true, true, false});
    ASSERT_EQ(host.ip_in.size(), 1u);
    EXPECT_EQ(host.ip_in[0], ip);
    EXPECT_TRUE(link.send_ip(ip));
    EXPECT_EQ(host.last(proto::ip).info, ip);
    // Too big for the peer's MRU: refused.
    EXPECT_FALSE(link.send_ip(Vec(1501, 0x45)));
}

TEST_F(LinkFixture, EchoProtocolRejectCodeReject) {
    open_ipcp();
    // Echo-Request: answered with our magic and the peer's data.
    peer(proto::lcp, ctl(code::echo_request, 42, cat({Vec{0xab, 0xcd, 0xef, 0x01}, Vec{9, 9}})));
    const Sent& echo = host.last(proto::lcp);
    ASSERT_EQ(echo.code(), code::echo_reply);
    EXPECT_EQ(echo.id(), 42);
    EXPECT_EQ(wire::load32(echo.data().data()), link.lcp().magic);
    EXPECT_EQ(echo.data().back(), 9);
    // An unknown protocol (IPv6CP): Protocol-Reject quoting it.
    peer(proto::ipv6cp, ctl(code::configure_request, 1, Vec{1, 10, 0, 0, 0, 0, 0, 0, 0, 1}));
    const Sent& pr = host.last(proto::lcp);
    ASSERT_EQ(pr.code(), code::protocol_reject);
    EXPECT_EQ(wire::load16(pr.data().data()), proto::ipv6cp);
    // An unknown LCP code: Code-Reject quoting the packet.
    Vec weird = ctl(99, 5, Vec{1, 2, 3});
    peer(proto::lcp, weird);
    const Sent& cj = host.last(proto::lcp);
    ASSERT_EQ(cj.code(), code::code_reject);
    EXPECT_EQ(cj.data(), weird);
    EXPECT_TRUE(link.ip_up());
    // The peer rejects IPCP: IP goes down, LCP stays.
    peer(proto::lcp, ctl(code::protocol_reject, 3, Vec{0x80, 0x21}));
    EXPECT_FALSE(link.ip_up());
    EXPECT_EQ(link.lcp_state(), FsmState::opened);
    EXPECT_EQ(host.downs, 1);
}

TEST_F(LinkFixture, TerminateRequestIsAckedAndTakesIpDown) {
    open_ipcp();
    peer(proto::lcp, ctl(code::terminate_request, 77, {}));
    const Sent& ta = host.last(proto::lcp);
    EXPECT_EQ(ta.code(), code::terminate_ack);
    EXPECT_EQ(ta.id(), 77);
    EXPECT_EQ(link.lcp_state(), FsmState::stopping);
    EXPECT_FALSE(link.ip_up());
    EXPECT_EQ(host.downs, 1);
    link.timeout(0);  // one restart period later
    EXPECT_EQ(link.lcp_state(), FsmState::stopped);
    // A new Configure-Request from the peer starts again (passive open).
    peer(proto::lcp, ctl(code::configure_request, 1, opt32(lcpopt::magic, 99)));
    EXPECT_EQ(link.lcp_state(), FsmState::ack_sent);
}

TEST_F(LinkFixture, UnansweredRequestsStopAfterMaxConfigure) {
    link.start();
    for (int i = 0; i < 20; ++i) link.timeout(0);
    int crs = 0;
    for (const Sent& s : host.sent) crs += s.protocol == proto::lcp && s.code() == code::configure_request;
    EXPECT_EQ(crs, Fsm::kMaxConfigure);
    EXPECT_EQ(link.lcp_state(), FsmState::stopped);
    EXPECT_FALSE(host.timer_armed[0]);
}

TEST_F(LinkFixture, LcpConfigurePacketsUseDefaultFraming) {
    open_ipcp();
    // LCP opened with ACCM 0, PFC and ACFC: an Echo-Reply keeps ff 03 and
    // the full protocol field (no LCP packet is compressed, RFC 1661 6.5,
    // 6.6) but uses the ACCM; a Configure-Request also escapes every
    // control character (RFC 1662 7.1). IP goes compressed.
    host.raw.clear();
    peer(proto::lcp, ctl(code::echo_request, 1, Vec{0xab, 0xcd, 0xef, 0x01}));
    ASSERT_GE(host.raw.size(), 6u);
    EXPECT_EQ(Vec(host.raw.begin(), host.raw.begin() + 5), (Vec{0x7e, 0xff, 0x03, 0xc0, 0x21}));
    host.raw.clear();
    ASSERT_TRUE(link.send_ip(Vec{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}));
    EXPECT_EQ(Vec(host.raw.begin(), host.raw.begin() + 3), (Vec{0x7e, 0x21, 0x45}));
    host.raw.clear();
    peer(proto::lcp, ctl(code::configure_request, 50,
                         cat({opt32(lcpopt::accm, 0), opt32(lcpopt::magic, 0xabcdef01)})));
    ASSERT_GE(host.raw.size(), 6u);
    EXPECT_EQ(Vec(host.raw.begin(), host.raw.begin() + 6), (Vec{0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21}));
    EXPECT_FALSE(link.ip_up());
    EXPECT_EQ(link.lcp_state(), FsmState::ack_sent);
}

// ---------------------------------------------------------------- SLIP

TEST(Slip, RoundTripWithEscapes) {
    Vec pkt = {0x45, slip::kEnd, 0x00, slip::kEsc, slip::kEscEnd, 0x01};
    Vec enc(slip::slip_max_encoded(pkt.size()));
    enc.resize(slip::slip_encode(enc, pkt));
    Vec want = {slip::kEnd, 0x45, slip::kEsc, slip::kEscEnd, 0x00, slip::kEsc, slip::kEscEsc,
                slip::kEscEnd, 0x01, slip::kEnd};
    EXPECT_EQ(enc, want);
    slip::SlipDecoder d(1500);
    std::vector<Vec> got;
    auto sink = [&](wire::Bytes p) { got.emplace_back(p.begin(), p.end()); };
    for (uint8_t c : enc) d.feed(wire::Bytes(&c, 1), sink);
    ASSERT_EQ(got.size(), 1u);  // the leading END makes no empty packet
    EXPECT_EQ(got[0], pkt);
}

TEST(Slip, OverlongPacketsAreDiscardedToTheNextEnd) {
    slip::SlipDecoder d(10);
    std::vector<Vec> got;
    auto sink = [&](wire::Bytes p) { got.emplace_back(p.begin(), p.end()); };
    Vec in(30, 0x41);
    in.push_back(slip::kEnd);
    in.insert(in.end(), {0x42, slip::kEsc, 0x99, slip::kEnd});
    d.feed(in, sink);
    EXPECT_EQ(d.stats().too_long, 1u);
    EXPECT_EQ(d.stats().bad_escapes, 1u);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], (Vec{0x42, 0x99}));
}

// ---------------------------------------------------------------- --serial

TEST(SerialOptions, Transports) {
    SerialConfig c;
    EXPECT_EQ(parse_serial_transport("pty", c), "");
    EXPECT_EQ(c.transport, SerialTransport::pty);
    EXPECT_EQ(parse_serial_transport("unix:/tmp/x.sock", c), "");
    EXPECT_EQ(c.transport, SerialTransport::unix_socket);
    EXPECT_EQ(c.path, "/tmp/x.sock");
    // A relative path is made absolute: QEMU, told the path, runs elsewhere.
    EXPECT_EQ(parse_serial_transport("unix:rel.sock", c), "");
    EXPECT_EQ(c.path, std::filesystem::current_path().string() + "/rel.sock");
    EXPECT_EQ(parse_serial_transport("tcp:4555", c), "");
    EXPECT_EQ(c.host, "127.0.0.1");
    EXPECT_EQ(c.port, 4555);
    EXPECT_EQ(parse_serial_transport("tcp:0.0.0.0:23", c), "");
    EXPECT_EQ(c.host, "0.0.0.0");
    EXPECT_EQ(parse_serial_transport("tcp:[::1]:23", c), "");
    EXPECT_EQ(c.host, "::1");
    EXPECT_NE(parse_serial_transport("tcp:99999", c), "");
    EXPECT_NE(parse_serial_transport("tcp:host.example:1", c), "");
    EXPECT_NE(parse_serial_transport("unix:", c), "");
    EXPECT_NE(parse_serial_transport("/dev/ttyS0", c), "");
}

TEST(SerialOptions, CommandLine) {
    auto cfg = app::parse_options({"--serial", "unix:/tmp/s.sock,proto=slip,addr=10.0.2.40,mtu=1006"});
    ASSERT_EQ(cfg.attachments.size(), 1u);
    const app::Attachment& a = cfg.attachments[0];
    EXPECT_EQ(a.kind, app::AttachmentKind::serial);
    EXPECT_EQ(a.serial.protocol, SerialProtocol::slip);
    EXPECT_EQ(a.serial.fixed_addr, 0x0a000228u);
    EXPECT_EQ(a.mtu, 1006u);
    auto def = app::parse_options({"--serial", "pty"});
    EXPECT_EQ(def.attachments[0].serial.protocol, SerialProtocol::ppp);
    EXPECT_FALSE(def.attachments[0].serial.fixed_addr);
    EXPECT_THROW(app::parse_options({"--serial", "pty,proto=x25"}), app::OptionError);
    EXPECT_THROW(app::parse_options({"--serial", "pty,addr=10.0.2.2"}), app::OptionError);
    EXPECT_THROW(app::parse_options({"--serial", "pty,addr=192.168.1.5"}), app::OptionError);
    EXPECT_THROW(app::parse_options({"--serial", "pty,speed=9600"}), app::OptionError);
    EXPECT_THROW(app::parse_options({"--serial", "tcp:5,proto=ppp", "--serial", "tcp:5"}),
                 app::OptionError);
}
