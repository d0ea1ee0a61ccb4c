// The gateway's TFTP server (--tftp DIR): read requests for files under
// DIR, at the gateway's addresses (10.0.2.2 and fec0::2), port 69.
//
// Protocol: RFC 1350 read requests in octet or netascii mode, with the
// option extension (RFC 2347) for blksize (RFC 2348), tsize and timeout
// (RFC 2349) and windowsize (RFC 7440). As in QEMU's user networking, every
// message of a transfer comes from port 69 (clients take the port of the
// first reply as the server's TID, and no NAT port is taken); a transfer is
// named by the client's address and port. Write requests get an "access
// violation" error.
//
// Files: the name is opened below DIR with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS), so "..", absolute paths (leading slashes are
// dropped first, as PXE clients send "/pxelinux.0") and symlinks that lead
// out of DIR all fail in the kernel's own path walk, not in a check of ours
// that could be raced. Only regular files are served (a FIFO is opened
// without blocking and refused).
//
// Transfers: at most kMaxTransfers at once and kMaxPerPort per attachment
// (a request beyond kMaxPerPort from one guest is answered with an error,
// never pushes out another's). Each costs one descriptor and a few hundred bytes; the
// data is read with pread() straight into the gateway's transmit buffer for
// each block sent, and a block is read again when it must be sent again,
// so nothing is buffered per transfer. A window of blocks (windowsize, at
// most kMaxWindow) goes out, then the server waits for the ACK of its last
// block; an ACK of an earlier one sends the window again from there
// (RFC 7440 4); a duplicate ACK is ignored (the Sorcerer's Apprentice,
// RFC 1123 4.2.3.1). Without an ACK for `timeout` seconds (default 1) the
// window or OACK is sent again, up to kMaxRetries times; then the transfer
// ends. Block numbers roll over from 65535 to 0, so files larger than
// 65535 blocks go whole (as tftp-hpa and busybox do). blksize is cut to
// what fits the client's attachment MTU unfragmented.
//
// netascii: LF goes as CR LF and CR as CR NUL; a block boundary may split
// a pair, so the state at each block's start (source offset, a pending
// byte) is kept for the blocks of the current window. tsize is not offered
// in netascii (the converted size is not known without reading the file).
#pragma once

#include <array>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/event_loop.hpp"
#include "switch/switch.hpp"
#include "wire/addr.hpp"
#include "wire/bytes.hpp"

namespace usernet::gw {

class Gateway;

struct TftpStats {
    uint64_t requests = 0;          // read requests taken
    uint64_t completed = 0;         // transfers acknowledged to the end
    uint64_t bytes_sent = 0;        // file bytes in DATA (first sendings)
    uint64_t retransmits = 0;       // windows and OACKs sent again
    uint64_t timed_out = 0;         // transfers ended without the client's ACK
    uint64_t aborted = 0;           // transfers the client ended with an ERROR
    uint64_t refused_write = 0;     // write requests
    uint64_t refused_missing = 0;   // no such file
    uint64_t refused_access = 0;    // outside DIR, not a regular file, unreadable
    uint64_t refused_limit = 0;     // too many transfers
    uint64_t dropped_malformed = 0; // not a TFTP message, or a bad request
    uint64_t dropped_unknown = 0;   // ACK or ERROR for no transfer
};

class TftpServer {
public:
    static constexpr size_t kMaxTransfers = 64;
    static constexpr size_t kMaxPerPort = 32;
    static constexpr uint16_t kMaxWindow = 64;
    static constexpr int kMaxRetries = 5;
    static constexpr uint32_t kMinBlksize = 8;
    static constexpr uint32_t kMaxBlksize = 65464;

    // Serves the directory at `root`, looked up by its path for each
    // request: one that is missing answers "file not found", as libslirp's
    // (the daemon's --tftp and the C API check it at start).
    TftpServer(core::EventLoop& loop, Gateway& gw, const std::string& root);
    ~TftpServer();
    TftpServer(const TftpServer&) = delete;
    TftpServer& operator=(const TftpServer&) = delete;

    // A UDP payload a guest sent to one of the gateway's addresses
    // (`server`), port 69, from client:port, through attachment `port`.
    void handle(const wire::IpAddr& server, const wire::IpAddr& client, uint16_t client_port,
                wire::Bytes msg, sw::PortId port);
    // Ends the transfers of the guests behind a port (it went away).
    void drop_port(sw::PortId port);

    size_t active() const { return active_; }
    const TftpStats& stats() const { return stats_; }

private:
    struct Ascii {
        uint64_t src = 0;     // source offset
        uint8_t pending = 0;  // byte still owed from a split CR LF / CR NUL
        bool has_pending = false;
    };
    struct Transfer {
        bool used = false;
        wire::IpAddr server, client;
        uint16_t client_port = 0;
        sw::PortId port = sw::kNoPort;
        int fd = -1;
        bool netascii = false;
        uint32_t blksize = 512;
        uint16_t window = 1;
        core::Millis timeout_ms = 1000;
        uint64_t acked = 0;         // last block acknowledged (0: none, or the OACK)
        uint64_t sent = 0;          // last block sent
        uint64_t high = 0;          // highest block ever sent
        uint64_t last = UINT64_MAX; // the final (short) block, once known
        bool oack_pending = false;  // the OACK waits for ACK 0
        int retries = 0;
        core::Millis deadline = 0;
        std::array<Ascii, kMaxWindow + 1> ascii{};  // netascii: state at block b's start
        std::array<uint8_t, 160> oack{};
        size_t oack_len = 0;
    };

    void start(Transfer& t, const wire::IpAddr& server, const wire::IpAddr& client,
               uint16_t client_port, wire::Bytes msg, sw::PortId port);
    void on_ack(Transfer& t, uint16_t block);
    void send_window(Transfer& t);
    bool send_block(Transfer& t, uint64_t block);
    // Fills `out` (room for t.blksize bytes) with block b's data; the
    // length, or -1 on a read error.
    ssize_t read_block(Transfer& t, uint64_t block, uint8_t* out);
    void send_oack(Transfer& t);
    void send_error(const wire::IpAddr& server, const wire::IpAddr& client, uint16_t client_port,
                    uint16_t code, std::string_view message);
    void send_udp(const wire::IpAddr& server, const wire::IpAddr& client, uint16_t client_port,
                  size_t len);
    void finish(Transfer& t);
    void arm(Transfer& t);
    void on_timer();
    void rearm();
    Transfer* find(const wire::IpAddr& client, uint16_t client_port);

    core::EventLoop& loop_;
    Gateway& gw_;
    std::string root_;  // opened for each request (see handle())
    std::array<Transfer, kMaxTransfers> transfers_{};
    size_t active_ = 0;
    core::Timer timer_;
    TftpStats stats_;
};

}  // namespace usernet::gw
