// See guest_forward.hpp.
#include "nat/guest_forward.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

extern char** environ;

namespace usernet::nat {
namespace {

std::optional<uint16_t> parse_port(std::string_view s) {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v == 0 || v > 65535)
        return std::nullopt;
    return static_cast<uint16_t>(v);
}

// "A:P" or "[V6]:P": the address and the port text after it.
bool split_addr_port(std::string_view s, std::string_view& addr, std::string_view& port) {
    if (s.starts_with('[')) {
        auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
            return false;
        addr = s.substr(1, close - 1);
        port = s.substr(close + 2);
        return true;
    }
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    addr = s.substr(0, colon);
    port = s.substr(colon + 1);
    // A bare IPv6 address has more than one colon: it needs brackets.
    return addr.find(':') == std::string_view::npos;
}

std::string bracketed(const wire::IpAddr& a) {
    return a.is_v4() ? a.to_string() : "[" + a.to_string() + "]";
}

}  // namespace

std::string GuestForwardSpec::to_string() const {
    std::string s = bracketed(addr) + ":" + std::to_string(port) + " -> ";
    switch (kind) {
    case Kind::tcp:
        return s + bracketed(host) + ":" + std::to_string(host_port);
    case Kind::unix_socket:
        return s + "unix:" + path;
    case Kind::embedder:
        return s + "the embedder";
    case Kind::command:
        return s + "cmd:" + command;
    }
    return s;
}

std::optional<GuestForwardSpec> parse_guestfwd(std::string_view text, std::string* why) {
    auto bad = [&](std::string msg) -> std::optional<GuestForwardSpec> {
        if (why) *why = std::move(msg);
        return std::nullopt;
    };
    std::string_view s = text;
    if (s.starts_with("tcp:")) s.remove_prefix(4);
    else if (s.starts_with(':')) s.remove_prefix(1);
    else if (s.starts_with("udp:")) return bad("only TCP guest forwards exist (QEMU's too)");
    else return bad("it does not start with tcp: (the form is tcp:ADDR:PORT-TARGET)");

    // ADDR:PORT, up to the first '-' after the port.
    std::string_view head;
    if (s.starts_with('[')) {
        auto close = s.find(']');
        if (close == std::string_view::npos) return bad("'[' without ']' in the address");
        auto dash = s.find('-', close);
        if (dash == std::string_view::npos) return bad("no '-TARGET' after the port");
        head = s.substr(0, dash);
        s.remove_prefix(dash + 1);
    } else {
        auto dash = s.find('-');
        if (dash == std::string_view::npos) return bad("no '-TARGET' after the port");
        head = s.substr(0, dash);
        s.remove_prefix(dash + 1);
    }
    GuestForwardSpec spec;
    std::string_view addr, port;
    if (!split_addr_port(head, addr, port))
        return bad("'" + std::string(head) + "' is not ADDR:PORT (an IPv6 address goes in brackets)");
    auto a = wire::IpAddr::parse(addr);
    if (!a) return bad("'" + std::string(addr) + "' is not an IP address");
    auto p = parse_port(port);
    if (!p) return bad("'" + std::string(port) + "' is not a port (1-65535)");
    spec.addr = *a;
    spec.port = *p;

    if (s.starts_with("cmd:")) {
        spec.kind = GuestForwardSpec::Kind::command;
        spec.command = std::string(s.substr(4));
        if (spec.command.find_first_not_of(" \t") == std::string::npos)
            return bad("cmd: names no command");
        return spec;
    }
    if (s.starts_with("unix:") || s.starts_with('/')) {
        spec.kind = GuestForwardSpec::Kind::unix_socket;
        spec.path = std::string(s.starts_with('/') ? s : s.substr(5));
        if (spec.path.empty()) return bad("unix: names no socket path");
        if (spec.path.size() >= sizeof(sockaddr_un{}.sun_path))
            return bad("the socket path is longer than " +
                       std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
        return spec;
    }
    if (s.starts_with("tcp:")) s.remove_prefix(4);
    std::string_view haddr, hport;
    if (!split_addr_port(s, haddr, hport))
        return bad("the target '" + std::string(s) +
                   "' is none of HOST:PORT, [V6]:PORT, unix:PATH or cmd:COMMAND");
    auto h = wire::IpAddr::parse(haddr);
    if (!h) return bad("'" + std::string(haddr) + "' is not an IP address (names are not looked up)");
    auto hp = parse_port(hport);
    if (!hp) return bad("'" + std::string(hport) + "' is not a port (1-65535)");
    if (h->is_unspecified()) return bad("the target address " + h->to_string() + " is unspecified");
    spec.kind = GuestForwardSpec::Kind::tcp;
    spec.host = *h;
    spec.host_port = *hp;
    return spec;
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace {

// Where a child of ours stands, asked through its pidfd (never by pid: a
// host program that reaps children itself, SIGCHLD set to SIG_IGN or a
// waitpid(-1), may have taken it, and its pid and group id may then name
// an unrelated process).
enum class ChildState { running, exited, gone };

ChildState child_state(int pidfd) {
    siginfo_t si{};
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si,
               WEXITED | WNOHANG | WNOWAIT) != 0)
        return ChildState::gone;  // ECHILD: reaped by someone else
    return si.si_pid == 0 ? ChildState::running : ChildState::exited;
}

// Reaps an exited child through its pidfd; the status, or -1.
int reap_pidfd(int pidfd) {
    siginfo_t si{};
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si,
               WEXITED | WNOHANG) != 0 ||
        si.si_pid == 0)
        return -1;
    return si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : si.si_status & 0x7f;
}

}  // namespace

CommandRunner::~CommandRunner() {
    if (children_.empty()) return;
    // Its group while the child (or its zombie) still holds the group's id.
    auto signal_group = [](const Child& c, int sig) {
        if (child_state(c.pidfd) != ChildState::gone) kill(-c.pid, sig);
    };
    for (auto& c : children_) signal_group(*c, SIGTERM);
    // A second for them to go, then SIGKILL.
    auto drop = [&](size_t k) {
        loop_.remove(children_[k]->pidfd, children_[k].get());
        close(children_[k]->pidfd);
        children_[k] = std::move(children_.back());
        children_.pop_back();
    };
    for (int i = 0; i < 100 && !children_.empty(); i++) {
        for (size_t k = 0; k < children_.size();) {
            const ChildState st = child_state(children_[k]->pidfd);
            if (st == ChildState::exited) reap_pidfd(children_[k]->pidfd);
            if (st != ChildState::running) drop(k);
            else k++;
        }
        if (!children_.empty()) usleep(10'000);
    }
    while (!children_.empty()) {
        Child& c = *children_.back();
        signal_group(c, SIGKILL);
        siginfo_t si{};
        waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd), &si, WEXITED);
        drop(children_.size() - 1);
    }
}

namespace {

// A connected pair of TCP sockets over the loopback, as libslirp makes for
// its exec forwards: programs such as smbd want a TCP socket on their
// stdin (they ask for the peer's address). The listener lives for the one
// accept; a stranger's connection in that moment is told apart by its
// address and closed. Nothing here blocks the loop for long: the connect
// is non-blocking, and the accept waits at most kPairWaitMs (the loopback
// handshake is done in the connect call itself unless the backlog is full).
constexpr int kPairWaitMs = 100;

int loopback_pair(int sv[2]) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l < 0) return -errno;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int c = -1, err = 0;
    if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(l, 4) < 0 ||
        getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) < 0) {
        err = errno;
    } else if ((c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
               (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno != EINPROGRESS)) {
        err = errno;
    } else {
        sockaddr_in mine{};
        socklen_t ml = sizeof mine;
        if (getsockname(c, reinterpret_cast<sockaddr*>(&mine), &ml) < 0) err = errno;
        const core::Millis until = core::monotonic_ms() + kPairWaitMs;
        while (err == 0) {
            sockaddr_in peer{};
            socklen_t pl = sizeof peer;
            int s = accept4(l, reinterpret_cast<sockaddr*>(&peer), &pl, SOCK_CLOEXEC);
            if (s >= 0 && peer.sin_port == mine.sin_port &&
                peer.sin_addr.s_addr == mine.sin_addr.s_addr) {
                close(l);
                sv[0] = c;  // non-blocking, for the loop
                sv[1] = s;  // blocking, for the command
                return 0;
            }
            if (s >= 0) {
                close(s);  // a stranger's
                continue;
            }
            const core::Millis now = core::monotonic_ms();
            if (errno != EAGAIN || now >= until) {
                err = errno == EAGAIN ? ETIMEDOUT : errno;
                break;
            }
            pollfd p{l, POLLIN, 0};
            poll(&p, 1, static_cast<int>(until - now));
        }
    }
    if (c >= 0) close(c);
    close(l);
    return -err;
}

}  // namespace

int CommandRunner::spawn(const std::string& command, uint32_t owner) {
    PerGuest& g = per_guest_[owner];
    if (children_.size() >= kMaxCommands || g.running >= kMaxCommandsPerGuest ||
        !g.spawns.take(loop_.now()))
        return -EAGAIN;  // the entry stays with its bucket (forget_owner ends it)
    int sv[2] = {-1, -1};
    if (int rc = loopback_pair(sv); rc < 0) return rc;
    auto fail = [&](int err) {
        close(sv[0]);
        close(sv[1]);
        return -err;
    };

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
    // The daemon blocks the signals it reads through signalfd and may ignore
    // SIGPIPE: the command starts with neither.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    // Its own process group: smbd, for one, signals its whole group when
    // it exits, and a command's children go with it when it is stopped.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return fail(rc);
    close(sv[1]);

    auto child = std::make_unique<Child>();
    child->runner = this;
    child->owner = owner;
    child->pid = pid;
    child->pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (child->pidfd < 0 && errno == ESRCH) {
        // Gone already: it exited and the host program, which reaps its
        // children itself, took it. Its output is in the socket.
        started_++;
        return sv[0];
    }
    if (child->pidfd < 0) {
        // Cannot watch it: do not leave it behind.
        int err = errno;
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        close(sv[0]);
        return -err;
    }
    try {
        loop_.add(child->pidfd, EPOLLIN, child.get());
    } catch (const std::exception&) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        close(child->pidfd);
        close(sv[0]);
        return -ENOMEM;
    }
    children_.push_back(std::move(child));
    per_guest_[owner].running++;
    started_++;
    return sv[0];
}

void CommandRunner::forget_owner(uint32_t owner) {
    auto g = per_guest_.find(owner);
    if (g != per_guest_.end() && g->second.running == 0) per_guest_.erase(g);
}

void CommandRunner::Child::on_io(uint32_t) { runner->reap(this); }

void CommandRunner::reap(Child* c) {
    const ChildState st = child_state(c->pidfd);
    if (st == ChildState::running) return;
    int status = 0;
    if (st == ChildState::exited) {
        // What the command left running in its group goes with it (its
        // zombie, not reaped yet, still holds the group's id, so nothing
        // else can be hit).
        kill(-c->pid, SIGTERM);
        status = reap_pidfd(c->pidfd);
    }
    // gone: the host program reaped it; its pid and group may be another's
    // now, so nothing is signalled.
    auto g = per_guest_.find(c->owner);
    if (g != per_guest_.end() && g->second.running > 0) g->second.running--;
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        spdlog::debug("guestfwd: command (pid {}) exited with status {}", c->pid,
                      WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        spdlog::debug("guestfwd: command (pid {}) killed by signal {}", c->pid, WTERMSIG(status));
    loop_.remove(c->pidfd, c);
    close(c->pidfd);
    for (auto& p : children_) {
        if (p.get() == c) {
            p = std::move(children_.back());
            children_.pop_back();
            break;
        }
    }
}

}  // namespace usernet::nat
