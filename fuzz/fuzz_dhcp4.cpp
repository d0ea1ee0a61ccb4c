// Fuzzes Dhcp4View (options, overload, typed accessors) and Dhcp4Builder:
// every option of the input is copied into a reply whose capacity the input
// chooses; the builder must never overflow it, and a reply it finishes must
// parse back to the same options.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_check.hpp"
#include "touch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace usernet::fuzz;
    Sink s;
    Bytes in(data, size);
    touch_dhcp4(s, in);

    auto req = Dhcp4View::parse(in);
    if (!req) return 0;
    // Exactly the capacity, so ASan sees any write past it.
    std::vector<uint8_t> out(280 + req->xid() % 400);
    Dhcp4Builder b{MutBytes(out)};
    b.reply_to(*req);
    std::vector<Dhcp4Option> copied;
    Dhcp4OptionIter it = req->options();
    Dhcp4Option o;
    while (it.next(o)) {
        if (b.add_option(o.code, o.data)) copied.push_back(o);
    }
    size_t n = b.finish();
    if (out.size() < kDhcp4MinLen) {
        FUZZ_CHECK(n == 0);
        return 0;
    }
    if (n == 0) return 0;
    FUZZ_CHECK(n >= kDhcp4MinLen && n <= out.size());
    auto rep = Dhcp4View::parse(Bytes(out.data(), n));
    FUZZ_CHECK(rep.has_value());
    FUZZ_CHECK(rep->xid() == req->xid());
    FUZZ_CHECK(rep->op() == dhcp4op::boot_reply);
    Dhcp4OptionIter back = rep->options();
    size_t i = 0;
    while (back.next(o)) {
        FUZZ_CHECK(i < copied.size());
        FUZZ_CHECK(o.code == copied[i].code);
        FUZZ_CHECK(o.data.size() == copied[i].data.size());
        FUZZ_CHECK(std::equal(o.data.begin(), o.data.end(), copied[i].data.begin()));
        i++;
    }
    FUZZ_CHECK(i == copied.size());
    return 0;
}
