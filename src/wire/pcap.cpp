#include "wire/pcap.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

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

PcapWriter::PcapWriter(const std::string& path) : buf_(new char[kBufferSize]) {
    fp_ = std::fopen(path.c_str(), "wb");
    if (!fp_)
        throw std::runtime_error("cannot open pcap file '" + path + "': " + std::strerror(errno));
    std::setvbuf(fp_, buf_.get(), _IOFBF, kBufferSize);
    GlobalHeader h{kPcapMagic,   kPcapVersionMajor, kPcapVersionMinor,    0,
                   0,            kPcapSnapLen,      kPcapLinktypeEthernet};
    if (std::fwrite(&h, sizeof h, 1, fp_) != 1 || std::fflush(fp_) != 0) {
        int err = errno;
        std::fclose(fp_);
        fp_ = nullptr;
        throw std::runtime_error("cannot write pcap file '" + path + "': " + std::strerror(err));
    }
}

PcapWriter::~PcapWriter() {
    if (fp_) std::fclose(fp_);
}

void PcapWriter::write(Bytes frame) noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    write(frame, ts);
}

void PcapWriter::write(Bytes frame, const timespec& ts) noexcept {
    size_t incl = frame.size() < kPcapSnapLen ? frame.size() : kPcapSnapLen;
    RecordHeader r{static_cast<uint32_t>(ts.tv_sec), static_cast<uint32_t>(ts.tv_nsec / 1000),
                   static_cast<uint32_t>(incl), static_cast<uint32_t>(frame.size())};
    if (std::fwrite(&r, sizeof r, 1, fp_) != 1 ||
        (incl && std::fwrite(frame.data(), 1, incl, fp_) != incl)) {
        errors_++;
        return;
    }
    frames_++;
}

bool PcapWriter::flush() noexcept { return std::fflush(fp_) == 0; }

}  // namespace usernet::wire
