#include "gateway/resolv_conf.hpp"

#include <net/if.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "wire/ipv6.hpp"

namespace usernet::gw {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view next_word(std::string_view& s) {
    size_t i = 0;
    while (i < s.size() && is_space(s[i])) i++;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) j++;
    std::string_view w = s.substr(i, j - i);
    s.remove_prefix(j);
    return w;
}

}  // namespace

uint32_t scope_of(std::string_view zone) {
    if (zone.empty()) return 0;
    if (zone.find_first_not_of("0123456789") == std::string_view::npos && zone.size() <= 9) {
        uint32_t v = 0;
        for (char c : zone) v = v * 10 + static_cast<uint32_t>(c - '0');
        return v;
    }
    if (zone.size() >= IF_NAMESIZE) return 0;
    return if_nametoindex(std::string(zone).c_str());
}

std::vector<HostPort> parse_resolv_conf(std::string_view text) {
    std::vector<HostPort> out;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);

        std::string_view keyword = next_word(line);
        if (keyword != "nameserver") continue;  // also skips comments and blanks
        std::string_view addr = next_word(line);
        // A comment may follow the address directly ("1.1.1.1#cloudflare").
        addr = addr.substr(0, addr.find_first_of("#;"));
        std::string_view zone;
        if (size_t pct = addr.find('%'); pct != std::string_view::npos) {
            zone = addr.substr(pct + 1);
            addr = addr.substr(0, pct);
        }
        auto ip = wire::IpAddr::parse(addr);
        if (!ip) continue;
        if (ip->is_unspecified())
            ip = ip->is_v4() ? wire::IpAddr::v4(0x7f000001) : *wire::IpAddr::parse("::1");
        HostPort hp{*ip, 53};
        // A link-local resolver (NetworkManager writes the RA's) is reached
        // through its interface: fe80::1%eth0, or %3.
        if (!zone.empty() && wire::is_v6_link_local(*ip)) hp.scope = scope_of(zone);
        bool dup = std::any_of(out.begin(), out.end(), [&](const HostPort& o) { return o == hp; });
        if (!dup) out.push_back(hp);
    }
    return out;
}

std::vector<HostPort> load_system_resolvers(const std::string& path) {
    std::ifstream f(path);
    if (!f) return {};
    std::ostringstream ss;
    ss << f.rdbuf();
    return parse_resolv_conf(ss.str());
}

}  // namespace usernet::gw
