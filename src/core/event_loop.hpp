// The event loop: one epoll set, timers, and end-of-batch work.
//
// Everything in usernet runs on this loop's thread. A wakeup handles every
// ready descriptor, then runs the "deferred" work queued meanwhile (ports
// flushing the frames they batched, flows sending their ACKs), then the
// timers that are due. Handlers are plain interfaces registered by pointer;
// registering allocates nothing per event. Timers live in an intrusive
// indexed binary heap, so arming, re-arming and cancelling are O(log n) and
// never allocate once the heap has grown to the number of live timers.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace usernet::core {

// Monotonic milliseconds, read once per wakeup (EventLoop::now()).
using Millis = uint64_t;
Millis monotonic_ms();

class IoHandler {
public:
    // events: EPOLLIN / EPOLLOUT / EPOLLERR / EPOLLHUP bits.
    virtual void on_io(uint32_t events) = 0;

protected:
    ~IoHandler() = default;
};

class Deferred {
public:
    virtual void run_deferred() = 0;

protected:
    ~Deferred() = default;

private:
    friend class EventLoop;
    bool queued_ = false;
};

class EventLoop;

class Timer {
public:
    explicit Timer(std::function<void()> fn) : fn_(std::move(fn)) {}
    ~Timer();
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    bool armed() const { return heap_index_ != kNotArmed; }
    Millis deadline() const { return deadline_; }

private:
    friend class EventLoop;
    static constexpr size_t kNotArmed = SIZE_MAX;
    std::function<void()> fn_;
    EventLoop* loop_ = nullptr;
    Millis deadline_ = 0;
    size_t heap_index_ = kNotArmed;
};

class EventLoop {
public:
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Descriptors. Throws std::system_error on failure (setup time only).
    void add(int fd, uint32_t events, IoHandler* h);
    void modify(int fd, uint32_t events, IoHandler* h);
    // Removes fd. Pass the handler when it may be destroyed during the
    // current batch, so that its later events in the batch are dropped.
    void remove(int fd, IoHandler* h = nullptr);
    // The same for a descriptor the caller closes at once, and holds the
    // only reference to: closing it takes it out of the epoll set, so the
    // epoll_ctl() is spared (one system call per closed connection).
    void forget(int /*fd*/, IoHandler* h) {
        if (h && in_batch_) removed_in_batch_.push_back(h);
    }

    // (Re)arms t to fire `after` ms from now(); cancel() is idempotent.
    void arm(Timer& t, Millis after);
    void arm_at(Timer& t, Millis deadline);
    void cancel(Timer& t);

    // Queues d to run once after the current batch of events.
    void defer(Deferred& d);

    // Runs until stop(). Returns after the wakeup in which stop() was called.
    void run();
    // Handles one batch of ready events, waiting at most timeout_ms (-1 = until a
    // timer or event), then the deferred work. Returns false if the loop
    // was stopped.
    bool run_once(int timeout_ms = -1);
    void stop() { stopped_ = true; }
    bool stopped() const { return stopped_; }

    // For an embedder's own loop (embed/engine.hpp): the epoll descriptor,
    // readable when run_once(0) has events to handle; and how long that
    // loop may sleep before calling run_once(0) anyway: 0 when deferred work
    // is queued, the time to the next timer, or -1 when there is none.
    int fd() const { return epfd_; }
    int timeout_ms() const;
    // Runs the deferred work queued outside a batch now (frames an embedder
    // handed in between batches), then the timers that are due.
    void run_pending();

    // Busy polling: for `us` microseconds after a wakeup that had events
    // and moved little data (at most kBusyPollMaxBytes through note_bytes():
    // requests, responses, handshakes, not bulk transfers), poll without
    // sleeping before blocking, yielding the CPU to anything else runnable
    // between polls. A vCPU that has gone idle takes tens of microseconds to
    // wake on a virtual machine, twice per request and response; polling
    // through the gap trades CPU time for that latency (the kernel's
    // busy_poll does the same for sockets). 0 (the default here) never polls.
    static constexpr size_t kBusyPollMaxBytes = 16 * 1024;
    void set_busy_poll_us(uint32_t us) { busy_poll_us_ = us; }
    // Bytes the current batch moved (the switch reports every frame).
    void note_bytes(size_t n) { batch_bytes_ += n; }

    // The time of the current wakeup.
    Millis now() const { return now_; }
    // Tests and fuzzers only: moves the loop's clock ms forward from the
    // next wakeup on, so that timers and idle limits fire without waiting
    // for them in real time. The daemon never calls it.
    void advance_clock_for_tests(Millis ms) { skew_ += ms; }

private:
    void heap_up(size_t i);
    void heap_down(size_t i);
    void heap_remove(size_t i);
    void heap_swap(size_t a, size_t b);
    void run_timers();
    void run_deferred();

    int epfd_ = -1;
    bool stopped_ = false;
    uint32_t busy_poll_us_ = 0;
    uint64_t last_events_us_ = 0;  // monotonic time of the last batch with events
    bool poll_after_ = false;      // ... and it was small enough to poll after
    size_t batch_bytes_ = 0;
    Millis now_ = 0;
    Millis skew_ = 0;  // advance_clock_for_tests()
    std::vector<Timer*> heap_;
    std::vector<Deferred*> deferred_;
    std::vector<Deferred*> deferred_running_;
    // Handlers removed during a batch must not be called later in that batch.
    std::vector<IoHandler*> removed_in_batch_;
    bool in_batch_ = false;
};

}  // namespace usernet::core
