// The serial line attachment (see serial_port.hpp for the theory of
// operation).
#include "ports/serial_port.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/command_text.hpp"
#include "core/sockaddr.hpp"
#include "wire/arp.hpp"
#include "wire/dhcp4.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/udp.hpp"

namespace usernet::ports {
namespace {

std::string errstr(int e) { return std::strerror(e); }
std::string v4(wire::Ipv4 a) { return wire::ipv4_to_string(a); }

// 02:53 (locally administered, 'S') and four bytes of an FNV-1a hash.
wire::MacAddr mac_for(const std::string& key) {
    uint32_t h = 2166136261u;
    for (unsigned char c : key) h = (h ^ c) * 16777619u;
    return wire::MacAddr{{0x02, 0x53, static_cast<uint8_t>(h >> 24), static_cast<uint8_t>(h >> 16),
                          static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h)}};
}

uint32_t random32() {
    uint32_t v = 0;
    if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v))
        v = static_cast<uint32_t>(core::monotonic_ms() * 2654435761u);
    return v;
}

constexpr size_t kEthIp = wire::kEthHeaderLen;

}  // namespace

std::string parse_serial_transport(std::string_view text, SerialConfig& cfg) {
    if (text == "pty") {
        cfg.transport = SerialTransport::pty;
        cfg.path.clear();
        return "";
    }
    if (text.starts_with("pty:")) {
        cfg.transport = SerialTransport::pty;
        cfg.path = std::string(text.substr(4));
        return cfg.path.empty() ? "'pty:' needs a path for the link" : "";
    }
    if (text.starts_with("unix:")) {
        cfg.transport = SerialTransport::unix_socket;
        cfg.path = std::string(text.substr(5));
        if (cfg.path.empty()) return "'unix:' needs a socket path";
        // Absolute, as the QEMU option usernet prints gives it.
        std::error_code ec;
        if (auto abs = std::filesystem::absolute(cfg.path, ec); !ec) cfg.path = abs.string();
        if (cfg.path.size() >= sizeof(sockaddr_un{}.sun_path))
            return "socket path '" + cfg.path + "' is longer than " +
                   std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes";
        return "";
    }
    if (text.starts_with("tcp:")) {
        std::string_view rest = text.substr(4);
        std::string host = "127.0.0.1";
        std::string_view port_text = rest;
        if (rest.starts_with('[')) {
            auto close = rest.find("]:");
            if (close == std::string_view::npos) return "write tcp:[IPV6]:PORT";
            host = std::string(rest.substr(1, close - 1));
            port_text = rest.substr(close + 2);
        } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
            host = std::string(rest.substr(0, colon));
            port_text = rest.substr(colon + 1);
        }
        if (host == "localhost") host = "127.0.0.1";
        if (!wire::IpAddr::parse(host)) return "'" + host + "' is not an IP address";
        uint32_t port = 0;
        if (port_text.empty() || port_text.size() > 5 ||
            !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return "'" + std::string(port_text) + "' is not a port number";
        for (char c : port_text) port = port * 10 + static_cast<uint32_t>(c - '0');
        if (port > 65535) return "port " + std::to_string(port) + " is above 65535";
        cfg.transport = SerialTransport::tcp;
        cfg.host = host;
        cfg.port = static_cast<uint16_t>(port);
        return "";
    }
    return "'" + std::string(text) + "' is not pty, pty:LINK, unix:PATH or tcp:[HOST:]PORT";
}

// ---------------------------------------------------------------- set-up

SerialPort::SerialPort(core::EventLoop& loop, sw::Switch& sw, const SerialConfig& cfg)
    : loop_(loop), sw_(sw), cfg_(cfg), start_timer_([this] { start_link(); }),
      lcp_timer_([this] {
          if (ppp_) ppp_->timeout(0);
      }),
      ipcp_timer_([this] {
          if (ppp_) ppp_->timeout(1);
      }),
      dhcp_timer_([this] { dhcp_timeout(); }) {
    const char* proto = cfg_.protocol == SerialProtocol::ppp ? "PPP" : "SLIP";
    listen_h_.self = conn_h_.self = this;
    listen_h_.fn = &SerialPort::on_listener;
    conn_h_.fn = &SerialPort::on_conn;
    ring_ = std::make_unique_for_overwrite<uint8_t[]>(kTxRing);
    enc_ = std::make_unique_for_overwrite<uint8_t[]>(slip::slip_max_encoded(cfg_.mtu));
    rd_ = std::make_unique_for_overwrite<uint8_t[]>(kReadChunk);
    frame_ = std::make_unique_for_overwrite<uint8_t[]>(kEthIp + cfg_.mtu + wire::kEthMinFrame);
    pending_ = std::make_unique_for_overwrite<uint8_t[]>(kArpEntries * cfg_.mtu);
    switch (cfg_.transport) {
    case SerialTransport::pty:
        open_pty();
        break;
    case SerialTransport::unix_socket:
        open_unix();
        break;
    case SerialTransport::tcp:
        open_tcp();
        break;
    }
    std::string key = cfg_.transport == SerialTransport::tcp ? "tcp:" + location_
                      : cfg_.transport == SerialTransport::unix_socket ? "unix:" + location_
                      : "pty:" + (cfg_.path.empty() ? location_ : cfg_.path);
    name_ = std::string("serial ") + key + " (" + proto + ")";
    mac_ = mac_for(key);
    sw_.attach(*this);
    if (cfg_.fixed_addr) addr_ = *cfg_.fixed_addr;
    // The lease and (on a pty) the link start from the loop, not from here.
    loop_.arm(start_timer_, 0);
}

SerialPort::~SerialPort() {
    stopping_ = true;  // nothing may queue us in the loop from here on
    if (ppp_ && ppp_->ip_up()) ppp_->close();
    flush_ring();
    sw_.detach(*this);
    if (conn_fd_ >= 0) {
        loop_.remove(conn_fd_, &conn_h_);
        close(conn_fd_);
    }
    if (pty_slave_fd_ >= 0) close(pty_slave_fd_);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_, &listen_h_);
        // A unix listener closes its own socket, and removes its file if
        // that is still ours.
        if (unix_listener_) unix_listener_.reset();
        else close(listen_fd_);
    }
    // The link only while it still names our pty: another usernet may have
    // taken the name over since.
    if (!link_path_.empty()) {
        char target[256];
        ssize_t n = readlink(link_path_.c_str(), target, sizeof target - 1);
        if (n > 0 && std::string_view(target, static_cast<size_t>(n)) == location_)
            unlink(link_path_.c_str());
    }
}

void SerialPort::open_pty() {
    if (!cfg_.path.empty()) {
        // Before opening our own pty: a stale link left by a usernet that
        // was killed names the pty number the kernel would hand us now.
        struct stat st {};
        if (lstat(cfg_.path.c_str(), &st) == 0) {
            // A link to a pty that is there belongs to a running program
            // (a pty's slave goes when its master closes); a stale one is
            // replaced.
            struct stat target {};
            if (S_ISLNK(st.st_mode) && stat(cfg_.path.c_str(), &target) == 0 &&
                S_ISCHR(target.st_mode)) {
                char t[256] = {};
                ssize_t n = readlink(cfg_.path.c_str(), t, sizeof t - 1);
                throw std::runtime_error("pty link " + cfg_.path + " names " +
                                         std::string(t, static_cast<size_t>(std::max<ssize_t>(n, 0))) +
                                         ", a pseudo-terminal in use (by another usernet? a "
                                         "stale link may be removed)");
            }
            if (!S_ISLNK(st.st_mode) || unlink(cfg_.path.c_str()) != 0)
                throw std::runtime_error("pty link " + cfg_.path +
                                         " exists and is not a symlink usernet can replace");
        }
    }
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) throw std::runtime_error("cannot open a pseudo-terminal: " + errstr(errno));
    char name[128] = {};
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, name, sizeof name) != 0) {
        int e = errno;
        close(m);
        throw std::runtime_error("cannot set up a pseudo-terminal: " + errstr(e));
    }
    // Our own handle on the slave: the line stays up while peers come and
    // go (a master with no slave open reads EIO), and it sets raw mode.
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        int e = errno;
        close(m);
        throw std::runtime_error(std::string("cannot open ") + name + ": " + errstr(e));
    }
    termios t{};
    if (tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        cfsetspeed(&t, B115200);
        tcsetattr(s, TCSANOW, &t);
    }
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    location_ = name;
    if (!cfg_.path.empty()) {
        if (symlink(name, cfg_.path.c_str()) != 0) {
            int e = errno;
            close(s);
            close(m);
            throw std::runtime_error("cannot create the pty link " + cfg_.path + ": " + errstr(e));
        }
        link_path_ = cfg_.path;
    }
    pty_slave_fd_ = s;
    conn_fd_ = m;
    peer_name_ = "pty " + location_;
    try {
        loop_.add(conn_fd_, EPOLLIN, &conn_h_);
    } catch (...) {
        close(s);
        close(m);
        conn_fd_ = pty_slave_fd_ = -1;
        throw;
    }
}

void SerialPort::open_unix() {
    unix_listener_ = std::make_unique<core::UnixListener>(cfg_.path, 4);
    listen_fd_ = unix_listener_->fd();
    location_ = cfg_.path;
    loop_.add(listen_fd_, EPOLLIN, &listen_h_);
}

void SerialPort::open_tcp() {
    auto ip = wire::IpAddr::parse(cfg_.host);
    if (!ip) throw std::runtime_error("'" + cfg_.host + "' is not an IP address");
    sockaddr_storage ss = core::to_sockaddr(*ip, cfg_.port);
    const socklen_t len = core::sockaddr_len(ss);
    listen_fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("cannot create a TCP socket: " + errstr(errno));
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) < 0 || listen(listen_fd_, 4) < 0) {
        int e = errno;
        close(listen_fd_);
        listen_fd_ = -1;
        throw std::runtime_error("cannot listen on TCP " + cfg_.host + ":" +
                                 std::to_string(cfg_.port) + ": " + errstr(e));
    }
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    uint16_t port = cfg_.port;
    if (getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &blen) == 0)
        port = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                                : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    cfg_.port = port;
    location_ = (ip->is_v4() ? cfg_.host : "[" + cfg_.host + "]") + ":" + std::to_string(port);
    loop_.add(listen_fd_, EPOLLIN, &listen_h_);
}

std::vector<std::string> SerialPort::usage() const {
    std::vector<std::string> out;
    const bool ppp = cfg_.protocol == SerialProtocol::ppp;
    switch (cfg_.transport) {
    case SerialTransport::pty:
        out.push_back("QEMU: -serial " + location_ + " (or -chardev tty,id=s0,path=" + location_ +
                      " -serial chardev:s0), or run the peer on " + location_ + " itself");
        break;
    case SerialTransport::unix_socket:
        out.push_back("QEMU: -serial " + core::shell_word("unix:" + core::qemu_value(location_)) +
                      " (or -chardev " +
                      core::shell_word("socket,id=s0,path=" + core::qemu_value(location_)) +
                      " -serial chardev:s0)");
        break;
    case SerialTransport::tcp: {
        // Where the emulator connects: a wildcard usernet listens on is
        // reached on the loopback address. QEMU's -serial tcp: form splits
        // at the first ':', and Bochs's socket client resolves IPv4 names
        // only: an IPv6 address needs QEMU's -chardev form, and Bochs
        // cannot take it.
        auto ip = wire::IpAddr::parse(cfg_.host);
        const bool v6 = ip && !ip->is_v4();
        std::string host = cfg_.host;
        if (ip && ip->is_unspecified()) host = v6 ? "::1" : "127.0.0.1";
        const std::string port = std::to_string(cfg_.port);
        if (v6) {
            out.push_back("QEMU: -chardev socket,id=s0,host=" + host + ",port=" + port +
                          " -serial chardev:s0");
            out.push_back("Bochs: its socket client takes IPv4 only: give --serial tcp:127.0.0.1:" +
                          port + " for Bochs");
        } else {
            out.push_back("QEMU: -serial tcp:" + host + ":" + port);
            out.push_back("Bochs: com1: enabled=1, mode=socket-client, dev=" + host + ":" + port);
        }
        break;
    }
    }
    std::string addr = addr_ ? v4(addr_) : std::string("ADDR (logged once leased)");
    if (ppp)
        out.push_back("in the guest: pppd /dev/ttyS0 115200 noauth local nocrtscts noipdefault "
                      "usepeerdns defaultroute (address, route and DNS " + v4(cfg_.dns) + " come by IPCP)");
    else
        out.push_back("in the guest: slattach -p slip -s 115200 /dev/ttyS0 & ip addr add " + addr +
                      " peer " + v4(cfg_.gateway) + " dev sl0; ip link set sl0 mtu " +
                      std::to_string(cfg_.mtu) + " up; ip route add default dev sl0 (DNS " +
                      v4(cfg_.dns) + ")");
    return out;
}

bool SerialPort::link_up() const {
    if (conn_fd_ < 0 || addr_ == 0) return false;
    return cfg_.protocol == SerialProtocol::slip || (ppp_ && ppp_->ip_up());
}

bool SerialPort::in_subnet(wire::Ipv4 a) const {
    wire::Ipv4 mask = cfg_.prefix_len == 0 ? 0 : ~wire::Ipv4{0} << (32 - cfg_.prefix_len);
    return (a & mask) == (cfg_.net & mask);
}

wire::Ipv4 SerialPort::broadcast() const {
    wire::Ipv4 mask = cfg_.prefix_len == 0 ? 0 : ~wire::Ipv4{0} << (32 - cfg_.prefix_len);
    return cfg_.net | ~mask;
}

// ---------------------------------------------------------------- the line

void SerialPort::on_listener(uint32_t) {
    for (int i = 0; i < 4; ++i) {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        std::string peer;
        if (ss.ss_family == AF_INET) {
            auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
            peer = v4(ntohl(s4->sin_addr.s_addr)) + ":" + std::to_string(ntohs(s4->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
            peer = "[" + wire::IpAddr::v6_from(s6->sin6_addr.s6_addr).to_string() + "]:" +
                   std::to_string(ntohs(s6->sin6_port));
        } else {
            peer = "a client";
            ucred cred{};
            socklen_t cl = sizeof cred;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.pid > 0)
                peer = "pid " + std::to_string(cred.pid);
        }
        // A peer that hung up a moment ago may not have been read to its
        // end yet (its EOF waits for the next wakeup): look before refusing.
        if (conn_fd_ >= 0 && cfg_.transport != SerialTransport::pty) {
            uint8_t b;
            if (recv(conn_fd_, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) close_peer("hung up");
        }
        if (conn_fd_ >= 0) {
            stats_.refused++;
            spdlog::warn("{}: refusing {}: the line already has a peer ({})", name_, peer,
                         peer_name_);
            close(fd);
            continue;
        }
        attach_peer(fd, peer);
    }
}

void SerialPort::attach_peer(int fd, const std::string& peer) {
    try {
        loop_.add(fd, EPOLLIN, &conn_h_);
    } catch (const std::exception& e) {
        spdlog::warn("{}: cannot take {}: {}", name_, peer, e.what());
        close(fd);
        return;
    }
    conn_fd_ = fd;
    peer_name_ = peer;
    stats_.connections++;
    at_attach_ = stats_;
    spdlog::info("{}: {} connected (switch port {}, MAC {}, peer address {})", name_, peer, id(),
                 mac_.to_string(), addr_ ? v4(addr_) : std::string("not leased yet"));
    start_link();
}

void SerialPort::start_link() {
    // The lease: for PPP once a peer is there (IPCP hands it over then);
    // for SLIP at once, since its peer must be configured with it.
    const bool want_lease = conn_fd_ >= 0 || cfg_.protocol == SerialProtocol::slip;
    if (want_lease && dhcp_ == Dhcp::off && !cfg_.fixed_addr) {
        dhcp_ = Dhcp::selecting;
        xid_ = random32();
        dhcp_tries_ = 0;
        dhcp_send();
    }
    if (conn_fd_ < 0) return;
    if (cfg_.protocol == SerialProtocol::ppp) {
        if (ppp_) return;
        ppp::PppConfig pc;
        pc.local_addr = cfg_.gateway;
        pc.dns = cfg_.dns;
        pc.mru = static_cast<uint16_t>(std::min<uint32_t>(cfg_.mtu, 65535));
        ppp_ = std::make_unique<ppp::PppLink>(static_cast<ppp::PppHost&>(*this), pc);
        line_errors_ = 0;
        ppp_->set_peer_addr(addr_);
        ppp_->start();
    } else if (!slip_rx_) {
        slip_rx_ = std::make_unique<slip::SlipDecoder>(cfg_.mtu);
        line_errors_ = 0;
    }
}

// The line echoes what we send (socat PIPE, a loopback plug): nobody to
// talk to. A connection is dropped; a pty goes quiet for kLoopedQuietMs and
// its next bytes after that start a new link.
void SerialPort::on_looped() {
    looped_ = false;
    spdlog::warn("{}: the line is looped back (our own LCP requests come back); {}", name_,
                 cfg_.transport == SerialTransport::pty ? "trying again when the line speaks"
                                                         : "dropping the connection");
    if (cfg_.transport != SerialTransport::pty) {
        close_peer("looped back");
        return;
    }
    ppp_.reset();
    loop_.cancel(lcp_timer_);
    loop_.cancel(ipcp_timer_);
    quiet_until_ = loop_.now() + kLoopedQuietMs;
}

// Frames the line's decoder threw away (a bad FCS or escape, too long, a
// runt) count as the port's receive drops, as a bad frame anywhere does.
void SerialPort::count_line_errors() {
    uint64_t total = 0;
    if (ppp_) {
        const ppp::HdlcStats& h = ppp_->hdlc_stats();
        total = h.bad_fcs + h.too_long + h.runts + h.aborted;
    } else if (slip_rx_) {
        total = slip_rx_->stats().too_long + slip_rx_->stats().bad_escapes;
    }
    if (total > line_errors_) {
        stats_.dropped_line += total - line_errors_;
        stats().rx_dropped += total - line_errors_;
    }
    line_errors_ = total;
}

void SerialPort::close_peer(const std::string& why) {
    if (conn_fd_ < 0) return;
    spdlog::info("{}: {} left ({}; switch port {}, MAC {}): {} packets in, {} out; dropped {} "
                 "with the output ring full, {} bad frames from the line, {} malformed or from "
                 "another address",
                 name_, peer_name_, why, id(), mac_.to_string(),
                 stats_.rx_packets - at_attach_.rx_packets, stats_.tx_packets - at_attach_.tx_packets,
                 stats_.dropped_ring_full - at_attach_.dropped_ring_full,
                 stats_.dropped_line - at_attach_.dropped_line,
                 stats_.dropped_malformed + stats_.dropped_spoofed - at_attach_.dropped_malformed -
                     at_attach_.dropped_spoofed);
    loop_.remove(conn_fd_, &conn_h_);
    close(conn_fd_);
    conn_fd_ = -1;
    waiting_out_ = false;
    ring_head_ = ring_tail_ = 0;
    if (ppp_ && ppp_->ip_up()) spdlog::info("{}: PPP link down", name_);
    ppp_.reset();
    slip_rx_.reset();
    loop_.cancel(lcp_timer_);
    loop_.cancel(ipcp_timer_);
}

void SerialPort::on_conn(uint32_t events) {
    if (conn_fd_ < 0) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int i = 0; i < kMaxReadsPerWakeup && conn_fd_ >= 0; ++i) {
            ssize_t n = read(conn_fd_, rd_.get(), kReadChunk);
            if (n == 0) {
                close_peer("hung up");
                return;
            }
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                close_peer(errstr(errno));
                return;
            }
            wire::Bytes in(rd_.get(), static_cast<size_t>(n));
            if (cfg_.protocol == SerialProtocol::ppp && !ppp_) {
                if (loop_.now() < quiet_until_) continue;
                start_link();  // a looped pty's line speaks again
            }
            if (ppp_) ppp_->input(in);
            else if (slip_rx_) slip_rx_->feed(in, [this](wire::Bytes p) { from_peer(p); });
            count_line_errors();
            if (looped_) {
                on_looped();
                if (conn_fd_ < 0) return;
                break;
            }
            if (static_cast<size_t>(n) < kReadChunk) break;
        }
    }
    if (conn_fd_ >= 0 && (events & EPOLLOUT)) flush_ring();
}

size_t SerialPort::tx_room() const {
    // Bytes of Ethernet frames: a frame of n bytes carries an IP packet of
    // n - 14, which encodes to at most 2 * (n - 14) + 18 bytes on the line
    // (hdlc_max_encoded, slip_max_encoded), under 2 * n.
    const size_t free_bytes = ring_free();
    return free_bytes > kTxReserve ? (free_bytes - kTxReserve) / 2 : 0;
}

bool SerialPort::ring_push(wire::Bytes b) {
    if (ring_free() < b.size()) return false;
    size_t idx = static_cast<size_t>(ring_tail_ % kTxRing);
    size_t first = std::min(b.size(), kTxRing - idx);
    std::memcpy(ring_.get() + idx, b.data(), first);
    if (b.size() > first) std::memcpy(ring_.get(), b.data() + first, b.size() - first);
    ring_tail_ += b.size();
    if (!waiting_out_ && !stopping_) loop_.defer(*this);
    return true;
}

void SerialPort::flush_ring() {
    while (conn_fd_ >= 0 && ring_tail_ != ring_head_) {
        size_t n = static_cast<size_t>(ring_tail_ - ring_head_);
        size_t idx = static_cast<size_t>(ring_head_ % kTxRing);
        size_t first = std::min(n, kTxRing - idx);
        iovec iov[2] = {{ring_.get() + idx, first}, {ring_.get(), n - first}};
        // A socket peer that has gone must be EPIPE, not SIGPIPE: the
        // library may run in a process that does not ignore the signal.
        ssize_t w;
        if (cfg_.transport == SerialTransport::pty) {
            w = writev(conn_fd_, iov, n > first ? 2 : 1);
        } else {
            msghdr m{};
            m.msg_iov = iov;
            m.msg_iovlen = n > first ? 2 : 1;
            w = sendmsg(conn_fd_, &m, MSG_NOSIGNAL);
        }
        if (w > 0) {
            ring_head_ += static_cast<uint64_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!waiting_out_) {
                waiting_out_ = true;
                loop_.modify(conn_fd_, EPOLLIN | EPOLLOUT, &conn_h_);
            }
            return;
        }
        close_peer(w < 0 ? errstr(errno) : "write returned 0");
        return;
    }
    if (waiting_out_ && conn_fd_ >= 0) {
        waiting_out_ = false;
        loop_.modify(conn_fd_, EPOLLIN, &conn_h_);
    }
}

void SerialPort::run_deferred() {
    // Frames owed to the LAN from deliver(): now, outside the switch.
    for (size_t i = 0; i < lan_q_len_; ++i) {
        wire::Bytes f(lan_q_[i].data(), wire::kEthMinFrame);
        sw_.input(id(), f);
    }
    lan_q_len_ = 0;
    for (size_t i = 0; i < kArpEntries; ++i) {
        Neighbor& n = arp_[i];
        if (!n.flush) continue;
        n.flush = false;
        uint32_t len = n.pending_len;
        n.pending_len = 0;
        if (len) emit(n.mac, wire::Bytes(pending_.get() + i * cfg_.mtu, len));
    }
    flush_ring();
}

// ---------------------------------------------------------------- peer -> LAN

void SerialPort::from_peer(wire::Bytes packet) {
    auto ip = wire::Ipv4View::parse(packet);
    if (!ip || packet.size() > cfg_.mtu) {
        stats_.dropped_malformed++;
        stats().rx_dropped++;
        return;
    }
    if (addr_ == 0 || ip->src() != addr_) {
        stats_.dropped_spoofed++;
        stats().rx_dropped++;
        spdlog::debug("{}: dropped a packet from {} (the peer's address is {})", name_,
                      v4(ip->src()), v4(addr_));
        return;
    }
    const wire::Bytes pkt = ip->packet();
    const wire::Ipv4 dst = ip->dst();
    if (dst == 0xffffffff || dst == broadcast()) {
        emit(wire::MacAddr::broadcast(), pkt);
        return;
    }
    const wire::Ipv4 hop = in_subnet(dst) ? dst : cfg_.gateway;
    Neighbor* n = neighbor(hop);
    const core::Millis now = loop_.now();
    if (n && n->resolved && now - n->seen <= kArpFreshMs) {
        emit(n->mac, pkt);
        return;
    }
    if (n && n->resolved) {
        // Stale: use it, and ask again (the answer refreshes it).
        emit(n->mac, pkt);
        if (now - n->asked >= kArpRetryMs) {
            n->asked = now;
            send_arp_request(hop);
        }
        return;
    }
    Neighbor& slot = n ? *n : neighbor_slot(hop);
    if (slot.pending_len == 0) {
        size_t i = static_cast<size_t>(&slot - arp_.data());
        std::memcpy(pending_.get() + i * cfg_.mtu, pkt.data(), pkt.size());
        slot.pending_len = static_cast<uint32_t>(pkt.size());
    } else {
        stats_.dropped_no_arp++;
    }
    if (slot.asked == 0 || now - slot.asked >= kArpRetryMs) {
        slot.asked = now;
        send_arp_request(hop);
    }
}

void SerialPort::emit(const wire::MacAddr& dst, wire::Bytes packet) {
    uint8_t* f = frame_.get();
    wire::build_ethernet(f, dst, mac_, wire::ethertype::ipv4);
    std::memcpy(f + kEthIp, packet.data(), packet.size());
    size_t len = kEthIp + packet.size();
    if (len < wire::kEthMinFrame) {
        std::memset(f + len, 0, wire::kEthMinFrame - len);
        len = wire::kEthMinFrame;
    }
    stats_.rx_packets++;
    sw_.input(id(), wire::Bytes(f, len));
}

SerialPort::Neighbor* SerialPort::neighbor(wire::Ipv4 ip) {
    for (Neighbor& n : arp_)
        if (n.ip == ip && ip != 0) return &n;
    return nullptr;
}

SerialPort::Neighbor& SerialPort::neighbor_slot(wire::Ipv4 ip) {
    // A free slot, else the one heard from longest ago.
    Neighbor* best = &arp_[0];
    for (Neighbor& n : arp_) {
        if (n.ip == 0) {
            best = &n;
            break;
        }
        if (std::max(n.seen, n.asked) < std::max(best->seen, best->asked)) best = &n;
    }
    *best = Neighbor{};
    best->ip = ip;
    return *best;
}

void SerialPort::send_arp_request(wire::Ipv4 target) {
    std::array<uint8_t, wire::kEthMinFrame> f{};
    wire::build_ethernet(f.data(), wire::MacAddr::broadcast(), mac_, wire::ethertype::arp);
    wire::build_arp(f.data() + kEthIp, wire::arpop::request, mac_, addr_, wire::MacAddr{}, target);
    sw_.input(id(), wire::Bytes(f.data(), f.size()));
}

// ---------------------------------------------------------------- LAN -> peer

void SerialPort::deliver(wire::Bytes frame, const sw::FrameMeta&) {
    auto eth = wire::EthernetView::parse(frame);
    if (!eth || eth->has_vlan_tag()) return;
    const bool to_us = eth->dst() == mac_;
    if (!to_us && !eth->dst().is_broadcast()) return;  // flooded unicast for someone else
    if (eth->ethertype() == wire::ethertype::arp) {
        handle_arp(eth->payload());
        return;
    }
    if (eth->ethertype() != wire::ethertype::ipv4) return;
    auto ip = wire::Ipv4View::parse(eth->payload());
    if (!ip) return;
    if (ip->protocol() == wire::ipproto::udp && !ip->is_fragment()) {
        auto udp = wire::UdpView::parse(ip->payload());
        if (udp && udp->src_port() == wire::kDhcp4ServerPort &&
            udp->dst_port() == wire::kDhcp4ClientPort && dhcp_reply(udp->payload()))
            return;
    }
    if (!to_us || addr_ == 0 || ip->dst() != addr_) return;
    to_peer(ip->packet());
}

void SerialPort::to_peer(wire::Bytes packet) {
    if (!link_up()) {
        stats_.dropped_no_link++;
        return;
    }
    // What the switch counted as sent and the line did not take.
    auto lost = [&](uint64_t& why) {
        why++;
        lost_tx(1, packet.size() + wire::kEthHeaderLen);
    };
    if (cfg_.protocol == SerialProtocol::ppp) {
        if (ppp_->send_ip(packet)) {
            stats_.tx_packets++;
        } else if (ppp_->ip_up() && packet.size() <= ppp_->lcp().peer_mru) {
            lost(stats_.dropped_ring_full);  // ppp_write_ip() refused it
        } else {
            lost(stats_.dropped_malformed);
        }
        return;
    }
    size_t n = slip::slip_encode(wire::MutBytes(enc_.get(), slip::slip_max_encoded(cfg_.mtu)),
                                 packet);
    if (n == 0) {
        lost(stats_.dropped_malformed);
        return;
    }
    if (ring_push(wire::Bytes(enc_.get(), n))) stats_.tx_packets++;
    else lost(stats_.dropped_ring_full);
}

void SerialPort::handle_arp(wire::Bytes payload) {
    auto a = wire::ArpView::parse(payload);
    if (!a || addr_ == 0) return;
    const wire::Ipv4 sip = a->sender_ip();
    if (a->target_ip() == addr_ && sip != 0 && sip != addr_ && !a->sender_mac().is_multicast())
        learn(sip, a->sender_mac());
    else if (Neighbor* n = neighbor(sip); n && n->resolved && sip != 0)
        learn(sip, a->sender_mac());  // someone we talk to announced itself again
    if (a->op() != wire::arpop::request || a->target_ip() != addr_ || sip == addr_) return;
    if (lan_q_len_ == kLanQueue) return;  // a flood of requests: the rest go unanswered
    auto& f = lan_q_[lan_q_len_++];
    f.fill(0);
    wire::build_ethernet(f.data(), a->sender_mac(), mac_, wire::ethertype::arp);
    wire::build_arp(f.data() + kEthIp, wire::arpop::reply, mac_, addr_, a->sender_mac(), sip);
    loop_.defer(*this);
}

void SerialPort::learn(wire::Ipv4 ip, const wire::MacAddr& mac) {
    Neighbor* n = neighbor(ip);
    if (!n) n = &neighbor_slot(ip);
    n->mac = mac;
    n->resolved = true;
    n->seen = loop_.now();
    if (n->pending_len) {
        n->flush = true;
        loop_.defer(*this);
    }
}

// ---------------------------------------------------------------- DHCP

void SerialPort::dhcp_send() {
    uint8_t* f = dhcp_buf_.data();
    uint8_t* l4 = f + kEthIp + wire::kIpv4HeaderLen;
    uint8_t* msg = l4 + wire::kUdpHeaderLen;
    wire::Dhcp4Builder b(wire::MutBytes(msg, 576 - 28));
    b.set_op(wire::dhcp4op::boot_request);
    b.set_xid(xid_);
    b.set_chaddr(mac_);
    const bool renewing = dhcp_ == Dhcp::renewing;
    if (renewing) b.set_ciaddr(addr_);
    b.add_u8(wire::dhcp4opt::message_type,
             dhcp_ == Dhcp::selecting ? wire::dhcp4msg::discover : wire::dhcp4msg::request);
    std::array<uint8_t, 7> cid{1};
    mac_.store(cid.data() + 1);
    b.add_option(wire::dhcp4opt::client_id, cid);
    if (dhcp_ == Dhcp::requesting) {
        b.add_ipv4(wire::dhcp4opt::requested_ip, offered_);
        b.add_ipv4(wire::dhcp4opt::server_id, server_);
    }
    static constexpr std::array<uint8_t, 4> prl{wire::dhcp4opt::subnet_mask,
                                                wire::dhcp4opt::router, wire::dhcp4opt::dns_server,
                                                wire::dhcp4opt::lease_time};
    b.add_option(wire::dhcp4opt::param_request_list, prl);
    size_t len = b.finish();
    if (len == 0) return;
    const wire::Ipv4 src = renewing ? addr_ : 0;
    wire::build_udp(l4, wire::IpAddr::v4(src), wire::IpAddr::v4(0xffffffff),
                    wire::kDhcp4ClientPort, wire::kDhcp4ServerPort, len);
    wire::build_ipv4(f + kEthIp, src, 0xffffffff, wire::ipproto::udp, wire::kUdpHeaderLen + len);
    wire::build_ethernet(f, wire::MacAddr::broadcast(), mac_, wire::ethertype::ipv4);
    // Retransmit with back-off: 2, 4, 8, 16, 16 ... s. Armed before the
    // message goes: the gateway answers from inside sw_.input(), and the
    // answer may re-arm the timer (an OFFER: the REQUEST at once).
    core::Millis wait = 2000u << std::min(dhcp_tries_, 3);
    dhcp_tries_++;
    loop_.arm(dhcp_timer_, wait);
    spdlog::debug("{}: DHCP {} (xid {:#x})", name_,
                  dhcp_ == Dhcp::selecting ? "DISCOVER" : "REQUEST", xid_);
    sw_.input(id(), wire::Bytes(f, kEthIp + wire::kIpv4HeaderLen + wire::kUdpHeaderLen + len));
}

void SerialPort::dhcp_timeout() {
    switch (dhcp_) {
    case Dhcp::requesting:
        if (dhcp_tries_ >= 4) {  // no ACK for our REQUEST: start over
            dhcp_ = Dhcp::selecting;
            dhcp_tries_ = 0;
        }
        break;
    case Dhcp::bound:  // T1: renew
        dhcp_ = Dhcp::renewing;
        xid_ = random32();
        dhcp_tries_ = 0;
        break;
    case Dhcp::off:
        return;
    default:
        break;
    }
    dhcp_send();
}

bool SerialPort::dhcp_reply(wire::Bytes payload) {
    auto m = wire::Dhcp4View::parse(payload);
    if (!m || m->op() != wire::dhcp4op::boot_reply || m->xid() != xid_ || m->chaddr() != mac_)
        return false;
    auto type = m->message_type();
    if (!type) return true;
    if (*type == wire::dhcp4msg::offer && dhcp_ == Dhcp::selecting) {
        auto sid = m->server_id();
        if (!sid || m->yiaddr() == 0) return true;
        offered_ = m->yiaddr();
        server_ = *sid;
        dhcp_ = Dhcp::requesting;
        dhcp_tries_ = 0;
        loop_.arm(dhcp_timer_, 0);  // the REQUEST goes from the loop, not from here
        return true;
    }
    if (*type == wire::dhcp4msg::ack && (dhcp_ == Dhcp::requesting || dhcp_ == Dhcp::renewing)) {
        uint32_t secs = 86400;
        if (auto lt = m->find(wire::dhcp4opt::lease_time); lt && lt->size() == 4)
            secs = std::max<uint32_t>(wire::load32(lt->data()), 60);
        stats_.dhcp_leases++;
        const bool renewal = dhcp_ == Dhcp::renewing;
        dhcp_ = Dhcp::bound;
        dhcp_tries_ = 0;
        loop_.arm(dhcp_timer_, core::Millis{secs} * 500);  // T1, half the lease
        if (!renewal || m->yiaddr() != addr_) set_addr(m->yiaddr(), "leased");
        return true;
    }
    if (*type == wire::dhcp4msg::nak && dhcp_ != Dhcp::selecting && dhcp_ != Dhcp::bound) {
        spdlog::warn("{}: the DHCP server refused the lease on {}; asking again", name_,
                     v4(dhcp_ == Dhcp::renewing ? addr_ : offered_));
        dhcp_ = Dhcp::selecting;
        xid_ = random32();
        dhcp_tries_ = 0;
        loop_.arm(dhcp_timer_, 1000);
    }
    return true;
}

void SerialPort::set_addr(wire::Ipv4 a, const char* how) {
    if (addr_ != 0 && addr_ != a)
        spdlog::warn("{}: the peer's address changes from {} to {}", name_, v4(addr_), v4(a));
    addr_ = a;
    if (ppp_) ppp_->set_peer_addr(a);
    spdlog::info("{}: {} {} for the peer (MAC {}, switch port {})", name_, how, v4(a),
                 mac_.to_string(), id());
    // Learn the gateway's MAC now, before the peer's first packet.
    if (!neighbor(cfg_.gateway)) {
        Neighbor& n = neighbor_slot(cfg_.gateway);
        n.asked = loop_.now();
        send_arp_request(cfg_.gateway);
    }
}

// ---------------------------------------------------------------- PppHost

void SerialPort::ppp_write(wire::Bytes bytes) {
    if (conn_fd_ < 0 || !ring_push(bytes)) stats_.dropped_ring_full++;
}

// IP frames leave kTxReserve of the ring to LCP and IPCP: a peer reading
// slower than a UDP stream arrives would otherwise miss the echo replies
// pppd's lcp-echo-failure counts, and hang up.
bool SerialPort::ppp_write_ip(wire::Bytes bytes) {
    if (conn_fd_ < 0 || ring_free() < bytes.size() + kTxReserve) return false;
    return ring_push(bytes);
}

uint32_t SerialPort::mtu() const {
    if (ppp_ && ppp_->lcp_state() == ppp::FsmState::opened)
        return std::min<uint32_t>(cfg_.mtu, ppp_->lcp().peer_mru);
    return cfg_.mtu;
}

void SerialPort::ppp_ip_up(wire::Ipv4 peer) {
    const ppp::Lcp& l = ppp_->lcp();
    spdlog::info("{}: PPP link up with {}: peer {}, local {}, DNS {} (MRU {}{}{}{})", name_,
                 peer_name_, v4(peer), v4(cfg_.gateway), v4(cfg_.dns), l.peer_mru,
                 l.peer_pfc ? ", PFC" : "", l.peer_acfc ? ", ACFC" : "",
                 l.peer_fcs32 ? ", FCS-32" : "");
}

void SerialPort::ppp_ip_down() { spdlog::info("{}: PPP link down (IPCP closed)", name_); }

void SerialPort::ppp_arm_timer(int which, uint32_t ms) {
    loop_.arm(which == 0 ? lcp_timer_ : ipcp_timer_, ms);
}

void SerialPort::ppp_cancel_timer(int which) { loop_.cancel(which == 0 ? lcp_timer_ : ipcp_timer_); }

uint32_t SerialPort::ppp_random() { return random32(); }

}  // namespace usernet::ports
