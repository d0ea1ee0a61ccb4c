#include "wire/dhcp4.hpp"

#include <algorithm>
#include <cstring>

namespace usernet::wire {

namespace {

constexpr size_t kChaddrOffset = 28;
constexpr size_t kChaddrLen = 16;
constexpr size_t kCookieOffset = 236;
constexpr size_t kMaxOptionData = 255;

// Walks one option area from pos; returns false at END, at the end of the
// area, or at an option whose length runs past the area.
bool next_in_area(Bytes area, size_t& pos, Dhcp4Option& out) {
    while (pos < area.size()) {
        uint8_t code = area[pos];
        if (code == dhcp4opt::pad) {
            pos++;
            continue;
        }
        if (code == dhcp4opt::end) break;
        if (pos + 1 >= area.size()) break;
        size_t len = area[pos + 1];
        if (len > area.size() - pos - 2) break;
        out.code = code;
        out.data = area.subspan(pos + 2, len);
        pos += 2 + len;
        return true;
    }
    pos = area.size();
    return false;
}

}  // namespace

bool Dhcp4OptionIter::next(Dhcp4Option& out) {
    while (area_ < n_areas_) {
        if (next_in_area(areas_[area_], pos_, out)) return true;
        area_++;
        pos_ = 0;
    }
    return false;
}

std::optional<Dhcp4View> Dhcp4View::parse(Bytes msg) {
    Dhcp4View v;
    v.msg_ = msg;
    if (msg.size() >= kDhcp4OptionsOffset && load32(&msg[kCookieOffset]) == kDhcp4MagicCookie)
        return v;
    if (msg.size() < kDhcp4MinLen) return std::nullopt;
    v.has_cookie_ = false;  // RFC 951 BOOTP: no options
    return v;
}

Dhcp4OptionIter Dhcp4View::options() const {
    Dhcp4OptionIter it;
    it.areas_[0] = options_field();
    it.n_areas_ = 1;
    // Option 52 is only meaningful in the options field itself.
    size_t pos = 0;
    Dhcp4Option o;
    uint8_t overload = 0;
    while (next_in_area(options_field(), pos, o)) {
        if (o.code == dhcp4opt::overload && o.data.size() == 1) {
            overload = o.data[0];
            break;
        }
    }
    if (overload == 1 || overload == 3) it.areas_[it.n_areas_++] = file();
    if (overload == 2 || overload == 3) it.areas_[it.n_areas_++] = sname();
    return it;
}

std::optional<Bytes> Dhcp4View::find(uint8_t code) const {
    Dhcp4OptionIter it = options();
    Dhcp4Option o;
    while (it.next(o))
        if (o.code == code) return o.data;
    return std::nullopt;
}

std::optional<Ipv4> Dhcp4View::find_ipv4(uint8_t code) const {
    auto d = find(code);
    if (!d || d->size() != 4) return std::nullopt;
    return load32(d->data());
}

std::optional<uint8_t> Dhcp4View::message_type() const {
    auto d = find(dhcp4opt::message_type);
    if (!d || d->size() != 1) return std::nullopt;
    return (*d)[0];
}

std::optional<Ipv4> Dhcp4View::requested_ip() const { return find_ipv4(dhcp4opt::requested_ip); }

std::optional<Ipv4> Dhcp4View::server_id() const { return find_ipv4(dhcp4opt::server_id); }

std::optional<uint16_t> Dhcp4View::max_message_size() const {
    auto d = find(dhcp4opt::max_message_size);
    if (!d || d->size() != 2) return std::nullopt;
    return load16(d->data());
}

std::optional<Bytes> Dhcp4View::client_id() const {
    auto d = find(dhcp4opt::client_id);
    if (!d || d->empty()) return std::nullopt;
    return d;
}

std::optional<Bytes> Dhcp4View::param_request_list() const {
    return find(dhcp4opt::param_request_list);
}

std::optional<std::string_view> Dhcp4View::hostname() const {
    auto d = find(dhcp4opt::hostname);
    if (!d) return std::nullopt;
    size_t n = d->size();
    while (n > 0 && (*d)[n - 1] == 0) n--;
    return std::string_view(reinterpret_cast<const char*>(d->data()), n);
}

Dhcp4Builder::Dhcp4Builder(MutBytes buf) : buf_(buf) {
    if (buf_.size() < kDhcp4MinLen) return;
    std::memset(buf_.data(), 0, kDhcp4OptionsOffset);
    store32(&buf_[kCookieOffset], kDhcp4MagicCookie);
    len_ = kDhcp4OptionsOffset;
    ok_ = true;
}

void Dhcp4Builder::set_op(uint8_t op) {
    if (ok_) buf_[0] = op;
}
void Dhcp4Builder::set_hops(uint8_t hops) {
    if (ok_) buf_[3] = hops;
}
void Dhcp4Builder::set_xid(uint32_t xid) {
    if (ok_) store32(&buf_[4], xid);
}
void Dhcp4Builder::set_secs(uint16_t secs) {
    if (ok_) store16(&buf_[8], secs);
}
void Dhcp4Builder::set_flags(uint16_t flags) {
    if (ok_) store16(&buf_[10], flags);
}
void Dhcp4Builder::set_ciaddr(Ipv4 a) {
    if (ok_) store32(&buf_[12], a);
}
void Dhcp4Builder::set_yiaddr(Ipv4 a) {
    if (ok_) store32(&buf_[16], a);
}
void Dhcp4Builder::set_siaddr(Ipv4 a) {
    if (ok_) store32(&buf_[20], a);
}
void Dhcp4Builder::set_giaddr(Ipv4 a) {
    if (ok_) store32(&buf_[24], a);
}
bool Dhcp4Builder::set_file(std::string_view name) {
    constexpr size_t kFileOffset = 108, kFileLen = 128;
    if (!ok_ || name.size() >= kFileLen) return false;
    std::memset(&buf_[kFileOffset], 0, kFileLen);
    std::memcpy(&buf_[kFileOffset], name.data(), name.size());
    return true;
}

void Dhcp4Builder::set_chaddr(const MacAddr& mac) {
    if (!ok_) return;
    buf_[1] = 1;
    buf_[2] = 6;
    std::memset(&buf_[kChaddrOffset], 0, kChaddrLen);
    mac.store(&buf_[kChaddrOffset]);
}

void Dhcp4Builder::reply_to(const Dhcp4View& request) {
    if (!ok_) return;
    buf_[0] = dhcp4op::boot_reply;
    buf_[1] = request.htype();
    buf_[2] = request.hlen();
    std::memcpy(&buf_[kChaddrOffset], request.chaddr_raw().data(), kChaddrLen);
    store32(&buf_[4], request.xid());
    store16(&buf_[10], request.flags());
    store32(&buf_[24], request.giaddr());
}

size_t Dhcp4Builder::option_size(size_t data_len) {
    const size_t chunks = data_len == 0 ? 1 : (data_len + kMaxOptionData - 1) / kMaxOptionData;
    return data_len + 2 * chunks;
}

size_t Dhcp4Builder::room() const {
    return ok_ && !done_ && buf_.size() > len_ ? buf_.size() - len_ - 1 : 0;
}

bool Dhcp4Builder::add_option(uint8_t code, Bytes data) {
    if (!ok_ || done_) return false;
    // Every chunk costs two header bytes; an empty option is one chunk.
    size_t chunks = data.empty() ? 1 : (data.size() + kMaxOptionData - 1) / kMaxOptionData;
    size_t need = data.size() + 2 * chunks + 1;  // + END
    if (need > buf_.size() - len_) {
        ok_ = false;
        return false;
    }
    size_t off = 0;
    do {
        size_t n = std::min(data.size() - off, kMaxOptionData);
        buf_[len_++] = code;
        buf_[len_++] = static_cast<uint8_t>(n);
        if (n) std::memcpy(&buf_[len_], data.data() + off, n);
        len_ += n;
        off += n;
    } while (off < data.size());
    return true;
}

bool Dhcp4Builder::add_u8(uint8_t code, uint8_t v) { return add_option(code, Bytes(&v, 1)); }

bool Dhcp4Builder::add_u16(uint8_t code, uint16_t v) {
    uint8_t b[2];
    store16(b, v);
    return add_option(code, Bytes(b, 2));
}

bool Dhcp4Builder::add_u32(uint8_t code, uint32_t v) {
    uint8_t b[4];
    store32(b, v);
    return add_option(code, Bytes(b, 4));
}

bool Dhcp4Builder::add_ipv4(uint8_t code, Ipv4 a) { return add_u32(code, a); }

bool Dhcp4Builder::add_ipv4_list(uint8_t code, std::span<const Ipv4> list) {
    // Over 63 addresses add_option splits the option (RFC 3396); no option
    // needs more than 64, and a bound keeps the scratch buffer fixed.
    uint8_t b[4 * 64];
    if (list.size() > 64) {
        ok_ = false;
        return false;
    }
    for (size_t i = 0; i < list.size(); i++) store32(&b[4 * i], list[i]);
    return add_option(code, Bytes(b, 4 * list.size()));
}

bool Dhcp4Builder::add_string(uint8_t code, std::string_view s) {
    return add_option(code, Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

size_t Dhcp4Builder::finish() {
    if (!ok_ || done_ || len_ >= buf_.size()) {
        ok_ = false;
        return 0;
    }
    buf_[len_++] = dhcp4opt::end;
    if (len_ < kDhcp4MinLen) {
        std::memset(&buf_[len_], 0, kDhcp4MinLen - len_);
        len_ = kDhcp4MinLen;
    }
    done_ = true;
    return len_;
}

}  // namespace usernet::wire
