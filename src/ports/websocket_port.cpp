// The WebSocket attachment (see the header for the theory of operation).
#include "ports/websocket_port.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <spdlog/spdlog.h>
#include <wslay/wslay.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/sockaddr.hpp"
#include "wire/addr.hpp"
#include "wire/ethernet.hpp"

namespace usernet::ports {
namespace {

constexpr size_t kRxCapacity = 64 * 1024;
constexpr size_t kOutCapacity = 256 * 1024;
constexpr std::string_view kWsGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// RFC 7230 tchar.
bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A comma-separated header list contains `token` (ASCII case-insensitive).
bool list_has(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view item = trim(list.substr(0, comma));
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

WsHandshake fail(uint16_t status, std::string reason) {
    WsHandshake h;
    h.status = status;
    h.reason = std::move(reason);
    return h;
}

const char* status_text(uint16_t status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

std::string errstr(int e) { return std::strerror(e); }

// ---- wslay trampolines
WsClient* self(void* user) { return static_cast<WsClient*>(user); }

ssize_t cb_recv(wslay_event_context_ptr, uint8_t* buf, size_t len, int, void* user) {
    return self(user)->wslay_recv(buf, len);
}
ssize_t cb_send(wslay_event_context_ptr, const uint8_t* data, size_t len, int, void* user) {
    return self(user)->wslay_send(data, len);
}
void cb_frame_start(wslay_event_context_ptr, const wslay_event_on_frame_recv_start_arg* arg,
                    void* user) {
    self(user)->wslay_frame_start(arg->opcode, arg->fin);
}
void cb_frame_chunk(wslay_event_context_ptr, const wslay_event_on_frame_recv_chunk_arg* arg,
                    void* user) {
    self(user)->wslay_frame_chunk(arg->data, arg->data_length);
}
void cb_frame_end(wslay_event_context_ptr, void* user) { self(user)->wslay_frame_end(); }

}  // namespace

// ---------------------------------------------------------------- handshake

size_t ws_request_head_length(std::string_view buf) {
    // The first empty line: "\r\n\r\n", or "\n\n" (RFC 7230 3.5 lets a
    // server accept a bare LF).
    for (size_t i = 0; i < buf.size(); i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

bool ws_key_valid(std::string_view key) {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
    for (size_t i = 0; i < 21; i++)
        if (kAlphabet.find(key[i]) == std::string_view::npos) return false;
    // 16 bytes = 128 bits: the 22nd character carries 2 bits, the rest zero.
    return std::string_view("AQgw").find(key[21]) != std::string_view::npos;
}

std::string ws_accept_key(std::string_view key) {
    sha1_ctx ctx;
    sha1_init(&ctx);
    sha1_update(&ctx, key.size(), reinterpret_cast<const uint8_t*>(key.data()));
    sha1_update(&ctx, kWsGuid.size(), reinterpret_cast<const uint8_t*>(kWsGuid.data()));
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_digest(&ctx, sizeof(digest), digest);
    char out[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE)];
    base64_encode_raw(out, sizeof(digest), digest);
    return std::string(out, sizeof(out));
}

bool ws_origin_is_local(std::string_view origin) {
    const size_t sep = origin.find("://");
    if (sep == std::string_view::npos) return false;
    std::string_view host = origin.substr(sep + 3);
    if (host.ends_with('/')) host.remove_suffix(1);
    if (host.starts_with('[')) {
        const size_t close = host.find(']');
        return close != std::string_view::npos && host.substr(1, close - 1) == "::1" &&
               (close + 1 == host.size() || host[close + 1] == ':');
    }
    if (const size_t colon = host.find(':'); colon != std::string_view::npos)
        host = host.substr(0, colon);
    if (iequals(host, "localhost")) return true;
    constexpr std::string_view kLocal = ".localhost";
    if (host.size() > kLocal.size() && iequals(host.substr(host.size() - kLocal.size()), kLocal))
        return true;
    in_addr a{};
    const std::string h(host);
    return inet_pton(AF_INET, h.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool ws_origin_allowed(std::string_view origin, const std::vector<std::string>& allowed) {
    if (allowed.empty()) return origin.empty() || ws_origin_is_local(origin);
    if (origin.ends_with('/')) origin.remove_suffix(1);
    for (std::string_view a : allowed) {
        if (a == "*") return true;
        if (a.ends_with('/')) a.remove_suffix(1);
        if (!origin.empty() && iequals(origin, a)) return true;
    }
    return false;
}

WsHandshake ws_check_handshake(std::string_view head, const std::vector<std::string>& origins) {
    // Lines, without their CR.
    auto next_line = [&head](std::string_view& line) {
        size_t nl = head.find('\n');
        if (nl == std::string_view::npos) {
            line = head;
            head = {};
        } else {
            line = head.substr(0, nl);
            head.remove_prefix(nl + 1);
        }
        if (line.ends_with('\r')) line.remove_suffix(1);
    };

    std::string_view request;
    next_line(request);
    // METHOD SP TARGET SP HTTP/1.x
    size_t sp1 = request.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : request.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
        request.find(' ', sp2 + 1) != std::string_view::npos)
        return fail(400, "malformed request line");
    std::string_view method = request.substr(0, sp1);
    std::string_view target = request.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = request.substr(sp2 + 1);
    if (method.empty() || !std::all_of(method.begin(), method.end(), is_tchar))
        return fail(400, "malformed request line");
    if (version.size() != 8 || !version.starts_with("HTTP/1.") || version[7] < '1' ||
        version[7] > '9')
        return fail(400, "not HTTP/1.1");
    if (target.empty() || target.front() != '/' ||
        std::any_of(target.begin(), target.end(),
                    [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; }))
        return fail(400, "malformed request target");

    WsHandshake hs;
    size_t n_headers = 0, n_host = 0, n_key = 0, n_version = 0, n_origin = 0;
    bool upgrade = false, connection = false;
    std::string_view key, ws_version, origin;
    std::string_view line;
    while (!head.empty()) {
        next_line(line);
        if (line.empty()) break;  // the blank line ending the head
        if (line.front() == ' ' || line.front() == '\t')
            return fail(400, "folded header line");
        if (++n_headers > kWsMaxHeaders) return fail(431, "too many header lines");
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return fail(400, "malformed header line");
        std::string_view name = line.substr(0, colon);
        if (!std::all_of(name.begin(), name.end(), is_tchar))
            return fail(400, "malformed header name");
        std::string_view value = trim(line.substr(colon + 1));
        if (std::any_of(value.begin(), value.end(), [](char c) {
                return (static_cast<unsigned char>(c) < ' ' && c != '\t') || c == 0x7f;
            }))
            return fail(400, "control character in a header");
        if (iequals(name, "host")) {
            n_host++;
        } else if (iequals(name, "upgrade")) {
            upgrade = upgrade || list_has(value, "websocket");
        } else if (iequals(name, "connection")) {
            connection = connection || list_has(value, "upgrade");
        } else if (iequals(name, "sec-websocket-key")) {
            n_key++;
            key = value;
        } else if (iequals(name, "sec-websocket-version")) {
            n_version++;
            ws_version = value;
        } else if (iequals(name, "origin")) {
            n_origin++;
            origin = value;
        } else if (iequals(name, "x-forwarded-for") || iequals(name, "x-real-ip")) {
            // Logged only: keep what an address list can hold.
            std::string f;
            for (char c : value.substr(0, 100))
                if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                    c == '.' || c == ':' || c == ',' || c == ' ')
                    f += c;
            if (hs.forwarded.empty()) hs.forwarded = f;
        }
    }
    if (method != "GET") return fail(405, "method is not GET");
    if (!upgrade || !connection)
        return fail(426, "not a WebSocket upgrade (no Upgrade: websocket and Connection: Upgrade)");
    if (n_version != 1 || ws_version != "13")
        return fail(426, "Sec-WebSocket-Version is not 13");
    if (n_host != 1) return fail(400, "no Host header, or more than one");
    if (n_key != 1 || !ws_key_valid(key)) return fail(400, "bad or missing Sec-WebSocket-Key");
    if (n_origin > 1) return fail(400, "more than one Origin header");
    if (!ws_origin_allowed(n_origin ? origin : std::string_view(), origins)) {
        if (!n_origin) return fail(403, "no Origin header, and an allow-list is configured");
        // Named in the log, so that a typo in origin= shows; printable
        // ASCII only, and not much of it.
        std::string shown;
        for (char c : origin.substr(0, 100)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
        if (origins.empty())
            return fail(403, "Origin " + shown +
                                 " is a page of another host (without origin=, only pages "
                                 "of this host may connect): add ,origin=" + shown +
                                 " to --websocket, or ,origin=* for any page");
        return fail(403, "Origin " + shown + " not in the allow-list");
    }
    hs.status = 101;
    hs.key = key;
    hs.origin = origin;
    hs.target = target;
    return hs;
}

std::string ws_http_response(const WsHandshake& hs) {
    if (hs.status == 101)
        return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
               "Upgrade\r\nSec-WebSocket-Accept: " +
               ws_accept_key(hs.key) + "\r\n\r\n";
    std::string body = "usernet: " + hs.reason + ".\n";
    if (hs.status == 426)
        body += "This is usernet's WebSocket attachment: give its ws:// URL to v86 as "
                "network_relay_url.\n";
    std::string r = "HTTP/1.1 " + std::to_string(hs.status) + " " + status_text(hs.status) +
                    "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n";
    if (hs.status == 426) r += "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    if (hs.status == 405) r += "Allow: GET\r\n";
    return r + "\r\n" + body;
}

// ---------------------------------------------------------------- client

WsClient::WsClient(core::EventLoop& loop, sw::Switch& sw, int fd, std::string name,
                   const WsConfig& cfg, std::function<void(WsClient&)> on_closed)
    : loop_(loop), sw_(sw), fd_(fd), name_(std::move(name)), cfg_(cfg),
      on_closed_(std::move(on_closed)),
      max_frame_(std::min<size_t>(kWsMaxFrame, size_t{cfg.mtu} + wire::kEthHeaderLen + 4)),
      frames_(cfg.limits.rx_frames_burst, cfg.limits.rx_frames_per_sec),
      bytes_(cfg.limits.rx_bytes_burst, cfg.limits.rx_bytes_per_sec),
      pings_(cfg.limits.rx_pings_burst, cfg.limits.rx_pings_per_sec) {
    rx_ = std::make_unique_for_overwrite<uint8_t[]>(kRxCapacity);
    msg_ = std::make_unique_for_overwrite<uint8_t[]>(max_frame_);
    out_ = std::make_unique_for_overwrite<uint8_t[]>(kOutCapacity);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
    last_rx_ = loop_.now();
    loop_.arm(handshake_timer_, cfg_.limits.handshake_timeout_ms);
}

WsClient::~WsClient() {
    // The owner has made sure the loop no longer holds us (shut_down()).
    shut_down("destroyed");
    if (ws_) wslay_event_context_free(ws_);
}

void WsClient::defer_self() {
    defer_pending_ = true;
    loop_.defer(*this);
}

bool WsClient::shut_down(const char* why) {
    if (fd_ >= 0) {
        if (attached_) {
            sw_.detach(*this);
            attached_ = false;
            const auto& s = stats();
            spdlog::info("{} closed ({}): rx {} frames ({} dropped as malformed or over a "
                         "limit), tx {} frames, {} tx dropped, held back {} times for its rate "
                         "limit",
                         name_, why, s.rx_frames, s.rx_dropped, s.tx_frames, s.tx_dropped,
                         ws_stats_.rate_paused);
        } else {
            spdlog::debug("{} closed ({})", name_, why);
        }
        loop_.remove(fd_, this);
        close(fd_);
        fd_ = -1;
        state_ = State::closed;
        loop_.cancel(handshake_timer_);
        loop_.cancel(ping_timer_);
        loop_.cancel(rx_timer_);
    }
    return defer_pending_;
}

void WsClient::close_connection(const char* why) {
    if (fd_ < 0) return;
    shut_down(why);
    defer_self();
}

void WsClient::send_going_away() {
    if (state_ != State::open || !ws_ || fd_ < 0) return;
    static constexpr char kWhy[] = "usernet is stopping";
    wslay_event_queue_close(ws_, WSLAY_CODE_GOING_AWAY, reinterpret_cast<const uint8_t*>(kWhy),
                            sizeof kWhy - 1);
    for (int i = 0; i < 4 && wslay_event_want_write(ws_); i++) {
        if (out_start_ > 0) {
            std::memmove(out_.get(), out_.get() + out_start_, out_end_ - out_start_);
            out_end_ -= out_start_;
            out_start_ = 0;
        }
        if (wslay_event_send(ws_) != 0) break;
        if (out_end_ == kOutCapacity) break;
    }
    if (out_end_ > out_start_)
        (void)!send(fd_, out_.get() + out_start_, out_end_ - out_start_, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void WsClient::run_deferred() {
    defer_pending_ = false;
    if (fd_ >= 0) flush();
    if (fd_ < 0 && !defer_pending_) {
        auto fn = std::move(on_closed_);
        if (fn) fn(*this);  // may destroy this
    }
}

void WsClient::on_handshake_timeout() {
    if (state_ == State::handshake) {
        ws_stats_.handshakes_refused++;
        close_connection("no complete handshake in time");
    } else if (close_after_flush_) {
        close_connection("did not take the HTTP error");
    }
}

void WsClient::on_ping_timer() {
    if (state_ == State::closing) {  // our close could not be sent in all that time
        close_connection("did not take the close");
        return;
    }
    if (state_ != State::open || !ws_) return;
    if (loop_.now() - last_rx_ >= cfg_.limits.idle_timeout_ms) {
        close_connection("silent: no answer to pings");
        return;
    }
    static constexpr uint8_t kPing[] = {'u', 's', 'e', 'r', 'n', 'e', 't'};
    wslay_event_msg m{WSLAY_PING, kPing, sizeof(kPing)};
    wslay_event_queue_msg(ws_, &m);
    if (!defer_pending_ && !waiting_out_) defer_self();
    loop_.arm(ping_timer_, cfg_.limits.ping_interval_ms);
}

void WsClient::queue_out(std::string_view bytes) {
    if (out_start_ > 0 && out_start_ == out_end_) out_start_ = out_end_ = 0;
    size_t n = std::min(bytes.size(), kOutCapacity - out_end_);
    std::memcpy(out_.get() + out_end_, bytes.data(), n);
    out_end_ += n;
}

void WsClient::on_io(uint32_t events) {
    if (fd_ < 0) return;
    if (events & EPOLLIN) on_readable();
    if (fd_ >= 0 && (events & EPOLLOUT)) flush();
    if (fd_ >= 0 && !(events & EPOLLIN) && (events & (EPOLLERR | EPOLLHUP)))
        close_connection("hang-up");
}

// Over the frame or byte rate (the buckets in debt): stop reading until
// the debt is repaid. True if paused.
bool WsClient::pause_if_over_rate() {
    core::Millis now = loop_.now();
    core::Millis wait = std::max(frames_.wait_ms(now), bytes_.wait_ms(now));
    if (wait == 0) return false;
    if (!rx_paused_) {
        rx_paused_ = true;
        ws_stats_.rate_paused++;
        set_interest();
    }
    loop_.arm(rx_timer_, wait);
    return true;
}

void WsClient::resume_reading() {
    if (fd_ < 0 || !rx_paused_) return;
    rx_paused_ = false;
    set_interest();
    on_readable();
}

void WsClient::set_interest() {
    uint32_t ev = (rx_paused_ ? 0u : uint32_t{EPOLLIN}) | (waiting_out_ ? uint32_t{EPOLLOUT} : 0u);
    loop_.modify(fd_, ev, this);
}

void WsClient::on_readable() {
    for (int i = 0; i < kWsMaxReadsPerWakeup && fd_ >= 0; i++) {
        size_t room;
        if (state_ == State::handshake) {
            room = kWsMaxRequestHead - rx_end_;
        } else {
            if (rx_paused_ || pause_if_over_rate()) return;
            if (rx_start_ == rx_end_) rx_start_ = rx_end_ = 0;
            if (rx_end_ == kRxCapacity) {
                // wslay takes everything while it reads; it stopped reading
                // (closing): what the peer still sends is not wanted.
                rx_start_ = rx_end_ = 0;
            }
            room = kRxCapacity - rx_end_;
        }
        ssize_t n = recv(fd_, rx_.get() + rx_end_, room, MSG_DONTWAIT);
        if (n == 0) {
            close_connection(state_ == State::handshake ? "disconnected during the handshake"
                                                        : "peer disconnected");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            close_connection(std::strerror(errno));
            return;
        }
        rx_end_ += static_cast<size_t>(n);
        last_rx_ = loop_.now();
        if (state_ == State::handshake) {
            handle_handshake();
        } else if (ws_) {
            if (!wslay_event_get_read_enabled(ws_)) rx_start_ = rx_end_;  // discard
            else pump_wslay();
        } else {
            rx_start_ = rx_end_;  // after a refused handshake: discard
        }
        if (static_cast<size_t>(n) < room) return;
    }
}

void WsClient::handle_handshake() {
    std::string_view buf(reinterpret_cast<const char*>(rx_.get()), rx_end_);
    size_t len = ws_request_head_length(buf);
    if (len == 0) {
        if (rx_end_ >= kWsMaxRequestHead)
            refuse(fail(431, "request head over " + std::to_string(kWsMaxRequestHead) +
                                 " bytes"));
        return;
    }
    WsHandshake hs = ws_check_handshake(buf.substr(0, len), cfg_.origins);
    if (hs.status != 101) {
        refuse(hs);
        return;
    }
    rx_start_ = len;
    start_session(hs);
}

void WsClient::refuse(const WsHandshake& hs) {
    ws_stats_.handshakes_refused++;
    spdlog::info("{}: refused with {}: {}", name_, hs.status, hs.reason);
    state_ = State::closing;  // the handshake timer still ends it if the answer cannot go
    rx_start_ = rx_end_ = 0;
    queue_out(ws_http_response(hs));
    close_after_flush_ = true;
    flush();
}

void WsClient::start_session(const WsHandshake& hs) {
    wslay_event_callbacks cbs{};
    cbs.recv_callback = cb_recv;
    cbs.send_callback = cb_send;
    cbs.on_frame_recv_start_callback = cb_frame_start;
    cbs.on_frame_recv_chunk_callback = cb_frame_chunk;
    cbs.on_frame_recv_end_callback = cb_frame_end;
    if (wslay_event_context_server_init(&ws_, &cbs, this) != 0) {
        ws_ = nullptr;
        close_connection("out of memory");
        return;
    }
    wslay_event_config_set_no_buffering(ws_, 1);
    wslay_event_config_set_max_recv_msg_length(ws_, max_frame_);
    queue_out(ws_http_response(hs));
    loop_.cancel(handshake_timer_);
    state_ = State::open;
    if (!hs.forwarded.empty()) name_ += " (forwarded for " + hs.forwarded + ")";
    sw_.attach(*this);
    attached_ = true;
    spdlog::info("{} connected as switch port {} (origin {}, path {}, MTU {})", name_, id(),
                 hs.origin.empty() ? "none" : hs.origin, hs.target, cfg_.mtu);
    loop_.arm(ping_timer_, cfg_.limits.ping_interval_ms);
    // Frames the client sent right behind its request are in rx_ already.
    if (rx_start_ < rx_end_) pump_wslay();
    else flush();
}

void WsClient::pump_wslay() {
    if (wslay_event_recv(ws_) != 0) {
        // A frame wslay's frame layer refused (or out of memory): it has
        // queued a close; send that (and our 101 if still queued), then go.
        flush();
        close_connection("WebSocket protocol error");
        return;
    }
    if (fd_ < 0) return;
    // Pongs and closes wslay queued by itself are not capped by deliver():
    // a client that sends pings and never reads is cut off here.
    if (wslay_event_get_queued_msg_length(ws_) > 2 * cfg_.limits.tx_queue_bytes) {
        close_connection("not reading what it is sent");
        return;
    }
    flush();
}

ssize_t WsClient::wslay_recv(uint8_t* buf, size_t len) {
    size_t avail = rx_end_ - rx_start_;
    if (avail == 0) {
        wslay_event_set_error(ws_, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = std::min(avail, len);
    std::memcpy(buf, rx_.get() + rx_start_, n);
    rx_start_ += n;
    return static_cast<ssize_t>(n);
}

ssize_t WsClient::wslay_send(const uint8_t* data, size_t len) {
    size_t room = kOutCapacity - out_end_;
    if (room == 0) {
        wslay_event_set_error(ws_, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = std::min(room, len);
    std::memcpy(out_.get() + out_end_, data, n);
    out_end_ += n;
    return static_cast<ssize_t>(n);
}

void WsClient::wslay_frame_start(uint8_t opcode, uint8_t fin) {
    // Every frame counts against the client's rate, control frames and
    // empty continuations included: they cost as much to take as a frame
    // of data.
    frames_.charge(loop_.now(), 1);
    frame_fin_ = fin != 0;
    frame_data_ = opcode < 0x8;
    if (opcode == WSLAY_PING && !pings_.take(loop_.now())) {
        ws_stats_.ping_flood_closed++;
        fail_session(WSLAY_CODE_POLICY_VIOLATION, "sent pings over the rate");
        return;
    }
    if (!frame_data_) return;  // ping, pong, close: wslay's
    if (opcode == WSLAY_TEXT_FRAME) {
        ws_stats_.text_closed++;
        msg_active_ = false;
        msg_discard_ = true;
        fail_session(WSLAY_CODE_UNSUPPORTED_DATA, "sent a text message (binary only)");
    } else if (opcode == WSLAY_BINARY_FRAME) {
        msg_active_ = true;
        msg_discard_ = false;
        msg_len_ = 0;
    }
    // WSLAY_CONTINUATION_FRAME: the message goes on (wslay checked there
    // is one).
}

void WsClient::wslay_frame_chunk(const uint8_t* data, size_t len) {
    bytes_.charge(loop_.now(), static_cast<uint32_t>(len));
    if (!frame_data_ || !msg_active_ || msg_discard_ || len == 0) return;
    if (len > max_frame_ - msg_len_) {
        ws_stats_.too_big_closed++;
        msg_discard_ = true;
        fail_session(WSLAY_CODE_MESSAGE_TOO_BIG, "sent a message larger than a frame");
        return;
    }
    std::memcpy(msg_.get() + msg_len_, data, len);
    msg_len_ += len;
}

void WsClient::wslay_frame_end() {
    if (!frame_data_ || !frame_fin_) return;
    if (msg_active_ && !msg_discard_) message_done();
    msg_active_ = false;
    msg_discard_ = false;
    msg_len_ = 0;
}

void WsClient::message_done() {
    if (!mac_logged_ && msg_len_ >= wire::kEthHeaderLen) {
        mac_logged_ = true;
        spdlog::info("{} (switch port {}): guest MAC {}", name_, id(),
                     wire::MacAddr::from(msg_.get() + 6).to_string());
    }
    sw_.input(id(), wire::Bytes(msg_.get(), msg_len_));
}

void WsClient::fail_session(uint16_t code, const char* why) {
    spdlog::info("{} {}: closing it", name_, why);
    const auto* reason = reinterpret_cast<const uint8_t*>(why);
    wslay_event_queue_close(ws_, code, reason, std::min<size_t>(std::strlen(why), 120));
    wslay_event_shutdown_read(ws_);
    state_ = State::closing;
}

size_t WsClient::tx_room() const {
    if (state_ != State::open || !ws_) return 0;
    size_t queued = wslay_event_get_queued_msg_length(ws_) + (out_end_ - out_start_);
    return queued < cfg_.limits.tx_queue_bytes ? cfg_.limits.tx_queue_bytes - queued : 0;
}

void WsClient::deliver(wire::Bytes frame, const sw::FrameMeta&) {
    if (state_ != State::open || !ws_ || frame.empty() || frame.size() > kWsMaxFrame) {
        lost_tx(1, frame.size());
        return;
    }
    size_t len = std::max(frame.size(), wire::kEthMinFrame);
    size_t queued = wslay_event_get_queued_msg_length(ws_) + (out_end_ - out_start_);
    if (queued + len > cfg_.limits.tx_queue_bytes) {
        ws_stats_.tx_full_dropped++;
        lost_tx(1, frame.size());
        return;
    }
    uint8_t padded[wire::kEthMinFrame];
    const uint8_t* data = frame.data();
    if (frame.size() < wire::kEthMinFrame) {
        std::memcpy(padded, frame.data(), frame.size());
        std::memset(padded + frame.size(), 0, sizeof(padded) - frame.size());
        data = padded;
    }
    wslay_event_msg m{WSLAY_BINARY_FRAME, data, len};
    if (wslay_event_queue_msg(ws_, &m) != 0) {
        lost_tx(1, frame.size());
        return;
    }
    if (!waiting_out_ && !defer_pending_) defer_self();
}

void WsClient::flush() {
    while (fd_ >= 0) {
        if (ws_ && wslay_event_want_write(ws_)) {
            if (out_start_ > 0) {
                std::memmove(out_.get(), out_.get() + out_start_, out_end_ - out_start_);
                out_end_ -= out_start_;
                out_start_ = 0;
            }
            if (wslay_event_send(ws_) != 0) {
                close_connection("WebSocket send error");
                return;
            }
        }
        if (out_start_ == out_end_) break;
        ssize_t n = send(fd_, out_.get() + out_start_, out_end_ - out_start_,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            out_start_ += static_cast<size_t>(n);
            if (out_start_ == out_end_) out_start_ = out_end_ = 0;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!waiting_out_) {
                waiting_out_ = true;
                set_interest();
            }
            return;
        }
        close_connection(n < 0 ? std::strerror(errno) : "send returned 0");
        return;
    }
    if (fd_ < 0) return;
    if (waiting_out_) {
        waiting_out_ = false;
        set_interest();
    }
    if (close_after_flush_) {
        close_connection("handshake refused");
        return;
    }
    // Both closes exchanged, or ours sent after a failure: done.
    if (ws_ && !wslay_event_want_read(ws_) && !wslay_event_want_write(ws_)) {
        uint16_t code = wslay_event_get_close_received(ws_)
                            ? wslay_event_get_status_code_received(ws_)
                            : wslay_event_get_status_code_sent(ws_);
        std::string why = "WebSocket close " + std::to_string(code);
        close_connection(why.c_str());
    }
}

// ---------------------------------------------------------------- listener

WsListener::WsListener(core::EventLoop& loop, sw::Switch& sw, std::string host, uint16_t port,
                       WsConfig cfg)
    : loop_(loop), sw_(sw), host_(std::move(host)), port_(port), cfg_(std::move(cfg)) {
    auto addr = wire::IpAddr::parse(host_);
    if (!addr) throw std::runtime_error("'" + host_ + "' is not an IP address");
    sockaddr_storage ss = core::to_sockaddr(*addr, port_);
    const socklen_t sl = core::sockaddr_len(ss);
    fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("cannot create a TCP socket: " + errstr(errno));
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&ss), sl) < 0 || listen(fd_, 128) < 0) {
        int e = errno;
        close(fd_);
        throw std::runtime_error("cannot listen for WebSocket clients on " + cfg_.name + ": " +
                                 errstr(e));
    }
    if (port_ == 0) {  // an ephemeral port: find out which
        sockaddr_storage got{};
        socklen_t gl = sizeof(got);
        if (getsockname(fd_, reinterpret_cast<sockaddr*>(&got), &gl) == 0)
            port_ = ntohs(got.ss_family == AF_INET
                              ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                              : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
    }
    try {
        loop_.add(fd_, EPOLLIN, this);
    } catch (...) {
        close(fd_);
        throw;
    }
    clients_.reserve(cfg_.limits.max_clients);
}

WsListener::~WsListener() {
    for (auto& c : clients_) c->send_going_away();
    shut_down_all(clients_, "usernet is stopping");
    loop_.remove(fd_, this);
    close(fd_);
}

std::string WsListener::url() const {
    bool v6 = host_.find(':') != std::string::npos;
    // A wildcard means this host (as --listen's QEMU options say): a browser
    // elsewhere uses this host's name instead.
    std::string host = host_;
    if (auto a = wire::IpAddr::parse(host_); a && a->is_unspecified()) host = v6 ? "::1" : "127.0.0.1";
    return "ws://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port_) + "/";
}

void WsListener::on_io(uint32_t) { accept_clients(); }

void WsListener::accept_clients() {
    acceptor_.accept_some(fd_, cfg_.name, [&](int fd, const sockaddr_storage& peer) {
        char host[INET6_ADDRSTRLEN] = "?";
        uint16_t pport = 0;
        if (peer.ss_family == AF_INET) {
            const auto* s4 = reinterpret_cast<const sockaddr_in*>(&peer);
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
            pport = ntohs(s4->sin_port);
        } else if (peer.ss_family == AF_INET6) {
            const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&peer);
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
            pport = ntohs(s6->sin6_port);
        }
        std::string peer_name = peer.ss_family == AF_INET6
                                    ? "[" + std::string(host) + "]:" + std::to_string(pport)
                                    : std::string(host) + ":" + std::to_string(pport);
        size_t live = 0, handshaking = 0;
        WsClient* oldest_waiting = nullptr;  // clients_ is in order of arrival
        for (const auto& c : clients_) {
            if (c->closed()) continue;
            live++;
            if (c->state() == WsClient::State::handshake) {
                handshaking++;
                if (!oldest_waiting) oldest_waiting = c.get();
            }
        }
        if (oldest_waiting &&
            (handshaking >= cfg_.limits.max_handshaking || live >= cfg_.limits.max_clients)) {
            oldest_waiting->close_connection("made room for a newer connection: no handshake yet");
            live--;
        }
        if (live >= cfg_.limits.max_clients) {
            refused_++;
            spdlog::warn("refusing WebSocket client {} on {}: already {} clients", peer_name,
                         cfg_.name, cfg_.limits.max_clients);
            WsHandshake busy;
            busy.status = 503;
            busy.reason = "too many clients (" + std::to_string(cfg_.limits.max_clients) + ")";
            std::string r = ws_http_response(busy);
            (void)!send(fd, r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            return;
        }
        std::string name = "websocket client " + std::to_string(next_client_++) + " from " +
                           peer_name + " on " + cfg_.name;
        try {
            clients_.push_back(std::make_unique<WsClient>(loop_, sw_, fd, name, cfg_,
                                                          [this](WsClient& c) { reap(c); }));
        } catch (const std::exception& ex) {
            spdlog::warn("cannot take a WebSocket client on {}: {}", cfg_.name, ex.what());
            return;
        }
        accepted_++;
        spdlog::debug("{}: TCP connection accepted", name);
    });
}

void WsListener::add_stats(WsStats& into, const WsStats& s) {
    into.handshakes_refused += s.handshakes_refused;
    into.rate_paused += s.rate_paused;
    into.text_closed += s.text_closed;
    into.too_big_closed += s.too_big_closed;
    into.tx_full_dropped += s.tx_full_dropped;
    into.ping_flood_closed += s.ping_flood_closed;
}

WsStats WsListener::stats() const {
    WsStats s = gone_;
    for (const auto& c : clients_) add_stats(s, c->ws_stats());
    return s;
}

void WsListener::reap(WsClient& c) {
    add_stats(gone_, c.ws_stats());
    auto it = std::find_if(clients_.begin(), clients_.end(),
                           [&](const auto& p) { return p.get() == &c; });
    if (it != clients_.end()) clients_.erase(it);
}

}  // namespace usernet::ports
