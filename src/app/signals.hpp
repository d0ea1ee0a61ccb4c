// Stopping the event loop on SIGINT, SIGTERM and SIGHUP, through a signalfd.
//
// block_stop_signals() must run first, before any thread exists, so that
// these signals stay pending (instead of killing the process) until the
// loop reads them: a signal during start-up then still ends in a clean
// shutdown. StopOnSignals reads them on the loop and calls stop(), after
// which the owner destroys everything in order (socket files unlinked,
// capture flushed). SIGPIPE is ignored: a peer that went away is an EPIPE
// on the write, handled where it happens.
#pragma once

#include "core/event_loop.hpp"

namespace usernet::app {

// Blocks SIGINT, SIGTERM and SIGHUP and ignores SIGPIPE. Throws
// std::system_error.
void block_stop_signals();

class StopOnSignals : public core::IoHandler {
public:
    // Throws std::system_error if the signalfd cannot be created.
    explicit StopOnSignals(core::EventLoop& loop);
    ~StopOnSignals();
    StopOnSignals(const StopOnSignals&) = delete;
    StopOnSignals& operator=(const StopOnSignals&) = delete;

    void on_io(uint32_t events) override;
    // The signal that stopped the loop, 0 if none did.
    int received() const { return received_; }

private:
    core::EventLoop& loop_;
    int fd_ = -1;
    int received_ = 0;
};

}  // namespace usernet::app
