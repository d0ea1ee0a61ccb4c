// A listening unix stream socket at a path: what QEMU's stream attachment
// and the control API share. The path is checked first: a socket a live
// process listens on is refused, a stale one (left by a crash) replaced,
// anything else refused. The socket file is owner-only (srwx------), and
// it is removed when the listener goes, if the file there is still ours.
#pragma once

#include <sys/types.h>

#include <string>

namespace usernet::core {

class UnixListener {
public:
    // Non-blocking, close-on-exec. Throws std::runtime_error naming the
    // path and what was wrong with it.
    explicit UnixListener(std::string path, int backlog = 128);
    ~UnixListener();
    UnixListener(const UnixListener&) = delete;
    UnixListener& operator=(const UnixListener&) = delete;

    int fd() const { return fd_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
};

}  // namespace usernet::core
