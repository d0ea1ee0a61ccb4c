// Stopping the event loop on SIGINT, SIGTERM and SIGHUP, through a signalfd;
// SIGUSR1 runs a callback instead (the daemon logs its counters), and
// SIGUSR2 is ignored (neither ends the process, as their default would).
//
// block_stop_signals() must run first, before any thread exists, so that
// these signals stay pending (instead of killing the process) until the
// loop reads them: a signal during start-up then still ends in a clean
// shutdown. StopOnSignals reads them on the loop and calls stop(), after
// which the owner destroys everything in order (socket files unlinked,
// capture flushed). SIGPIPE is ignored: a peer that went away is an EPIPE
// on the write, handled where it happens.
#pragma once

#include <functional>

#include "core/event_loop.hpp"

namespace usernet::app {

// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 and ignores SIGPIPE and
// SIGUSR2. Throws std::system_error.
void block_stop_signals();

class StopOnSignals : public core::IoHandler {
public:
    // Throws std::system_error if the signalfd cannot be created.
    // on_usr1: what SIGUSR1 does (nothing if empty).
    explicit StopOnSignals(core::EventLoop& loop, std::function<void()> on_usr1 = {});
    ~StopOnSignals();
    StopOnSignals(const StopOnSignals&) = delete;
    StopOnSignals& operator=(const StopOnSignals&) = delete;

    void on_io(uint32_t events) override;
    // The signal that stopped the loop, 0 if none did.
    int received() const { return received_; }

private:
    core::EventLoop& loop_;
    std::function<void()> on_usr1_;
    int fd_ = -1;
    int received_ = 0;
};

}  // namespace usernet::app
