// -t / -u port forward specs (passt's syntax) parsed into ForwardSpecs.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "nat/forward.hpp"
#include "nat/guest_forward.hpp"

namespace usernet::nat {
namespace {

ForwardSpec spec(uint16_t hf, uint16_t hl, uint16_t gf, uint16_t gl, char proto = 't') {
    ForwardSpec s;
    s.proto = proto;
    s.host_first = hf;
    s.host_last = hl;
    s.guest_first = gf;
    s.guest_last = gl;
    return s;
}

std::string error_of(char proto, std::string_view text) {
    try {
        parse_forward_specs(proto, text);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(ForwardSpec, ForwardSpec_SinglePortMapsToTheSameGuestPortOnAllAddresses) {
    auto v = parse_forward_specs('t', "8080");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0], spec(8080, 8080, 8080, 8080));
    EXPECT_FALSE(v[0].bind_addr);
    EXPECT_TRUE(v[0].bind_ifname.empty());
    EXPECT_FALSE(v[0].guest_addr);
    EXPECT_EQ(v[0].to_string(), "-t 8080");
}

TEST(ForwardSpec, ForwardSpec_HostPortColonGuestPort) {
    auto v = parse_forward_specs('u', "8080:80");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0], spec(8080, 8080, 80, 80, 'u'));
    EXPECT_EQ(v[0].guest_port(8080), 80);
    EXPECT_EQ(v[0].to_string(), "-u 8080:80");
}

TEST(ForwardSpec, ForwardSpec_Ipv4BindAddress) {
    auto v = parse_forward_specs('t', "127.0.0.1/8080");
    ASSERT_EQ(v.size(), 1u);
    ASSERT_TRUE(v[0].bind_addr);
    EXPECT_EQ(*v[0].bind_addr, wire::IpAddr::v4(0x7f000001));
    EXPECT_EQ(v[0].host_first, 8080);
    EXPECT_EQ(v[0].to_string(), "-t 127.0.0.1/8080");
}

TEST(ForwardSpec, ForwardSpec_Ipv6BindAddressWithAndWithoutBrackets) {
    for (const char* text : {"[::1]/8080", "::1/8080"}) {
        auto v = parse_forward_specs('t', text);
        ASSERT_EQ(v.size(), 1u) << text;
        ASSERT_TRUE(v[0].bind_addr) << text;
        EXPECT_EQ(*v[0].bind_addr, *wire::IpAddr::parse("::1")) << text;
        EXPECT_EQ(v[0].host_first, 8080) << text;
        EXPECT_EQ(v[0].to_string(), "-t [::1]/8080");
    }
}

TEST(ForwardSpec, ForwardSpec_InterfaceWithAndWithoutAddress) {
    auto v = parse_forward_specs('t', "10.1.2.3%eth0/22");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].bind_ifname, "eth0");
    EXPECT_EQ(*v[0].bind_addr, wire::IpAddr::v4(0x0a010203));
    auto w = parse_forward_specs('t', "%lo/22");
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].bind_ifname, "lo");
    EXPECT_FALSE(w[0].bind_addr);
    EXPECT_EQ(w[0].to_string(), "-t %lo/22");
}

TEST(ForwardSpec, ForwardSpec_RangeMapsOntoRangeOfEqualLength) {
    auto v = parse_forward_specs('t', "1000-1002:2000-2002");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0], spec(1000, 1002, 2000, 2002));
    EXPECT_EQ(v[0].guest_port(1001), 2001);
    EXPECT_EQ(v[0].to_string(), "-t 1000-1002:2000-2002");
}

TEST(ForwardSpec, ForwardSpec_CommaSeparatedListSharesTheAddress) {
    auto v = parse_forward_specs('t', "22,80:8080");
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0], spec(22, 22, 22, 22));
    EXPECT_EQ(v[1], spec(80, 80, 8080, 8080));
    auto w = parse_forward_specs('u', "127.0.0.1/53,5353");
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(*w[1].bind_addr, wire::IpAddr::v4(0x7f000001));
}

TEST(ForwardSpec, ForwardSpec_ExclusionsSplitRanges) {
    auto v = parse_forward_specs('t', "1000-1010:2000-2010,~1003-1004,~1010");
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0], spec(1000, 1002, 2000, 2002));
    EXPECT_EQ(v[1], spec(1005, 1009, 2005, 2009));
}

TEST(ForwardSpec, ForwardSpec_NoneMeansNoForwards) {
    EXPECT_TRUE(parse_forward_specs('t', "none").empty());
}

TEST(ForwardSpec, ForwardSpec_ExtremePorts) {
    auto v = parse_forward_specs('t', "1,65535");
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].host_first, 1);
    EXPECT_EQ(v[1].host_first, 65535);
}

TEST(ForwardSpec, ForwardSpec_InvalidSpecsAreRejectedWithTheBadPartAndTheSyntax) {
    struct Case {
        const char* text;
        const char* quoted;  // the part the message must name
    };
    for (const Case& c : {Case{"0", "'0'"}, Case{"70000", "'70000'"}, Case{"1-3:4-5", "'1-3:4-5'"},
                          Case{"abc", "'abc'"}, Case{"1.2.3.4/", "'1.2.3.4/'"}, Case{"", "empty"},
                          Case{"8080:", "'8080:'"}, Case{"5-3", "'5-3'"},
                          Case{"80,,81", "'80,,81'"}, Case{"1.2.3/80", "'1.2.3'"},
                          Case{"-80", "'-80'"}, Case{"80-", "'80-'"}, Case{"+80", "'+80'"},
                          Case{"80:0", "'0'"}, Case{"80,80", "80"}, Case{"~80:81", "'~80:81'"},
                          Case{"%/80", "''"}, Case{"/80", "'/80'"}, Case{"80,~80", "'80,~80'"}}) {
        std::string e = error_of('t', c.text);
        EXPECT_NE(e, "(no error)") << "'" << c.text << "' was accepted";
        EXPECT_NE(e.find(c.quoted), std::string::npos) << c.text << ": " << e;
        EXPECT_NE(e.find("expected [ADDR[%IFNAME]/]PORT"), std::string::npos)
            << c.text << ": " << e;
    }
}

TEST(ForwardSpec, ForwardSpec_AllAutoAndExclusionOnlyAreUnsupported) {
    for (const char* text : {"all", "auto", "~22"}) {
        std::string e = error_of('t', text);
        EXPECT_NE(e.find("not supported"), std::string::npos) << text << ": " << e;
        EXPECT_NE(e.find(std::string("'") + text + "'"), std::string::npos) << e;
    }
}

TEST(ForwardSpec, ForwardSpec_EachItemMayNameItsOwnGuest) {
    auto v = parse_forward_specs('t', "8080:10.0.2.15:80,8081:10.0.2.16:80,9000-9001:[fec0::16]:90-91,7");
    ASSERT_EQ(v.size(), 4u);
    EXPECT_EQ(v[0].guest_addr, wire::IpAddr::v4(0x0a00020f));
    EXPECT_EQ(v[0].guest_first, 80);
    EXPECT_EQ(v[1].guest_addr, wire::IpAddr::v4(0x0a000210));
    EXPECT_EQ(v[2].guest_addr, *wire::IpAddr::parse("fec0::16"));
    EXPECT_EQ(v[2].guest_last, 91);
    EXPECT_FALSE(v[3].guest_addr);
    EXPECT_EQ(v[0].to_string(), "-t 8080:10.0.2.15:80");
    EXPECT_EQ(v[2].to_string(), "-t 9000-9001:[fec0::16]:90-91");
    EXPECT_NE(error_of('t', "8080:nowhere:80").find("not a guest's"), std::string::npos);
    EXPECT_NE(error_of('t', "8080:[fec0::16]80").find("GUESTPORT"), std::string::npos);
    EXPECT_NE(error_of('t', "8080:0.0.0.0:80").find("not a guest's"), std::string::npos);
}

TEST(ForwardSpec, ForwardSpec_QemuHostfwdSyntax) {
    ForwardSpec a = parse_hostfwd("tcp::2222-:22");
    EXPECT_EQ(a.proto, 't');
    EXPECT_EQ(a.bind_addr, wire::IpAddr::v4(0));  // every IPv4 address, as QEMU's
    EXPECT_EQ(a.host_first, 2222);
    EXPECT_EQ(a.guest_first, 22);
    EXPECT_FALSE(a.guest_addr);
    ForwardSpec b = parse_hostfwd("udp:127.0.0.1:5555-10.0.2.16:53");
    EXPECT_EQ(b.proto, 'u');
    EXPECT_EQ(b.bind_addr, wire::IpAddr::v4(0x7f000001));
    EXPECT_EQ(b.guest_addr, wire::IpAddr::v4(0x0a000210));
    EXPECT_EQ(b.guest_first, 53);
    ForwardSpec c = parse_hostfwd(":[::1]:8080-[fec0::16]:80");  // tcp by default
    EXPECT_EQ(c.proto, 't');
    EXPECT_EQ(c.bind_addr, *wire::IpAddr::parse("::1"));
    EXPECT_EQ(c.guest_addr, *wire::IpAddr::parse("fec0::16"));
    ForwardSpec d = parse_hostfwd("tcp:0.0.0.0:2222-:22");
    EXPECT_EQ(d.bind_addr, wire::IpAddr::v4(0));
    ForwardSpec e = parse_hostfwd("tcp:[::]:2222-:22");  // both families
    EXPECT_EQ(e.bind_addr, wire::IpAddr{});
    for (const char* bad : {"tcp::2222", "tcp:2222-22", "tcp::0-:22", "tcp::2222-:70000",
                            "tcp:nowhere:1-:2", "tcp::1-0.0.0.0:2", "sctp::1-:2", "2222-:22"})
        EXPECT_THROW(parse_hostfwd(bad), std::invalid_argument) << bad;
}

TEST(GuestForward, GuestForward_TargetsOfEachKind) {
    std::string why;
    auto a = parse_guestfwd("tcp:10.0.2.100:1234-127.0.0.1:8000", &why);
    ASSERT_TRUE(a) << why;
    EXPECT_EQ(a->addr, wire::IpAddr::v4(0x0a000264));
    EXPECT_EQ(a->port, 1234);
    EXPECT_EQ(a->kind, GuestForwardSpec::Kind::tcp);
    EXPECT_EQ(a->host, wire::IpAddr::v4(0x7f000001));
    EXPECT_EQ(a->host_port, 8000);
    EXPECT_EQ(a->to_string(), "10.0.2.100:1234 -> 127.0.0.1:8000");
    auto b = parse_guestfwd(":[fec0::100]:80-[::1]:8080", &why);  // tcp by default
    ASSERT_TRUE(b) << why;
    EXPECT_EQ(b->addr, *wire::IpAddr::parse("fec0::100"));
    EXPECT_EQ(b->host, *wire::IpAddr::parse("::1"));
    EXPECT_EQ(b->to_string(), "[fec0::100]:80 -> [::1]:8080");
    auto c = parse_guestfwd("tcp:10.0.2.100:7-unix:/run/x.sock", &why);
    ASSERT_TRUE(c) << why;
    EXPECT_EQ(c->kind, GuestForwardSpec::Kind::unix_socket);
    EXPECT_EQ(c->path, "/run/x.sock");
    auto d = parse_guestfwd("tcp:10.0.2.100:7-/run/x.sock", &why);  // a path alone
    ASSERT_TRUE(d) << why;
    EXPECT_EQ(d->path, "/run/x.sock");
    // A command keeps its dashes, colons and spaces.
    auto e = parse_guestfwd("tcp:10.0.2.100:9-cmd:nc -q 0 example.org 80", &why);
    ASSERT_TRUE(e) << why;
    EXPECT_EQ(e->kind, GuestForwardSpec::Kind::command);
    EXPECT_EQ(e->command, "nc -q 0 example.org 80");
    EXPECT_EQ(e->to_string(), "10.0.2.100:9 -> cmd:nc -q 0 example.org 80");
    for (const char* bad :
         {"10.0.2.100:1-127.0.0.1:2", "udp:10.0.2.100:1-127.0.0.1:2", "tcp:10.0.2.100:1",
          "tcp:10.0.2.100-127.0.0.1:2", "tcp:10.0.2.100:0-127.0.0.1:2",
          "tcp:10.0.2.100:1-127.0.0.1:70000", "tcp:fec0::1:1-127.0.0.1:2", "tcp:[fec0::1:1-x:2",
          "tcp:10.0.2.100:1-localhost:2", "tcp:10.0.2.100:1-0.0.0.0:2", "tcp:10.0.2.100:1-cmd:",
          "tcp:10.0.2.100:1-cmd:  ", "tcp:10.0.2.100:1-unix:", "tcp:10.0.2.100:1-nothing"}) {
        why.clear();
        EXPECT_FALSE(parse_guestfwd(bad, &why)) << bad;
        EXPECT_FALSE(why.empty()) << bad;
    }
    EXPECT_FALSE(parse_guestfwd("tcp:10.0.2.100:1-unix:/" + std::string(200, 'x'), &why));
    EXPECT_NE(why.find("longer than"), std::string::npos);
}

}  // namespace
}  // namespace usernet::nat
