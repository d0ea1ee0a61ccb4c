// See netns_watch.hpp.
#include "ports/netns_watch.hpp"

#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace usernet::ports {
namespace {

// The PID in "/proc/PID/ns/net", or 0.
pid_t proc_pid(const std::string& path) {
    constexpr std::string_view prefix = "/proc/", suffix = "/ns/net";
    std::string_view p = path;
    if (!p.starts_with(prefix) || !p.ends_with(suffix)) return 0;
    std::string_view num = p.substr(prefix.size(), p.size() - prefix.size() - suffix.size());
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), pid);
    return ec == std::errc{} && end == num.data() + num.size() && pid > 0 ? pid : 0;
}

}  // namespace

NetnsWatch::NetnsWatch(core::EventLoop& loop, std::string path, std::function<void()> gone)
    : loop_(loop), path_(std::move(path)), gone_(std::move(gone)) {
    if (pid_t pid = proc_pid(path_)) {
        fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
        if (fd_ < 0)
            throw std::runtime_error("cannot watch process " + std::to_string(pid) +
                                     " (pidfd_open: " + std::strerror(errno) + ")");
        pid_ = true;
    } else {
        auto slash = path_.rfind('/');
        std::string dir = slash == 0 ? "/" : path_.substr(0, slash);
        base_ = path_.substr(slash + 1);
        fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd_ < 0 ||
            inotify_add_watch(fd_, dir.c_str(), IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF) < 0) {
            int e = errno;
            if (fd_ >= 0) close(fd_);
            throw std::runtime_error("cannot watch " + dir + " (inotify: " + std::strerror(e) +
                                     ")");
        }
    }
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
}

NetnsWatch::~NetnsWatch() {
    loop_.remove(fd_, this);
    close(fd_);
}

bool NetnsWatch::still_there() const {
    struct stat st {};
    return stat(path_.c_str(), &st) == 0;
}

void NetnsWatch::on_io(uint32_t) {
    if (fired_) return;
    bool gone = false;
    if (pid_) {
        gone = true;  // a pidfd becomes readable when its process exits
    } else {
        alignas(inotify_event) std::array<char, 4096> buf{};
        for (;;) {
            ssize_t n = read(fd_, buf.data(), buf.size());
            if (n <= 0) break;
            for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
                const auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + off);
                if (ev->mask & IN_DELETE_SELF) gone = true;
                if (ev->len > 0 && base_ == ev->name) gone = true;
                off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
            }
        }
        // Another file of the directory, or the name came back at once.
        if (gone && still_there()) gone = false;
    }
    if (!gone) return;
    fired_ = true;
    gone_();
}

}  // namespace usernet::ports
