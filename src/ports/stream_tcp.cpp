// The stream attachment over TCP (see the header).
#include "ports/stream_tcp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/sockaddr.hpp"

namespace usernet::ports {
namespace {

std::string errstr(int err) { return std::strerror(err); }

sockaddr_storage to_sockaddr(const TcpEndpoint& ep, socklen_t& len) {
    sockaddr_storage ss = core::to_sockaddr(ep.addr, ep.port);
    len = core::sockaddr_len(ss);
    return ss;
}

TcpEndpoint from_sockaddr(const sockaddr_storage& ss) {
    TcpEndpoint ep;
    if (ss.ss_family == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
        ep.addr = wire::IpAddr::v4(ntohl(sin->sin_addr.s_addr));
        ep.port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        ep.addr = wire::IpAddr::v6_from(sin6->sin6_addr.s6_addr);
        ep.port = ntohs(sin6->sin6_port);
    }
    return ep;
}

int family_of(const TcpEndpoint& ep) { return ep.addr.is_v4() ? AF_INET : AF_INET6; }

void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// The address QEMU should connect to: a wildcard means this host.
std::string qemu_host(const TcpEndpoint& ep) {
    if (ep.addr.is_unspecified()) return ep.addr.is_v4() ? "127.0.0.1" : "::1";
    return ep.addr.to_string();
}

}  // namespace

std::string to_string(const TcpEndpoint& ep) {
    std::string a = ep.addr.to_string();
    if (!ep.addr.is_v4()) a = "[" + a + "]";
    return a + ":" + std::to_string(ep.port);
}

std::string qemu_stream_client_options(const TcpEndpoint& ep) {
    return "-netdev stream,id=net0,server=off,addr.type=inet,addr.host=" + qemu_host(ep) +
           ",addr.port=" + std::to_string(ep.port);
}

std::string qemu_socket_client_options(const TcpEndpoint& ep) {
    if (!ep.addr.is_v4()) return "";
    return "-netdev socket,id=net0,connect=" + qemu_host(ep) + ":" + std::to_string(ep.port);
}

std::string qemu_stream_server_options(const TcpEndpoint& ep) {
    return "-netdev stream,id=net0,server=on,addr.type=inet,addr.host=" + ep.addr.to_string() +
           ",addr.port=" + std::to_string(ep.port);
}

std::string qemu_socket_server_options(const TcpEndpoint& ep) {
    if (!ep.addr.is_v4()) return "";
    return "-netdev socket,id=net0,listen=" + ep.addr.to_string() + ":" + std::to_string(ep.port);
}

core::Millis Backoff::next() {
    core::Millis d = next_;
    next_ = std::min(max_, next_ * 2);
    return d;
}

// ---------------------------------------------------------------- listener

TcpStreamListener::TcpStreamListener(core::EventLoop& loop, sw::Switch& sw,
                                     const TcpEndpoint& ep, uint32_t mtu, size_t max_clients)
    : loop_(loop), sw_(sw), ep_(ep), where_(to_string(ep)), mtu_(mtu),
      max_clients_(max_clients) {
    fd_ = socket(family_of(ep_), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("cannot create a TCP socket: " + errstr(errno));
    int one = 1;
    // A restarted usernet binds again at once, whatever TIME_WAIT is left.
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (!ep_.addr.is_v4()) setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len = 0;
    sockaddr_storage ss = to_sockaddr(ep_, len);
    if (bind(fd_, reinterpret_cast<const sockaddr*>(&ss), len) < 0 || listen(fd_, 128) < 0) {
        int e = errno;
        close(fd_);
        if (e == EADDRINUSE)
            throw std::runtime_error("TCP " + where_ + " is in use by another program");
        if (e == EADDRNOTAVAIL)
            throw std::runtime_error("address " + ep_.addr.to_string() +
                                     " is not an address of this host");
        throw std::runtime_error("cannot listen on TCP " + where_ + ": " + errstr(e));
    }
    socklen_t slen = sizeof(ss);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &slen) == 0) {
        ep_ = from_sockaddr(ss);
        where_ = to_string(ep_);
    }
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
    clients_.reserve(max_clients_);
    spdlog::debug("listening for QEMU stream/socket clients on TCP {}", where_);
}

TcpStreamListener::~TcpStreamListener() {
    shut_down_all(clients_, "usernet is stopping");
    loop_.remove(fd_, this);
    close(fd_);
}

void TcpStreamListener::on_io(uint32_t) { accept_clients(); }

void TcpStreamListener::accept_clients() {
    acceptor_.accept_some(fd_, "TCP " + where_, [&](int fd, const sockaddr_storage& peer) {
        std::string from = to_string(from_sockaddr(peer));
        if (clients_.size() >= max_clients_) {
            stats_.refused++;
            spdlog::warn("refusing a client from {} on TCP {}: already {} clients (refused {} "
                         "so far)",
                         from, where_, max_clients_, stats_.refused);
            close(fd);
            return;
        }
        set_nodelay(fd);
        std::string name =
            "tcp client " + std::to_string(next_client_++) + " from " + from + " on " + where_;
        try {
            clients_.push_back(std::make_unique<StreamClient>(
                loop_, sw_, fd, name, mtu_, [this](StreamClient& c) { reap(c); }));
        } catch (const std::exception& ex) {
            spdlog::warn("cannot attach a client from {} on TCP {}: {}", from, where_, ex.what());
            return;
        }
        if (client_mac_) clients_.back()->set_mac_translation(*client_mac_);
        stats_.accepted++;
        spdlog::info("{} connected as port {} (MTU {}{})", name, clients_.back()->id(), mtu_,
                     client_mac_ ? ", the LAN sees MAC " + client_mac_->to_string() : "");
    });
}

void TcpStreamListener::reap(StreamClient& c) {
    stats_.protocol_errors += c.protocol_errors();
    auto it = std::find_if(clients_.begin(), clients_.end(),
                           [&](const auto& p) { return p.get() == &c; });
    if (it != clients_.end()) clients_.erase(it);  // destroys c
}

// ---------------------------------------------------------------- connector

TcpStreamConnector::TcpStreamConnector(core::EventLoop& loop, sw::Switch& sw,
                                       const TcpEndpoint& ep, uint32_t mtu, Backoff backoff)
    : loop_(loop), sw_(sw), ep_(ep), where_(to_string(ep)), mtu_(mtu), backoff_(backoff) {
    // One socket up front, so that a start-up without descriptors fails
    // loudly instead of retrying forever.
    int probe = socket(family_of(ep_), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) throw std::runtime_error("cannot create a TCP socket: " + errstr(errno));
    close(probe);
    spdlog::info("connecting to QEMU at TCP {}", where_);
    attempt();
}

TcpStreamConnector::~TcpStreamConnector() {
    loop_.cancel(timer_);
    if (fd_ >= 0) {
        loop_.remove(fd_, this);
        close(fd_);
    }
    if (client_) {
        std::vector<std::unique_ptr<StreamClient>> one;
        one.push_back(std::move(client_));
        shut_down_all(one, "usernet is stopping");
    }
}

void TcpStreamConnector::attempt() {
    stats_.attempts++;
    state_ = State::connecting;
    fd_ = socket(family_of(ep_), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        fail("cannot create a socket: " + errstr(errno));
        return;
    }
    socklen_t len = 0;
    sockaddr_storage ss = to_sockaddr(ep_, len);
    int r = connect(fd_, reinterpret_cast<const sockaddr*>(&ss), len);
    if (r == 0) {
        on_connected();
        return;
    }
    if (errno != EINPROGRESS) {
        fail(errstr(errno));
        return;
    }
    try {
        loop_.add(fd_, EPOLLOUT, this);
    } catch (const std::exception& e) {
        fail(e.what());
        return;
    }
    loop_.arm(timer_, kConnectTimeoutMs);
}

void TcpStreamConnector::on_io(uint32_t) {
    if (state_ != State::connecting || fd_ < 0) return;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY) return;
    loop_.remove(fd_, this);
    if (err != 0) {
        fail(errstr(err));
        return;
    }
    on_connected();
}

void TcpStreamConnector::on_connected() {
    loop_.cancel(timer_);
    // To a port of this host in the ephemeral range with nothing listening
    // yet, the kernel may pick that very port as the source: the socket is
    // then connected to itself (TCP's simultaneous open), and holds the
    // port QEMU is about to listen on.
    sockaddr_storage self{}, peer{};
    socklen_t self_len = sizeof self, peer_len = sizeof peer;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&self), &self_len) == 0 &&
        getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0 &&
        self_len == peer_len && std::memcmp(&self, &peer, self_len) == 0) {
        stats_.self_connects++;
        linger abort{1, 0};  // a reset: no TIME_WAIT left on QEMU's port
        setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
        fail("the connection came back to usernet itself: nothing listens there yet");
        return;
    }
    int fd = fd_;
    fd_ = -1;
    set_nodelay(fd);
    std::string name = "tcp connection " + std::to_string(next_client_++) + " to QEMU at " + where_;
    try {
        client_ = std::make_unique<StreamClient>(loop_, sw_, fd, name, mtu_,
                                                 [this](StreamClient& c) { on_client_closed(c); });
    } catch (const std::exception& e) {  // the fd is closed by StreamClient
        fail(std::string("cannot attach: ") + e.what());
        return;
    }
    if (client_mac_) client_->set_mac_translation(*client_mac_);
    state_ = State::connected;
    stats_.connects++;
    connected_at_ = loop_.now();
    last_failure_.clear();
    spdlog::info("{} connected as port {} (MTU {}{})", name, client_->id(), mtu_,
                 client_mac_ ? ", the LAN sees MAC " + client_mac_->to_string() : "");
}

void TcpStreamConnector::fail(const std::string& why) {
    if (fd_ >= 0) {
        close(fd_);
        fd_ = -1;
    }
    state_ = State::waiting;
    if (why != last_failure_) {
        spdlog::warn("cannot connect to QEMU at TCP {} ({}); retrying until it answers "
                     "(start QEMU with {})",
                     where_, why, qemu_stream_server_options(ep_));
        last_failure_ = why;
    }
    loop_.arm(timer_, backoff_.next());
}

void TcpStreamConnector::on_timer() {
    if (state_ == State::connecting) {  // the connect took too long
        if (fd_ >= 0) loop_.remove(fd_, this);
        fail("no answer in " + std::to_string(kConnectTimeoutMs / 1000) + " s");
        return;
    }
    if (state_ == State::waiting) attempt();
}

void TcpStreamConnector::on_client_closed(StreamClient& c) {
    if (&c != client_.get()) return;
    stats_.drops++;
    stats_.protocol_errors += c.protocol_errors();
    // The wait starts again from its shortest only after a connection that
    // held (a QEMU that restarted); a peer that closes at once or speaks
    // another protocol (a wrong port) is retried ever more slowly.
    if (c.protocol_errors() == 0 && loop_.now() - connected_at_ >= kStableMs) backoff_.reset();
    client_.reset();  // destroys c; it asked for this (StreamClient::run_deferred)
    state_ = State::waiting;
    last_failure_.clear();
    spdlog::info("connection to QEMU at TCP {} lost; reconnecting", where_);
    loop_.arm(timer_, backoff_.next());
}

}  // namespace usernet::ports
