// See smb_share.hpp.
#include "app/smb_share.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "core/command_text.hpp"

namespace usernet::app {
namespace {

bool executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

}  // namespace

std::string SmbShare::find_smbd() {
    if (const char* path = std::getenv("PATH")) {
        std::string_view p = path;
        while (!p.empty()) {
            auto colon = p.find(':');
            std::string dir(p.substr(0, colon));
            p.remove_prefix(colon == std::string_view::npos ? p.size() : colon + 1);
            if (dir.empty()) continue;
            std::string candidate = dir + "/smbd";
            if (executable(candidate)) return candidate;
        }
    }
    // Debian keeps it in /usr/sbin, which a user's PATH may lack.
    return executable("/usr/sbin/smbd") ? "/usr/sbin/smbd" : std::string();
}

SmbShare::SmbShare(const std::string& dir, const wire::IpAddr& addr) : dir_(dir), addr_(addr) {
    smbd_ = find_smbd();
    if (smbd_.empty())
        throw std::runtime_error(
            "--smb needs Samba's smbd, which is not installed; install the samba package "
            "(apt install samba) or drop --smb");
    // smb.conf has no quoting: a line ends the value, and % starts a
    // substitution.
    if (dir_.find_first_of("\n%") != std::string::npos)
        throw std::runtime_error("--smb: the path '" + dir_ +
                                 "' holds a newline or '%', which smb.conf cannot carry; "
                                 "share a directory whose path has neither");
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/usernet-smb.XXXXXX";
    if (!mkdtemp(templ.data()))
        throw std::runtime_error("--smb: cannot make a directory for Samba's state (" + templ +
                                 ": " + std::strerror(errno) +
                                 "); set TMPDIR to a directory you can write to");
    state_ = templ;
    const passwd* pw = getpwuid(geteuid());
    const std::string user = pw ? pw->pw_name : "root";
    std::ofstream conf(state_ + "/smb.conf");
    conf << "# Written by usernet for --smb " << dir_ << "; removed when usernet stops.\n"
         << "[global]\n"
         << "private dir = " << state_ << "\n"
         << "interfaces = 127.0.0.1\n"
         << "bind interfaces only = yes\n"
         << "pid directory = " << state_ << "\n"
         << "lock directory = " << state_ << "\n"
         << "state directory = " << state_ << "\n"
         << "cache directory = " << state_ << "\n"
         << "ncalrpc dir = " << state_ << "/ncalrpc\n"
         << "log file = " << state_ << "/log.smbd\n"
         << "smb passwd file = " << state_ << "/smbpasswd\n"
         << "security = user\n"
         << "map to guest = Bad User\n"
         << "load printers = no\n"
         << "printing = bsd\n"
         << "disable spoolss = yes\n"
         << "usershare max shares = 0\n"
         // Each smbd here is started for one connection (inetd mode) and
         // forks its own notify daemon, which registers itself only once it
         // runs; a tree connect that comes first fails with
         // NT_STATUS_NO_MEMORY ("No notify daemon around"), as it did for
         // about one connection in 20 on a loaded host. Without change
         // notify a tree connect never looks for it (the client is told
         // the request is not supported and polls, as it must anyway: a
         // notify daemon dies with the smbd that forked it).
         << "change notify = no\n"
         << "[qemu]\n"
         << "path = " << dir_ << "\n"
         << "read only = no\n"
         << "guest ok = yes\n"
         << "force user = " << user << "\n";
    conf.close();
    if (!conf) {
        std::error_code ec;
        std::filesystem::remove_all(state_, ec);
        throw std::runtime_error("--smb: cannot write " + state_ +
                                 "/smb.conf; set TMPDIR to a directory with room");
    }
}

SmbShare::~SmbShare() {
    std::error_code ec;
    std::filesystem::remove_all(state_, ec);
    if (ec) spdlog::warn("--smb: cannot remove {}: {}", state_, ec.message());
}

std::vector<nat::GuestForwardSpec> SmbShare::forwards() const {
    std::vector<nat::GuestForwardSpec> out;
    for (uint16_t port : {uint16_t{445}, uint16_t{139}}) {
        nat::GuestForwardSpec g;
        g.addr = addr_;
        g.port = port;
        g.kind = nat::GuestForwardSpec::Kind::command;
        g.command = "exec " + core::shell_word(smbd_) + " -l " + core::shell_word(state_) + " -s " +
                    core::shell_word(state_ + "/smb.conf");
        out.push_back(std::move(g));
    }
    return out;
}

}  // namespace usernet::app
