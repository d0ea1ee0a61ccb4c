// The daemon's log: plain lines on stderr, "usernet: <level>: <message>".
//
// Library code logs through spdlog's default logger; this installs it. No
// colours, no timestamps (journald and terminals add their own), no file.
#pragma once

#include "app/options.hpp"

namespace usernet::app {

// Installs the stderr logger at the level --debug / --quiet ask for.
void setup_logging(LogLevel level);

}  // namespace usernet::app
