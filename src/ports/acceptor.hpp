// What every listening attachment shares (QEMU's stream socket on unix
// and TCP, the VDE control socket, the WebSocket listener): the accept
// loop, and closing every client when the listener goes.
//
// Each wakeup accepts at most kBurst connections, so that a flood of
// connects cannot hold the loop. An accept4() failure other than "none
// waiting" (EMFILE, ENFILE, ENOBUFS, ENOMEM: what a retry may cure) takes
// the listener out of the poll for kRetryMs, instead of spinning on a
// socket that stays readable while nothing can be accepted from it.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/event_loop.hpp"

namespace usernet::ports {

class Acceptor {
public:
    static constexpr int kBurst = 16;
    static constexpr core::Millis kRetryMs = 1000;

    // `owner` is the listener's handler for `fd` in `loop`.
    Acceptor(core::EventLoop& loop, core::IoHandler* owner) : loop_(loop), owner_(owner) {}
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;
    ~Acceptor() { loop_.cancel(timer_); }

    // Accepts what is waiting on `fd` (non-blocking, close-on-exec
    // descriptors); take(fd, peer) gets each and owns it. `where` names the
    // listener in the log.
    template <typename Take>
    void accept_some(int fd, std::string_view where, Take&& take) {
        for (int i = 0; i < kBurst; i++) {
            sockaddr_storage peer{};
            socklen_t len = sizeof(peer);
            int c = accept4(fd, reinterpret_cast<sockaddr*>(&peer), &len,
                            SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                spdlog::warn("accept on {}: {}; retrying in {} s", where, std::strerror(errno),
                             kRetryMs / 1000);
                fd_ = fd;
                paused_ = true;
                loop_.modify(fd, 0, owner_);
                loop_.arm(timer_, kRetryMs);
                return;
            }
            take(c, peer);
        }
    }

    bool paused() const { return paused_; }

private:
    void resume() {
        if (!paused_) return;
        paused_ = false;
        loop_.modify(fd_, EPOLLIN, owner_);
    }

    core::EventLoop& loop_;
    core::IoHandler* owner_;
    int fd_ = -1;
    bool paused_ = false;
    core::Timer timer_{[this] { resume(); }};
};

// Closes every client (Client::shut_down); one still queued in the loop's
// deferred work is handed over to free itself there (set_on_closed).
template <typename Client>
void shut_down_all(std::vector<std::unique_ptr<Client>>& clients, const char* why) {
    for (auto& c : clients) {
        if (c && c->shut_down(why)) {
            c->set_on_closed([](Client& self) { delete &self; });
            (void)c.release();
        }
    }
    clients.clear();
}

}  // namespace usernet::ports
