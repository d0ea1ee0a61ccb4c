// A token bucket for rate limits counted in whole events per millisecond
// of the loop's clock: at most `burst` tokens, refilled at one token per
// millisecond. This is the kernel's ICMP error limit (icmp_msgs_burst 50,
// icmp_msgs_per_sec 1000) and what usernet applies to every ICMP error it
// sends a guest, whichever part of it sends one: one bucket, owned by the
// gateway, so the NAT's errors and the gateway's time-exceeded share it as
// the kernel's global limit is shared.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/event_loop.hpp"

namespace usernet::core {

class TokenBucket {
public:
    explicit TokenBucket(uint32_t burst) : burst_(burst), tokens_(burst) {}

    // Takes a token if there is one at `now` (the loop's clock).
    bool take(Millis now) {
        if (now > refilled_at_) {
            tokens_ = static_cast<uint32_t>(std::min<Millis>(burst_, tokens_ + (now - refilled_at_)));
            refilled_at_ = now;
        }
        if (tokens_ == 0) return false;
        tokens_--;
        return true;
    }

private:
    uint32_t burst_;
    uint32_t tokens_;
    Millis refilled_at_ = 0;
};

}  // namespace usernet::core
