// Noticing that a network namespace usernet attached to has gone away.
//
// usernet's TAP descriptor keeps its namespace alive: after `ip netns del`
// the namespace lives on, unreachable, holding the guest's flows and
// descriptors forever. So, as pasta does, usernet watches what named the
// namespace and treats its disappearance as the end of the attachment:
//   - a name or a path (/run/netns/NAME, a bind mount anywhere): inotify on
//     the directory, for the file being deleted or moved away
//     (`ip netns del` unmounts it, then unlinks it);
//   - a PID (/proc/PID/ns/net): a pidfd, readable when the process exits.
// The callback runs once, on the event loop. Not watched: a namespace file
// that is only unmounted and left in place (nothing reports that), and
// /proc/PID/task/TID/ns/net paths other than /proc/PID/ns/net.
#pragma once

#include <functional>
#include <string>

#include "core/event_loop.hpp"

namespace usernet::ports {

class NetnsWatch final : public core::IoHandler {
public:
    // Watches the namespace file `path` (as netns_path() returns it).
    // Throws std::runtime_error when nothing can be watched.
    NetnsWatch(core::EventLoop& loop, std::string path, std::function<void()> gone);
    ~NetnsWatch();
    NetnsWatch(const NetnsWatch&) = delete;
    NetnsWatch& operator=(const NetnsWatch&) = delete;

    void on_io(uint32_t events) override;
    const std::string& path() const { return path_; }

private:
    bool still_there() const;

    core::EventLoop& loop_;
    std::string path_;
    std::string base_;  // the file's name inside the watched directory
    std::function<void()> gone_;
    int fd_ = -1;
    bool pid_ = false;  // fd_ is a pidfd, else an inotify descriptor
    bool fired_ = false;
};

}  // namespace usernet::ports
