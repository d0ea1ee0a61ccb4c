// Fuzzes the TFTP views and builders (wire/tftp.hpp): a request's strings
// and options, ACK and ERROR. Checked: every string a view hands out lies
// inside the input and holds no NUL; an OACK built from a parsed request's
// options parses back (as a request body) to the same pairs; builders never
// write past a buffer of the input's choosing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.hpp"
#include "wire/tftp.hpp"

using namespace usernet::wire;

namespace {

void inside(std::string_view s, const uint8_t* data, size_t size, size_t max = kTftpMaxName) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    FUZZ_CHECK(s.empty() || (p >= data && p + s.size() <= data + size));
    FUZZ_CHECK(std::memchr(s.data(), 0, s.size()) == nullptr);
    FUZZ_CHECK(s.size() <= max);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Bytes in(data, size);
    (void)tftp_ack_block(in);
    if (auto e = tftp_error(in)) inside(e->message, data, size, size);  // no limit of its own
    auto r = TftpRequest::parse(in);
    if (!r) return 0;
    FUZZ_CHECK(r->opcode() == tftpop::rrq || r->opcode() == tftpop::wrq);
    FUZZ_CHECK(!r->filename().empty() && !r->mode().empty());
    inside(r->filename(), data, size);
    inside(r->mode(), data, size);
    FUZZ_CHECK(r->option_count() <= kTftpMaxOptions);
    for (size_t i = 0; i < r->option_count(); i++) {
        inside(r->option(i).name, data, size);
        inside(r->option(i).value, data, size);
        FUZZ_CHECK(r->find(r->option(i).name).has_value());
        (void)tftp_decimal(r->option(i).value);
    }
    // Back out as an OACK, into exactly the room the input picks.
    std::vector<uint8_t> out(size % 300);
    size_t n = tftp_build_oack(out, &r->option(0), r->option_count());
    if (n == 0) return 0;
    FUZZ_CHECK(n <= out.size());
    // The same pairs, read as a request body after a made-up header.
    std::vector<uint8_t> again{0, 1, 'f', 0, 'o', 0};
    again.insert(again.end(), out.begin() + 2, out.begin() + static_cast<long>(n));
    auto back = TftpRequest::parse(again);
    FUZZ_CHECK(back.has_value());
    FUZZ_CHECK(back->option_count() == r->option_count());
    for (size_t i = 0; i < r->option_count(); i++) {
        FUZZ_CHECK(back->option(i).name == r->option(i).name);
        FUZZ_CHECK(back->option(i).value == r->option(i).value);
    }
    return 0;
}
