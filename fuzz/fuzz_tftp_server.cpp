// Fuzzes the gateway's TFTP server (gateway/tftp_server.hpp) through the
// real gateway: TftpRequest::parse on every request, the transfer state
// machine on ACKs, ERRORs and stray messages, and retransmission with time
// passing.
//
// The server serves a directory made once per process: small and large
// files, a netascii text, a subdirectory, a symlink inside it and one
// leading out of it (to /etc/passwd), a FIFO. Operations, from two guests
// (a 1500-byte and a 576-byte attachment, four client ports each): a read
// request built from fuzzed name, mode and options; raw bytes as a TFTP
// message; an ACK of a block; time passing.
//
// Invariants: the transfers stay within TftpServer's limits; every message
// from the server is a DATA of at most the largest block size, an OACK or
// an ERROR, from port 69, with correct checksums (world.hpp); no DATA ever
// carries the outside file's bytes.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gateway/tftp_server.hpp"
#include "wire/tftp.hpp"
#include "wire/udp.hpp"
#include "world.hpp"

using namespace usernet;
using namespace usernet::fuzz;

namespace {

constexpr size_t kMaxOps = 64;
constexpr Ipv4 kGuest[2] = {0x0a00020f, 0x0a000210};  // 10.0.2.15 on port 0, .16 on port 2
constexpr size_t kGuestPort[2] = {0, 2};

const std::string& tftp_dir() {
    // Never destroyed: the exit handler below still needs it.
    static const std::string& dir = *new std::string([] {
        std::string d = "/tmp/usernet-fuzz-tftp-" + std::to_string(getpid());
        mkdir(d.c_str(), 0755);
        mkdir((d + "/sub").c_str(), 0755);
        std::string big(70000, 'x');
        for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>(i * 7);
        std::ofstream(d + "/a") << "small file\n";
        std::ofstream(d + "/b") << big;
        std::ofstream(d + "/t.txt") << "one\ntwo\r\nthree\r";
        std::ofstream(d + "/sub/c") << "in a subdirectory";
        symlink("sub/c", (d + "/in").c_str());
        symlink("/etc/passwd", (d + "/out").c_str());
        mkfifo((d + "/fifo").c_str(), 0644);
        // Gone when the process exits normally (a crash leaves it for the
        // reproduction).
        std::atexit([] { std::filesystem::remove_all(tftp_dir()); });
        return d;
    }());
    return dir;
}

void send(World& w, size_t g, uint16_t client_port, Bytes msg) {
    std::vector<uint8_t> f(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + msg.size());
    build_ethernet(f.data(), w.cfg.gw_mac, guest_mac(kGuestPort[g]), ethertype::ipv4);
    uint8_t* udp = &f[kEthHeaderLen + kIpv4HeaderLen];
    std::memcpy(udp + kUdpHeaderLen, msg.data(), msg.size());
    build_udp(udp, IpAddr::v4(kGuest[g]), IpAddr::v4(w.cfg.gateway), client_port, kTftpPort,
              msg.size());
    build_ipv4(&f[kEthHeaderLen], kGuest[g], w.cfg.gateway, ipproto::udp,
               kUdpHeaderLen + msg.size(), 64, 1);
    if (f.size() < kEthMinFrame) f.resize(kEthMinFrame);
    w.input(kGuestPort[g], f);
}

// A read request from fuzzed strings: name, mode, then option pairs.
std::vector<uint8_t> request(Reader& in) {
    static const char* kNames[] = {"a", "b", "/b", "t.txt", "sub/c", "in", "out", "fifo", "sub",
                                   "../etc/passwd", "missing", "/"};
    static const char* kModes[] = {"octet", "netascii", "OCTET", "mail", ""};
    static const char* kOpts[] = {"blksize", "tsize", "timeout", "windowsize", "BLKSIZE", "x"};
    std::vector<uint8_t> m{0, static_cast<uint8_t>(in.u8() % 8 == 0 ? 2 : 1)};
    auto put = [&](std::string_view s) {
        m.insert(m.end(), s.begin(), s.end());
        m.push_back(0);
    };
    put(kNames[in.u8() % std::size(kNames)]);
    put(kModes[in.u8() % std::size(kModes)]);
    const size_t opts = in.u8() % 6;
    for (size_t i = 0; i < opts; i++) {
        put(kOpts[in.u8() % std::size(kOpts)]);
        put(std::to_string(in.u16() % 3 == 0 ? in.u16() : in.u8()));
    }
    return m;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    init_process();
    tftp_dir();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    WorldOptions o;
    o.nat = false;
    o.tftp_root = tftp_dir();
    World w(o);
    for (auto& p : w.ports) p->keep = true;
    Reader in{data, size};
    for (size_t op = 0; op < kMaxOps && !in.empty(); op++) {
        const uint8_t kind = in.u8();
        const size_t g = kind & 1;
        const uint16_t client_port = static_cast<uint16_t>(40000 + ((kind >> 1) & 3));
        switch ((kind >> 3) % 4) {
        case 0: {
            auto m = request(in);
            send(w, g, client_port, m);
            break;
        }
        case 1:
            send(w, g, client_port, in.bytes(in.u8()));
            break;
        case 2: {
            const uint16_t block = in.u16();
            const uint8_t ack[] = {0, 4, static_cast<uint8_t>(block >> 8),
                                   static_cast<uint8_t>(block)};
            send(w, g, client_port, Bytes(ack, sizeof ack));
            break;
        }
        case 3:
            w.advance(in.u16() % 4000);
            break;
        }
        FUZZ_CHECK(w.gw->tftp()->active() <= gw::TftpServer::kMaxTransfers);
    }
    for (auto& p : w.ports) {
        for (const auto& f : p->kept) {
            auto eth = EthernetView::parse(f);
            if (!eth || eth->ethertype() != ethertype::ipv4) continue;
            auto ip = Ipv4View::parse(eth->payload());
            if (!ip || ip->protocol() != ipproto::udp || ip->src() != w.cfg.gateway) continue;
            auto udp = UdpView::parse(ip->payload());
            FUZZ_CHECK(udp.has_value());
            FUZZ_CHECK(udp->src_port() == kTftpPort);
            Bytes m = udp->payload();
            const uint16_t op = tftp_opcode(m);
            FUZZ_CHECK(op == tftpop::data || op == tftpop::oack || op == tftpop::error);
            if (op == tftpop::data) {
                FUZZ_CHECK(m.size() <= kTftpHeaderLen + gw::TftpServer::kMaxBlksize);
                static const std::string root = "root:";
                FUZZ_CHECK(m.size() < kTftpHeaderLen + root.size() ||
                           std::memcmp(m.data() + kTftpHeaderLen, root.data(), root.size()) != 0);
            }
        }
    }
    return 0;
}
