// The Daemon's wiring (src/app/daemon.*) without root: QEMU sockets in a
// temporary directory, the default socket path, pid and capture files,
// start-up errors. Attachments that need namespaces are covered by the
// end-to-end tests (tests/e2e/test_cli.py).
#include "app/daemon.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/command_text.hpp"

namespace usernet::app {
namespace {

namespace fs = std::filesystem;

class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "usernet-daemon-test-XXXXXX").string();
        path_ = mkdtemp(tmpl.data());
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Sets an environment variable for the scope of a test.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (old_) setenv(name_, old_->c_str(), 1);
        else unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

// Start-up logs info lines; keep the test output to warnings.
class DaemonTest : public ::testing::Test {
protected:
    void SetUp() override {
        saved_ = spdlog::get_level();
        spdlog::set_level(spdlog::level::warn);
    }
    void TearDown() override { spdlog::set_level(saved_); }

private:
    spdlog::level::level_enum saved_ = spdlog::level::info;
};

Config config(std::vector<std::string> args) {
    // A resolver, so that start-up does not depend on the host's resolv.conf.
    args.insert(args.end(), {"--dns-upstream", "127.0.0.1", "-q"});
    return parse_options(args);
}

bool is_socket(const std::string& path) {
    struct stat st {};
    return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// A Unix socket at path: listening (live) or closed right after bind (stale).
void make_socket(const std::string& path, bool listening, int* keep_fd) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    if (listening) {
        ASSERT_EQ(listen(fd, 1), 0);
        *keep_fd = fd;
    } else {
        close(fd);
    }
}

TEST_F(DaemonTest, SocketFileExistsWhileRunningAndIsRemovedAfter) {
    TempDir dir;
    std::string sock = dir / "vm.sock";
    {
        Daemon d(config({"--socket", sock}));
        EXPECT_TRUE(is_socket(sock));
        EXPECT_FALSE(d.using_default_socket());
        ASSERT_EQ(d.socket_paths().size(), 1u);
        EXPECT_EQ(d.socket_paths()[0], sock);
    }
    EXPECT_FALSE(fs::exists(sock));
}

TEST_F(DaemonTest, SeveralSocketsJoinOneDaemon) {
    TempDir dir;
    Daemon d(config({"--socket", dir / "a.sock", "--socket", dir / "b.sock,mtu=9000"}));
    EXPECT_TRUE(is_socket(dir / "a.sock"));
    EXPECT_TRUE(is_socket(dir / "b.sock"));
    EXPECT_EQ(d.socket_paths().size(), 2u);
}

TEST_F(DaemonTest, SocketPathInUseIsAStartupError) {
    TempDir dir;
    std::string sock = dir / "vm.sock";
    Daemon first(config({"--socket", sock}));
    try {
        Daemon second(config({"--socket", sock}));
        FAIL() << "a second daemon took a live socket path";
    } catch (const StartupError& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(sock), std::string::npos) << what;
        EXPECT_NE(what.find("; "), std::string::npos) << what;
    }
    EXPECT_TRUE(is_socket(sock));  // the first one's file is left alone
}

TEST_F(DaemonTest, NoAttachmentListensOnTheDefaultSocketInXdgRuntimeDir) {
    TempDir dir;
    ScopedEnv env("XDG_RUNTIME_DIR", dir.path());
    Daemon d(config({}));
    EXPECT_TRUE(d.using_default_socket());
    ASSERT_EQ(d.socket_paths().size(), 1u);
    EXPECT_EQ(d.socket_paths()[0], dir / "usernet.socket");
    EXPECT_TRUE(is_socket(dir / "usernet.socket"));
}

TEST_F(DaemonTest, DefaultSocketPathSkipsPathsInUseAndReusesStaleOnes) {
    TempDir dir;
    ScopedEnv env("XDG_RUNTIME_DIR", dir.path());
    EXPECT_EQ(default_socket_path(), dir / "usernet.socket");
    // A regular file is never clobbered.
    std::ofstream(dir / "usernet.socket") << "not a socket";
    EXPECT_EQ(default_socket_path(), dir / "usernet-1.socket");
    // A live listener is skipped.
    int live = -1;
    make_socket(dir / "usernet-1.socket", true, &live);
    EXPECT_EQ(default_socket_path(), dir / "usernet-2.socket");
    // A stale socket left by a crash is taken over.
    make_socket(dir / "usernet-2.socket", false, nullptr);
    EXPECT_EQ(default_socket_path(), dir / "usernet-2.socket");
    close(live);
}

TEST_F(DaemonTest, DefaultSocketPathFallsBackToTmpWithoutUsableXdgRuntimeDir) {
    std::string prefix = "/tmp/usernet-" + std::to_string(getuid());
    {
        ScopedEnv env("XDG_RUNTIME_DIR", "/nonexistent/usernet-test");
        EXPECT_EQ(default_socket_path().rfind(prefix, 0), 0u) << default_socket_path();
    }
    {
        ScopedEnv env("XDG_RUNTIME_DIR", "relative/dir");
        EXPECT_EQ(default_socket_path().rfind(prefix, 0), 0u) << default_socket_path();
    }
}

TEST_F(DaemonTest, QemuCommandLineNamesTheSocket) {
    std::string line = qemu_command_line("/tmp/x.socket");
    EXPECT_NE(line.find("-netdev stream,id=net0,server=off,addr.type=unix,addr.path=/tmp/x.socket"),
              std::string::npos);
    EXPECT_NE(line.find("-device virtio-net-pci,netdev=net0"), std::string::npos);
}

// QEMU's option syntax ends a value at a comma unless it is doubled: a
// path with a comma must come out with ",," to be pasted as printed.
TEST_F(DaemonTest, QemuLinesDoubleTheCommasOfPaths) {
    EXPECT_NE(qemu_command_line("/tmp/a,b.socket").find("addr.path=/tmp/a,,b.socket "),
              std::string::npos);
    EXPECT_NE(qemu_vde_command_line("/tmp/v,de").find("sock=/tmp/v,,de "), std::string::npos);
    ports::DgramConfig c;
    c.kind = ports::DgramKind::unix_dgram;
    c.local = *ports::SockAddr::unix_path("/tmp/u,1");
    c.remote = ports::SockAddr::unix_path("/tmp/q,2");
    auto lines = qemu_dgram_options(c);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_NE(lines[0].find("local.path=/tmp/q,,2,remote.type=unix,remote.path=/tmp/u,,1 "),
              std::string::npos)
        << lines[0];
}

// A path the shell would split or expand is quoted so that the printed
// line can be pasted as it is; the shell reads every word back unchanged.
TEST_F(DaemonTest, PrintedWordsSurviveTheShell) {
    for (const std::string w : {"plain/path-1.sock", "/tmp/a b", "it's", "$HOME", "a\"b",
                                "*", "~x", "back\\slash", "semi;colon", "tab\there", ""}) {
        SCOPED_TRACE(w);
        const std::string q = core::shell_word(w);
        if (w == "plain/path-1.sock") {
            EXPECT_EQ(q, w);
        }
        const std::string cmd = "printf '%s' " + q;
        FILE* p = popen(cmd.c_str(), "r");
        ASSERT_TRUE(p);
        std::string got;
        char buf[256];
        for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) got.append(buf, n);
        EXPECT_EQ(pclose(p), 0);
        EXPECT_EQ(got, w) << cmd;
    }
    EXPECT_NE(qemu_command_line("/tmp/a b.socket")
                  .find("-netdev 'stream,id=net0,server=off,addr.type=unix,addr.path=/tmp/a "
                        "b.socket' -device"),
              std::string::npos);
    EXPECT_NE(qemu_vde_command_line("/tmp/v de").find("-netdev 'vde,id=net0,sock=/tmp/v de' "),
              std::string::npos);
    EXPECT_NE(vde_plug_command_line("/tmp/v de").find("vde_plug 'vde:///tmp/v de' tap://tap0"),
              std::string::npos);
}

TEST_F(DaemonTest, PidFileIsWrittenAndRemoved) {
    TempDir dir;
    std::string pid = dir / "usernet.pid";
    {
        Daemon d(config({"--socket", dir / "s", "--pid", pid}));
        std::ifstream in(pid);
        long value = 0;
        in >> value;
        EXPECT_EQ(value, static_cast<long>(getpid()));
    }
    EXPECT_FALSE(fs::exists(pid));
}

TEST_F(DaemonTest, UnwritablePidFileIsAStartupErrorAndLeavesNoSocket) {
    TempDir dir;
    EXPECT_THROW(Daemon(config({"--socket", dir / "s", "--pid", dir / "no/such/dir/pid"})),
                 StartupError);
    EXPECT_FALSE(fs::exists(dir / "s"));
}

TEST_F(DaemonTest, PcapFileGetsItsHeaderAndIsFlushedAtExit) {
    TempDir dir;
    std::string pcap = dir / "trace.pcap";
    { Daemon d(config({"--socket", dir / "s", "--pcap", pcap})); }
    EXPECT_GE(fs::file_size(pcap), 24u);
}

TEST_F(DaemonTest, UnwritablePcapIsAStartupError) {
    TempDir dir;
    EXPECT_THROW(Daemon(config({"--socket", dir / "s", "--pcap", dir / "no/such/dir/x.pcap"})),
                 StartupError);
}

TEST_F(DaemonTest, ForwardPortInUseIsAStartupError) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    std::string port = std::to_string(ntohs(sa.sin_port));
    TempDir dir;
    try {
        Daemon d(config({"--socket", dir / "s", "-t", "127.0.0.1/" + port}));
        ADD_FAILURE() << "forward on a port in use was accepted";
    } catch (const StartupError& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(port), std::string::npos) << what;
        EXPECT_NE(what.find("; "), std::string::npos) << what;
    }
    close(fd);
}

}  // namespace
}  // namespace usernet::app
