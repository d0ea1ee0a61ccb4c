// An invariant check for fuzz harnesses: a violated one is a crash that
// libFuzzer saves, like a sanitizer report.
#pragma once

#define FUZZ_CHECK(cond)              \
    do {                              \
        if (!(cond)) __builtin_trap(); \
    } while (0)
