#include "core/event_loop.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sched.h>

#include <ctime>
#include <system_error>

namespace usernet::core {

Millis monotonic_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<Millis>(ts.tv_sec) * 1000 + static_cast<Millis>(ts.tv_nsec / 1000000);
}

namespace {
uint64_t monotonic_us() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec / 1000);
}
}  // namespace

Timer::~Timer() {
    if (loop_ && armed()) loop_->cancel(*this);
}

EventLoop::EventLoop() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    now_ = monotonic_ms();
    heap_.reserve(1024);
    deferred_.reserve(256);
    deferred_running_.reserve(256);
}

EventLoop::~EventLoop() {
    for (Timer* t : heap_) t->heap_index_ = Timer::kNotArmed;
    if (epfd_ >= 0) close(epfd_);
}

void EventLoop::add(int fd, uint32_t events, IoHandler* h) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = h;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0)
        throw std::system_error(errno, std::generic_category(), "epoll_ctl ADD");
}

void EventLoop::modify(int fd, uint32_t events, IoHandler* h) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = h;
    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) < 0)
        throw std::system_error(errno, std::generic_category(), "epoll_ctl MOD");
}

void EventLoop::remove(int fd, IoHandler* h) {
    epoll_event ev{};
    epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
    if (h && in_batch_) removed_in_batch_.push_back(h);
}

void EventLoop::heap_swap(size_t a, size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->heap_index_ = a;
    heap_[b]->heap_index_ = b;
}

void EventLoop::heap_up(size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap_[p]->deadline_ <= heap_[i]->deadline_) break;
        heap_swap(i, p);
        i = p;
    }
}

void EventLoop::heap_down(size_t i) {
    size_t n = heap_.size();
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_[l]->deadline_ < heap_[m]->deadline_) m = l;
        if (r < n && heap_[r]->deadline_ < heap_[m]->deadline_) m = r;
        if (m == i) break;
        heap_swap(i, m);
        i = m;
    }
}

void EventLoop::heap_remove(size_t i) {
    Timer* t = heap_[i];
    size_t last = heap_.size() - 1;
    if (i != last) {
        heap_swap(i, last);
        heap_.pop_back();
        heap_down(i);
        heap_up(i);
    } else {
        heap_.pop_back();
    }
    t->heap_index_ = Timer::kNotArmed;
}

void EventLoop::arm(Timer& t, Millis after) { arm_at(t, now_ + after); }

void EventLoop::arm_at(Timer& t, Millis deadline) {
    t.loop_ = this;
    if (t.armed()) {
        Millis old = t.deadline_;
        t.deadline_ = deadline;
        if (deadline < old) heap_up(t.heap_index_);
        else heap_down(t.heap_index_);
        return;
    }
    t.deadline_ = deadline;
    t.heap_index_ = heap_.size();
    heap_.push_back(&t);
    heap_up(t.heap_index_);
}

void EventLoop::cancel(Timer& t) {
    if (t.armed() && t.loop_ == this) heap_remove(t.heap_index_);
}

void EventLoop::defer(Deferred& d) {
    if (d.queued_) return;
    d.queued_ = true;
    deferred_.push_back(&d);
}

void EventLoop::run_deferred() {
    // Deferred work may queue more deferred work (a flow's send fills a
    // port's queue); run until quiet, bounded so a bug cannot spin forever.
    for (int round = 0; round < 16 && !deferred_.empty(); round++) {
        deferred_running_.swap(deferred_);
        for (Deferred* d : deferred_running_) {
            d->queued_ = false;
            d->run_deferred();
        }
        deferred_running_.clear();
    }
}

void EventLoop::run_timers() {
    while (!heap_.empty() && heap_[0]->deadline_ <= now_) {
        Timer* t = heap_[0];
        heap_remove(0);
        t->fn_();
    }
}

bool EventLoop::run_once(int timeout_ms) {
    if (stopped_) return false;
    int wait = timeout_ms;
    if (!deferred_.empty()) {
        wait = 0;
    } else if (!heap_.empty()) {
        Millis now = monotonic_ms() + skew_;
        Millis due = heap_[0]->deadline_;
        int until = due <= now ? 0 : static_cast<int>(std::min<Millis>(due - now, 60000));
        if (wait < 0 || until < wait) wait = until;
    }
    epoll_event events[128];
    int n = 0;
    bool polled = false;
    if (busy_poll_us_ != 0 && poll_after_ && wait != 0) {
        uint64_t t = monotonic_us();
        uint64_t until = last_events_us_ + busy_poll_us_;
        while (t < until) {
            n = epoll_wait(epfd_, events, 128, 0);
            if (n != 0) {
                polled = true;
                break;
            }
            sched_yield();  // the guest or the host peer may need this CPU
            t = monotonic_us();
        }
    }
    if (!polled) n = epoll_wait(epfd_, events, 128, wait);
    now_ = monotonic_ms() + skew_;
    batch_bytes_ = 0;
    if (n < 0) {
        if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "epoll_wait");
        n = 0;
    }
    in_batch_ = true;
    for (int i = 0; i < n; i++) {
        auto* h = static_cast<IoHandler*>(events[i].data.ptr);
        if (!removed_in_batch_.empty() &&
            std::find(removed_in_batch_.begin(), removed_in_batch_.end(), h) !=
                removed_in_batch_.end())
            continue;
        h->on_io(events[i].events);
    }
    in_batch_ = false;
    removed_in_batch_.clear();
    run_deferred();
    run_timers();
    run_deferred();
    if (busy_poll_us_ != 0 && n > 0) {
        last_events_us_ = monotonic_us();
        poll_after_ = batch_bytes_ <= kBusyPollMaxBytes;
    }
    return !stopped_;
}

int EventLoop::timeout_ms() const {
    if (!deferred_.empty()) return 0;
    if (heap_.empty()) return -1;
    const Millis now = monotonic_ms() + skew_;
    const Millis due = heap_[0]->deadline_;
    return due <= now ? 0 : static_cast<int>(std::min<Millis>(due - now, 60000));
}

void EventLoop::run_pending() {
    if (in_batch_) return;  // the batch runs it at its end
    now_ = monotonic_ms() + skew_;
    run_deferred();
}

void EventLoop::run() {
    while (run_once(-1)) {
    }
}

}  // namespace usernet::core
