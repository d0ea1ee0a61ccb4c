// Capture files in the classic libpcap format (what --pcap writes).
//
// Format: a 24-byte global header (magic 0xa1b2c3d4 in host byte order,
// version 2.4, snaplen 262144, linktype 1 = Ethernet) and, per frame, a
// 16-byte record header (seconds, microseconds, captured length, original
// length) followed by the captured bytes (draft-ietf-opsawg-pcap describes
// the format). Frames over the snaplen are cut, with the
// original length kept. Not supported: pcapng, nanosecond timestamps,
// other link types.
//
// Rotation (--pcap-size, --pcap-count, as tcpdump's -C and -W). With a
// size limit, a record that would take the file past it goes to a new
// file instead: FILE is always the newest, older ones are FILE.1 (the one
// before), FILE.2 ..., at most max_files in all, the oldest removed. Every
// file starts with its own global header, so each one is readable alone,
// and none exceeds the limit (it must hold at least the global header and
// one record of the snaplen, which PcapWriter enforces). The renames and
// the new file happen on the packet path, once per max_bytes captured; the
// names are built when the writer is made.
//
// This is the one wire/ file that does I/O, and only through its FILE*:
// opening is a configuration step and throws; write() runs on the packet
// path, never throws and never allocates (stdio's buffer is set once).
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "wire/bytes.hpp"

namespace usernet::wire {

inline constexpr uint32_t kPcapMagic = 0xa1b2c3d4;
inline constexpr uint16_t kPcapVersionMajor = 2;
inline constexpr uint16_t kPcapVersionMinor = 4;
inline constexpr uint32_t kPcapSnapLen = 262144;  // tcpdump's; offloaded frames exceed 65535
inline constexpr uint32_t kPcapLinktypeEthernet = 1;
inline constexpr size_t kPcapGlobalHeaderLen = 24;
inline constexpr size_t kPcapRecordHeaderLen = 16;
// The smallest size limit: a global header and one record of the snaplen.
inline constexpr uint64_t kPcapMinFileSize =
    kPcapGlobalHeaderLen + kPcapRecordHeaderLen + kPcapSnapLen;

class PcapWriter {
public:
    // Creates (truncates) the file and writes the global header. Throws
    // std::runtime_error naming the path and the errno text on failure.
    // max_bytes 0: no limit, one file that grows; otherwise at least
    // kPcapMinFileSize (std::invalid_argument if less), and at most
    // max_files (at least 1) files are kept.
    explicit PcapWriter(const std::string& path, uint64_t max_bytes = 0, uint32_t max_files = 1);
    ~PcapWriter();
    PcapWriter(const PcapWriter&) = delete;
    PcapWriter& operator=(const PcapWriter&) = delete;

    // Appends a frame stamped with CLOCK_REALTIME now.
    void write(Bytes frame) noexcept;
    // Appends a frame with a given timestamp.
    void write(Bytes frame, const timespec& ts) noexcept;
    // Pushes buffered records to the file; false if that failed.
    bool flush() noexcept;

    uint64_t frames() const { return frames_; }
    // Bytes in the current file (headers included), and rotations so far.
    uint64_t file_bytes() const { return file_bytes_; }
    uint64_t rotations() const { return rotations_; }
    // Records that could not be written (disk full and the like); the file
    // stays readable up to the last complete record only if this is 0.
    uint64_t errors() const { return errors_; }

private:
    // Opens names_[0] afresh with its global header; false (errno set) if
    // that failed.
    bool open_file();
    // Closes the current file, shifts the older ones by one name (the
    // oldest removed) and opens a new FILE.
    bool rotate() noexcept;

    static constexpr size_t kBufferSize = 256 * 1024;
    std::unique_ptr<char[]> buf_;
    std::FILE* fp_ = nullptr;
    std::vector<std::string> names_;  // FILE, FILE.1, ... FILE.<max_files - 1>
    uint64_t max_bytes_ = 0;
    uint64_t file_bytes_ = 0;
    uint64_t rotations_ = 0;
    uint64_t frames_ = 0;
    uint64_t errors_ = 0;
};

}  // namespace usernet::wire
