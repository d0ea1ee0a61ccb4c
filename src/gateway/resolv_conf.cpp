#include "gateway/resolv_conf.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

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
        if (size_t pct = addr.find('%'); pct != std::string_view::npos) addr = addr.substr(0, pct);
        auto ip = wire::IpAddr::parse(addr);
        if (!ip) continue;
        if (ip->is_unspecified())
            ip = ip->is_v4() ? wire::IpAddr::v4(0x7f000001) : *wire::IpAddr::parse("::1");
        HostPort hp{*ip, 53};
        bool dup = std::any_of(out.begin(), out.end(), [&](const HostPort& o) {
            return o.addr == hp.addr && o.port == hp.port;
        });
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
