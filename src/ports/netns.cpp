// Entering a network namespace and creating the TAP there (see the header
// for the theory of operation).
#include "ports/netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "ports/tap_port.hpp"

namespace usernet::ports {
namespace {

std::string errstr(int err) { return std::strerror(err); }

bool all_digits(const std::string& s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

// Holds the thread in the target namespace for its lifetime; the destructor
// returns to the namespace the thread was in, or aborts.
class NetnsGuard {
public:
    explicit NetnsGuard(const std::string& netns) {
        const std::string path = netns_path(netns);
        int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (target < 0) {
            int e = errno;
            if (e == ENOENT) {
                if (all_digits(netns))
                    throw std::runtime_error("network namespace of process " + netns +
                                             " not found: " + path + " does not exist");
                throw std::runtime_error("network namespace '" + netns + "' not found: " + path +
                                         " does not exist");
            }
            throw std::runtime_error("cannot open network namespace '" + netns + "' (" + path +
                                     "): " + errstr(e));
        }
        own_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (own_ < 0) {
            int e = errno;
            close(target);
            throw std::runtime_error("cannot open usernet's own network namespace "
                                     "(/proc/thread-self/ns/net): " + errstr(e));
        }
        if (setns(target, CLONE_NEWNET) < 0) {
            int e = errno;
            close(target);
            close(own_);
            if (e == EINVAL)
                throw std::runtime_error(path + " is not a network namespace");
            if (e == EPERM)
                throw std::runtime_error("cannot enter network namespace '" + netns + "' (" + path +
                                         "): " + errstr(e) +
                                         " (usernet needs CAP_SYS_ADMIN in that namespace's "
                                         "user namespace)");
            throw std::runtime_error("cannot enter network namespace '" + netns + "' (" + path +
                                     "): " + errstr(e));
        }
        close(target);
    }
    ~NetnsGuard() {
        if (setns(own_, CLONE_NEWNET) < 0) {
            // Carrying on would open every host socket inside the guest's
            // namespace: stop instead.
            spdlog::critical("cannot return to usernet's own network namespace: {}",
                             errstr(errno));
            std::abort();
        }
        close(own_);
    }
    NetnsGuard(const NetnsGuard&) = delete;
    NetnsGuard& operator=(const NetnsGuard&) = delete;

private:
    int own_ = -1;
};

}  // namespace

std::string netns_path(const std::string& netns) {
    if (netns.find('/') != std::string::npos) return netns;
    if (all_digits(netns)) return "/proc/" + netns + "/ns/net";
    return "/run/netns/" + netns;
}

namespace {

// Whether the calling thread's network namespace has IPv6 on ifname.
bool ipv6_enabled(const std::string& ifname) {
    std::ifstream f("/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6");
    int disabled = 1;
    return f >> disabled && disabled == 0;
}

}  // namespace

int open_tap_in_netns(const std::string& netns, const std::string& ifname, uint32_t mtu,
                      const TapNetConfig* config, std::string* actual_ifname, bool offload,
                      bool* ipv6_set) {
    if (ipv6_set) *ipv6_set = false;
    if (netns.empty()) throw std::runtime_error("empty network namespace name");
    const std::string where = "network namespace '" + netns + "'";
    NetnsGuard in_ns(netns);

    std::string name;
    int fd = tap_open(ifname, &name, offload);
    if (fd < 0) {
        int e = -fd;
        if (e == EPERM || e == EACCES)
            throw std::runtime_error("cannot create TAP '" + ifname + "' in " + where + ": " +
                                     errstr(e) +
                                     " (usernet needs CAP_NET_ADMIN in that namespace's user "
                                     "namespace)");
        if (e == EBUSY)
            throw std::runtime_error("TAP '" + ifname + "' in " + where +
                                     " is in use by another process");
        if (e == EINVAL)
            throw std::runtime_error("cannot create TAP '" + ifname + "' in " + where +
                                     ": a device of that name exists and is not a TAP usernet "
                                     "can attach to");
        if (e == ENOENT || e == ENODEV)
            throw std::runtime_error("cannot create TAP '" + ifname + "' in " + where +
                                     ": /dev/net/tun is missing (load the tun module)");
        throw std::runtime_error("cannot create TAP '" + ifname + "' in " + where + ": " +
                                 errstr(e));
    }
    try {
        uint32_t link_mtu = config && config->mtu ? config->mtu : mtu;
        netlink_link_up(name, link_mtu, kTapTxQueueLen);
        if (config) {
            netlink_configure_ipv4(name, *config);
            // IPv6 where the namespace has it: a container may have turned
            // it off, and it needs a link MTU of 1280 (RFC 8200 5).
            if (!config->addr6.is_unspecified() && !config->addr6.is_v4()) {
                if (link_mtu < 1280)
                    spdlog::warn("{}: no IPv6 address or route set on '{}': its MTU {} is below "
                                 "IPv6's 1280 (give --no-ipv6 to say so)",
                                 where, name, link_mtu);
                else if (!ipv6_enabled(name))
                    spdlog::warn("{}: no IPv6 address or route set on '{}': IPv6 is disabled "
                                 "there (net.ipv6.conf.{}.disable_ipv6; give --no-ipv6 to say so)",
                                 where, name, name);
                else {
                    netlink_configure_ipv6(name, *config);
                    if (ipv6_set) *ipv6_set = true;
                }
            }
        }
    } catch (const std::exception& e) {
        close(fd);
        throw std::runtime_error(std::string(e.what()) + " (in " + where + ")");
    }
    if (actual_ifname) *actual_ifname = name;
    return fd;
}

}  // namespace usernet::ports
