// usernet: parse the command line, build the Daemon, run it until a signal.
//
// Exit status: 0 after SIGINT/SIGTERM/SIGHUP (or --help, --version), 1 when
// start-up failed, 2 for a bad command line. Every failure is one line on
// stderr: "usernet: error: <what was wrong>; <what to do>".
#include <sys/resource.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <spdlog/spdlog.h>

#include "app/control.hpp"
#include "app/daemon.hpp"
#include "app/logging.hpp"
#include "app/options.hpp"
#include "app/signals.hpp"

using namespace usernet::app;

namespace {

// Every flow holds a socket: take the hard RLIMIT_NOFILE (a daemon's usual
// first step; the soft default of 1024 would end a guest's connections at
// about a thousand).
rlim_t raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return RLIM_INFINITY;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
    }
    return rl.rlim_cur;
}

// Says so, once usernet is up (a start-up failure stays one line), when
// the limit is short of what the flow limits of all guests together may
// need. The limits still hold: a flow a socket cannot be had for is
// refused (RST, or the idlest UDP flow goes).
void warn_fd_limit(const Config& cfg, rlim_t have) {
    const uint64_t want = cfg.limits.descriptors_needed();
    if (have != RLIM_INFINITY && have < want)
        spdlog::warn("the file descriptor limit ({}) is below the {} that the flow limits of all "
                     "guests together may need ({} TCP, {} UDP, {} ping flows); connections "
                     "beyond it will be refused: raise the hard limit (ulimit -Hn, LimitNOFILE=)",
                     have, want, cfg.limits.tcp_flows, cfg.limits.udp_flows,
                     cfg.limits.icmp_flows);
}

}  // namespace

int main(int argc, char** argv) {
    setup_logging(LogLevel::info);
    Config cfg;
    try {
        cfg = parse_options(argc, argv);
    } catch (const OptionError& e) {
        spdlog::error("{}", e.what());
        return 2;
    }
    if (cfg.action == Action::help) {
        std::cout << help_text();
        return 0;
    }
    if (cfg.action == Action::version) {
        std::cout << version_text();
        return 0;
    }
    setup_logging(cfg.log_level);
    const rlim_t fd_limit = raise_fd_limit();
    try {
        block_stop_signals();
        Daemon daemon(cfg);
        warn_fd_limit(cfg, fd_limit);
        // SIGUSR1: the counters get_stats gives, as one JSON line on
        // standard error (whatever the log level: it was asked for).
        StopOnSignals signals(daemon.loop(), [&daemon] {
            std::cerr << "usernet: counters: " << stats_json(daemon).dump() << std::endl;
        });
        if (daemon.using_default_socket() || cfg.log_level != LogLevel::quiet) {
            for (const std::string& path : daemon.socket_paths())
                std::cout << "Attach QEMU (7.2 or later) to " << path << " with:\n    "
                          << qemu_command_line(path) << "\n";
            for (const std::string& hint : daemon.tcp_attach_hints()) std::cout << hint;
            for (const auto& hint : daemon.dgram_hints())
                for (const std::string& line : hint) std::cout << line << "\n";
            for (const auto& hint : daemon.bochs_hints()) {
                std::cout << hint[0] << "\n";
                for (size_t i = 1; i < hint.size(); ++i) std::cout << "    " << hint[i] << "\n";
            }
            for (const std::string& dir : daemon.vde_dirs())
                std::cout << "Attach QEMU to the VDE switch " << dir << " with:\n    "
                          << qemu_vde_command_line(dir) << "\nor a TAP (e.g. in a namespace) with:\n    "
                          << vde_plug_command_line(dir) << "\n";
            for (const std::string& line : daemon.serial_usage()) std::cout << line << "\n";
            for (const std::string& url : daemon.websocket_urls())
                std::cout << "Attach v86 (browser or Node) with the option:\n    "
                          << "network_relay_url: \"" << url << "\"\n";
            std::cout.flush();
        }
        daemon.run();
    } catch (const std::exception& e) {
        // StartupError already reads "<what>; <what to do>".
        spdlog::error("{}", e.what());
        return 1;
    }
    return 0;
}
