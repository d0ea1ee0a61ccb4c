// The stream attachment (see the header for the theory of operation and the
// wire format).
#include "ports/stream_port.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

namespace usernet::ports {
namespace {

// Socket buffers as deep as the kernel allows (capped by rmem_max and
// wmem_max), as passt does: the peer is a local emulator, and every frame
// the kernel holds is one usernet does not have to queue.
void set_socket_buffers(int fd) {
    int v = INT_MAX / 2;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

}  // namespace

// ---------------------------------------------------------------- parser

StreamFrameParser::StreamFrameParser(size_t capacity)
    : cap_(std::max(capacity, kMinCapacity)) {
    buf_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
}

wire::MutBytes StreamFrameParser::writable() {
    // After drain() what is left is less than one whole frame, so moving it
    // to the front always leaves room for the rest of it.
    if (start_ > 0 && cap_ - end_ < kMinCapacity) {
        std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
    }
    return wire::MutBytes(buf_.get() + end_, cap_ - end_);
}

// ---------------------------------------------------------------- tx ring

StreamTxQueue::StreamTxQueue(size_t capacity)
    : cap_(std::bit_ceil(std::max(capacity, kStreamLenBytes + kStreamMaxFrame))) {
    buf_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
}

void StreamTxQueue::put(const uint8_t* p, size_t n) {
    size_t idx = static_cast<size_t>(tail_) & (cap_ - 1);
    size_t first = std::min(n, cap_ - idx);
    std::memcpy(buf_.get() + idx, p, first);
    if (n > first) std::memcpy(buf_.get(), p + first, n - first);
    tail_ += n;
}

void StreamTxQueue::put_zeros(size_t n) {
    size_t idx = static_cast<size_t>(tail_) & (cap_ - 1);
    size_t first = std::min(n, cap_ - idx);
    std::memset(buf_.get() + idx, 0, first);
    if (n > first) std::memset(buf_.get(), 0, n - first);
    tail_ += n;
}

bool StreamTxQueue::push(wire::Bytes frame, wire::Bytes tail) {
    size_t len = frame.size() + tail.size();
    if (len == 0 || len > kStreamMaxFrame) return false;
    size_t padded = std::max(len, wire::kEthMinFrame);
    if (cap_ - size() < kStreamLenBytes + padded) return false;
    uint8_t hdr[kStreamLenBytes];
    wire::store32(hdr, static_cast<uint32_t>(padded));
    put(hdr, sizeof(hdr));
    put(frame.data(), frame.size());
    if (!tail.empty()) put(tail.data(), tail.size());
    if (padded > len) put_zeros(padded - len);
    return true;
}

int StreamTxQueue::peek(iovec out[2]) const {
    size_t n = size();
    if (n == 0) return 0;
    size_t idx = static_cast<size_t>(head_) & (cap_ - 1);
    size_t first = std::min(n, cap_ - idx);
    out[0].iov_base = buf_.get() + idx;
    out[0].iov_len = first;
    if (n == first) return 1;
    out[1].iov_base = buf_.get();
    out[1].iov_len = n - first;
    return 2;
}

// ---------------------------------------------------------------- client

StreamClient::StreamClient(core::EventLoop& loop, sw::Switch& sw, int fd, std::string name,
                           uint32_t mtu, std::function<void(StreamClient&)> on_closed)
    : loop_(loop), sw_(sw), fd_(fd), name_(std::move(name)), mtu_(mtu),
      on_closed_(std::move(on_closed)) {
    set_socket_buffers(fd_);
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
    sw_.attach(*this);
}

StreamClient::~StreamClient() {
    // The owner has made sure the loop no longer holds us (shut_down()).
    if (fd_ >= 0) {
        sw_.detach(*this);
        loop_.remove(fd_, this);
        close(fd_);
    }
}

void StreamClient::defer_self() {
    defer_pending_ = true;
    loop_.defer(*this);
}

bool StreamClient::shut_down(const char* why) {
    if (fd_ >= 0) {
        sw::PortId port = id();
        sw_.detach(*this);
        loop_.remove(fd_, this);
        close(fd_);
        fd_ = -1;
        const auto& s = stats();
        spdlog::info("{} (port {}) closed ({}): rx {} frames, tx {} frames, {} tx dropped",
                     name_, port, why, s.rx_frames, s.tx_frames, s.tx_dropped);
    }
    return defer_pending_;
}

void StreamClient::close_connection(const char* why) {
    if (fd_ < 0) return;
    shut_down(why);
    defer_self();  // on_closed runs from the loop, when no caller holds us
}

void StreamClient::run_deferred() {
    defer_pending_ = false;
    if (fd_ >= 0) flush();
    if (fd_ < 0 && !defer_pending_) {
        // Last thing we do: on_closed may destroy this object. A local copy
        // of the callback keeps it alive through the call.
        auto fn = std::move(on_closed_);
        if (fn) fn(*this);
    }
}

void StreamClient::set_mac_translation(const wire::MacAddr& lan_mac) {
    xlat_ = std::make_unique<MacTranslator>(lan_mac);
}

void StreamClient::deliver(wire::Bytes frame, const sw::FrameMeta& meta) {
    MacTranslator::Out out =
        xlat_ ? xlat_->to_guest(frame, meta.off) : MacTranslator::Out{frame, {}};
    if (fd_ < 0 || !txq_.push(out.head, out.tail)) {
        lost_tx(1, frame.size());
        spdlog::debug("{}: dropped a {}-byte frame (output queue {} bytes)", name_, frame.size(),
                      txq_.size());
        return;
    }
    if (!waiting_out_ && !defer_pending_) defer_self();
}

void StreamClient::flush() {
    while (!txq_.empty()) {
        iovec iov[2];
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = static_cast<size_t>(txq_.peek(iov));
        ssize_t n = sendmsg(fd_, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            txq_.consume(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!waiting_out_) {
                waiting_out_ = true;
                loop_.modify(fd_, EPOLLIN | EPOLLOUT, this);
            }
            return;
        }
        close_connection(n < 0 ? std::strerror(errno) : "send returned 0");
        return;
    }
    if (waiting_out_) {
        waiting_out_ = false;
        loop_.modify(fd_, EPOLLIN, this);
    }
}

void StreamClient::on_readable() {
    for (int i = 0; i < kMaxReadsPerWakeup && fd_ >= 0; i++) {
        wire::MutBytes w = rx_.writable();
        ssize_t n = recv(fd_, w.data(), w.size(), MSG_DONTWAIT);
        if (n == 0) {
            close_connection("peer disconnected");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            close_connection(std::strerror(errno));
            return;
        }
        rx_.commit(static_cast<size_t>(n));
        bool ok = rx_.drain([this](wire::MutBytes f) {
            if (!mac_known_) note_mac(wire::Bytes(f.data(), f.size()));
            if (xlat_) log_guest_mac(name_, id(), xlat_->to_lan(f), *xlat_);
            sw_.input(id(), f);
        });
        if (!ok) {
            protocol_errors_++;
            stats().rx_dropped++;
            spdlog::warn("{} sent a frame length of {} (allowed {}..{}): closing it", name_,
                         rx_.bad_length(), kStreamMinFrame, kStreamMaxFrame);
            close_connection("protocol error");
            return;
        }
        if (static_cast<size_t>(n) < w.size()) return;  // the socket is drained
    }
}

// Once per connection: which guest this is (the parser passed at least an
// Ethernet header).
void StreamClient::note_mac(wire::Bytes frame) {
    mac_known_ = true;
    mac_ = wire::MacAddr::from(frame.data() + 6);
    spdlog::info("{} (port {}): guest MAC {}", name_, id(), mac_.to_string());
}

void StreamClient::on_io(uint32_t events) {
    if (fd_ < 0) return;
    if (events & EPOLLIN) on_readable();
    if (fd_ >= 0 && (events & EPOLLOUT)) flush();
    if (fd_ >= 0 && !(events & EPOLLIN) && (events & (EPOLLERR | EPOLLHUP)))
        close_connection("hang-up");
}

// ---------------------------------------------------------------- listener

StreamListener::StreamListener(core::EventLoop& loop, sw::Switch& sw, std::string path,
                               uint32_t mtu)
    : loop_(loop), sw_(sw), sock_(std::move(path)), mtu_(mtu) {
    loop_.add(sock_.fd(), EPOLLIN, this);
    clients_.reserve(kMaxClients);
    spdlog::debug("listening for QEMU -netdev stream clients on {}", sock_.path());
}

StreamListener::~StreamListener() {
    shut_down_all(clients_, "usernet is stopping");
    loop_.remove(sock_.fd(), this);
}

void StreamListener::on_io(uint32_t) { accept_clients(); }

void StreamListener::accept_clients() {
    acceptor_.accept_some(sock_.fd(), sock_.path(), [&](int fd, const sockaddr_storage& ) {
        if (clients_.size() >= kMaxClients) {
            stats_.refused++;
            spdlog::warn("refusing a client on {}: already {} clients", sock_.path(), kMaxClients);
            close(fd);
            return;
        }
        std::string name = "stream client " + std::to_string(next_client_++) + " on " + sock_.path();
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0)
            name += " (pid " + std::to_string(cred.pid) + ")";
        try {
            clients_.push_back(std::make_unique<StreamClient>(
                loop_, sw_, fd, name, mtu_, [this](StreamClient& c) { reap(c); }));
        } catch (const std::exception& ex) {
            spdlog::warn("cannot attach a client on {}: {}", sock_.path(), ex.what());
            return;
        }
        if (client_mac_) clients_.back()->set_mac_translation(*client_mac_);
        stats_.accepted++;
        spdlog::info("{} connected as port {} (MTU {}{})", name, clients_.back()->id(), mtu_,
                     client_mac_ ? ", the LAN sees MAC " + client_mac_->to_string() : "");
    });
}

void StreamListener::reap(StreamClient& c) {
    stats_.protocol_errors += c.protocol_errors();
    auto it = std::find_if(clients_.begin(), clients_.end(),
                           [&](const auto& p) { return p.get() == &c; });
    if (it != clients_.end()) clients_.erase(it);  // destroys c
}

}  // namespace usernet::ports
