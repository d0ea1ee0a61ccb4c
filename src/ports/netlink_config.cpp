// rtnetlink requests for the TAP in the guest namespace (see the header for
// the theory of operation). Each request asks for an acknowledgement and
// waits for it, so an error is reported against the request that caused it.
#include "ports/netlink_config.hpp"

#include <arpa/inet.h>
#include <net/if.h>  // before linux/*: libc-compat then skips the duplicates
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace usernet::ports {
namespace {

std::string errstr(int err) { return std::strerror(err); }

// One NETLINK_ROUTE socket; request() sends a message and returns 0 or the
// negative errno the kernel acknowledged it with.
class Rtnl {
public:
    Rtnl() {
        nl_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
        if (!nl_) throw std::runtime_error("cannot open a netlink socket: " + errstr(errno));
        if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
            int e = errno;
            mnl_socket_close(nl_);
            throw std::runtime_error("cannot bind a netlink socket: " + errstr(e));
        }
        portid_ = mnl_socket_get_portid(nl_);
        seq_ = static_cast<uint32_t>(time(nullptr));
    }
    ~Rtnl() { mnl_socket_close(nl_); }
    Rtnl(const Rtnl&) = delete;
    Rtnl& operator=(const Rtnl&) = delete;

    nlmsghdr* start(uint16_t type, uint16_t flags) {
        buf_.assign(MNL_SOCKET_BUFFER_SIZE, 0);
        nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
        nlh->nlmsg_seq = ++seq_;
        return nlh;
    }

    // cb (may be null) sees each message of the answer (mnl_cb_t).
    int request(nlmsghdr* nlh, mnl_cb_t cb = nullptr, void* data = nullptr) {
        if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return -errno;
        std::vector<char> rbuf(MNL_SOCKET_BUFFER_SIZE);
        for (;;) {
            ssize_t n = mnl_socket_recvfrom(nl_, rbuf.data(), rbuf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return -errno;
            }
            int r = mnl_cb_run(rbuf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid_,
                               cb, data);
            if (r < 0) return -errno;
            if (r == MNL_CB_STOP) return 0;
        }
    }

private:
    mnl_socket* nl_ = nullptr;
    uint32_t portid_ = 0;
    uint32_t seq_ = 0;
    std::vector<char> buf_;
};

unsigned ifindex_of(const std::string& ifname) {
    unsigned idx = if_nametoindex(ifname.c_str());
    if (idx == 0)
        throw std::runtime_error("network interface '" + ifname + "' not found: " + errstr(errno));
    return idx;
}

void link_set(Rtnl& nl, unsigned idx, const std::string& ifname, uint32_t mtu, uint32_t txqlen) {
    nlmsghdr* nlh = nl.start(RTM_NEWLINK, 0);
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = static_cast<int>(idx);
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    if (mtu) mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
    if (txqlen) mnl_attr_put_u32(nlh, IFLA_TXQLEN, txqlen);
    if (int r = nl.request(nlh); r < 0) {
        std::string what = "cannot bring up '" + ifname + "'";
        if (mtu) what += " with MTU " + std::to_string(mtu);
        throw std::runtime_error(what + ": " + errstr(-r));
    }
}

}  // namespace

void netlink_link_up(const std::string& ifname, uint32_t mtu, uint32_t txqueuelen) {
    Rtnl nl;
    // Loopback first: failing it is not fatal (the namespace may be
    // restricted), the TAP is what matters.
    if (unsigned lo = if_nametoindex("lo"); lo != 0) {
        try {
            link_set(nl, lo, "lo", 0, 0);
        } catch (const std::exception& e) {
            spdlog::warn("{}", e.what());
        }
    }
    link_set(nl, ifindex_of(ifname), ifname, mtu, txqueuelen);
}

namespace {

// The address's bytes as rtnetlink wants them (network order): 4 or 16.
std::pair<const uint8_t*, uint16_t> raw_addr(const wire::IpAddr& a) {
    return a.is_v4() ? std::pair<const uint8_t*, uint16_t>{&a.b[12], 4}
                     : std::pair<const uint8_t*, uint16_t>{a.b.data(), 16};
}

// `ip addr add A/LEN dev IFNAME` (with the broadcast address for IPv4, and
// no duplicate address detection for IPv6); one that exists is fine.
void add_address(Rtnl& nl, unsigned idx, const std::string& ifname, const wire::IpAddr& a,
                 uint8_t prefix_len) {
    const bool v4 = a.is_v4();
    nlmsghdr* nlh = nl.start(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
    ifa->ifa_family = v4 ? AF_INET : AF_INET6;
    ifa->ifa_prefixlen = prefix_len;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = idx;
    auto [bytes, len] = raw_addr(a);
    mnl_attr_put(nlh, IFA_LOCAL, len, bytes);
    mnl_attr_put(nlh, IFA_ADDRESS, len, bytes);
    if (v4 && prefix_len < 31) {
        uint32_t mask = prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - prefix_len);
        mnl_attr_put_u32(nlh, IFA_BROADCAST, htonl(a.as_v4() | ~mask));
    }
    if (!v4) {
        ifa->ifa_flags = IFA_F_NODAD;
        mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    }
    int r = nl.request(nlh);
    if (r < 0 && r != -EEXIST)
        throw std::runtime_error("cannot add address " + a.to_string() + "/" +
                                 std::to_string(prefix_len) + " to '" + ifname +
                                 "': " + errstr(-r));
}

// `ip route add default via GW dev IFNAME`; one that exists is a warning.
void add_default_route(Rtnl& nl, unsigned idx, const std::string& ifname,
                       const wire::IpAddr& gw) {
    nlmsghdr* nlh = nl.start(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = gw.is_v4() ? AF_INET : AF_INET6;
    rtm->rtm_dst_len = 0;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    auto [bytes, len] = raw_addr(gw);
    mnl_attr_put(nlh, RTA_GATEWAY, len, bytes);
    mnl_attr_put_u32(nlh, RTA_OIF, idx);
    const char* family = gw.is_v4() ? "" : "IPv6 ";
    int r = nl.request(nlh);
    if (r == -EEXIST) {
        spdlog::warn("a {}default route already exists in the namespace; not adding one via {}",
                     family, gw.to_string());
    } else if (r < 0) {
        throw std::runtime_error("cannot add " + std::string(family) + "default route via " +
                                 gw.to_string() + " on '" + ifname + "': " + errstr(-r));
    }
}

}  // namespace

void netlink_configure_ipv4(const std::string& ifname, const TapNetConfig& cfg) {
    if (cfg.prefix_len > 32)
        throw std::runtime_error("invalid prefix length /" + std::to_string(cfg.prefix_len));
    Rtnl nl;
    const unsigned idx = ifindex_of(ifname);
    add_address(nl, idx, ifname, wire::IpAddr::v4(cfg.addr), cfg.prefix_len);
    if (cfg.gateway != 0) add_default_route(nl, idx, ifname, wire::IpAddr::v4(cfg.gateway));
}

void netlink_configure_ipv6(const std::string& ifname, const TapNetConfig& cfg) {
    if (cfg.addr6.is_unspecified() || cfg.addr6.is_v4()) return;
    if (cfg.prefix6_len > 128)
        throw std::runtime_error("invalid prefix length /" + std::to_string(cfg.prefix6_len));
    Rtnl nl;
    const unsigned idx = ifindex_of(ifname);
    add_address(nl, idx, ifname, cfg.addr6, cfg.prefix6_len);
    // Via the gateway's address in the prefix: the route the kernel adds
    // from a router advertisement goes via its link-local address, so the
    // two do not collide.
    if (!cfg.gateway6.is_unspecified()) add_default_route(nl, idx, ifname, cfg.gateway6);
}

unsigned netlink_route_oif_v4(wire::Ipv4 dst) {
    try {
        Rtnl nl;
        nlmsghdr* nlh = nl.start(RTM_GETROUTE, 0);
        auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
        rtm->rtm_family = AF_INET;
        rtm->rtm_dst_len = 32;
        mnl_attr_put_u32(nlh, RTA_DST, htonl(dst));
        unsigned oif = 0;
        auto cb = [](const nlmsghdr* m, void* data) -> int {
            if (m->nlmsg_type != RTM_NEWROUTE) return MNL_CB_OK;
            mnl_attr_parse(
                m, sizeof(rtmsg),
                [](const nlattr* a, void* d) -> int {
                    if (mnl_attr_get_type(a) == RTA_OIF &&
                        mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
                        *static_cast<unsigned*>(d) = mnl_attr_get_u32(a);
                    return MNL_CB_OK;
                },
                data);
            return MNL_CB_OK;
        };
        if (nl.request(nlh, cb, &oif) < 0) return 0;
        return oif;
    } catch (const std::runtime_error&) {
        return 0;
    }
}

}  // namespace usernet::ports
