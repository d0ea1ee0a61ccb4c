// Saves or loads libslirp's migration stream through whichever
// libslirp.so.0 the loader finds: linked against the system's library, run
// with LD_LIBRARY_PATH pointing at usernet's or not, it checks that a
// stream written by one implementation loads in the other
// (test_state_cross.py drives it).
//
//   state_tool save FILE   a guest leases 10.0.2.15; the stream goes to FILE
//   state_tool load FILE   FILE is loaded; another guest must get .16 and
//                          the first one .15 again
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "slirp_frames.hpp"

using namespace slirptest;

namespace {

const uint8_t kMac1[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
const uint8_t kMac2[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x57};

ssize_t write_file(const void* buf, size_t len, void* opaque) {
    return static_cast<ssize_t>(std::fwrite(buf, 1, len, static_cast<FILE*>(opaque)));
}

ssize_t read_file(void* buf, size_t len, void* opaque) {
    return static_cast<ssize_t>(std::fread(buf, 1, len, static_cast<FILE*>(opaque)));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 || (std::strcmp(argv[1], "save") != 0 && std::strcmp(argv[1], "load") != 0)) {
        std::fprintf(stderr, "usage: %s save|load FILE\n", argv[0]);
        return 2;
    }
    std::printf("libslirp %s\n", slirp_version_string());
    SlirpCb cb = callbacks();
    Guest g;
    SlirpConfig c = qemu_config();
    Slirp* s = slirp_new(&c, &cb, &g);
    if (!s) return 1;
    int rc = 0;
    if (std::strcmp(argv[1], "save") == 0) {
        const std::string ip = lease(s, g, kMac1, 100);
        std::printf("lease %s\n", ip.c_str());
        FILE* f = std::fopen(argv[2], "wb");
        if (!f || ip != "10.0.2.15") return 1;
        slirp_state_save(s, write_file, f);
        std::printf("saved %ld bytes\n", std::ftell(f));
        std::fclose(f);
    } else {
        FILE* f = std::fopen(argv[2], "rb");
        if (!f) return 1;
        const int r = slirp_state_load(s, slirp_state_version(), read_file, f);
        const bool at_end = std::fgetc(f) == EOF;
        std::fclose(f);
        const std::string other = lease(s, g, kMac2, 200);
        const std::string back = lease(s, g, kMac1, 300);
        std::printf("load %d, consumed all %d, other guest %s, first guest %s\n", r, at_end,
                    other.c_str(), back.c_str());
        rc = r == 0 && at_end && other == "10.0.2.16" && back == "10.0.2.15" ? 0 : 1;
    }
    slirp_cleanup(s);
    return rc;
}
