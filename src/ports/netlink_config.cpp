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

    int request(nlmsghdr* nlh) {
        if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return -errno;
        std::vector<char> rbuf(MNL_SOCKET_BUFFER_SIZE);
        for (;;) {
            ssize_t n = mnl_socket_recvfrom(nl_, rbuf.data(), rbuf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return -errno;
            }
            int r = mnl_cb_run(rbuf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid_,
                               nullptr, nullptr);
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

void netlink_configure_ipv4(const std::string& ifname, const TapNetConfig& cfg) {
    if (cfg.prefix_len > 32)
        throw std::runtime_error("invalid prefix length /" + std::to_string(cfg.prefix_len));
    Rtnl nl;
    unsigned idx = ifindex_of(ifname);
    const std::string addr_text =
        wire::ipv4_to_string(cfg.addr) + "/" + std::to_string(cfg.prefix_len);

    {
        nlmsghdr* nlh = nl.start(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
        ifa->ifa_family = AF_INET;
        ifa->ifa_prefixlen = cfg.prefix_len;
        ifa->ifa_scope = RT_SCOPE_UNIVERSE;
        ifa->ifa_index = idx;
        uint32_t a = htonl(cfg.addr);
        mnl_attr_put_u32(nlh, IFA_LOCAL, a);
        mnl_attr_put_u32(nlh, IFA_ADDRESS, a);
        if (cfg.prefix_len < 31) {
            uint32_t mask = cfg.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - cfg.prefix_len);
            mnl_attr_put_u32(nlh, IFA_BROADCAST, htonl(cfg.addr | ~mask));
        }
        int r = nl.request(nlh);
        if (r < 0 && r != -EEXIST)
            throw std::runtime_error("cannot add address " + addr_text + " to '" + ifname +
                                     "': " + errstr(-r));
    }

    if (cfg.gateway != 0) {
        nlmsghdr* nlh = nl.start(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
        rtm->rtm_family = AF_INET;
        rtm->rtm_dst_len = 0;
        rtm->rtm_table = RT_TABLE_MAIN;
        rtm->rtm_protocol = RTPROT_BOOT;
        rtm->rtm_scope = RT_SCOPE_UNIVERSE;
        rtm->rtm_type = RTN_UNICAST;
        mnl_attr_put_u32(nlh, RTA_GATEWAY, htonl(cfg.gateway));
        mnl_attr_put_u32(nlh, RTA_OIF, idx);
        int r = nl.request(nlh);
        if (r == -EEXIST) {
            spdlog::warn("a default route already exists in the namespace; not adding one via {}",
                         wire::ipv4_to_string(cfg.gateway));
        } else if (r < 0) {
            throw std::runtime_error("cannot add default route via " +
                                     wire::ipv4_to_string(cfg.gateway) + " on '" + ifname +
                                     "': " + errstr(-r));
        }
    }
}

void netlink_configure_ipv6(const std::string& ifname, const TapNetConfig& cfg) {
    if (cfg.addr6.is_unspecified() || cfg.addr6.is_v4()) return;
    if (cfg.prefix6_len > 128)
        throw std::runtime_error("invalid prefix length /" + std::to_string(cfg.prefix6_len));
    Rtnl nl;
    unsigned idx = ifindex_of(ifname);
    const std::string addr_text = cfg.addr6.to_string() + "/" + std::to_string(cfg.prefix6_len);
    {
        nlmsghdr* nlh = nl.start(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
        ifa->ifa_family = AF_INET6;
        ifa->ifa_prefixlen = cfg.prefix6_len;
        ifa->ifa_scope = RT_SCOPE_UNIVERSE;
        ifa->ifa_index = idx;
        ifa->ifa_flags = IFA_F_NODAD;
        mnl_attr_put(nlh, IFA_LOCAL, 16, cfg.addr6.b.data());
        mnl_attr_put(nlh, IFA_ADDRESS, 16, cfg.addr6.b.data());
        mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
        int r = nl.request(nlh);
        if (r < 0 && r != -EEXIST)
            throw std::runtime_error("cannot add address " + addr_text + " to '" + ifname +
                                     "': " + errstr(-r));
    }
    if (!cfg.gateway6.is_unspecified()) {
        // Via the gateway's address in the prefix: the route the kernel
        // adds from a router advertisement goes via its link-local address,
        // so the two do not collide.
        nlmsghdr* nlh = nl.start(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
        rtm->rtm_family = AF_INET6;
        rtm->rtm_dst_len = 0;
        rtm->rtm_table = RT_TABLE_MAIN;
        rtm->rtm_protocol = RTPROT_BOOT;
        rtm->rtm_scope = RT_SCOPE_UNIVERSE;
        rtm->rtm_type = RTN_UNICAST;
        mnl_attr_put(nlh, RTA_GATEWAY, 16, cfg.gateway6.b.data());
        mnl_attr_put_u32(nlh, RTA_OIF, idx);
        int r = nl.request(nlh);
        if (r == -EEXIST) {
            spdlog::warn("an IPv6 default route already exists in the namespace; not adding one "
                         "via {}",
                         cfg.gateway6.to_string());
        } else if (r < 0) {
            throw std::runtime_error("cannot add IPv6 default route via " +
                                     cfg.gateway6.to_string() + " on '" + ifname +
                                     "': " + errstr(-r));
        }
    }
}

}  // namespace usernet::ports
