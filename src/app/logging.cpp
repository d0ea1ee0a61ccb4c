// See logging.hpp.
#include "app/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace usernet::app {

void setup_logging(LogLevel level) {
    auto logger = std::make_shared<spdlog::logger>(
        "usernet", std::make_shared<spdlog::sinks::stderr_sink_st>());
    logger->set_pattern("usernet: %l: %v");
    switch (level) {
    case LogLevel::quiet: logger->set_level(spdlog::level::warn); break;
    case LogLevel::info: logger->set_level(spdlog::level::info); break;
    case LogLevel::debug: logger->set_level(spdlog::level::debug); break;
    }
    // Every message is a whole line and may be the last before exit.
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace usernet::app
