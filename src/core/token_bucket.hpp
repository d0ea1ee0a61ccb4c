// A token bucket on the loop's clock: at most `burst` tokens, refilled at
// `per_second` tokens a second (counted in thousandths of a token, so slow
// rates refill smoothly too). With the defaults it is the kernel's ICMP
// error limit (icmp_msgs_burst 50, icmp_msgs_per_sec 1000), which usernet
// applies, per attachment, to every ICMP error it sends a guest, whichever
// part of it sends one (the gateway owns the buckets, so the NAT's errors
// and the gateway's time-exceeded share them). The gateway also keeps one
// per port for DHCP messages and router solicitations.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/event_loop.hpp"

namespace usernet::core {

class TokenBucket {
public:
    explicit TokenBucket(uint32_t burst, uint32_t per_second = 1000)
        : cap_(int64_t{burst} * 1000), per_second_(per_second), milli_(cap_) {}

    // Takes a token if there is one at `now` (the loop's clock).
    bool take(Millis now) { return take(now, 1); }
    // Takes n tokens at once, or none (a byte budget: n = the frame's size).
    bool take(Millis now, uint32_t n) {
        refill(now);
        const int64_t need = int64_t{n} * 1000;
        if (milli_ < need) return false;
        milli_ -= need;
        return true;
    }

    // As a shaper rather than a policer: takes n tokens whether or not
    // they are there, so the bucket may go into debt; the caller stops
    // taking input until wait_ms() is 0 again (a WebSocket client is not
    // read while it is over its rate: TCP slows it, nothing is dropped).
    void charge(Millis now, uint32_t n) {
        refill(now);
        milli_ -= int64_t{n} * 1000;
    }
    // Milliseconds until the debt is repaid (0: not in debt).
    Millis wait_ms(Millis now) {
        refill(now);
        if (milli_ >= 0 || per_second_ == 0) return 0;
        return static_cast<Millis>((-milli_ + per_second_ - 1) / per_second_);
    }

private:
    void refill(Millis now) {
        if (now > refilled_at_) {
            milli_ = std::min<int64_t>(
                cap_, milli_ + static_cast<int64_t>(now - refilled_at_) * per_second_);
            refilled_at_ = now;
        }
    }

    int64_t cap_;
    int64_t per_second_;
    int64_t milli_;
    Millis refilled_at_ = 0;
};

}  // namespace usernet::core
