// The gateway's TFTP server: see tftp_server.hpp.
#include "gateway/tftp_server.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "gateway/gateway.hpp"
#include "gateway/log_format.hpp"
#include "wire/tftp.hpp"
#include "wire/udp.hpp"

namespace usernet::gw {

namespace {

int open_beneath(int root, const char* name) {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return static_cast<int>(syscall(SYS_openat2, root, name, &how, sizeof how));
}

// The option value as text, into buf.
std::string_view number(char* buf, size_t cap, uint64_t v) {
    auto r = std::to_chars(buf, buf + cap, v);
    return std::string_view(buf, static_cast<size_t>(r.ptr - buf));
}

}  // namespace

TftpServer::TftpServer(core::EventLoop& loop, Gateway& gw, const std::string& root)
    : loop_(loop), gw_(gw), root_(root), timer_([this] { on_timer(); }) {}

TftpServer::~TftpServer() {
    loop_.cancel(timer_);
    for (Transfer& t : transfers_)
        if (t.used) finish(t);
}

TftpServer::Transfer* TftpServer::find(const wire::IpAddr& client, uint16_t client_port) {
    for (Transfer& t : transfers_)
        if (t.used && t.client_port == client_port && t.client == client) return &t;
    return nullptr;
}

void TftpServer::handle(const wire::IpAddr& server, const wire::IpAddr& client,
                        uint16_t client_port, wire::Bytes msg, sw::PortId port) {
    const uint16_t op = wire::tftp_opcode(msg);
    Transfer* t = find(client, client_port);
    if (op == wire::tftpop::ack) {
        auto block = wire::tftp_ack_block(msg);
        if (!t || !block) {
            stats_.dropped_unknown++;
            return;
        }
        on_ack(*t, *block);
        return;
    }
    if (op == wire::tftpop::error) {
        if (!t) {
            stats_.dropped_unknown++;
            return;
        }
        auto e = wire::tftp_error(msg);
        spdlog::debug("tftp: {} port {} ended the transfer: error {} {}", client, client_port,
                      e ? e->code : 0, e ? e->message : std::string_view{});
        stats_.aborted++;
        finish(*t);
        return;
    }
    if (op != wire::tftpop::rrq && op != wire::tftpop::wrq) {
        stats_.dropped_malformed++;
        return;
    }
    // A request again from the same client port: its first answer was
    // lost, or it starts over. Either way the new request counts.
    if (t) finish(*t);
    if (op == wire::tftpop::wrq) {
        stats_.refused_write++;
        send_error(server, client, client_port, wire::tftperr::access,
                   "write requests are refused");
        return;
    }
    size_t of_port = 0;
    Transfer* free_slot = nullptr;
    for (Transfer& x : transfers_) {
        if (!x.used) {
            if (!free_slot) free_slot = &x;
        } else if (x.port == port) {
            of_port++;
        }
    }
    if (!free_slot || of_port >= kMaxPerPort) {
        stats_.refused_limit++;
        send_error(server, client, client_port, wire::tftperr::undefined,
                   "too many transfers at once; try again later");
        return;
    }
    start(*free_slot, server, client, client_port, msg, port);
}

void TftpServer::start(Transfer& t, const wire::IpAddr& server, const wire::IpAddr& client,
                       uint16_t client_port, wire::Bytes msg, sw::PortId port) {
    auto req = wire::TftpRequest::parse(msg);
    if (!req) {
        stats_.dropped_malformed++;
        send_error(server, client, client_port, wire::tftperr::illegal, "malformed request");
        return;
    }
    const bool netascii = wire::tftp_name_equals(req->mode(), "netascii");
    if (!netascii && !wire::tftp_name_equals(req->mode(), "octet")) {
        stats_.dropped_malformed++;
        send_error(server, client, client_port, wire::tftperr::illegal,
                   "only octet and netascii modes are served");
        return;
    }
    // The name below the root: leading slashes dropped (PXE ROMs send
    // "/pxelinux.0"); the kernel's RESOLVE_BENEATH refuses the rest.
    std::string_view name = req->filename();
    while (!name.empty() && name.front() == '/') name.remove_prefix(1);
    char path[wire::kTftpMaxName + 1];
    std::memcpy(path, name.data(), name.size());
    path[name.size()] = 0;
    // The root is looked up by its path for each request, as libslirp
    // does: a directory made after start-up, or deleted and made again by
    // a build, is served as it is now.
    int fd = -1;
    int err = EACCES;  // the root itself
    if (!name.empty()) {
        const int root = open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) {
            err = errno == ENOTDIR ? ENOENT : errno;
        } else {
            fd = open_beneath(root, path);
            if (fd < 0) err = errno;
            close(root);
        }
    }
    struct stat st {};
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
        err = EACCES;
    }
    if (fd < 0) {
        // EXDEV and ELOOP: the path leads out of the root.
        const bool missing = err == ENOENT || err == ENOTDIR;
        (missing ? stats_.refused_missing : stats_.refused_access)++;
        spdlog::debug("tftp: {} asked for {}: {}", client, req->filename(), std::strerror(err));
        send_error(server, client, client_port,
                   missing ? wire::tftperr::not_found : wire::tftperr::access,
                   missing ? "file not found" : "access violation");
        return;
    }
    stats_.requests++;
    t = Transfer{};
    t.used = true;
    active_++;
    t.server = server;
    t.client = client;
    t.client_port = client_port;
    t.port = port;
    t.fd = fd;
    t.netascii = netascii;

    // Options (RFC 2347): the ones we take go back in the OACK, with the
    // values we use; the others are left out, as the RFC says.
    std::array<wire::TftpOption, 4> acc{};
    size_t n = 0;
    char bufs[4][24];
    const uint32_t mtu = gw_.path_mtu(client);
    const uint32_t headers = (client.is_v4() ? 20 : 40) + 8 + 4;
    const uint32_t fits = mtu > headers + kMinBlksize ? mtu - headers : kMinBlksize;
    auto take = [&](std::string_view opt, uint64_t value) {
        acc[n] = {opt, number(bufs[n], sizeof bufs[n], value)};
        n++;
    };
    // An option given twice counts once, the first time (one value per
    // option in the OACK).
    auto taken = [&](std::string_view name) {
        for (size_t k = 0; k < n; k++)
            if (wire::tftp_name_equals(name, acc[k].name)) return true;
        return false;
    };
    for (size_t i = 0; i < req->option_count() && n < acc.size(); i++) {
        const wire::TftpOption& o = req->option(i);
        auto v = wire::tftp_decimal(o.value);
        if (!v || taken(o.name)) continue;
        if (wire::tftp_name_equals(o.name, "blksize") && *v >= kMinBlksize) {
            t.blksize = static_cast<uint32_t>(std::min<uint64_t>({*v, kMaxBlksize, fits}));
            take("blksize", t.blksize);
        } else if (wire::tftp_name_equals(o.name, "timeout") && *v >= 1 && *v <= 255) {
            t.timeout_ms = static_cast<core::Millis>(*v) * 1000;
            take("timeout", *v);
        } else if (wire::tftp_name_equals(o.name, "tsize") && !netascii) {
            take("tsize", static_cast<uint64_t>(st.st_size));
        } else if (wire::tftp_name_equals(o.name, "windowsize") && *v >= 1) {
            t.window = static_cast<uint16_t>(std::min<uint64_t>(*v, kMaxWindow));
            take("windowsize", t.window);
        }
    }
    spdlog::debug("tftp: {} port {} reads {} ({} bytes, {}, blksize {}, window {})", client,
                  client_port, req->filename(), st.st_size, netascii ? "netascii" : "octet",
                  t.blksize, t.window);
    if (n > 0) {
        t.oack_len = wire::tftp_build_oack(t.oack, acc.data(), n);
        t.oack_pending = t.oack_len > 0;
    }
    if (t.oack_pending) send_oack(t);
    else send_window(t);
    arm(t);
}

void TftpServer::on_ack(Transfer& t, uint16_t block) {
    if (t.oack_pending) {
        if (block != 0) return;  // nothing else is out
        t.oack_pending = false;
        t.retries = 0;
        send_window(t);
        arm(t);
        return;
    }
    // The block this ACK names: the one at or after `acked` with these low
    // 16 bits (numbers roll over at 65536).
    const uint64_t b = t.acked + static_cast<uint16_t>(block - static_cast<uint16_t>(t.acked));
    if (b <= t.acked || b > t.sent) return;  // a duplicate, or not sent yet
    t.acked = b;
    t.retries = 0;
    if (b == t.last) {
        stats_.completed++;
        spdlog::debug("tftp: {} port {} has the whole file", t.client, t.client_port);
        finish(t);
        return;
    }
    // An ACK short of the window's end: the client lost the block after
    // it; the window goes again from there.
    t.sent = b;
    send_window(t);
    arm(t);
}

void TftpServer::send_window(Transfer& t) {
    while (t.sent < t.acked + t.window && t.sent < t.last) {
        if (!send_block(t, t.sent + 1)) return;
        t.sent++;
    }
}

ssize_t TftpServer::read_block(Transfer& t, uint64_t block, uint8_t* out) {
    if (!t.netascii) {
        const uint64_t off = (block - 1) * t.blksize;
        size_t got = 0;
        while (got < t.blksize) {
            ssize_t r = pread(t.fd, out + got, t.blksize - got, static_cast<off_t>(off + got));
            if (r < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            if (r == 0) break;
            got += static_cast<size_t>(r);
        }
        return static_cast<ssize_t>(got);
    }
    // netascii: from the state at this block's start, convert until the
    // block is full or the file ends; remember the next block's state.
    const size_t slots = t.ascii.size();
    Ascii st = t.ascii[block % slots];
    size_t n = 0;
    if (st.has_pending) {
        out[n++] = st.pending;
        st.has_pending = false;
    }
    uint8_t in[512];
    while (n < t.blksize) {
        const size_t want = std::min<size_t>(sizeof in, t.blksize - n);
        ssize_t r = pread(t.fd, in, want, static_cast<off_t>(st.src));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        size_t i = 0;
        for (; i < static_cast<size_t>(r) && n < t.blksize; i++) {
            const uint8_t c = in[i];
            if (c != '\n' && c != '\r') {
                out[n++] = c;
                continue;
            }
            out[n++] = '\r';
            const uint8_t second = c == '\n' ? '\n' : '\0';
            if (n < t.blksize) {
                out[n++] = second;
            } else {
                st.pending = second;
                st.has_pending = true;
            }
        }
        st.src += i;
    }
    t.ascii[(block + 1) % slots] = st;
    return static_cast<ssize_t>(n);
}

bool TftpServer::send_block(Transfer& t, uint64_t block) {
    uint8_t* msg = gw_.tx_l4() + wire::kUdpHeaderLen;
    ssize_t n = read_block(t, block, msg + wire::kTftpHeaderLen);
    if (n < 0) {
        spdlog::debug("tftp: reading for {}: {}", t.client, std::strerror(errno));
        send_error(t.server, t.client, t.client_port, wire::tftperr::undefined, "read error");
        finish(t);
        return false;
    }
    if (static_cast<size_t>(n) < t.blksize) t.last = block;
    // Read again for a resend: the block's bytes land after the header
    // again, so the header goes last.
    wire::tftp_data_header(msg, static_cast<uint16_t>(block));
    if (block > t.high) {
        stats_.bytes_sent += static_cast<uint64_t>(n);
        t.high = block;
    }
    send_udp(t.server, t.client, t.client_port, wire::kTftpHeaderLen + static_cast<size_t>(n));
    return true;
}

void TftpServer::send_oack(Transfer& t) {
    uint8_t* msg = gw_.tx_l4() + wire::kUdpHeaderLen;
    std::memcpy(msg, t.oack.data(), t.oack_len);
    send_udp(t.server, t.client, t.client_port, t.oack_len);
}

void TftpServer::send_error(const wire::IpAddr& server, const wire::IpAddr& client,
                            uint16_t client_port, uint16_t code, std::string_view message) {
    uint8_t* msg = gw_.tx_l4() + wire::kUdpHeaderLen;
    size_t n = wire::tftp_build_error(wire::MutBytes(msg, 512), code, message);
    if (n) send_udp(server, client, client_port, n);
}

void TftpServer::send_udp(const wire::IpAddr& server, const wire::IpAddr& client,
                          uint16_t client_port, size_t len) {
    wire::build_udp(gw_.tx_l4(), server, client, wire::kTftpPort, client_port, len);
    gw_.send_ip(server, client, wire::ipproto::udp, wire::kUdpHeaderLen + len);
}

void TftpServer::finish(Transfer& t) {
    if (!t.used) return;
    if (t.fd >= 0) close(t.fd);
    t.fd = -1;
    t.used = false;
    active_--;
}

void TftpServer::drop_port(sw::PortId port) {
    for (Transfer& t : transfers_)
        if (t.used && t.port == port) finish(t);
}

void TftpServer::arm(Transfer& t) {
    if (!t.used) return;
    t.deadline = loop_.now() + t.timeout_ms;
    if (!timer_.armed() || t.deadline < timer_.deadline()) loop_.arm_at(timer_, t.deadline);
}

void TftpServer::on_timer() {
    const core::Millis now = loop_.now();
    for (Transfer& t : transfers_) {
        if (!t.used || t.deadline > now) continue;
        if (++t.retries > kMaxRetries) {
            stats_.timed_out++;
            spdlog::debug("tftp: {} port {} stopped answering", t.client, t.client_port);
            finish(t);
            continue;
        }
        stats_.retransmits++;
        if (t.oack_pending) {
            send_oack(t);
        } else {
            t.sent = t.acked;
            send_window(t);
        }
        arm(t);
    }
    rearm();
}

void TftpServer::rearm() {
    core::Millis next = 0;
    for (const Transfer& t : transfers_)
        if (t.used && (next == 0 || t.deadline < next)) next = t.deadline;
    if (next) loop_.arm_at(timer_, next);
    else loop_.cancel(timer_);
}

}  // namespace usernet::gw
