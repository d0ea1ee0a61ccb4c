// See unix_listener.hpp.
#include "core/unix_listener.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace usernet::core {
namespace {

std::string errstr(int err) { return std::strerror(err); }

}  // namespace

UnixListener::UnixListener(std::string path, int backlog) : path_(std::move(path)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.empty() || path_.size() >= sizeof(addr.sun_path))
        throw std::runtime_error("socket path '" + path_ + "' is empty or too long (at most " +
                                 std::to_string(sizeof(addr.sun_path) - 1) + " bytes)");
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    auto* sa = reinterpret_cast<const sockaddr*>(&addr);

    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("socket path " + path_ + " exists and is not a socket");
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0) throw std::runtime_error("cannot create a unix socket: " + errstr(errno));
        int r = connect(probe, sa, sizeof(addr));
        int e = errno;
        close(probe);
        if (r == 0 || e == EAGAIN || e == EINPROGRESS)
            throw std::runtime_error("socket path " + path_ + " is in use by another process");
        if (e == ECONNREFUSED) {
            spdlog::info("removing stale socket {}", path_);
            if (unlink(path_.c_str()) < 0 && errno != ENOENT)
                throw std::runtime_error("cannot remove stale socket " + path_ + ": " +
                                         errstr(errno));
        } else if (e != ENOENT) {
            throw std::runtime_error("cannot check socket path " + path_ + ": " + errstr(e));
        }
    }

    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("cannot create a unix socket: " + errstr(errno));
    // Owner only (srwx------): only our own user (and root) may connect.
    // umask is per process; this runs at start-up, before any other thread
    // exists.
    mode_t old = umask(077);
    int r = bind(fd_, sa, sizeof(addr));
    int e = errno;
    umask(old);
    if (r < 0) {
        close(fd_);
        if (e == EADDRINUSE)
            throw std::runtime_error("socket path " + path_ + " is in use by another process");
        throw std::runtime_error("cannot bind socket " + path_ + ": " + errstr(e));
    }
    if (stat(path_.c_str(), &st) == 0) {
        dev_ = st.st_dev;
        ino_ = st.st_ino;
    }
    if (listen(fd_, backlog) < 0) {
        e = errno;
        close(fd_);
        unlink(path_.c_str());
        throw std::runtime_error("cannot listen on " + path_ + ": " + errstr(e));
    }
}

UnixListener::~UnixListener() {
    close(fd_);
    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
        unlink(path_.c_str());
}

}  // namespace usernet::core
