// The VDE attachment (see the header for the protocol and the theory of
// operation).
#include "ports/vde_port.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "wire/addr.hpp"
#include "wire/ethernet.hpp"

namespace usernet::ports {
namespace {

std::string errstr(int err) { return std::strerror(err); }

uint32_t host_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

void put_host_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }

// As deep as the kernel allows (rmem_max, wmem_max): the peer is a local
// emulator, and every frame the kernel holds is one usernet need not queue.
void set_socket_buffers(int fd) {
    int v = INT_MAX / 2;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

bool make_sockaddr(const std::string& path, sockaddr_un& sa) {
    sa = {};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sa.sun_path)) return false;
    std::memcpy(sa.sun_path, path.data(), path.size());
    return true;
}

// Whether a socket is listening (stream) or bound (datagram) at path:
// 1 live, 0 dead (nothing answers: a file left by a crash), -1 cannot tell.
int probe_socket(const std::string& path, int type) {
    sockaddr_un sa;
    if (!make_sockaddr(path, sa)) return -1;
    int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int r = connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    int e = errno;
    close(fd);
    if (r == 0 || e == EAGAIN || e == EINPROGRESS) return 1;
    if (e == ECONNREFUSED) return 0;
    return -1;
}

std::string printable(const uint8_t* p, size_t n) {
    std::string s;
    s.reserve(n);
    for (size_t i = 0; i < n && p[i] != 0; i++)
        s.push_back(p[i] >= 0x20 && p[i] < 0x7f ? static_cast<char>(p[i]) : '?');
    return s;
}

std::string absolute(const std::string& path) {
    if (path.starts_with('/')) return path;
    std::array<char, PATH_MAX> cwd{};
    if (!getcwd(cwd.data(), cwd.size()))
        throw std::runtime_error("cannot resolve the VDE directory " + path + ": " +
                                 errstr(errno));
    std::string base(cwd.data());
    return base + (base.ends_with('/') ? "" : "/") + path;
}

// Our data sockets' names: NNN.S (digits, a dot, digits).
bool is_port_socket_name(const char* n) {
    size_t i = 0;
    while (n[i] >= '0' && n[i] <= '9') i++;
    if (i < 3 || n[i] != '.') return false;
    size_t j = ++i;
    while (n[i] >= '0' && n[i] <= '9') i++;
    return i > j && n[i] == 0;
}

// The longest name we bind in the directory: "/" + at least three digits of
// port + "." + a serial of up to 10 digits.
constexpr size_t kPortNameMax = 1 + 3 + 1 + 10;

}  // namespace

// ---------------------------------------------------------------- request

VdeParse parse_vde_request(wire::Bytes buf) {
    VdeParse r;
    auto bad = [&](const char* why) {
        r.status = VdeParse::bad;
        r.error = why;
        return r;
    };
    if (buf.size() > kVdeMaxRequest) return bad("request longer than any valid one");
    if (buf.size() < 4) return r;
    if (host_u32(buf.data()) != kVdeMagic) return bad("bad magic (not a VDE client)");
    if (buf.size() < 8) return r;
    uint32_t word = host_u32(buf.data() + 4);
    size_t fixed = 0, sock_off = 0;
    if (word == 3) {  // v3: the version, then the type
        r.req.version = 3;
        fixed = kVdeV3Fixed;
        sock_off = 12;
        if (buf.size() < 12) return r;
        r.req.type = host_u32(buf.data() + 8);
    } else if (word == 0 || word == 1) {  // v1: the type in the version's place
        r.req.version = 1;
        r.req.type = word;
        fixed = kVdeV1Fixed;
        sock_off = 14;
    } else {
        return bad("unsupported request version (only v1 and v3 exist)");
    }
    if ((r.req.type & 0xff) > 1) return bad("unknown request type");
    r.req.port = r.req.type >> 8;
    if (r.req.port > 0xffff) return bad("port number out of range");
    if (buf.size() < fixed) return r;
    if (buf.size() > fixed + kVdeDescrMax) return bad("description longer than 128 bytes");

    const uint8_t* sa = buf.data() + sock_off;
    uint16_t family;
    std::memcpy(&family, sa, sizeof family);
    if (family != AF_UNIX) return bad("the data socket is not AF_UNIX");
    const uint8_t* path = sa + sizeof(sa_family_t);
    const void* nul = std::memchr(path, 0, kVdeSunPathLen);
    if (!nul) return bad("the data socket's path is not NUL-terminated");
    size_t plen = static_cast<size_t>(static_cast<const uint8_t*>(nul) - path);
    if (plen == 0) return bad("the data socket is unnamed or abstract");
    if (path[0] != '/') return bad("the data socket's path is not absolute");
    r.req.path.assign(reinterpret_cast<const char*>(path), plen);
    r.req.description = printable(buf.data() + fixed, buf.size() - fixed);
    r.status = VdeParse::ok;
    return r;
}

std::vector<uint8_t> make_vde_request_v3(const std::string& path, const std::string& descr,
                                         uint32_t type) {
    std::vector<uint8_t> out(kVdeV3Fixed + descr.size(), 0);
    put_host_u32(out.data(), kVdeMagic);
    put_host_u32(out.data() + 4, 3);
    put_host_u32(out.data() + 8, type);
    sa_family_t fam = AF_UNIX;
    std::memcpy(out.data() + 12, &fam, sizeof fam);
    std::memcpy(out.data() + 12 + sizeof fam, path.data(), std::min(path.size(), kVdeSunPathLen));
    if (!descr.empty()) std::memcpy(out.data() + kVdeV3Fixed, descr.data(), descr.size());
    return out;
}

// ---------------------------------------------------------------- tx queue

VdeTxQueue::VdeTxQueue(size_t byte_capacity, size_t max_frames)
    : cap_(std::bit_ceil(std::max<size_t>(byte_capacity, 65536))),
      max_frames_(std::max<size_t>(max_frames, 1)) {
    buf_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
    lens_ = std::make_unique<uint32_t[]>(max_frames_);
}

bool VdeTxQueue::push(wire::Bytes frame, wire::Bytes tail) {
    size_t len = frame.size() + tail.size();
    if (len == 0 || len > 65535) return false;
    size_t padded = std::max(len, wire::kEthMinFrame);
    if (frames() >= max_frames_ || cap_ - bytes() < padded) return false;
    uint64_t at = tail_;
    for (wire::Bytes piece : {frame, tail}) {
        if (piece.empty()) continue;  // (an empty span's data() may be null)
        size_t idx = static_cast<size_t>(at) & (cap_ - 1);
        size_t first = std::min(piece.size(), cap_ - idx);
        std::memcpy(buf_.get() + idx, piece.data(), first);
        if (piece.size() > first)
            std::memcpy(buf_.get(), piece.data() + first, piece.size() - first);
        at += piece.size();
    }
    if (padded > len) {
        size_t zidx = static_cast<size_t>(tail_ + len) & (cap_ - 1);
        size_t zn = padded - len;
        size_t zfirst = std::min(zn, cap_ - zidx);
        std::memset(buf_.get() + zidx, 0, zfirst);
        if (zn > zfirst) std::memset(buf_.get(), 0, zn - zfirst);
    }
    tail_ += padded;
    lens_[ftail_ % max_frames_] = static_cast<uint32_t>(padded);
    ftail_++;
    return true;
}

size_t VdeTxQueue::peek(mmsghdr* msgs, iovec* iov, size_t max) const {
    size_t n = std::min(max, frames());
    uint64_t pos = head_;
    for (size_t i = 0; i < n; i++) {
        size_t len = lens_[(fhead_ + i) % max_frames_];
        size_t idx = static_cast<size_t>(pos) & (cap_ - 1);
        size_t first = std::min(len, cap_ - idx);
        iovec* v = iov + 2 * i;
        v[0].iov_base = buf_.get() + idx;
        v[0].iov_len = first;
        size_t cnt = 1;
        if (len > first) {
            v[1].iov_base = buf_.get();
            v[1].iov_len = len - first;
            cnt = 2;
        }
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = v;
        msgs[i].msg_hdr.msg_iovlen = cnt;
        pos += len;
    }
    return n;
}

void VdeTxQueue::pop(size_t n) {
    n = std::min(n, frames());
    for (size_t i = 0; i < n; i++) {
        head_ += lens_[fhead_ % max_frames_];
        fhead_++;
    }
}

// ---------------------------------------------------------------- rx batch

VdeRxBatch::VdeRxBatch(size_t slot_size)
    : slot((slot_size + 63) & ~size_t{63}),
      buf(std::make_unique_for_overwrite<uint8_t[]>(slot * kRxBatch)) {
    for (size_t i = 0; i < kRxBatch; i++) {
        iov[i].iov_base = buf.get() + i * slot;
        iov[i].iov_len = slot;
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
}

// ---------------------------------------------------------------- client

VdeClient::VdeClient(VdeSwitch& owner, int ctl_fd, uid_t peer_uid, pid_t peer_pid,
                     uint64_t serial)
    : owner_(owner), ctl_fd_(ctl_fd), peer_uid_(peer_uid), peer_pid_(peer_pid), serial_(serial),
      handshake_timer_([this] {
          owner_.stats_.timeouts++;
          spdlog::warn("{}: no complete VDE request within {} s; closing it", name_,
                       kHandshakeMs / 1000);
          close_connection("handshake timed out");
      }) {
    name_ = "VDE client " + std::to_string(serial_) + " on " + owner_.dir_;
    if (peer_pid_ > 0) name_ += " (pid " + std::to_string(peer_pid_) + ")";
    data_io_.c = this;
    try {
        owner_.loop_.add(ctl_fd_, EPOLLIN, this);
    } catch (...) {
        close(ctl_fd_);
        throw;
    }
    owner_.loop_.arm(handshake_timer_, kHandshakeMs);
}

VdeClient::~VdeClient() {
    // The owner has made sure the loop no longer holds us (shut_down()).
    shut_down("destroyed");
}

uint32_t VdeClient::mtu() const { return owner_.mtu_; }

void VdeClient::defer_self() {
    defer_pending_ = true;
    owner_.loop_.defer(*this);
}

bool VdeClient::shut_down(const char* why) {
    if (ctl_fd_ < 0) return defer_pending_;
    owner_.loop_.cancel(handshake_timer_);
    if (data_fd_ >= 0) {
        owner_.sw_.detach(*this);
        owner_.loop_.remove(data_fd_, &data_io_);
        close(data_fd_);
        data_fd_ = -1;
        // Our file, unless something replaced it meanwhile.
        struct stat st {};
        if (lstat(data_path_.c_str(), &st) == 0 && st.st_dev == data_dev_ &&
            st.st_ino == data_ino_)
            unlink(data_path_.c_str());
        const auto& s = stats();
        spdlog::info("{} left ({}): rx {} frames, tx {} frames, {} tx dropped, {} rx dropped",
                     name_, why, s.rx_frames, s.tx_frames, s.tx_dropped, s.rx_dropped);
    } else {
        spdlog::debug("{} closed before its handshake ({})", name_, why);
    }
    owner_.loop_.remove(ctl_fd_, this);
    close(ctl_fd_);
    ctl_fd_ = -1;
    return defer_pending_;
}

void VdeClient::close_connection(const char* why) {
    if (ctl_fd_ < 0) return;
    shut_down(why);
    defer_self();  // on_closed runs from the loop, when no caller holds us
}

void VdeClient::run_deferred() {
    defer_pending_ = false;
    if (data_fd_ >= 0) flush();
    if (ctl_fd_ < 0 && !defer_pending_) {
        auto fn = std::move(on_closed_);
        if (fn) fn(*this);  // may destroy this object: the last thing we do
    }
}

void VdeClient::on_io(uint32_t events) {
    if (ctl_fd_ < 0) return;
    if (events & EPOLLIN) {
        on_ctl_readable();
        return;
    }
    if (events & (EPOLLERR | EPOLLHUP)) close_connection("control connection hung up");
}

void VdeClient::on_ctl_readable() {
    if (!is_port()) {
        ssize_t n = recv(ctl_fd_, ctl_buf_ + ctl_len_, sizeof ctl_buf_ - ctl_len_, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) {
            close_connection(n == 0 ? "closed before its request" : "control read error");
            return;
        }
        ctl_len_ += static_cast<size_t>(n);
        handshake();
        return;
    }
    // After the handshake nothing may arrive but the end of the stream.
    uint8_t scratch[256];
    ssize_t n = recv(ctl_fd_, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n == 0) {
        close_connection("the client closed its control connection");
        return;
    }
    if (n < 0) {
        close_connection("control connection error");
        return;
    }
    // A late tail of the description is tolerated, up to a request's size.
    ctl_after_ += static_cast<size_t>(n);
    if (ctl_len_ + ctl_after_ > kVdeMaxRequest) {
        owner_.stats_.bad_requests++;
        spdlog::warn("{} sent {} bytes on its control connection after its request; closing it",
                     name_, ctl_after_);
        close_connection("protocol error");
    }
}

void VdeClient::handshake() {
    VdeParse p = parse_vde_request(wire::Bytes(ctl_buf_, ctl_len_));
    if (p.status == VdeParse::need_more) return;
    if (p.status == VdeParse::bad) {
        owner_.stats_.bad_requests++;
        spdlog::warn("{}: bad VDE request: {}; closing it", name_, p.error);
        close_connection("bad request");
        return;
    }
    req_ = std::move(p.req);
    std::string why;
    if (!open_data_socket(why)) {
        owner_.stats_.bad_requests++;
        spdlog::warn("{}: {}; closing it", name_, why);
        close_connection("handshake failed");
        return;
    }
    owner_.loop_.cancel(handshake_timer_);
    owner_.stats_.ports++;
    name_ = "VDE port " + std::to_string(vde_port_) + " on " + owner_.dir_;
    if (peer_pid_ > 0) name_ += " (pid " + std::to_string(peer_pid_) + ")";
    if (owner_.client_mac_) set_mac_translation(*owner_.client_mac_);
    spdlog::info("{} connected as switch port {} (MTU {}{}): '{}', client socket {}{}", name_,
                 id(), owner_.mtu_,
                 xlat_ ? ", the LAN sees MAC " + xlat_->lan_mac().to_string() : std::string(),
                 req_.description, req_.path,
                 req_.port ? ", asked for port " + std::to_string(req_.port) + " (not honoured)"
                           : std::string());
}

bool VdeClient::open_data_socket(std::string& why) {
    // The client's socket must be its own: otherwise a client could have
    // usernet send frames into any socket usernet can write to.
    struct stat st {};
    if (lstat(req_.path.c_str(), &st) != 0) {
        why = "its data socket " + req_.path + " does not exist (" + errstr(errno) + ")";
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        why = "its data socket " + req_.path + " is not a socket";
        return false;
    }
    if (peer_uid_ != 0 && st.st_uid != peer_uid_) {
        why = "its data socket " + req_.path + " belongs to uid " + std::to_string(st.st_uid) +
              ", not to the client's uid " + std::to_string(peer_uid_);
        return false;
    }
    sockaddr_un peer;
    make_sockaddr(req_.path, peer);

    vde_port_ = owner_.free_vde_port();
    char name[32];
    std::snprintf(name, sizeof name, "/%03u.%llu", vde_port_,
                  static_cast<unsigned long long>(serial_ % 10'000'000'000ULL));
    data_path_ = owner_.dir_ + name;
    sockaddr_un self;
    make_sockaddr(data_path_, self);  // fits: checked for the longest name at start

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        why = "cannot create a datagram socket: " + errstr(errno);
        return false;
    }
    if (connect(fd, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) < 0) {
        why = "cannot connect to its data socket " + req_.path + ": " + errstr(errno);
        close(fd);
        return false;
    }
    // A file of that name can only be a leftover of ours.
    if (lstat(data_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(data_path_.c_str());
    mode_t old = umask(077);
    int r = bind(fd, reinterpret_cast<const sockaddr*>(&self), sizeof self);
    int e = errno;
    umask(old);
    if (r < 0) {
        why = "cannot bind " + data_path_ + ": " + errstr(e);
        close(fd);
        return false;
    }
    if (lstat(data_path_.c_str(), &st) == 0) {
        data_dev_ = st.st_dev;
        data_ino_ = st.st_ino;
    }
    set_socket_buffers(fd);
    ssize_t n = send(ctl_fd_, &self, sizeof self, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(sizeof self)) {
        why = "cannot answer its request: " + (n < 0 ? errstr(errno) : std::string("short write"));
        close(fd);
        unlink(data_path_.c_str());
        return false;
    }
    try {
        owner_.loop_.add(fd, EPOLLIN, &data_io_);
    } catch (const std::exception& ex) {
        why = std::string("cannot poll its data socket: ") + ex.what();
        close(fd);
        unlink(data_path_.c_str());
        return false;
    }
    data_fd_ = fd;
    txq_ = std::make_unique<VdeTxQueue>(kTxBytes, kTxFrames);
    owner_.sw_.attach(*this);
    return true;
}

void VdeClient::on_data(uint32_t events) {
    if (data_fd_ < 0) return;
    if (events & EPOLLOUT) flush();
    if (data_fd_ < 0 || !(events & (EPOLLIN | EPOLLERR))) return;
    VdeRxBatch& rx = owner_.rx_;
    int n = recvmmsg(data_fd_, rx.msgs, VdeRxBatch::kRxBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            stats().rx_dropped++;
            spdlog::debug("{}: recvmmsg: {}", name_, errstr(errno));
        }
        return;
    }
    for (int i = 0; i < n && data_fd_ >= 0; i++) {
        mmsghdr& m = rx.msgs[i];
        size_t len = m.msg_len;
        bool truncated = (m.msg_hdr.msg_flags & MSG_TRUNC) != 0;
        m.msg_hdr.msg_flags = 0;
        uint8_t* f = rx.buf.get() + static_cast<size_t>(i) * rx.slot;
        if (truncated) {
            // An IP packet that fits, followed by junk (QEMU's i82559er
            // sends 1514-byte frames in 2600-byte datagrams), goes on cut
            // to the packet; anything else longer than a slot is dropped.
            len = std::min(len, rx.slot);
            if (auto whole = wire::ip_frame_length(wire::Bytes(f, len))) {
                len = *whole;
                truncated = false;
            }
        }
        if (truncated || len < wire::kEthHeaderLen) {
            stats().rx_dropped++;
            spdlog::debug("{}: dropped a {}{}-byte datagram", name_, truncated ? "over " : "",
                          len);
            continue;
        }
        if (xlat_) {
            log_guest_mac(name_, id(), xlat_->to_lan(wire::MutBytes(f, len)), *xlat_);
        } else if (!mac_logged_) {
            wire::MacAddr src = wire::MacAddr::from(f + 6);
            if (!src.is_multicast() && !src.is_zero()) {
                mac_logged_ = true;
                spdlog::info("{}: guest MAC {}", name_, src.to_string());
            }
        }
        owner_.sw_.input(id(), wire::Bytes(f, len));
    }
}

void VdeClient::set_mac_translation(const wire::MacAddr& lan_mac) {
    xlat_ = std::make_unique<MacTranslator>(lan_mac);
}

void VdeClient::deliver(wire::Bytes frame, const sw::FrameMeta& meta) {
    MacTranslator::Out out =
        xlat_ ? xlat_->to_guest(frame, meta.off) : MacTranslator::Out{frame, {}};
    if (data_fd_ < 0 || !txq_->push(out.head, out.tail)) {
        lost_tx(1, frame.size());
        return;
    }
    if (!waiting_out_ && !defer_pending_) defer_self();
}

void VdeClient::flush() {
    mmsghdr msgs[kTxBatch];
    iovec iov[2 * kTxBatch];
    while (data_fd_ >= 0 && !txq_->empty()) {
        size_t cnt = txq_->peek(msgs, iov, kTxBatch);
        int n = sendmmsg(data_fd_, msgs, static_cast<unsigned>(cnt), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            txq_->pop(static_cast<size_t>(n));
            continue;
        }
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            if (!waiting_out_) {
                waiting_out_ = true;
                owner_.loop_.modify(data_fd_, EPOLLIN | EPOLLOUT, &data_io_);
            }
            return;
        }
        if (e == ECONNREFUSED || e == ENOTCONN || e == EPIPE) {
            lost_tx(txq_->frames());
            txq_->pop(txq_->frames());
            close_connection("its data socket is gone");
            return;
        }
        // This one frame cannot be sent (EMSGSIZE...): drop it, go on.
        lost_tx(1);
        spdlog::debug("{}: sendmmsg: {}", name_, errstr(e));
        txq_->pop(1);
    }
    if (waiting_out_ && data_fd_ >= 0) {
        waiting_out_ = false;
        owner_.loop_.modify(data_fd_, EPOLLIN, &data_io_);
    }
}

// ---------------------------------------------------------------- switch

VdeSwitch::VdeSwitch(core::EventLoop& loop, sw::Switch& sw, const std::string& dir,
                     uint32_t mtu)
    : loop_(loop), sw_(sw), mtu_(mtu),
      rx_(mtu + wire::kEthHeaderLen + 4 /* 802.1Q */ + 4 /* slack */) {
    if (dir.empty()) throw std::runtime_error("the VDE directory is empty");
    dir_ = absolute(dir);
    while (dir_.size() > 1 && dir_.ends_with('/')) dir_.pop_back();
    if (dir_.size() + kPortNameMax >= kVdeSunPathLen)
        throw std::runtime_error("the VDE directory " + dir_ + " is too long for socket names (at most " +
                                 std::to_string(kVdeSunPathLen - 1 - kPortNameMax) + " bytes)");
    ctl_path_ = dir_ + "/ctl";

    // A symbolic link to a directory is followed, as vde_switch -s does;
    // the ownership check below is the directory's.
    struct stat st {};
    if (stat(dir_.c_str(), &st) != 0) {
        if (errno != ENOENT)
            throw std::runtime_error("cannot use the VDE directory " + dir_ + ": " +
                                     errstr(errno));
        if (lstat(dir_.c_str(), &st) == 0)
            throw std::runtime_error("the VDE path " + dir_ +
                                     " is a symbolic link to nothing");
        // Owner only: the clients (run by the same user) bind in it.
        if (mkdir(dir_.c_str(), 0700) != 0)
            throw std::runtime_error("cannot create the VDE directory " + dir_ + ": " +
                                     errstr(errno));
        created_dir_ = true;
    } else if (!S_ISDIR(st.st_mode)) {
        throw std::runtime_error("the VDE path " + dir_ + " exists and is not a directory");
    } else if (st.st_uid != geteuid()) {
        throw std::runtime_error("the VDE directory " + dir_ + " belongs to uid " +
                                 std::to_string(st.st_uid) + ", not to usernet's uid " +
                                 std::to_string(geteuid()));
    }
    auto undo_dir = [this] {
        if (created_dir_) rmdir(dir_.c_str());
    };

    if (lstat(ctl_path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            undo_dir();
            throw std::runtime_error(ctl_path_ + " exists and is not a socket");
        }
        int live = probe_socket(ctl_path_, SOCK_STREAM);
        if (live != 0) {
            undo_dir();
            throw std::runtime_error(
                live > 0 ? ctl_path_ + " is in use by a running switch (vde_switch or usernet)"
                         : "cannot tell whether a switch answers on " + ctl_path_);
        }
        spdlog::info("removing the stale VDE switch {} (left by a switch that died)", ctl_path_);
        unlink(ctl_path_.c_str());
        remove_stale_ports();
    }

    sockaddr_un sa;
    make_sockaddr(ctl_path_, sa);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        undo_dir();
        throw std::runtime_error("cannot create a unix socket: " + errstr(errno));
    }
    mode_t old = umask(077);  // srwx------: our own user's clients only
    int r = bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    int e = errno;
    umask(old);
    if (r < 0) {
        close(fd_);
        undo_dir();
        throw std::runtime_error("cannot bind " + ctl_path_ + ": " + errstr(e));
    }
    if (lstat(ctl_path_.c_str(), &st) == 0) {
        ctl_dev_ = st.st_dev;
        ctl_ino_ = st.st_ino;
    }
    if (listen(fd_, 128) < 0) {
        e = errno;
        close(fd_);
        unlink(ctl_path_.c_str());
        undo_dir();
        throw std::runtime_error("cannot listen on " + ctl_path_ + ": " + errstr(e));
    }
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        unlink(ctl_path_.c_str());
        undo_dir();
        throw;
    }
    clients_.reserve(kMaxClients);
}

VdeSwitch::~VdeSwitch() {
    shut_down_all(clients_, "usernet is stopping");
    loop_.remove(fd_, this);
    close(fd_);
    struct stat st {};
    if (lstat(ctl_path_.c_str(), &st) == 0 && st.st_dev == ctl_dev_ && st.st_ino == ctl_ino_)
        unlink(ctl_path_.c_str());
    if (created_dir_ && rmdir(dir_.c_str()) != 0)
        spdlog::debug("leaving the VDE directory {}: {}", dir_, errstr(errno));
}

size_t VdeSwitch::port_count() const {
    return static_cast<size_t>(std::count_if(clients_.begin(), clients_.end(),
                                             [](const auto& c) { return c->is_port(); }));
}

unsigned VdeSwitch::free_vde_port() const {
    for (unsigned p = 1;; p++) {
        bool used = std::any_of(clients_.begin(), clients_.end(),
                                [p](const auto& c) { return c->is_port() && c->vde_port() == p; });
        if (!used) return p;
    }
}

// The port sockets of a switch that died with its ctl: ours by name, and
// nobody bound to them any more.
void VdeSwitch::remove_stale_ports() {
    DIR* d = opendir(dir_.c_str());
    if (!d) return;
    while (dirent* ent = readdir(d)) {
        if (!is_port_socket_name(ent->d_name)) continue;
        std::string path = dir_ + "/" + ent->d_name;
        struct stat st {};
        if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
            continue;
        if (probe_socket(path, SOCK_DGRAM) == 0) {
            spdlog::debug("removing the stale VDE port socket {}", path);
            unlink(path.c_str());
        }
    }
    closedir(d);
}

void VdeSwitch::on_io(uint32_t) { accept_clients(); }

void VdeSwitch::accept_clients() {
    acceptor_.accept_some(fd_, ctl_path_, [&](int fd, const sockaddr_storage& ) {
        if (clients_.size() >= kMaxClients) {
            stats_.refused++;
            spdlog::warn("refusing a VDE client on {}: already {} clients", dir_, kMaxClients);
            close(fd);
            return;
        }
        ucred cred{};
        socklen_t len = sizeof(cred);
        uid_t uid = static_cast<uid_t>(-1);
        pid_t pid = -1;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            uid = cred.uid;
            pid = cred.pid;
        }
        try {
            auto c = std::make_unique<VdeClient>(*this, fd, uid, pid, next_serial_++);
            c->set_on_closed([this](VdeClient& cl) { reap(cl); });
            clients_.push_back(std::move(c));
        } catch (const std::exception& ex) {
            spdlog::warn("cannot take a VDE client on {}: {}", dir_, ex.what());
            return;
        }
        stats_.accepted++;
    });
}

void VdeSwitch::reap(VdeClient& c) {
    auto it = std::find_if(clients_.begin(), clients_.end(),
                           [&](const auto& p) { return p.get() == &c; });
    if (it != clients_.end()) clients_.erase(it);  // destroys c
}

}  // namespace usernet::ports
