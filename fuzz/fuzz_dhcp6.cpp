// Fuzzes Dhcp6View (the option list, IA_NA and IAADDR nested in it) and
// Dhcp6Builder: every option of the input is copied into a reply whose
// capacity the input chooses, some as nested options; the builder must
// never overflow it, and a reply it finishes must parse back to the same
// options.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_check.hpp"
#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_dhcp6(s, in);

    auto req = Dhcp6View::parse(in);
    if (!req) return 0;
    // Exactly the capacity, so ASan sees any write past it.
    std::vector<uint8_t> out(req->xid() % 600);
    Dhcp6Builder b(MutBytes(out.data(), out.size()), dhcp6type::reply, req->xid());
    std::vector<Dhcp6Option> copied;
    req->options().for_each([&](const Dhcp6Option& o) {
        if (o.code % 2) {
            // Nested: the option wrapped in an IA_NA-like container.
            size_t mark = b.begin(dhcp6opt::ia_na);
            b.append32(o.code);
            b.put(o.code, o.data);
            b.end(mark);
        } else {
            b.put(o.code, o.data);
        }
        if (b.ok()) copied.push_back(o);
    });
    const size_t n = b.finish();
    if (out.size() < kDhcp6HeaderLen) {
        FUZZ_CHECK(n == 0);
        return 0;
    }
    if (n == 0) return 0;
    FUZZ_CHECK(n <= out.size());
    auto rep = Dhcp6View::parse(Bytes(out.data(), n));
    FUZZ_CHECK(rep.has_value());
    FUZZ_CHECK(rep->xid() == req->xid());
    size_t i = 0;
    rep->options().for_each([&](const Dhcp6Option& o) {
        FUZZ_CHECK(i < copied.size());
        const Dhcp6Option& want = copied[i++];
        Bytes got = o.data;
        uint16_t code = o.code;
        if (want.code % 2) {
            FUZZ_CHECK(o.code == dhcp6opt::ia_na && o.data.size() >= 8);
            code = load16(&o.data[4]);
            got = o.data.subspan(8);
            FUZZ_CHECK(load16(&o.data[6]) == got.size());
        }
        FUZZ_CHECK(code == want.code);
        FUZZ_CHECK(got.size() == want.data.size());
        FUZZ_CHECK(std::equal(got.begin(), got.end(), want.data.begin()));
    });
    FUZZ_CHECK(i == copied.size());
    return 0;
}
