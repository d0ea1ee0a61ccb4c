// The gateway's TFTP server (--tftp) against a pretend guest on a real
// switch and gateway, serving a real temporary directory: transfers with
// and without options, windows and loss, block number rollover, netascii,
// refusals (outside the directory, writes, limits) and retransmission.
#include "gateway/tftp_server.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "nat_harness.hpp"
#include "wire/tftp.hpp"

namespace usernet::testing {
namespace {

constexpr uint16_t kClientPort = 40069;

// A fresh directory with a secret file next to it (outside) and a symlink
// inside pointing at that secret.
struct TftpDir {
    std::string base, root;
    TftpDir() {
        char tmpl[] = "/tmp/usernet-tftp-XXXXXX";
        base = mkdtemp(tmpl);
        root = base + "/root";
        mkdir(root.c_str(), 0755);
        mkdir((root + "/sub").c_str(), 0755);
        write(base + "/secret", "do not serve");
        symlink((base + "/secret").c_str(), (root + "/escape").c_str());
        symlink("sub/inner", (root + "/inside-link").c_str());
        write(root + "/sub/inner", "inner file");
        mkfifo((root + "/fifo").c_str(), 0644);
    }
    ~TftpDir() { std::system(("rm -rf '" + base + "'").c_str()); }
    void write(const std::string& path, const std::string& data) {
        std::ofstream(path, std::ios::binary) << data;
    }
};

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
    return s;
}

std::vector<uint8_t> rrq(const std::string& name, const std::string& mode = "octet",
                         const std::vector<std::pair<std::string, std::string>>& opts = {},
                         uint16_t op = wire::tftpop::rrq) {
    std::vector<uint8_t> m{static_cast<uint8_t>(op >> 8), static_cast<uint8_t>(op)};
    auto put = [&](const std::string& s) {
        m.insert(m.end(), s.begin(), s.end());
        m.push_back(0);
    };
    put(name);
    put(mode);
    for (auto& [k, v] : opts) {
        put(k);
        put(v);
    }
    return m;
}

std::vector<uint8_t> ack(uint16_t block) {
    return {0, 4, static_cast<uint8_t>(block >> 8), static_cast<uint8_t>(block)};
}

struct TftpTest : ::testing::Test {
    TftpDir dir;
    std::unique_ptr<NatHarness> h;
    size_t seen = 0;  // frames of h->guest already taken

    void start(uint32_t mtu = 1500) {
        h = std::make_unique<NatHarness>(nat::NatLimits{}, true, [&](gw::NetConfig& c) {
            c.tftp_root = dir.root;
            c.ipv6 = false;
        });
        h->guest.mtu_value = mtu;
        h->gw->learn_neighbor(kGuestIp, kGuestMac, mtu);
    }
    gw::TftpServer& server() { return *h->gw->tftp(); }
    void send(const std::vector<uint8_t>& msg, uint16_t port = kClientPort) {
        h->input(udp_frame(kGuestIp, kGatewayIp, port, wire::kTftpPort, msg));
    }
    // TFTP messages from 10.0.2.2:69 to the client port, since the last call.
    std::vector<std::vector<uint8_t>> replies(uint16_t port = kClientPort) {
        std::vector<std::vector<uint8_t>> out;
        auto frames = h->ip_frames();
        for (; seen < frames.size(); seen++) {
            const auto& f = frames[seen];
            if (f.proto != wire::ipproto::udp || f.src != kGatewayIp) continue;
            auto udp = wire::UdpView::parse(f.l4);
            EXPECT_TRUE(udp);
            EXPECT_TRUE(udp->checksum_ok(wire::IpAddr::v4(f.src), wire::IpAddr::v4(f.dst)));
            EXPECT_EQ(udp->src_port(), wire::kTftpPort);
            if (udp->dst_port() != port) continue;
            out.emplace_back(udp->payload().begin(), udp->payload().end());
        }
        return out;
    }
    std::vector<uint8_t> one_reply(uint16_t port = kClientPort) {
        auto r = replies(port);
        EXPECT_EQ(r.size(), 1u);
        return r.empty() ? std::vector<uint8_t>{} : r.back();
    }
    // Reads a whole file block by block with ACKs; blocks must come one
    // at a time (window 1) unless `window` says otherwise.
    std::string fetch(const std::vector<uint8_t>& request, size_t blksize, size_t window = 1,
                      bool expect_oack = false) {
        send(request);
        std::string data;
        if (expect_oack) {
            auto o = one_reply();
            EXPECT_EQ(wire::tftp_opcode(o), wire::tftpop::oack);
            send(ack(0));
        }
        uint16_t next = 1;
        for (;;) {
            auto rs = replies();
            EXPECT_FALSE(rs.empty()) << "no data after block " << next - 1;
            if (rs.empty()) return data;
            EXPECT_LE(rs.size(), window);
            bool done = false;
            for (auto& r : rs) {
                EXPECT_EQ(wire::tftp_opcode(r), wire::tftpop::data);
                EXPECT_EQ(wire::load16(&r[2]), next);
                data.append(r.begin() + 4, r.end());
                next++;
                if (r.size() - 4 < blksize) done = true;
            }
            send(ack(static_cast<uint16_t>(next - 1)));
            if (done) return data;
        }
    }
};

TEST_F(TftpTest, Tftp_ReadsAFileWithoutOptionsIn512ByteBlocks) {
    start();
    const std::string file = pattern(512 * 3 + 100);
    dir.write(dir.root + "/boot.img", file);
    EXPECT_EQ(fetch(rrq("boot.img"), 512), file);
    EXPECT_EQ(server().stats().completed, 1u);
    EXPECT_EQ(server().stats().bytes_sent, file.size());
    EXPECT_EQ(server().active(), 0u);
    // A size that is a multiple of the block size ends with an empty block.
    const std::string even = pattern(1024);
    dir.write(dir.root + "/even", even);
    EXPECT_EQ(fetch(rrq("/even"), 512), even);  // a leading slash is dropped
    EXPECT_EQ(server().stats().completed, 2u);
}

TEST_F(TftpTest, Tftp_OptionsAreAcknowledgedWithTheValuesUsed) {
    start(1500);
    const std::string file = pattern(100'000);
    dir.write(dir.root + "/f", file);
    // blksize and tsize twice: the first of each counts, and the OACK
    // names each once (RFC 2347).
    send(rrq("f", "OCTET",
             {{"BlkSize", "65464"}, {"tsize", "0"}, {"timeout", "3"}, {"windowsize", "500"},
              {"x-unknown", "1"}, {"blksize", "600"}, {"TSIZE", "0"}}));
    auto o = one_reply();
    ASSERT_EQ(wire::tftp_opcode(o), wire::tftpop::oack);
    // Parse the OACK as a request body (the same string pairs).
    std::map<std::string, std::string> got;
    std::vector<std::string> strs;
    std::string cur;
    for (size_t i = 2; i < o.size(); i++) {
        if (o[i] == 0) {
            strs.push_back(cur);
            cur.clear();
        } else {
            cur += static_cast<char>(o[i]);
        }
    }
    ASSERT_EQ(strs.size() % 2, 0u);
    EXPECT_EQ(strs.size(), 8u) << "an option named twice in the OACK";
    for (size_t i = 0; i < strs.size(); i += 2) got[strs[i]] = strs[i + 1];
    // blksize cut to what fits a 1500-byte MTU unfragmented (1500 - 20 -
    // 8 - 4), windowsize to 64; the unknown option left out.
    EXPECT_EQ(got, (std::map<std::string, std::string>{
                       {"blksize", "1468"}, {"tsize", "100000"}, {"timeout", "3"},
                       {"windowsize", "64"}}));
    send(ack(0));
    auto window = replies();
    ASSERT_EQ(window.size(), 64u);
    for (auto& d : window) EXPECT_EQ(d.size(), 4u + 1468u);
    // The rest, acknowledged window by window.
    std::string data;
    uint16_t next = 1;
    for (;;) {
        bool done = false;
        for (auto& d : window) {
            EXPECT_EQ(wire::load16(&d[2]), next++);
            data.append(d.begin() + 4, d.end());
            done = d.size() - 4 < 1468;
        }
        send(ack(static_cast<uint16_t>(next - 1)));
        if (done) break;
        window = replies();
        ASSERT_FALSE(window.empty());
    }
    EXPECT_EQ(data, file);
    EXPECT_EQ(server().stats().completed, 1u);
}

TEST_F(TftpTest, Tftp_AnAckShortOfTheWindowSendsTheRestAgain) {
    start();
    dir.write(dir.root + "/f", pattern(512 * 10));
    send(rrq("f", "octet", {{"windowsize", "4"}}));
    one_reply();
    send(ack(0));
    EXPECT_EQ(replies().size(), 4u);  // blocks 1-4
    // Block 3 was lost: the client acknowledges 2.
    send(ack(2));
    auto again = replies();
    ASSERT_EQ(again.size(), 4u);
    EXPECT_EQ(wire::load16(&again[0][2]), 3);
    EXPECT_EQ(wire::load16(&again[3][2]), 6);
    // A duplicate ACK of 2 sends nothing (the Sorcerer's Apprentice).
    send(ack(2));
    EXPECT_TRUE(replies().empty());
    EXPECT_EQ(server().stats().retransmits, 0u);
}

TEST_F(TftpTest, Tftp_BlockNumbersRollOverPast65535) {
    start();
    // blksize 8: 65536 full blocks and a short one, 65537 in all.
    const std::string file = pattern(8 * 65536 + 3);
    dir.write(dir.root + "/big", file);
    std::string got = fetch(rrq("big", "octet", {{"blksize", "8"}, {"windowsize", "64"}}), 8, 64,
                            true);
    EXPECT_EQ(got.size(), file.size());
    EXPECT_TRUE(got == file);
    EXPECT_EQ(server().stats().completed, 1u);
}

TEST_F(TftpTest, Tftp_NetasciiTurnsLineEndsIntoCrLfAcrossBlocks) {
    start();
    // blksize 8 puts a CR LF pair across a block boundary.
    dir.write(dir.root + "/t.txt", "abcdefg\nhi\rj\n");
    std::string got = fetch(rrq("t.txt", "netascii", {{"blksize", "8"}, {"tsize", "0"}}), 8, 1,
                            true);
    // 16 bytes: two full blocks, then an empty one ends it.
    EXPECT_EQ(got, std::string("abcdefg\r\nhi\r\0j\r\n", 16));
}

TEST_F(TftpTest, Tftp_NothingOutsideTheDirectoryIsServed) {
    start();
    struct Case {
        const char* name;
        uint16_t code;
    };
    for (Case c : {Case{"../secret", wire::tftperr::access},
                   Case{"/../secret", wire::tftperr::access},
                   Case{"sub/../../secret", wire::tftperr::access},
                   Case{"escape", wire::tftperr::access},  // a symlink leading out
                   Case{"etc/passwd", wire::tftperr::not_found},
                   Case{"//etc/passwd", wire::tftperr::not_found},
                   Case{"sub", wire::tftperr::access},   // a directory
                   Case{"fifo", wire::tftperr::access},  // opened without blocking, refused
                   Case{"/", wire::tftperr::access},
                   Case{"missing", wire::tftperr::not_found}}) {
        send(rrq(c.name));
        auto e = one_reply();
        auto err = wire::tftp_error(e);
        ASSERT_TRUE(err) << c.name;
        EXPECT_EQ(err->code, c.code) << c.name;
    }
    EXPECT_EQ(server().active(), 0u);
    // A symlink that stays inside is followed.
    EXPECT_EQ(fetch(rrq("inside-link"), 512), "inner file");
}

TEST_F(TftpTest, Tftp_WritesAndOtherModesAreRefused) {
    start();
    dir.write(dir.root + "/f", "x");
    send(rrq("f", "octet", {}, wire::tftpop::wrq));
    auto e = wire::tftp_error(one_reply());
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, wire::tftperr::access);
    send(rrq("f", "mail"));
    e = wire::tftp_error(one_reply());
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, wire::tftperr::illegal);
    // A request without its terminating NUL.
    auto bad = rrq("f");
    bad.pop_back();
    send(bad);
    e = wire::tftp_error(one_reply());
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, wire::tftperr::illegal);
    EXPECT_EQ(server().stats().refused_write, 1u);
    // ACKs and garbage for no transfer are dropped silently.
    send(ack(1), 40123);
    send({0, 9, 1, 2}, 40123);
    EXPECT_TRUE(replies(40123).empty());
    EXPECT_EQ(server().active(), 0u);
}

TEST_F(TftpTest, Tftp_SilenceMeansRetransmissionThenTheTransferEnds) {
    start();
    dir.write(dir.root + "/f", pattern(2000));
    send(rrq("f"));
    ASSERT_EQ(replies().size(), 1u);  // block 1
    for (int i = 1; i <= gw::TftpServer::kMaxRetries; i++) {
        h->loop.advance_clock_for_tests(1001);
        h->loop.run_once(0);
        auto r = replies();
        ASSERT_EQ(r.size(), 1u) << "retry " << i;
        EXPECT_EQ(wire::load16(&r[0][2]), 1);
    }
    EXPECT_EQ(server().active(), 1u);
    h->loop.advance_clock_for_tests(1001);
    h->loop.run_once(0);
    EXPECT_TRUE(replies().empty());
    EXPECT_EQ(server().active(), 0u);
    EXPECT_EQ(server().stats().timed_out, 1u);
    EXPECT_EQ(server().stats().retransmits, static_cast<uint64_t>(gw::TftpServer::kMaxRetries));
}

TEST_F(TftpTest, Tftp_OneAttachmentHasAtMostItsQuotaOfTransfers) {
    start();
    dir.write(dir.root + "/f", pattern(5000));
    for (uint16_t i = 0; i < gw::TftpServer::kMaxPerPort; i++) {
        send(rrq("f"), static_cast<uint16_t>(41000 + i));
        EXPECT_EQ(wire::tftp_opcode(one_reply(static_cast<uint16_t>(41000 + i))),
                  wire::tftpop::data);
    }
    EXPECT_EQ(server().active(), gw::TftpServer::kMaxPerPort);
    send(rrq("f"), 42000);
    auto e = wire::tftp_error(one_reply(42000));
    ASSERT_TRUE(e);
    EXPECT_EQ(server().stats().refused_limit, 1u);
    // The client ends one with an ERROR: room for another.
    send({0, 5, 0, 0, 'b', 'y', 'e', 0}, 41000);
    EXPECT_EQ(server().active(), gw::TftpServer::kMaxPerPort - 1);
    send(rrq("f"), 42000);
    EXPECT_EQ(wire::tftp_opcode(one_reply(42000)), wire::tftpop::data);
}

// The root is looked up for each request, as libslirp does: missing, its
// files are "not found" (the gateway runs: QEMU's -netdev user,tftp=DIR
// with no DIR yet still has a network), and one made, or deleted and made
// again by a build, is served as it is now.
TEST_F(TftpTest, Tftp_TheDirectoryIsTheOneThatExistsAtEachRequest) {
    std::system(("rm -rf '" + dir.root + "'").c_str());
    start();
    send(rrq("f"));
    auto e = wire::tftp_error(one_reply());
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, wire::tftperr::not_found);
    mkdir(dir.root.c_str(), 0755);
    dir.write(dir.root + "/f", "version 1");
    send(rrq("f"), kClientPort + 1);
    auto d = one_reply(kClientPort + 1);
    ASSERT_EQ(wire::tftp_opcode(d), wire::tftpop::data);
    EXPECT_EQ(std::string(d.begin() + 4, d.end()), "version 1");
    send(ack(1), kClientPort + 1);
    std::system(("rm -rf '" + dir.root + "'").c_str());
    mkdir(dir.root.c_str(), 0755);
    dir.write(dir.root + "/f", "version 2");
    send(rrq("f"), kClientPort + 2);
    d = one_reply(kClientPort + 2);
    ASSERT_EQ(wire::tftp_opcode(d), wire::tftpop::data);
    EXPECT_EQ(std::string(d.begin() + 4, d.end()), "version 2");
}

}  // namespace
}  // namespace usernet::testing
