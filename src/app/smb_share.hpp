// --smb DIR: a directory shared with the guests by Samba, as QEMU's smb=.
//
// usernet writes a private smb.conf into a fresh directory under $TMPDIR
// (every path Samba keeps state in points there; one share, "qemu", as
// QEMU names it, for DIR, guests allowed, read-write, files owned by the
// user usernet runs as) and adds guest forwards for ports 445 and 139 of
// the server address (10.0.2.4) whose target is `smbd -l STATE -s CONF`:
// Samba's smbd, given a connected socket as stdin, serves that one client
// and exits (its inetd mode; QEMU runs it the same way). No smbd listens on
// any host address, so no other local user reaches the share, and nothing
// runs until a guest connects. The state directory is removed when usernet
// stops, after the NAT has stopped the smbds still running.
#pragma once

#include <string>

#include "nat/guest_forward.hpp"

namespace usernet::app {

class SmbShare {
public:
    // Throws std::runtime_error ("<what>; <what to do>") when smbd is not
    // installed or the state directory cannot be made.
    SmbShare(const std::string& dir, const wire::IpAddr& addr);
    ~SmbShare();
    SmbShare(const SmbShare&) = delete;
    SmbShare& operator=(const SmbShare&) = delete;

    // The guest forwards to add to the NAT: 445 and 139.
    std::vector<nat::GuestForwardSpec> forwards() const;
    const std::string& state_dir() const { return state_; }
    const std::string& smbd() const { return smbd_; }

    // Where smbd is: on PATH, else /usr/sbin/smbd; empty if neither.
    static std::string find_smbd();

private:
    std::string dir_, state_, smbd_;
    wire::IpAddr addr_;
};

}  // namespace usernet::app
