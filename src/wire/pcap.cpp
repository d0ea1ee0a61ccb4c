#include "wire/pcap.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace usernet::wire {

namespace {

// Record and global headers are in host byte order: readers detect it from
// the magic.
struct GlobalHeader {
    uint32_t magic;
    uint16_t version_major;
    uint16_t version_minor;
    int32_t thiszone;
    uint32_t sigfigs;
    uint32_t snaplen;
    uint32_t linktype;
};
static_assert(sizeof(GlobalHeader) == kPcapGlobalHeaderLen);

struct RecordHeader {
    uint32_t ts_sec;
    uint32_t ts_usec;
    uint32_t incl_len;
    uint32_t orig_len;
};
static_assert(sizeof(RecordHeader) == kPcapRecordHeaderLen);

}  // namespace

PcapWriter::PcapWriter(const std::string& path, uint64_t max_bytes, uint32_t max_files)
    : buf_(new char[kBufferSize]), max_bytes_(max_bytes) {
    if (max_bytes != 0 && max_bytes < kPcapMinFileSize)
        throw std::invalid_argument("pcap size limit below " + std::to_string(kPcapMinFileSize));
    names_.push_back(path);
    for (uint32_t i = 1; i < max_files; i++) names_.push_back(path + "." + std::to_string(i));
    if (!open_file())
        throw std::runtime_error("cannot write pcap file '" + path + "': " + std::strerror(errno));
}

PcapWriter::~PcapWriter() {
    if (fp_) std::fclose(fp_);
}

bool PcapWriter::open_file() {
    fp_ = std::fopen(names_[0].c_str(), "wbe");  // e: not inherited by commands
    if (!fp_) return false;
    std::setvbuf(fp_, buf_.get(), _IOFBF, kBufferSize);
    GlobalHeader h{kPcapMagic,   kPcapVersionMajor, kPcapVersionMinor,    0,
                   0,            kPcapSnapLen,      kPcapLinktypeEthernet};
    if (std::fwrite(&h, sizeof h, 1, fp_) != 1 || std::fflush(fp_) != 0) {
        int err = errno;
        std::fclose(fp_);
        fp_ = nullptr;
        errno = err;
        return false;
    }
    file_bytes_ = sizeof h;
    return true;
}

bool PcapWriter::rotate() noexcept {
    if (fp_) std::fclose(fp_);
    fp_ = nullptr;
    rotations_++;
    // FILE.<n-2> -> FILE.<n-1> (replacing the oldest), ..., FILE -> FILE.1;
    // with one file, FILE is simply started again.
    if (names_.size() == 1) return open_file();
    std::remove(names_.back().c_str());
    for (size_t i = names_.size() - 1; i > 0; i--)
        std::rename(names_[i - 1].c_str(), names_[i].c_str());
    return open_file();
}

void PcapWriter::write(Bytes frame) noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    write(frame, ts);
}

void PcapWriter::write(Bytes frame, const timespec& ts) noexcept {
    size_t incl = frame.size() < kPcapSnapLen ? frame.size() : kPcapSnapLen;
    uint64_t rec = sizeof(RecordHeader) + incl;
    if (max_bytes_ != 0 && file_bytes_ + rec > max_bytes_ && !rotate()) {
        errors_++;
        return;
    }
    if (!fp_) {  // a rotation failed earlier: try again
        if (!open_file()) {
            errors_++;
            return;
        }
    }
    RecordHeader r{static_cast<uint32_t>(ts.tv_sec), static_cast<uint32_t>(ts.tv_nsec / 1000),
                   static_cast<uint32_t>(incl), static_cast<uint32_t>(frame.size())};
    if (std::fwrite(&r, sizeof r, 1, fp_) != 1 ||
        (incl && std::fwrite(frame.data(), 1, incl, fp_) != incl)) {
        errors_++;
        return;
    }
    file_bytes_ += rec;
    frames_++;
}

bool PcapWriter::flush() noexcept { return fp_ && std::fflush(fp_) == 0; }

}  // namespace usernet::wire
