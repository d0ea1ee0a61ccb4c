// --websocket on the command line: [HOST:]PORT, origin= (repeatable),
// mtu=, and the errors.
#include <gtest/gtest.h>

#include "app/options.hpp"

namespace usernet::app {
namespace {

Attachment only_ws(const std::vector<std::string>& args) {
    Config cfg = parse_options(args);
    EXPECT_EQ(cfg.attachments.size(), 1u);
    return cfg.attachments.at(0);
}

TEST(WsOptions, PortAloneListensOnLoopback) {
    Attachment a = only_ws({"--websocket", "8086"});
    EXPECT_EQ(a.kind, AttachmentKind::websocket);
    EXPECT_EQ(a.ws_host, "127.0.0.1");
    EXPECT_EQ(a.ws_port, 8086);
    EXPECT_TRUE(a.ws_origins.empty());
    EXPECT_EQ(a.mtu, kWireMtu);
}

TEST(WsOptions, HostOriginsAndMtu) {
    Attachment a = only_ws({"--websocket",
                            "0.0.0.0:9000,origin=https://copy.sh,origin=http://localhost:8000,mtu=1400"});
    EXPECT_EQ(a.ws_host, "0.0.0.0");
    EXPECT_EQ(a.ws_port, 9000);
    EXPECT_EQ(a.ws_origins, (std::vector<std::string>{"https://copy.sh", "http://localhost:8000"}));
    EXPECT_EQ(only_ws({"--websocket", "8086,origin=*"}).ws_origins,
              (std::vector<std::string>{"*"}));
    EXPECT_EQ(a.mtu, 1400u);
    Attachment v6 = only_ws({"--websocket", "[::1]:8086"});
    EXPECT_EQ(v6.ws_host, "::1");
    EXPECT_EQ(only_ws({"--mtu", "1280", "--websocket", "1"}).mtu, 1280u);
}

TEST(WsOptions, Errors) {
    for (const char* bad : {"", "0", "65536", "x", "localhost:80", "[::1]", "::1:80", "[1.2.3.4]:80",
                            "8086,origin=", "8086,foo=1", "8086,mtu=20",
                            // an Origin is SCHEME://HOST[:PORT], without the default port
                            "8086,origin=example.org", "8086,origin=**",
                            "8086,origin=https://example.org/v86/", "8086,origin=https://a:443",
                            "8086,origin=http://a:80", "8086,origin=http://a:x",
                            "8086,origin=://a", "8086,origin=https://"}) {
        try {
            parse_options(std::vector<std::string>{"--websocket", bad});
            ADD_FAILURE() << "accepted --websocket '" << bad << "'";
        } catch (const OptionError& e) {
            EXPECT_EQ(e.option(), "--websocket") << bad;
            EXPECT_NE(std::string(e.what()).find("; "), std::string::npos) << e.what();
        }
    }
    for (const char* good : {"8086,origin=null", "8086,origin=https://example.org/",
                             "8086,origin=http://[::1]:8080", "8086,origin=chrome-extension://abc",
                             "8086,origin=http://localhost:8000"})
        EXPECT_NO_THROW(parse_options(std::vector<std::string>{"--websocket", good})) << good;
    EXPECT_THROW(parse_options(std::vector<std::string>{"--websocket", "8086", "--websocket",
                                                        "127.0.0.1:8086"}),
                 OptionError);
    EXPECT_NO_THROW(parse_options(std::vector<std::string>{"--websocket", "8086", "--websocket",
                                                           "8087"}));
}

}  // namespace
}  // namespace usernet::app
