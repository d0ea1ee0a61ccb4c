// See signals.hpp.
#include "app/signals.hpp"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <spdlog/spdlog.h>
#include <system_error>
#include <utility>

namespace usernet::app {
namespace {

sigset_t stop_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    return set;
}

}  // namespace

void block_stop_signals() {
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGUSR2, SIG_IGN);
    sigset_t set = stop_set();
    if (int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0)
        throw std::system_error(e, std::generic_category(), "pthread_sigmask");
}

StopOnSignals::StopOnSignals(core::EventLoop& loop, std::function<void()> on_usr1)
    : loop_(loop), on_usr1_(std::move(on_usr1)) {
    sigset_t set = stop_set();
    fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
}

StopOnSignals::~StopOnSignals() {
    loop_.remove(fd_, this);
    close(fd_);
}

void StopOnSignals::on_io(uint32_t) {
    signalfd_siginfo si;
    while (read(fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGUSR1) {
            if (on_usr1_) on_usr1_();
            continue;
        }
        if (received_ == 0) {
            received_ = static_cast<int>(si.ssi_signo);
            const char* name = received_ == SIGINT    ? "SIGINT"
                               : received_ == SIGTERM ? "SIGTERM"
                                                      : "SIGHUP";
            spdlog::info("{} received, shutting down", name);
        }
        loop_.stop();
    }
}

}  // namespace usernet::app
