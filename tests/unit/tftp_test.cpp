// TFTP messages (wire/tftp.hpp) on the requests of real clients
// (captured_tftp.hpp: busybox, atftp, tftp-hpa, curl) and on requests that
// lie about their strings.
#include "wire/tftp.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "captured_tftp.hpp"

namespace usernet::wire {
namespace {

namespace td = testdata;

template <size_t N>
std::optional<TftpRequest> parse(const std::array<uint8_t, N>& a) {
    return TftpRequest::parse(Bytes(a.data(), a.size()));
}

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(Tftp, RealClientsRequestsParseWithTheirOptions) {
    auto bb = parse(td::kTftpRrqBusybox);
    ASSERT_TRUE(bb);
    EXPECT_EQ(bb->opcode(), tftpop::rrq);
    EXPECT_EQ(bb->filename(), "f");
    EXPECT_EQ(bb->mode(), "octet");
    EXPECT_EQ(bb->option_count(), 2u);
    EXPECT_EQ(bb->find("blksize"), "1468");
    EXPECT_EQ(bb->find("TSIZE"), "0");  // names are case-insensitive

    auto at = parse(td::kTftpRrqAtftp);
    ASSERT_TRUE(at);
    EXPECT_EQ(at->find("blksize"), "1428");
    EXPECT_EQ(at->find("tsize"), "0");
    EXPECT_EQ(at->find("timeout"), "2");
    EXPECT_EQ(at->find("windowsize"), "16");

    auto hpa = parse(td::kTftpRrqTftpHpa);
    ASSERT_TRUE(hpa);
    EXPECT_EQ(hpa->option_count(), 0u);
    EXPECT_FALSE(hpa->find("blksize"));

    auto curl = parse(td::kTftpRrqCurl);
    ASSERT_TRUE(curl);
    EXPECT_EQ(curl->find("blksize"), "512");
    EXPECT_EQ(curl->find("timeout"), "6");

    auto ascii = parse(td::kTftpRrqTftpHpaAscii);
    ASSERT_TRUE(ascii);
    EXPECT_EQ(ascii->mode(), "netascii");

    auto wrq = parse(td::kTftpWrqBusybox);
    ASSERT_TRUE(wrq);
    EXPECT_EQ(wrq->opcode(), tftpop::wrq);
    EXPECT_EQ(wrq->filename(), "up");
    EXPECT_EQ(wrq->find("tsize"), "6");
}

TEST(Tftp, EveryTruncationOfARealRequestIsRefusedOrStillBounded) {
    const std::vector<uint8_t> full(td::kTftpRrqAtftp.begin(), td::kTftpRrqAtftp.end());
    for (size_t n = 0; n < full.size(); n++) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
        auto r = TftpRequest::parse(cut);
        // A cut inside a string leaves it without its NUL: refused. A cut
        // right after a name leaves a name without a value: refused too.
        if (!r) continue;
        const auto* end = cut.data() + cut.size();
        for (size_t i = 0; i < r->option_count(); i++) {
            EXPECT_LE(reinterpret_cast<const uint8_t*>(r->option(i).value.data() +
                                                       r->option(i).value.size()),
                      end);
        }
    }
}

TEST(Tftp, RequestsThatLieAreRefused) {
    auto req = [](const std::string& s) { return TftpRequest::parse(bytes(s)); };
    using namespace std::string_literals;
    EXPECT_TRUE(req("\0\1f\0octet\0"s));
    EXPECT_FALSE(req("\0\1f\0octet"s));              // mode without its NUL
    EXPECT_FALSE(req("\0\1\0octet\0"s));             // empty name
    EXPECT_FALSE(req("\0\1f\0\0"s));                 // empty mode
    EXPECT_FALSE(req("\0\3f\0octet\0"s));            // not a request
    EXPECT_FALSE(req("\0\1f\0octet\0blksize\0"s));   // an option without value
    EXPECT_FALSE(req("\0\1f\0octet\0blksize\0512"s));
    EXPECT_FALSE(req("\0"s));
    EXPECT_TRUE(req("\0\1f\0octet\0\0\0\0"s));       // NUL padding after the pairs
    EXPECT_FALSE(req("\0\1f\0octet\0\0\0x"s));       // ... and not garbage
    EXPECT_FALSE(req("\0\1"s + std::string(256, 'a') + "\0octet\0"s));  // name too long
    EXPECT_TRUE(req("\0\1"s + std::string(255, 'a') + "\0octet\0"s));
    std::string many = "\0\1f\0octet\0"s;
    for (size_t i = 0; i < kTftpMaxOptions; i++) many += "o"s + std::to_string(i) + "\0" + "1\0"s;
    EXPECT_TRUE(req(many));
    EXPECT_FALSE(req(many + "x\0" + "1\0"s));  // one option too many
}

TEST(Tftp, DecimalValues) {
    EXPECT_EQ(tftp_decimal("0"), 0u);
    EXPECT_EQ(tftp_decimal("65464"), 65464u);
    EXPECT_EQ(tftp_decimal("9999999999"), 9999999999u);
    EXPECT_FALSE(tftp_decimal(""));
    EXPECT_FALSE(tftp_decimal("12345678901"));
    EXPECT_FALSE(tftp_decimal("-1"));
    EXPECT_FALSE(tftp_decimal("1e3"));
    EXPECT_FALSE(tftp_decimal(" 1"));
}

TEST(Tftp, AckErrorAndBuilders) {
    const uint8_t a[] = {0, 4, 0xff, 0xfe};
    EXPECT_EQ(tftp_ack_block(Bytes(a, 4)), 0xfffe);
    EXPECT_FALSE(tftp_ack_block(Bytes(a, 3)));
    const uint8_t e[] = {0, 5, 0, 8, 'n', 'o'};  // message without its NUL
    auto err = tftp_error(Bytes(e, sizeof e));
    ASSERT_TRUE(err);
    EXPECT_EQ(err->code, tftperr::bad_option);
    EXPECT_EQ(err->message, "no");

    std::vector<uint8_t> out(64);
    size_t n = tftp_build_error(out, tftperr::not_found, "file not found");
    ASSERT_EQ(n, 4u + 14u + 1u);
    err = tftp_error(Bytes(out.data(), n));
    EXPECT_EQ(err->message, "file not found");
    EXPECT_EQ(tftp_build_error(MutBytes(out.data(), 10), 1, "file not found"), 0u);

    const TftpOption opts[] = {{"blksize", "1428"}, {"tsize", "6"}};
    n = tftp_build_oack(out, opts, 2);
    const std::string want("\0\6blksize\0" "1428\0tsize\0" "6\0", 23);
    EXPECT_EQ(std::string(out.begin(), out.begin() + static_cast<long>(n)), want);
    EXPECT_EQ(tftp_build_oack(MutBytes(out.data(), 20), opts, 2), 0u);
}

}  // namespace
}  // namespace usernet::wire
