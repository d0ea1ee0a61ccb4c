// See bochs_port.hpp.
#include "ports/bochs_port.hpp"

#include <charconv>
#include <stdexcept>

#include "ports/dgram_port.hpp"

namespace usernet::ports {
namespace {

constexpr wire::Ipv4 kLoopback = 0x7f000001;  // 127.0.0.1
constexpr uint32_t kMinMtu = 68;

std::optional<uint64_t> parse_number(std::string_view s) {
    uint64_t v = 0;
    if (s.empty() || s.size() > 10) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<BochsSpec> failed(std::string* error, std::string text) {
    if (error) *error = std::move(text);
    return std::nullopt;
}

}  // namespace

std::optional<BochsSpec> parse_bochs_spec(std::string_view text, std::string* error) {
    const std::string all(text);
    auto comma = text.find(',');
    std::string_view port_text = text.substr(0, comma);
    BochsSpec spec;
    bool have_count = false;
    while (comma != std::string_view::npos) {
        text = text.substr(comma + 1);
        comma = text.find(',');
        std::string_view param = text.substr(0, comma);
        auto eq = param.find('=');
        std::string_view key = param.substr(0, eq);
        std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
        if (key == "count" && eq != std::string_view::npos) {
            auto n = parse_number(value);
            if (have_count) return failed(error, "count is given twice in '" + all + "'; give it once");
            if (!n || *n < 1 || *n > kBochsMaxInstances)
                return failed(error, "count '" + std::string(value) + "' in '" + all +
                                         "' is not a number from 1 to " +
                                         std::to_string(kBochsMaxInstances) +
                                         "; give how many Bochs instances attach, such as count=2");
            spec.count = static_cast<uint32_t>(*n);
            have_count = true;
        } else if (key == "mtu" && eq != std::string_view::npos) {
            auto n = parse_number(value);
            if (spec.mtu) return failed(error, "mtu is given twice in '" + all + "'; give it once");
            if (!n || *n < kMinMtu || *n > kBochsMaxMtu)
                return failed(error, "MTU '" + std::string(value) + "' in '" + all +
                                         "' is not a number from " + std::to_string(kMinMtu) +
                                         " to " + std::to_string(kBochsMaxMtu) +
                                         "; Bochs's NE2000 takes standard Ethernet frames: give "
                                         "1500 or less");
            spec.mtu = static_cast<uint32_t>(*n);
        } else {
            return failed(error, "unknown parameter '" + std::string(param) + "' in '" + all +
                                     "'; the parameters are ,count=N and ,mtu=N");
        }
    }
    auto port = parse_number(port_text);
    // Bochs reads its ethdev with atoi(): 0 is refused, and a leading
    // address ("127.0.0.1:40000") would be read as port 127.
    if (!port || *port < 1 || *port > 65535)
        return failed(error, std::string("'").append(port_text) +
                                 (port_text.size() == all.size() ? "" : "' in '" + all) +
                                 "' is not a UDP port number from 1 to 65535; give the port of "
                                 "the first Bochs instance's ethdev=, such as 40000");
    uint64_t last = *port + 2 * uint64_t{spec.count} - 1;
    if (last > 65535)
        return failed(error, std::to_string(spec.count) +
                                 (spec.count == 1 ? " Bochs instance" : " Bochs instances") +
                                 " from port " +
                                 std::to_string(*port) +
                                 (spec.count == 1 ? " needs" : " need") + " ports up to " +
                                 std::to_string(last) +
                                 ", past 65535; give a lower port or a smaller count");
    spec.base_port = static_cast<uint16_t>(*port);
    return spec;
}

wire::MacAddr bochs_mac(uint32_t i) {
    return wire::MacAddr{{0xb0, 0xc4, 0x20, 0x00, 0x00, static_cast<uint8_t>(i)}};
}

std::vector<std::string> bochsrc_lines(uint16_t base, uint32_t i) {
    return {"pci: enabled=1, chipset=i440fx, slot1=ne2k",
            "ne2k: enabled=1, mac=" + bochs_mac(i).to_string() +
                ", ethmod=socket, ethdev=" + std::to_string(bochs_ethdev_port(base, i))};
}

DgramConfig bochs_dgram_config(uint16_t base, uint32_t i, uint32_t mtu) {
    DgramConfig c;
    c.kind = DgramKind::udp;
    c.local = SockAddr::inet(wire::IpAddr::v4(kLoopback), bochs_usernet_port(base, i));
    c.remote = SockAddr::inet(wire::IpAddr::v4(kLoopback), bochs_ethdev_port(base, i));
    c.peer_only = true;
    c.mtu = mtu;
    c.name = "bochs " + std::to_string(i) + " (ethdev=" +
             std::to_string(bochs_ethdev_port(base, i)) + ")";
    return c;
}

BochsAttachment::BochsAttachment(core::EventLoop& loop, sw::Switch& sw, const BochsSpec& spec,
                                 uint32_t mtu)
    : base_(spec.base_port) {
    ports_.reserve(spec.count);
    for (uint32_t i = 0; i < spec.count; ++i) {
        try {
            ports_.push_back(
                std::make_unique<DgramPort>(loop, sw, bochs_dgram_config(base_, i, mtu)));
        } catch (const std::exception& e) {
            throw std::runtime_error("Bochs instance " + std::to_string(i) + " (ethdev=" +
                                     std::to_string(bochs_ethdev_port(base_, i)) + "): " +
                                     e.what());
        }
    }
}

BochsAttachment::~BochsAttachment() = default;

}  // namespace usernet::ports
