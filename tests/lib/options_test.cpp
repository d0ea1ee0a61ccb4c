// The command line: argv -> Config (src/app/options.*). Every test names
// the behaviour it proves; the parser is exercised without exiting, through
// parse_options() and OptionError.
#include "app/options.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace usernet::app {
namespace {

using wire::IpAddr;
using wire::Ipv4;

Ipv4 ip(const char* s) { return *wire::ipv4_parse(s); }

Config parse(std::vector<std::string> args) { return parse_options(args); }

// The option an error names ("" when the parse succeeded).
std::string error_option(std::vector<std::string> args) {
    try {
        parse_options(args);
    } catch (const OptionError& e) {
        // Every message says what to do after what went wrong.
        EXPECT_NE(std::string(e.what()).find("; "), std::string::npos) << e.what();
        return e.option();
    }
    return "";
}

std::string error_message(std::vector<std::string> args) {
    try {
        parse_options(args);
    } catch (const OptionError& e) {
        return e.what();
    }
    return "";
}

// --- defaults ---------------------------------------------------------------

TEST(Options, DefaultsMatchQemuUserNetworking) {
    Config c = parse({});
    EXPECT_EQ(c.action, Action::run);
    EXPECT_TRUE(c.attachments.empty());  // the default socket
    EXPECT_EQ(c.net.net, ip("10.0.2.0"));
    EXPECT_EQ(c.net.prefix_len, 24);
    EXPECT_EQ(c.net.gateway, ip("10.0.2.2"));
    EXPECT_EQ(c.net.dns, ip("10.0.2.3"));
    EXPECT_EQ(c.net.dhcp_start, ip("10.0.2.15"));
    EXPECT_EQ(c.net.dhcp_count, 16u);
    EXPECT_TRUE(c.net.map_gateway_to_loopback);
    EXPECT_TRUE(c.net.dns_upstreams.empty());  // /etc/resolv.conf, read by the daemon
    EXPECT_TRUE(c.net.domain.empty());
    EXPECT_FALSE(c.guest_addr);
    EXPECT_FALSE(c.config_net);
    EXPECT_TRUE(c.forwards.empty());
    EXPECT_TRUE(c.pcap_path.empty());
    EXPECT_TRUE(c.pid_path.empty());
    EXPECT_EQ(c.log_level, LogLevel::info);
}

TEST(Options, HelpAndVersionWinOverOtherErrors) {
    EXPECT_EQ(parse({"--help"}).action, Action::help);
    EXPECT_EQ(parse({"-h"}).action, Action::help);
    EXPECT_EQ(parse({"--bogus", "--help"}).action, Action::help);
    EXPECT_EQ(parse({"-dh"}).action, Action::help);
    EXPECT_EQ(parse({"--version"}).action, Action::version);
    EXPECT_NE(version_text().find(USERNET_VERSION), std::string::npos);
}

// --- attachments --------------------------------------------------------------

TEST(Options, NetnsByNamePathAndPid) {
    Config c = parse({"--netns", "guest", "--netns", "/proc/1/ns/net", "--netns=4242"});
    ASSERT_EQ(c.attachments.size(), 3u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::netns);
    EXPECT_EQ(c.attachments[0].target, "guest");
    EXPECT_EQ(c.attachments[0].netns_path, "/run/netns/guest");
    EXPECT_EQ(c.attachments[1].netns_path, "/proc/1/ns/net");
    EXPECT_EQ(c.attachments[2].netns_path, "/proc/4242/ns/net");
    for (const Attachment& a : c.attachments) {
        EXPECT_EQ(a.ifname, "tap0");
        EXPECT_EQ(a.mtu, 65520u);
        EXPECT_FALSE(a.address);
    }
}

TEST(Options, TapNameAppliesToEveryNamespace) {
    Config c = parse({"--netns", "a", "--tap-name", "eth7", "--netns", "b"});
    ASSERT_EQ(c.attachments.size(), 2u);
    EXPECT_EQ(c.attachments[0].ifname, "eth7");
    EXPECT_EQ(c.attachments[1].ifname, "eth7");
}

TEST(Options, AttachmentsKeepCommandLineOrder) {
    Config c = parse({"--socket", "/tmp/a.sock", "--netns", "n", "--tap", "tap5", "--socket",
                      "/tmp/b.sock"});
    ASSERT_EQ(c.attachments.size(), 4u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::socket);
    EXPECT_EQ(c.attachments[0].target, "/tmp/a.sock");
    EXPECT_EQ(c.attachments[1].kind, AttachmentKind::netns);
    EXPECT_EQ(c.attachments[2].kind, AttachmentKind::tap);
    EXPECT_EQ(c.attachments[2].ifname, "tap5");
    EXPECT_EQ(c.attachments[3].target, "/tmp/b.sock");
}

TEST(Options, MtuDefaultsPerAttachmentKind) {
    Config c = parse({"--netns", "n", "--tap", "t", "--socket", "s"});
    EXPECT_EQ(c.attachments[0].mtu, 65520u);
    EXPECT_EQ(c.attachments[1].mtu, 1500u);
    EXPECT_EQ(c.attachments[2].mtu, 1500u);
}

TEST(Options, MtuOptionChangesEveryDefault) {
    Config c = parse({"--mtu", "9000", "--netns", "n", "--tap", "t", "--socket", "s"});
    for (const Attachment& a : c.attachments) EXPECT_EQ(a.mtu, 9000u);
    EXPECT_EQ(parse({"--mtu", "1400", "--mtu", "1280", "--socket", "s"}).attachments[0].mtu, 1280u);
}

TEST(Options, MtuSuffixOverridesPerAttachment) {
    Config c = parse({"--mtu", "9000", "--netns", "n,mtu=1400", "--socket=/tmp/x.sock,mtu=576",
                      "--tap", "t"});
    ASSERT_EQ(c.attachments.size(), 3u);
    EXPECT_EQ(c.attachments[0].target, "n");
    EXPECT_EQ(c.attachments[0].netns_path, "/run/netns/n");
    EXPECT_EQ(c.attachments[0].mtu, 1400u);
    EXPECT_EQ(c.attachments[1].target, "/tmp/x.sock");
    EXPECT_EQ(c.attachments[1].mtu, 576u);
    EXPECT_EQ(c.attachments[2].mtu, 9000u);
}

TEST(Options, MtuOutOfRangeOrNotANumberIsAnErrorNamingTheOption) {
    EXPECT_EQ(error_option({"--mtu", "67"}), "--mtu");
    EXPECT_EQ(error_option({"--mtu", "65521"}), "--mtu");
    EXPECT_EQ(error_option({"--mtu", "1500x"}), "--mtu");
    EXPECT_EQ(error_option({"--mtu", "-1"}), "--mtu");
    EXPECT_EQ(error_option({"--netns", "n,mtu=70000"}), "--netns");
    EXPECT_EQ(error_option({"--socket", "s,mtu="}), "--socket");
    EXPECT_EQ(error_option({"--tap", "t,mtu=big"}), "--tap");
    EXPECT_EQ(parse({"--mtu", "68", "--socket", "s"}).attachments[0].mtu, 68u);
    EXPECT_EQ(parse({"--mtu", "65520", "--socket", "s"}).attachments[0].mtu, 65520u);
}

TEST(Options, UnknownAttachmentParameterIsAnError) {
    EXPECT_EQ(error_option({"--netns", "n,queues=4"}), "--netns");
    EXPECT_NE(error_message({"--netns", "n,queues=4"}).find("queues=4"), std::string::npos);
    EXPECT_EQ(error_option({"--socket", ",mtu=1400"}), "--socket");  // empty path
}

// A flag takes no value: --no-ipv6=yes or --no-ipv6=no would otherwise be
// read by CLI11 as true or false, and --no-ipv6=maybe answered with its
// bare "Could not convert".
TEST(Options, AFlagGivenAValueIsAnErrorNamingTheFlag) {
    EXPECT_EQ(error_option({"--no-ipv6=yes"}), "--no-ipv6");
    EXPECT_EQ(error_option({"--socket", "s", "--no-ipv6=no"}), "--no-ipv6");
    EXPECT_EQ(error_option({"--restrict=maybe"}), "--restrict");
    EXPECT_NE(error_message({"--debug=1"}).find("--debug takes no value"), std::string::npos);
    EXPECT_EQ(error_option({"--mtu=1400", "--socket=s"}), "");  // options with values may use =
    EXPECT_FALSE(parse({"--socket", "s", "--no-ipv6"}).net.ipv6);
}

TEST(Options, UplinkTakesTheInterfacesMtuUnlessGivenOne) {
    Config c = parse({"--mtu", "9000", "--uplink", "eth1", "--uplink", "veth2,mtu=1400"});
    ASSERT_EQ(c.attachments.size(), 2u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::uplink);
    EXPECT_EQ(c.attachments[0].ifname, "eth1");
    EXPECT_EQ(c.attachments[0].mtu, 0u);  // the interface's own
    EXPECT_EQ(c.attachments[1].ifname, "veth2");
    EXPECT_EQ(c.attachments[1].mtu, 1400u);
    EXPECT_EQ(error_option({"--uplink", "a/b"}), "--uplink");
    EXPECT_EQ(error_option({"--uplink", "eth0,mac=52:54:00:00:00:01"}), "--uplink");
    EXPECT_EQ(error_option({"--uplink", "eth0", "--uplink", "eth0"}), "--uplink");
}

TEST(Options, NamespacesDefaultToMtu1500BesideAnUplink) {
    Config c = parse({"--netns", "n", "--uplink", "eth1", "--netns", "m,mtu=9000"});
    EXPECT_EQ(c.attachments[0].mtu, 1500u);
    EXPECT_EQ(c.attachments[2].mtu, 9000u);
    EXPECT_EQ(parse({"--mtu", "4000", "--netns", "n", "--uplink", "e"}).attachments[0].mtu, 4000u);
}

TEST(Options, NoGatewayRefusesWhatOnlyTheGatewayDoes) {
    EXPECT_FALSE(parse({"--socket", "s"}).no_gateway);
    EXPECT_TRUE(parse({"--uplink", "eth1", "--no-gateway", "--netns", "n"}).no_gateway);
    EXPECT_EQ(error_option({"--no-gateway", "--netns", "n", "--config-net"}), "--config-net");
    EXPECT_EQ(error_option({"--no-gateway", "--socket", "s", "--guest-addr", "10.0.2.9"}),
              "--guest-addr");
    EXPECT_EQ(error_option({"--no-gateway", "--socket", "s", "-t", "8080:80"}), "-t");
    EXPECT_EQ(error_option({"--no-gateway", "--socket", "s", "-u", "53"}), "-u");
}

TEST(Options, MacSuffixInEitherOrderWithMtu) {
    Config c = parse({"--netns", "n,mac=52:54:00:12:34:99", "--tap", "t,mtu=1400,mac=02:00:00:00:00:01",
                      "--socket", "s,mac=02:00:00:00:00:02,mtu=576", "--socket", "p"});
    ASSERT_EQ(c.attachments.size(), 4u);
    EXPECT_EQ(c.attachments[0].target, "n");
    EXPECT_EQ(c.attachments[0].lan_mac->to_string(), "52:54:00:12:34:99");
    EXPECT_EQ(c.attachments[1].target, "t");
    EXPECT_EQ(c.attachments[1].mtu, 1400u);
    EXPECT_EQ(c.attachments[1].lan_mac->to_string(), "02:00:00:00:00:01");
    EXPECT_EQ(c.attachments[2].target, "s");
    EXPECT_EQ(c.attachments[2].mtu, 576u);
    EXPECT_EQ(c.attachments[2].lan_mac->to_string(), "02:00:00:00:00:02");
    EXPECT_FALSE(c.attachments[3].lan_mac);
}

TEST(Options, MacSuffixOnTcpAndVdeAttachmentsAndNowhereElse) {
    Config c = parse({"--listen", "127.0.0.1:9001,mac=52:54:00:12:34:01", "--connect",
                      "127.0.0.1:9002,mtu=1400,mac=52:54:00:12:34:02", "--vde",
                      "/tmp/sw,mac=52:54:00:12:34:03"});
    ASSERT_EQ(c.attachments.size(), 3u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::tcp_listen);
    EXPECT_EQ(c.attachments[0].lan_mac->to_string(), "52:54:00:12:34:01");
    EXPECT_EQ(c.attachments[1].kind, AttachmentKind::tcp_connect);
    EXPECT_EQ(c.attachments[1].mtu, 1400u);
    EXPECT_EQ(c.attachments[1].lan_mac->to_string(), "52:54:00:12:34:02");
    EXPECT_EQ(c.attachments[2].kind, AttachmentKind::vde);
    EXPECT_EQ(c.attachments[2].target, "/tmp/sw");
    EXPECT_EQ(c.attachments[2].lan_mac->to_string(), "52:54:00:12:34:03");
    // The others refuse it in one line rather than ignore it.
    EXPECT_EQ(error_option({"--bochs", "40000,mac=52:54:00:12:34:04"}), "--bochs");
    EXPECT_EQ(error_option({"--dgram", "udp:127.0.0.1:9003,mac=52:54:00:12:34:04"}), "--dgram");
    EXPECT_EQ(error_option({"--mcast", "230.0.0.1:9004,mac=52:54:00:12:34:04"}), "--mcast");
    EXPECT_EQ(error_option({"--websocket", "9005,mac=52:54:00:12:34:04"}), "--websocket");
    EXPECT_EQ(error_option({"--serial", "unix:/tmp/s,mac=52:54:00:12:34:04"}), "--serial");
}

TEST(Options, BadMacSuffixIsAnErrorNamingTheOption) {
    EXPECT_EQ(error_option({"--netns", "n,mac=52:54:00:12:34"}), "--netns");
    EXPECT_EQ(error_option({"--netns", "n,mac=zz:54:00:12:34:56"}), "--netns");
    EXPECT_EQ(error_option({"--tap", "t,mac=ff:ff:ff:ff:ff:ff"}), "--tap");  // broadcast
    EXPECT_EQ(error_option({"--tap", "t,mac=01:00:5e:00:00:01"}), "--tap");  // multicast
    EXPECT_EQ(error_option({"--socket", "s,mac=00:00:00:00:00:00"}), "--socket");
    EXPECT_EQ(error_option({"--socket", "s,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02"}),
              "--socket");
    EXPECT_EQ(error_option({"--socket", "s,mtu=1400,mtu=1500"}), "--socket");
}

TEST(Options, SameAttachmentTwiceIsAnError) {
    EXPECT_EQ(error_option({"--netns", "a", "--netns", "/run/netns/a"}), "--netns");
    EXPECT_EQ(error_option({"--socket", "s", "--socket", "s,mtu=1400"}), "--socket");
    EXPECT_EQ(error_option({"--tap", "t", "--tap", "t"}), "--tap");
}

TEST(Options, BadInterfaceNamesAreRefused) {
    EXPECT_EQ(error_option({"--tap-name", "a-name-that-is-too-long"}), "--tap-name");
    EXPECT_EQ(error_option({"--tap-name", "a/b"}), "--tap-name");
    EXPECT_EQ(error_option({"--tap", "with space"}), "--tap");
    EXPECT_EQ(error_option({"--tap-name", ""}), "--tap-name");
}

TEST(Options, SocketPathLongerThanSunPathIsRefused) {
    EXPECT_EQ(error_option({"--socket", "/tmp/" + std::string(120, 'x')}), "--socket");
}

// --- --config-net -------------------------------------------------------------

TEST(Options, ConfigNetGivesNamespacesConsecutiveAddressesFromTheFirstLease) {
    Config c = parse({"--netns", "a", "--socket", "s", "--netns", "b", "--config-net"});
    EXPECT_TRUE(c.config_net);
    EXPECT_EQ(c.attachments[0].address, ip("10.0.2.15"));
    EXPECT_FALSE(c.attachments[1].address);  // a socket is configured by its guest
    EXPECT_EQ(c.attachments[2].address, ip("10.0.2.16"));
}

TEST(Options, ConfigNetStartsAtGuestAddrAndSkipsGatewayAndDns) {
    Config c = parse({"--config-net", "--guest-addr", "10.0.2.1", "--netns", "a", "--netns", "b"});
    EXPECT_EQ(c.attachments[0].address, ip("10.0.2.1"));
    EXPECT_EQ(c.attachments[1].address, ip("10.0.2.4"));
}

TEST(Options, ConfigNetsIpv6AddressIsNeverTheGatewaysOwn) {
    // A common IPv4 layout: gateway .1, first lease .2. The namespace's
    // IPv6 partner of .2 would be fec0::2, the IPv6 gateway.
    Config c = parse({"--netns", "a", "--netns", "b", "--netns", "c", "--config-net", "--net",
                      "192.168.1.0/24", "--gateway", "192.168.1.1", "--dns", "192.168.1.53",
                      "--dhcp-start", "192.168.1.2"});
    EXPECT_EQ(c.attachments[0].address, ip("192.168.1.2"));
    EXPECT_EQ(c.net.v6_of(ip("192.168.1.2")), *IpAddr::parse("fec0::ffff:0:2"));
    EXPECT_EQ(c.net.v6_of(ip("192.168.1.3")), *IpAddr::parse("fec0::ffff:0:3"));
    EXPECT_EQ(c.net.v6_of(ip("192.168.1.4")), *IpAddr::parse("fec0::4"));
    EXPECT_EQ(parse({}).net.v6_of(ip("10.0.2.15")), *IpAddr::parse("fec0::f"));
}

TEST(Options, Net6TakesAUnicastSlash64AndPlacesTheGatewayAndDns) {
    Config c = parse({"--net6", "fd00:1234::/64"});
    EXPECT_EQ(c.net.prefix6, *IpAddr::parse("fd00:1234::"));
    EXPECT_EQ(c.net.gateway6, *IpAddr::parse("fd00:1234::2"));
    EXPECT_EQ(c.net.dns6, *IpAddr::parse("fd00:1234::3"));
    // Not a /64, host bits, not IPv6, and prefixes a LAN cannot use:
    // multicast, link-local and ::/8 (::, ::1, IPv4-mapped).
    for (const char* bad : {"fd00::/48", "fd00::1/64", "10.0.2.0/64", "fd00::", "ff02::/64",
                            "fe80::/64", "::/64", "0:0:0:1::/64", "ff::/64"}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(error_option({"--net6", bad}), "--net6");
    }
}

TEST(Options, ConfigNetWithoutNamespaceIsAnError) {
    EXPECT_EQ(error_option({"--config-net"}), "--config-net");
    EXPECT_EQ(error_option({"--config-net", "--socket", "s"}), "--config-net");
}

TEST(Options, ConfigNetRunsOutOfAddressesInASmallNetwork) {
    // 10.0.0.0/29: hosts .1-.6, gateway .2, DNS .3; --guest-addr .6 leaves one.
    std::vector<std::string> args{"--net", "10.0.0.0/29", "--dhcp-start", "10.0.0.4",
                                  "--guest-addr", "10.0.0.6", "--config-net", "--netns", "a"};
    EXPECT_EQ(parse(args).attachments[0].address, ip("10.0.0.6"));
    args.insert(args.end(), {"--netns", "b"});
    EXPECT_EQ(error_option(args), "--config-net");
}

// --- addresses -----------------------------------------------------------------

TEST(Options, NetDerivesGatewayDnsAndFirstLeaseAsQemuDoes) {
    Config c = parse({"--net", "192.168.7.0/24"});
    EXPECT_EQ(c.net.net, ip("192.168.7.0"));
    EXPECT_EQ(c.net.gateway, ip("192.168.7.2"));
    EXPECT_EQ(c.net.dns, ip("192.168.7.3"));
    EXPECT_EQ(c.net.dhcp_start, ip("192.168.7.15"));
}

TEST(Options, ExplicitAddressesOverrideTheDerivedOnes) {
    Config c = parse({"--net", "172.16.0.0/16", "--gateway", "172.16.0.1", "--dns", "172.16.0.53",
                      "--dhcp-start", "172.16.1.0", "--guest-addr", "172.16.9.9"});
    EXPECT_EQ(c.net.prefix_len, 16);
    EXPECT_EQ(c.net.gateway, ip("172.16.0.1"));
    EXPECT_EQ(c.net.dns, ip("172.16.0.53"));
    EXPECT_EQ(c.net.dhcp_start, ip("172.16.1.0"));
    EXPECT_EQ(c.guest_addr, ip("172.16.9.9"));
}

TEST(Options, BadNetIsAnErrorNamingNet) {
    EXPECT_EQ(error_option({"--net", "10.0.2.0"}), "--net");
    EXPECT_EQ(error_option({"--net", "10.0.2.0/33"}), "--net");
    EXPECT_EQ(error_option({"--net", "10.0.2.0/31"}), "--net");
    EXPECT_EQ(error_option({"--net", "10.0.2.0/0"}), "--net");
    EXPECT_EQ(error_option({"--net", "ten/24"}), "--net");
    EXPECT_EQ(error_option({"--net", "10.0.2.0/024x"}), "--net");
    // Host bits set: the message suggests the network meant.
    EXPECT_EQ(error_option({"--net", "10.0.2.5/24"}), "--net");
    EXPECT_NE(error_message({"--net", "10.0.2.5/24"}).find("10.0.2.0/24"), std::string::npos);
}

TEST(Options, AddressesOutsideTheNetworkAreErrorsNamingTheOption) {
    EXPECT_EQ(error_option({"--gateway", "10.0.3.2"}), "--gateway");
    EXPECT_EQ(error_option({"--dns", "8.8.8.8"}), "--dns");
    EXPECT_EQ(error_option({"--dhcp-start", "10.0.1.15"}), "--dhcp-start");
    EXPECT_EQ(error_option({"--guest-addr", "192.168.1.2"}), "--guest-addr");
    // --net moves the network, the old explicit gateway is now outside it.
    EXPECT_EQ(error_option({"--net", "10.1.0.0/24", "--gateway", "10.0.2.2"}), "--gateway");
}

TEST(Options, NetworkAndBroadcastAddressesAreRefused) {
    EXPECT_EQ(error_option({"--gateway", "10.0.2.0"}), "--gateway");
    EXPECT_EQ(error_option({"--gateway", "10.0.2.255"}), "--gateway");
    EXPECT_EQ(error_option({"--dns", "10.0.2.255"}), "--dns");
    EXPECT_EQ(error_option({"--dhcp-start", "10.0.2.0"}), "--dhcp-start");
    EXPECT_EQ(error_option({"--guest-addr", "10.0.2.255"}), "--guest-addr");
}

TEST(Options, DefaultAddressThatDoesNotFitASmallNetIsAnErrorNamingIt) {
    // /30: .1 and .2 are hosts, .3 (the default DNS) is the broadcast.
    EXPECT_EQ(error_option({"--net", "10.9.0.0/30"}), "--dns");
    EXPECT_EQ(error_option({"--net", "10.9.0.0/30", "--dns", "10.9.0.1"}), "--dhcp-start");
}

TEST(Options, GatewayDnsAndFirstLeaseMustDiffer) {
    EXPECT_EQ(error_option({"--dns", "10.0.2.2"}), "--dns");
    EXPECT_EQ(error_option({"--dhcp-start", "10.0.2.2"}), "--dhcp-start");
    EXPECT_EQ(error_option({"--dhcp-start", "10.0.2.3"}), "--dhcp-start");
    EXPECT_EQ(error_option({"--guest-addr", "10.0.2.3"}), "--guest-addr");
}

TEST(Options, NotAnAddressIsAnErrorNamingTheOption) {
    EXPECT_EQ(error_option({"--gateway", "10.0.2"}), "--gateway");
    EXPECT_EQ(error_option({"--dns", "fec0::3"}), "--dns");
    EXPECT_EQ(error_option({"--dhcp-start", "x"}), "--dhcp-start");
    EXPECT_EQ(error_option({"--guest-addr", ""}), "--guest-addr");
}

TEST(Options, LeaseRangeStopsAtBroadcastAndAtGatewayOrDns) {
    EXPECT_EQ(parse({"--dhcp-start", "10.0.2.250"}).net.dhcp_count, 5u);
    EXPECT_EQ(parse({"--dhcp-start", "10.0.2.1"}).net.dhcp_count, 1u);
    EXPECT_EQ(parse({"--dhcp-start", "10.0.2.100"}).net.dhcp_count, 16u);
}

TEST(Options, DomainIsCheckedAndKept) {
    EXPECT_EQ(parse({"--domain", "lab.example"}).net.domain, "lab.example");
    EXPECT_EQ(error_option({"--domain", "bad domain"}), "--domain");
    EXPECT_EQ(error_option({"--domain", "a..b"}), "--domain");
    EXPECT_EQ(error_option({"--domain", ""}), "--domain");
}

// --- NAT -------------------------------------------------------------------------

TEST(Options, NoMapGwClearsTheLoopbackMapping) {
    EXPECT_FALSE(parse({"--no-map-gw"}).net.map_gateway_to_loopback);
}

TEST(Options, OffloadFlowLimitAndBusyPoll) {
    Config d = parse({});
    EXPECT_TRUE(d.tap_offload);
    EXPECT_EQ(d.limits.tcp_flows_per_guest, 16384u);
    EXPECT_EQ(d.busy_poll_us, 200u);
    Config c = parse({"--no-offload", "--max-flows", "100000", "--busy-poll", "0"});
    EXPECT_FALSE(c.tap_offload);
    EXPECT_EQ(c.limits.tcp_flows_per_guest, 100000u);
    EXPECT_GE(c.limits.tcp_flows, 100000u);
    EXPECT_EQ(c.busy_poll_us, 0u);
    EXPECT_EQ(parse({"--max-flows", "10"}).limits.tcp_flows, 65536u);
    EXPECT_EQ(error_option({"--max-flows", "0"}), "--max-flows");
    EXPECT_EQ(error_option({"--max-flows", "1000001"}), "--max-flows");
    EXPECT_EQ(error_option({"--busy-poll", "10001"}), "--busy-poll");
    EXPECT_EQ(error_option({"--busy-poll", "fast"}), "--busy-poll");
}

TEST(Options, DnsUpstreamTakesALinkLocalAddressWithItsInterface) {
    Config c = parse({"--dns-upstream", "[fe80::1%lo]:53", "--dns-upstream", "[fe80::2%lo]"});
    ASSERT_EQ(c.net.dns_upstreams.size(), 2u);
    EXPECT_EQ(c.net.dns_upstreams[0].addr, *IpAddr::parse("fe80::1"));
    EXPECT_EQ(c.net.dns_upstreams[0].scope, 1u);
    EXPECT_EQ(c.net.dns_upstreams[1].port, 53);
    EXPECT_EQ(error_option({"--dns-upstream", "[fe80::1%no-such-if9]:53"}), "--dns-upstream");
    EXPECT_EQ(error_option({"--dns-upstream", "[2001:db8::1%lo]:53"}), "--dns-upstream");
}

TEST(Options, DnsUpstreamWithAndWithoutPortInOrder) {
    Config c = parse({"--dns-upstream", "9.9.9.9", "--dns-upstream", "127.0.0.1:5353",
                      "--dns-upstream", "[::1]:5300", "--dns-upstream", "2001:db8::53",
                      "--dns-upstream", "[2001:db8::1]"});
    const auto& u = c.net.dns_upstreams;
    ASSERT_EQ(u.size(), 5u);
    EXPECT_EQ(u[0].addr, IpAddr::v4(ip("9.9.9.9")));
    EXPECT_EQ(u[0].port, 53);
    EXPECT_EQ(u[1].addr, IpAddr::v4(ip("127.0.0.1")));
    EXPECT_EQ(u[1].port, 5353);
    EXPECT_EQ(u[2].addr, *IpAddr::parse("::1"));
    EXPECT_EQ(u[2].port, 5300);
    EXPECT_EQ(u[3].addr, *IpAddr::parse("2001:db8::53"));  // bare IPv6: no port
    EXPECT_EQ(u[3].port, 53);
    EXPECT_EQ(u[4].addr, *IpAddr::parse("2001:db8::1"));
    EXPECT_EQ(u[4].port, 53);
}

TEST(Options, BadDnsUpstreamIsAnErrorNamingTheOption) {
    for (const char* bad : {"resolver.example", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:", "[::1",
                            "[::1]x", "[::1]:", "[1.2.3.4]", "0.0.0.0", "::", ""})
        EXPECT_EQ(error_option({"--dns-upstream", bad}), "--dns-upstream") << bad;
}

TEST(Options, HostPortParser) {
    auto hp = parse_host_port("[fe80::1]:853");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->addr, *IpAddr::parse("fe80::1"));
    EXPECT_EQ(hp->port, 853);
    EXPECT_FALSE(parse_host_port("1.2.3.4:53:53"));
}

TEST(Options, ForwardsAccumulateInOrderAcrossTcpAndUdp) {
    Config c = parse({"-t", "8080:80", "--tcp-ports", "2222:22", "-u", "5353", "-t443",
                      "--udp-ports=6000-6001"});
    ASSERT_EQ(c.forwards.size(), 5u);
    EXPECT_EQ(c.forwards[0].proto, 't');
    EXPECT_EQ(c.forwards[0].host_first, 8080);
    EXPECT_EQ(c.forwards[0].guest_first, 80);
    EXPECT_EQ(c.forwards[1].host_first, 2222);
    EXPECT_EQ(c.forwards[1].guest_first, 22);
    EXPECT_EQ(c.forwards[2].proto, 'u');
    EXPECT_EQ(c.forwards[2].host_first, 5353);
    EXPECT_EQ(c.forwards[2].guest_first, 5353);
    EXPECT_EQ(c.forwards[3].proto, 't');
    EXPECT_EQ(c.forwards[3].host_first, 443);
    EXPECT_EQ(c.forwards[4].proto, 'u');
    EXPECT_EQ(c.forwards[4].host_first, 6000);
    EXPECT_EQ(c.forwards[4].host_last, 6001);
    for (const auto& f : c.forwards) EXPECT_FALSE(f.guest_addr);
}

TEST(Options, ForwardCommaListAndAddressPrefix) {
    Config c = parse({"-t", "127.0.0.1/80,443"});
    ASSERT_EQ(c.forwards.size(), 2u);
    for (const auto& f : c.forwards) EXPECT_EQ(f.bind_addr, IpAddr::v4(ip("127.0.0.1")));
    EXPECT_EQ(c.forwards[0].host_first, 80);
    EXPECT_EQ(c.forwards[1].host_first, 443);
}

TEST(Options, GuestAddrBecomesTheForwardTarget) {
    Config c = parse({"--guest-addr", "10.0.2.20", "-t", "8080:80", "-u", "53"});
    ASSERT_EQ(c.forwards.size(), 2u);
    for (const auto& f : c.forwards) EXPECT_EQ(f.guest_addr, IpAddr::v4(ip("10.0.2.20")));
}

TEST(Options, ConfigNetMakesTheFirstNamespaceTheForwardTarget) {
    Config c = parse({"--netns", "a", "--netns", "b", "--config-net", "-t", "8080:80"});
    ASSERT_EQ(c.forwards.size(), 1u);
    EXPECT_EQ(c.forwards[0].guest_addr, IpAddr::v4(ip("10.0.2.15")));
    c = parse({"--netns", "a", "--config-net", "--guest-addr", "10.0.2.40", "-t", "8080:80"});
    EXPECT_EQ(c.forwards[0].guest_addr, IpAddr::v4(ip("10.0.2.40")));
}

TEST(Options, BadForwardSpecIsAnErrorNamingTheFlag) {
    EXPECT_EQ(error_option({"-t", "http"}), "-t");
    EXPECT_EQ(error_option({"-u", "70000"}), "-u");
    EXPECT_EQ(error_option({"--tcp-ports", "80-70"}), "-t");
    EXPECT_TRUE(parse({"-t", "none"}).forwards.empty());
    EXPECT_EQ(error_option({"-t", "none", "-t", "8081"}), "-t");
    // --hostfwd's errors speak its own syntax.
    EXPECT_NE(error_message({"--hostfwd", "tcp::99999-:22"}).find("[tcp|udp]:[HOSTADDR]"),
              std::string::npos);
}

TEST(Options, AHostPortForwardedTwiceIsAnError) {
    for (std::vector<std::string> args :
         {std::vector<std::string>{"-t", "8080", "-t", "8080"},
          {"-t", "8000-8010", "-t", "8010-8020"},
          {"-t", "127.0.0.1/8080", "-t", "8080"},
          {"-t", "8080", "--hostfwd", "tcp::8080-:80"},
          {"-u", "::/53", "-u", "::1/53"},
          {"--hostfwd", "tcp:[::]:8080-:80", "-t", "127.0.0.1/8080"}})
        EXPECT_NE(error_message(args).find("forwarded twice"), std::string::npos) << args[1];
    // Each is named as the user wrote it, by the option that came last.
    EXPECT_EQ(error_option({"-t", "8080", "--hostfwd", "tcp::8080-:80"}), "--hostfwd");
    EXPECT_NE(error_message({"-t", "8080", "--hostfwd", "tcp::8080-:80"})
                  .find("(-t 8080 and --hostfwd tcp::8080-:80)"),
              std::string::npos);
    EXPECT_NE(error_message({"-t", "8000-8010", "-t", "8010:80"}).find("(-t 8000-8010 and -t 8010:80)"),
              std::string::npos);
    // Different addresses, families or protocols are different sockets;
    // -t/-u's "::" is IPv6 only, as passt's (--hostfwd's [::], QEMU's,
    // takes IPv4 too).
    EXPECT_EQ(parse({"-t", "0.0.0.0/8080", "-t", "::/8080"}).forwards.size(), 2u);
    EXPECT_EQ(parse({"-u", "::/53", "-u", "127.0.0.1/53"}).forwards.size(), 2u);
    EXPECT_TRUE(parse({"-t", "::/8080"}).forwards[0].v6only);
    EXPECT_FALSE(parse({"--hostfwd", "tcp:[::]:8080-:80"}).forwards[0].v6only);
    EXPECT_EQ(parse({"-t", "127.0.0.1/8080", "-t", "::1/8080", "-t", "10.9.9.9/8080"}).forwards.size(), 3u);
    EXPECT_EQ(parse({"-t", "::1/8080", "--hostfwd", "tcp::8080-:80", "-u", "8080"}).forwards.size(), 3u);
}

// --- operation ---------------------------------------------------------------------

TEST(Options, LanGroupsTheAttachmentsAfterIt) {
    Config c = parse({"--socket", "/tmp/a", "--lan", "b,net=10.0.3.0/24,pcap=/tmp/b.pcap",
                      "--socket", "/tmp/b1", "--netns", "nsb", "--lan", "c", "--socket",
                      "/tmp/c"});
    ASSERT_EQ(c.attachments.size(), 4u);
    EXPECT_EQ(c.attachments[0].lan, 0u);
    EXPECT_EQ(c.attachments[1].lan, 1u);
    EXPECT_EQ(c.attachments[2].lan, 1u);
    EXPECT_EQ(c.attachments[3].lan, 2u);
    ASSERT_EQ(c.lans.size(), 2u);
    EXPECT_EQ(c.lans[0].name, "b");
    EXPECT_EQ(c.lans[0].net.net, ip("10.0.3.0"));
    EXPECT_EQ(c.lans[0].net.gateway, ip("10.0.3.2"));
    EXPECT_EQ(c.lans[0].net.dns, ip("10.0.3.3"));
    EXPECT_EQ(c.lans[0].net.dhcp_start, ip("10.0.3.15"));
    EXPECT_EQ(c.lans[0].net.dhcp_count, 16u);
    EXPECT_EQ(c.lans[0].pcap_path, "/tmp/b.pcap");
    // Without net=, a LAN has the default LAN's addresses (apart from it).
    EXPECT_EQ(c.lans[1].net.net, c.net.net);
    EXPECT_EQ(c.lans[1].net.gateway, c.net.gateway);
    EXPECT_TRUE(c.lans[1].pcap_path.empty());
}

TEST(Options, LanConfigNetAddressesComeFromEachLansNetwork) {
    Config c = parse({"--config-net", "--netns", "a1", "--netns", "a2", "--lan",
                      "b,net=192.168.7.0/24", "--netns", "b1"});
    ASSERT_EQ(c.attachments.size(), 3u);
    EXPECT_EQ(c.attachments[0].address, ip("10.0.2.15"));
    EXPECT_EQ(c.attachments[1].address, ip("10.0.2.16"));
    EXPECT_EQ(c.attachments[2].address, ip("192.168.7.15"));
}

TEST(Options, LanErrorsNameTheOption) {
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--lan", "b"}), "--lan");  // empty LAN
    EXPECT_EQ(error_option({"--lan", "b", "--socket", "/tmp/a", "--lan", "b", "--socket",
                            "/tmp/c"}),
              "--lan");  // twice
    EXPECT_EQ(error_option({"--lan", "b/x", "--socket", "/tmp/a"}), "--lan");
    EXPECT_EQ(error_option({"--lan", "b,net=10.0.3.1/24", "--socket", "/tmp/a"}), "--lan");
    EXPECT_EQ(error_option({"--lan", "b,net=10.0.3.0/30", "--socket", "/tmp/a"}), "--lan");
    // A /28 has no host 15 to lease (it is the broadcast address); /27 has 16.
    EXPECT_EQ(error_option({"--lan", "b,net=10.0.3.0/28", "--socket", "/tmp/a"}), "--lan");
    EXPECT_EQ(parse({"--lan", "b,net=10.0.3.0/27", "--socket", "/tmp/a"}).lans.at(0).net.dhcp_count,
              16u);
    EXPECT_EQ(error_option({"--lan", "b,mtu=9000", "--socket", "/tmp/a"}), "--lan");
    EXPECT_EQ(error_option({"--pcap", "/tmp/x", "--lan", "b,pcap=/tmp/x", "--socket", "/tmp/a"}),
              "--lan");
}

// Two of usernet's own listeners on one port: refused with both options
// named, not left to fail at start-up as "in use by another program".
TEST(Options, OwnListenersOnOnePortAreRefused) {
    EXPECT_EQ(error_option({"--listen", "18095", "-t", "127.0.0.1/18095"}), "-t");
    EXPECT_EQ(error_option({"--listen", "18095", "-t", "18090-18100"}), "-t");
    EXPECT_EQ(error_option({"--listen", "18095", "--websocket", "18095"}), "--websocket");
    EXPECT_EQ(error_option({"--bochs", "18095", "-u", "127.0.0.1/18096"}), "-u");
    EXPECT_NE(error_message({"--listen", "18095", "--websocket", "18095"})
                  .find("TCP port 18095 is given to both --listen and --websocket"),
              std::string::npos);
    // Other protocols, other addresses, other ports: fine.
    EXPECT_NO_THROW(parse({"--listen", "18095", "-u", "18095"}));
    EXPECT_NO_THROW(parse({"--listen", "[::1]:18095", "-t", "127.0.0.1/18095"}));
    EXPECT_NO_THROW(parse({"--listen", "18095", "-t", "127.0.0.2/18095"}));
    EXPECT_NO_THROW(parse({"--bochs", "18095", "-u", "127.0.0.1/18095"}));  // Bochs's own port
    // A serial line on TCP listens too.
    EXPECT_EQ(error_option({"--listen", "18095", "--serial", "tcp:18095"}), "--serial");
    EXPECT_EQ(error_option({"--serial", "tcp:18095", "-t", "18095"}), "-t");
    EXPECT_EQ(error_option({"--serial", "tcp:18095", "--websocket", "18095"}), "--websocket");
    EXPECT_NO_THROW(parse({"--serial", "tcp:127.0.0.2:18095", "--listen", "127.0.0.1:18095"}));
    // Two forwards, one on every address: the remedy says so.
    EXPECT_NE(error_message({"--socket", "/tmp/a", "-t", "127.0.0.1/18085", "-t", "18085"})
                  .find("without a host address listens on all"),
              std::string::npos);
}

// A forward's guest is a guest address: not the network's or broadcast
// address, the gateway or the DNS address.
TEST(Options, AForwardsGuestIsAGuestAddress) {
    for (const char* g : {"10.0.2.0", "10.0.2.255", "10.0.2.2", "10.0.2.3", "10.0.3.5"})
        EXPECT_EQ(error_option({"--socket", "/tmp/a", "-t", std::string("8080:") + g + ":80"}), "-t") << g;
    EXPECT_NO_THROW(parse({"--socket", "/tmp/a", "-t", "8080:10.0.2.254:80"}));
}

// Every file usernet writes or binds is its own, however it is spelled.
TEST(Options, FilesUsernetWritesMustBeDistinct) {
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--pcap", "/tmp/x.pcap", "--pid", "/tmp/./x.pcap"}),
              "--pid");
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--pcap", "/tmp/x.pcap", "--lan",
                            "b,pcap=/tmp/../tmp/x.pcap", "--socket", "/tmp/b"}),
              "--lan b,pcap=");
    EXPECT_EQ(error_option({"--socket", "/tmp/s", "--api-socket", "/tmp//s"}), "--socket");
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--socket", "/tmp/a"}), "--socket");
    EXPECT_NE(error_message({"--socket", "/tmp/a", "--pcap", "/tmp/x", "--pid", "/tmp/x"})
                  .find("--pcap and --pid both name /tmp/x"),
              std::string::npos);
    EXPECT_NO_THROW(parse({"--socket", "/tmp/a", "--pcap", "/tmp/x.pcap", "--pid", "/tmp/x.pid",
                           "--api-socket", "/tmp/api"}));
    // Every attachment that binds or links a file: a serial line's socket
    // or pty link, a unix datagram socket, a VDE switch directory.
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--serial", "unix:/tmp/a"}), "--serial");
    EXPECT_EQ(error_option({"--serial", "pty:/tmp/a", "--socket", "/tmp/a"}), "--socket");
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--dgram", "unix:/tmp/a"}), "--dgram");
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--vde", "/tmp/./a"}), "--vde");
    EXPECT_NO_THROW(parse({"--socket", "/tmp/a", "--serial", "unix:/tmp/b", "--vde", "/tmp/c"}));
}

// "default" names the LAN before any --lan; a LAN MAC is one attachment's
// on its LAN and never the gateway's; forwards need a default LAN guest.
TEST(Options, LanNamesLanMacsAndForwardsAreChecked) {
    EXPECT_EQ(error_option({"--lan", "default", "--socket", "s"}), "--lan");
    EXPECT_EQ(error_option({"--socket", "a,mac=52:54:00:00:00:01", "--socket",
                            "b,mac=52:54:00:00:00:01"}),
              "--socket");
    EXPECT_EQ(error_option({"--netns", "n,mac=52:55:0a:00:02:02"}), "--netns");
    EXPECT_EQ(error_option({"--socket", "a,mac=52:54:00:00:00:01", "--lan", "b", "--socket",
                            "b,mac=52:54:00:00:00:01"}),
              "");  // two LANs: two MACs of their own
    EXPECT_EQ(error_option({"--lan", "b", "--socket", "s", "-t", "8080:80"}), "-t");
    EXPECT_EQ(error_option({"--socket", "a", "--lan", "b", "--socket", "s", "-t", "8080:80"}), "");
}

TEST(Options, ALanWithItsOwnNetworkTakesNoDhcpHostOrRouteOfTheDefaultOne) {
    Config c = parse({"--dhcp-host", "52:54:00:12:34:56=10.0.2.20,web", "--dhcp-route",
                      "192.168.50.0/24", "--socket", "/tmp/a", "--lan", "lab,net=10.0.3.0/24",
                      "--socket", "/tmp/b", "--lan", "same", "--socket", "/tmp/c"});
    ASSERT_EQ(c.net.dhcp_hosts.size(), 1u);
    ASSERT_EQ(c.net.dhcp_routes.size(), 1u);
    ASSERT_EQ(c.lans.size(), 2u);
    EXPECT_TRUE(c.lans[0].net.dhcp_hosts.empty());
    EXPECT_TRUE(c.lans[0].net.dhcp_routes.empty());
    // Without net= a LAN has all of the default LAN's address settings.
    EXPECT_EQ(c.lans[1].net.dhcp_hosts.size(), 1u);
    EXPECT_EQ(c.lans[1].net.dhcp_routes.size(), 1u);
}

TEST(Options, ASerialLinesAddrBelongsToItsOwnLansNetwork) {
    Config c = parse({"--socket", "/tmp/a", "--lan", "lab,net=10.0.3.0/24", "--serial",
                      "unix:/tmp/s1,addr=10.0.3.20"});
    ASSERT_EQ(c.attachments.size(), 2u);
    EXPECT_EQ(c.attachments[1].lan, 1u);
    EXPECT_EQ(c.attachments[1].address, ip("10.0.3.20"));
    EXPECT_NE(error_message({"--socket", "/tmp/a", "--lan", "lab,net=10.0.3.0/24", "--serial",
                             "unix:/tmp/s1,addr=10.0.2.20"})
                  .find("outside the network 10.0.3.0/24 (LAN lab)"),
              std::string::npos);
    EXPECT_EQ(error_option({"--lan", "lab,net=10.0.3.0/24", "--serial", "pty,addr=10.0.3.3"}),
              "--serial");  // the LAN's DNS address
    EXPECT_EQ(error_option({"--serial", "pty,addr=10.0.2.40", "--serial",
                            "unix:/tmp/s2,addr=10.0.2.40"}),
              "--serial");  // two peers, one address
    // The same address on two LANs is two addresses.
    EXPECT_EQ(parse({"--serial", "pty,addr=10.0.2.40", "--lan", "b", "--serial",
                     "unix:/tmp/s2,addr=10.0.2.40"})
                  .attachments.size(),
              2u);
}

TEST(Options, ConfigNetSkipsTheAddressOfASerialLine) {
    Config c = parse({"--serial", "pty,addr=10.0.2.15", "--config-net", "--netns", "a",
                      "--netns", "b"});
    EXPECT_EQ(c.attachments[1].address, ip("10.0.2.16"));
    EXPECT_EQ(c.attachments[2].address, ip("10.0.2.17"));
}

TEST(Options, NoGatewayRefusesServicesNatOptionsAndSerialLines) {
    for (std::vector<std::string> extra :
         {std::vector<std::string>{"--serial", "pty"}, {"--tftp", "/tmp"},
          {"--dns-upstream", "9.9.9.9"}, {"--restrict"}, {"--allow", "10.0.0.0/8"},
          {"--outbound-addr", "127.0.0.1"}, {"--dhcp-host", "52:54:00:12:34:56=10.0.2.20"},
          {"--max-flows", "10"}, {"--no-tcp"}, {"--hostname", "vm"}}) {
        std::vector<std::string> args{"--uplink", "eth1", "--no-gateway"};
        args.insert(args.end(), extra.begin(), extra.end());
        EXPECT_EQ(error_option(args), extra[0]);
    }
}

TEST(Options, PcapLimitsNeedACapture) {
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--pcap-size", "10"}), "--pcap-size");
    EXPECT_EQ(error_option({"--socket", "/tmp/a", "--pcap-count", "3"}), "--pcap-count");
    EXPECT_EQ(parse({"--lan", "b,pcap=/tmp/b.pcap", "--socket", "/tmp/a", "--pcap-size", "10"})
                  .pcap_size_mb,
              10u);
    EXPECT_EQ(parse({"--pcap", "/tmp/x.pcap", "--socket", "/tmp/a", "--pcap-count", "3"})
                  .pcap_count,
              3u);
}

TEST(Options, OnlyAnUplinksOwnLanHasNamespacesDefaultTo1500) {
    Config c = parse({"--netns", "a", "--lan", "up", "--uplink", "eth1", "--netns", "b",
                      "--netns", "c,mtu=9000", "--lan", "other", "--netns", "d"});
    ASSERT_EQ(c.attachments.size(), 5u);
    EXPECT_EQ(c.attachments[0].mtu, kNetnsMtu);
    EXPECT_EQ(c.attachments[2].mtu, 1500u);
    EXPECT_EQ(c.attachments[3].mtu, 9000u);
    EXPECT_EQ(c.attachments[4].mtu, kNetnsMtu);
}

TEST(Options, DhcpRoutesMustFitOption121OncePerDestination) {
    std::vector<std::string> args{"--socket", "/tmp/a"};
    for (int i = 0; i < 27; i++) {
        args.push_back("--dhcp-route");
        args.push_back("192.168." + std::to_string(i) + ".0/25");
    }
    EXPECT_EQ(parse(args).net.dhcp_routes.size(), 27u);  // 27 * 9 + 5 = 248 bytes
    args.push_back("--dhcp-route");
    args.push_back("192.168.99.0/25");
    EXPECT_NE(error_message(args).find("more than DHCP option 121's 255"), std::string::npos);
    EXPECT_EQ(error_option({"--dhcp-route", "192.168.5.0/24", "--dhcp-route",
                            "192.168.5.7/24,10.0.2.9"}),
              "--dhcp-route");
}

TEST(Options, LogLevels) {
    EXPECT_EQ(parse({"--debug"}).log_level, LogLevel::debug);
    EXPECT_EQ(parse({"-d"}).log_level, LogLevel::debug);
    EXPECT_EQ(parse({"-q"}).log_level, LogLevel::quiet);
    EXPECT_EQ(parse({"--quiet"}).log_level, LogLevel::quiet);
    EXPECT_EQ(error_option({"-d", "-q"}), "--quiet");
}

TEST(Options, PcapPidAndForeground) {
    Config c = parse({"--pcap", "/tmp/x.pcap", "--pid", "/run/u.pid", "-f"});
    EXPECT_EQ(c.pcap_path, "/tmp/x.pcap");
    EXPECT_EQ(c.pid_path, "/run/u.pid");
    EXPECT_EQ(parse({"--foreground"}).action, Action::run);
    EXPECT_EQ(error_option({"--pcap", ""}), "--pcap");
    EXPECT_EQ(error_option({"--pid="}), "--pid");
}

TEST(Options, PcapSizeAndCount) {
    Config d = parse({"--pcap", "/tmp/x.pcap"});
    EXPECT_EQ(d.pcap_size_mb, 1000u);  // bounded by default
    EXPECT_EQ(d.pcap_count, 2u);
    Config c = parse({"--pcap", "/tmp/x.pcap", "--pcap-size", "5", "--pcap-count", "4"});
    EXPECT_EQ(c.pcap_size_mb, 5u);
    EXPECT_EQ(c.pcap_count, 4u);
    EXPECT_EQ(parse({"--pcap", "/tmp/x.pcap", "--pcap-size", "0"}).pcap_size_mb, 0u);
    EXPECT_EQ(error_option({"--pcap-size", "big"}), "--pcap-size");
    EXPECT_EQ(error_option({"--pcap-size", "1000001"}), "--pcap-size");
    EXPECT_EQ(error_option({"--pcap-count", "0"}), "--pcap-count");
}

TEST(Options, UnknownOptionsAndStrayArgumentsAreErrors) {
    EXPECT_EQ(error_option({"--bogus"}), "--bogus");
    EXPECT_NE(error_message({"--bogus"}).find("--help"), std::string::npos);
    EXPECT_EQ(error_option({"-z"}), "-z");
    // One value per option: the second word is not silently taken.
    EXPECT_NE(error_message({"--netns", "a", "b"}).find("'b'"), std::string::npos);
    EXPECT_NE(error_message({"stray"}), "");
}

TEST(Options, MissingValueIsAnErrorNamingTheOption) {
    EXPECT_EQ(error_option({"--netns"}), "--netns");
    EXPECT_EQ(error_option({"--socket", "x", "--mtu"}), "--mtu");
}

// --- --listen and --connect (QEMU over TCP) ---------------------------------------

TEST(Options, ListenTakesAPortOrAnAddressAndPortDefaultingToLoopback) {
    Config c = parse({"--listen", "5555", "--listen", "0.0.0.0:5556,mtu=9000", "--listen",
                      "[::1]:5557", "--connect", "127.0.0.1:6000", "--connect", "[::1]:6001"});
    ASSERT_EQ(c.attachments.size(), 5u);
    const Attachment& a = c.attachments[0];
    EXPECT_EQ(a.kind, AttachmentKind::tcp_listen);
    EXPECT_EQ(a.target, "127.0.0.1:5555");
    EXPECT_EQ(a.endpoint.addr, IpAddr::v4(ip("127.0.0.1")));
    EXPECT_EQ(a.endpoint.port, 5555);
    EXPECT_EQ(a.mtu, 1500u);
    EXPECT_EQ(c.attachments[1].target, "0.0.0.0:5556");
    EXPECT_EQ(c.attachments[1].mtu, 9000u);
    EXPECT_EQ(c.attachments[2].target, "[::1]:5557");
    EXPECT_FALSE(c.attachments[2].endpoint.addr.is_v4());
    EXPECT_EQ(c.attachments[3].kind, AttachmentKind::tcp_connect);
    EXPECT_EQ(c.attachments[3].target, "127.0.0.1:6000");
    EXPECT_EQ(c.attachments[3].endpoint.port, 6000);
    EXPECT_EQ(c.attachments[4].target, "[::1]:6001");
    // With --listen or --connect there is no default socket.
    EXPECT_EQ(parse({"--mtu", "1400", "--connect", "10.1.2.3:1"}).attachments[0].mtu, 1400u);
}

TEST(Options, ListenAndConnectKeepCommandLineOrderWithTheOtherAttachments) {
    Config c = parse({"--socket", "/tmp/a.sock", "--listen", "5555", "--tap", "t", "--connect",
                      "127.0.0.1:6000"});
    ASSERT_EQ(c.attachments.size(), 4u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::socket);
    EXPECT_EQ(c.attachments[1].kind, AttachmentKind::tcp_listen);
    EXPECT_EQ(c.attachments[2].kind, AttachmentKind::tap);
    EXPECT_EQ(c.attachments[3].kind, AttachmentKind::tcp_connect);
}

TEST(Options, BadListenAndConnectAddressesAreErrorsNamingTheOption) {
    for (const char* bad : {"0", "65536", "http", "127.0.0.1", "127.0.0.1:", "::1", "[::1]",
                            "[::1]:0", "1.2.3.4:99999", "[1.2.3.4]:80", "host:80", ":80"})
        EXPECT_EQ(error_option({"--listen", bad}), "--listen") << bad;
    for (const char* bad : {"5555", "0.0.0.0:5555", "[::]:5555", "127.0.0.1", "localhost:1"})
        EXPECT_EQ(error_option({"--connect", bad}), "--connect") << bad;
    EXPECT_NE(error_message({"--listen", "http"}).find("[HOST:]PORT"), std::string::npos);
    EXPECT_NE(error_message({"--connect", "0.0.0.0:1"}).find("not an address to connect to"),
              std::string::npos);
    EXPECT_EQ(error_option({"--listen", "5555,mtu=20"}), "--listen");
    EXPECT_EQ(error_option({"--connect", "127.0.0.1:1,reconnect=1"}), "--connect");
}

TEST(Options, SameTcpAttachmentTwiceIsAnErrorWhateverTheSpelling) {
    EXPECT_EQ(error_option({"--listen", "5555", "--listen", "127.0.0.1:5555"}), "--listen");
    EXPECT_EQ(error_option({"--connect", "127.0.0.1:1", "--connect", "127.0.0.1:1,mtu=1400"}),
              "--connect");
    // Listening on a port and connecting to the same address are different things.
    EXPECT_EQ(parse({"--listen", "5555", "--connect", "127.0.0.1:5555"}).attachments.size(), 2u);
    EXPECT_EQ(parse({"--listen", "5555", "--listen", "[::1]:5555"}).attachments.size(), 2u);
}

// --- documentation -------------------------------------------------------------------

// The parity tests compare whole option names as sets, in every direction:
// an option the parser takes that --help or the man page leaves out, and an
// option --help or the man page describes that the parser does not take
// (renamed, removed, misspelt), both fail.  Substring search would let
// "--tap" pass for "--tap-name" and never notice a stale entry.

using NameSet = std::set<std::string>;

// Every option the parser accepts, long and short.
NameSet parser_options() {
    NameSet s;
    for (const std::string& n : long_option_names()) s.insert(n);
    for (const std::string& n : short_option_names()) s.insert(n);
    return s;
}

// Whole option names ("-t", "--tcp-ports") in a line, in order.
std::vector<std::string> option_tokens(const std::string& line) {
    static const std::regex re(R"((^|[^\w-])(--[a-z0-9][a-z0-9-]*[a-z0-9]|-[A-Za-z0-9])(?![\w-]))");
    std::vector<std::string> out;
    for (auto it = std::sregex_iterator(line.begin(), line.end(), re); it != std::sregex_iterator(); ++it)
        out.push_back((*it)[2].str());
    return out;
}

// The options --help describes: lines that begin (after a short indent)
// with an option, "  -t, --tcp-ports SPEC ..." or "      --netns ...".
// Continuation lines are indented further and start with text.
NameSet help_options(const std::string& help) {
    NameSet s;
    std::istringstream in(help);
    for (std::string line; std::getline(in, line);) {
        size_t ind = line.find_first_not_of(' ');
        if (ind == std::string::npos || ind == 0 || ind > 8 || line[ind] != '-') continue;
        // the option column ends at two spaces (before the description)
        std::string col = line.substr(0, line.find("  ", ind));
        for (auto& t : option_tokens(col)) s.insert(t);
    }
    return s;
}

// The options the man page's OPTIONS section defines: the tag line after
// each .TP or .TQ (".BI \-\-mtu " N"", ".BR \-d ", " \-\-debug").
NameSet man_options(const std::string& roff) {
    NameSet s;
    std::istringstream in(roff);
    bool in_options = false, tag = false;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(".SH", 0) == 0) in_options = line.find("OPTIONS") != std::string::npos;
        if (!in_options) continue;
        // .TQ: another tag for the same paragraph.
        if (line.rfind(".TP", 0) == 0 || line.rfind(".TQ", 0) == 0) {
            tag = true;
            continue;
        }
        if (!tag) continue;
        tag = false;
        // roff: "\-" is '-', "\fB" and the like change fonts
        std::string plain;
        for (size_t i = 0; i < line.size(); ++i) {
            if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '-') continue;
            if (line[i] == '\\' && i + 2 < line.size() && line[i + 1] == 'f') {
                i += 2;
                plain += ' ';
                continue;
            }
            plain += line[i];
        }
        for (auto& t : option_tokens(plain)) s.insert(t);
    }
    return s;
}

std::string read_man_page() {
    auto page = std::filesystem::path(__FILE__).parent_path() / "../../docs/usernet.1";
    std::ifstream in(page);
    EXPECT_TRUE(in) << page;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Names in a but not in b, for the failure message.
std::string missing(const NameSet& a, const NameSet& b) {
    std::string out;
    for (const auto& n : a)
        if (!b.count(n)) out += " " + n;
    return out;
}

TEST(Options, OptionTokensAreWholeNames) {
    EXPECT_EQ(option_tokens("  -t, --tcp-ports SPEC"),
              (std::vector<std::string>{"-t", "--tcp-ports"}));
    EXPECT_EQ(option_tokens("--tap-name IFNAME"), (std::vector<std::string>{"--tap-name"}));
    EXPECT_TRUE(option_tokens("QEMU -netdev stream, 10.0.2.0/24, re-read").empty());
    // the extractors see whole names, so a prefix of a real option is not one
    EXPECT_EQ(help_options("      --tap-name IFNAME  the --tap one\n"), (NameSet{"--tap-name"}));
    EXPECT_EQ(man_options(".SH OPTIONS\n.TP\n.BI \\-\\-tap\\-name \" IFNAME\"\nsee \\-\\-tap\n"),
              (NameSet{"--tap-name"}));
    EXPECT_EQ(man_options(".SH OPTIONS\n.TP\n.BI \\-t \" SPEC\" \"\\fR, \\fP\\-\\-tcp\\-ports \" SPEC\n"),
              (NameSet{"-t", "--tcp-ports"}));
}

TEST(Options, HelpTextListsEveryOptionAndNoOther) {
    NameSet parser = parser_options(), help = help_options(help_text());
    ASSERT_FALSE(parser.empty());
    EXPECT_EQ(missing(parser, help), "") << "accepted but not in --help";
    EXPECT_EQ(missing(help, parser), "") << "in --help but not accepted";
}

TEST(Options, ManPageDocumentsEveryOptionAndNoOther) {
    NameSet parser = parser_options(), man = man_options(read_man_page());
    ASSERT_FALSE(man.empty());
    EXPECT_EQ(missing(parser, man), "") << "accepted but not in usernet.1's OPTIONS";
    EXPECT_EQ(missing(man, parser), "") << "in usernet.1's OPTIONS but not accepted";
}

TEST(Options, HelpTextAndManPageListTheSameOptions) {
    NameSet help = help_options(help_text()), man = man_options(read_man_page());
    EXPECT_EQ(missing(help, man), "") << "in --help but not in usernet.1";
    EXPECT_EQ(missing(man, help), "") << "in usernet.1 but not in --help";
}

// ---------------------------------------------------------------- --dgram, --mcast

TEST(Options, DgramUdpBindsTheFirstAddressAndSendsToTheSecond) {
    Config c = parse({"--dgram", "udp:127.0.0.1:10001,127.0.0.1:10000"});
    ASSERT_EQ(c.attachments.size(), 1u);
    const Attachment& a = c.attachments[0];
    EXPECT_EQ(a.kind, AttachmentKind::dgram);
    ASSERT_TRUE(a.dgram);
    EXPECT_EQ(a.dgram->kind, ports::DgramKind::udp);
    EXPECT_EQ(a.dgram->local.to_string(), "127.0.0.1:10001");
    ASSERT_TRUE(a.dgram->remote);
    EXPECT_EQ(a.dgram->remote->to_string(), "127.0.0.1:10000");
    EXPECT_EQ(a.mtu, 1500u);
    EXPECT_EQ(a.dgram->mtu, 1500u);
    EXPECT_TRUE(a.dgram->peer_only);
}

TEST(Options, DgramUdpIpv6WildcardAndLearnedPeer) {
    Config c = parse({"--dgram", "udp:[::1]:7000,[::1]:7001,mtu=9000", "--dgram", "udp:0.0.0.0:7002"});
    ASSERT_EQ(c.attachments.size(), 2u);
    EXPECT_EQ(c.attachments[0].dgram->local.to_string(), "[::1]:7000");
    EXPECT_EQ(c.attachments[0].dgram->remote->to_string(), "[::1]:7001");
    EXPECT_EQ(c.attachments[0].mtu, 9000u);
    EXPECT_EQ(c.attachments[0].dgram->mtu, 9000u);
    EXPECT_EQ(c.attachments[1].dgram->local.to_string(), "0.0.0.0:7002");
    EXPECT_FALSE(c.attachments[1].dgram->remote);  // learned from the first datagram
}

TEST(Options, DgramUnixPaths) {
    Config c = parse({"--mtu", "1400", "--dgram", "unix:/tmp/un.dgram,/tmp/qemu.dgram"});
    const Attachment& a = c.attachments[0];
    EXPECT_EQ(a.dgram->kind, ports::DgramKind::unix_dgram);
    EXPECT_EQ(a.dgram->local.path(), "/tmp/un.dgram");
    EXPECT_EQ(a.dgram->remote->path(), "/tmp/qemu.dgram");
    EXPECT_EQ(a.mtu, 1400u);  // --mtu applies
}

TEST(Options, McastGroupLocaladdrAndMtu) {
    Config c = parse({"--mcast", "239.1.2.3:5555", "--mcast", "230.0.0.1:1234,localaddr=127.0.0.1,mtu=1280"});
    ASSERT_EQ(c.attachments.size(), 2u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::dgram);
    EXPECT_EQ(c.attachments[0].dgram->kind, ports::DgramKind::mcast);
    EXPECT_EQ(c.attachments[0].dgram->local.to_string(), "239.1.2.3:5555");
    EXPECT_FALSE(c.attachments[0].dgram->mcast_if);
    EXPECT_EQ(c.attachments[1].dgram->mcast_if, ip("127.0.0.1"));
    EXPECT_EQ(c.attachments[1].mtu, 1280u);
}

// A frame is one datagram, and a UDP datagram carries at most 65,507
// bytes: an MTU beyond 65,493 is refused on a UDP link, and --mtu's larger
// default is cut to it there (a unix datagram socket takes more).
TEST(Options, DgramAndMcastMtuIsWhatAUdpDatagramCarries) {
    EXPECT_EQ(error_option({"--dgram", "udp:127.0.0.1:7000,mtu=65520"}), "--dgram");
    EXPECT_NE(error_message({"--mcast", "239.1.2.3:5555,mtu=65494"}).find("mtu=65493"),
              std::string::npos);
    Config c = parse({"--mtu", "65520", "--dgram", "udp:127.0.0.1:7000", "--mcast",
                      "239.1.2.3:5555", "--dgram", "unix:/tmp/x,/tmp/y", "--dgram",
                      "udp:127.0.0.1:7002,mtu=65493"});
    EXPECT_EQ(c.attachments[0].dgram->mtu, 65493u);
    EXPECT_EQ(c.attachments[1].dgram->mtu, 65493u);
    EXPECT_EQ(c.attachments[2].dgram->mtu, 65520u);
    EXPECT_EQ(c.attachments[3].dgram->mtu, 65493u);
}

TEST(Options, DgramKeepsCommandLineOrderAmongAttachments) {
    Config c = parse({"--socket", "/tmp/a.sock", "--mcast", "239.0.0.9:99", "--netns", "n",
                      "--dgram", "unix:/tmp/x,/tmp/y"});
    ASSERT_EQ(c.attachments.size(), 4u);
    EXPECT_EQ(c.attachments[0].kind, AttachmentKind::socket);
    EXPECT_EQ(c.attachments[1].kind, AttachmentKind::dgram);
    EXPECT_EQ(c.attachments[1].dgram->kind, ports::DgramKind::mcast);
    EXPECT_EQ(c.attachments[2].kind, AttachmentKind::netns);
    EXPECT_EQ(c.attachments[3].dgram->kind, ports::DgramKind::unix_dgram);
}

TEST(Options, BadDgramValuesAreErrorsNamingTheOption) {
    for (const char* v : {"", "127.0.0.1:5", "tcp:127.0.0.1:5", "udp:", "udp:127.0.0.1",
                          "udp:127.0.0.1:0", "udp:127.0.0.1:70000", "udp:host:5",
                          "udp:127.0.0.1:5,127.0.0.1", "udp:127.0.0.1:5,0.0.0.0:6",
                          "udp:127.0.0.1:5,[::1]:6", "udp:127.0.0.1:5,127.0.0.1:6,127.0.0.1:7",
                          "udp:[::1]", "udp:::1:5", "udp:239.1.1.1:5",
                          "udp:127.0.0.1:5,239.1.1.1:6", "udp:127.0.0.1:5,mtu=10",
                          "udp:127.0.0.1:5,localaddr=127.0.0.1", "udp:127.0.0.1:5,foo=1",
                          "unix:", "unix:/tmp/a,/tmp/a", "unix:/tmp/a,",
                          }) {
        EXPECT_EQ(error_option({"--dgram", v}), "--dgram") << v;
    }
    EXPECT_NE(error_message({"--dgram", "unix:/" + std::string(200, 'a')}).find("longer"),
              std::string::npos);
    EXPECT_NE(error_message({"--dgram", "udp:239.1.1.1:5"}).find("--mcast"), std::string::npos);
    for (const char* v : {"", "127.0.0.1:5", "239.1.2.3", "239.1.2.3:0", "[ff02::1]:5",
                          "239.1.2.3:5,239.1.2.4:5", "239.1.2.3:5,localaddr=x",
                          "239.1.2.3:5,remote=1"}) {
        EXPECT_EQ(error_option({"--mcast", v}), "--mcast") << v;
    }
}

TEST(Options, SameDgramAddressTwiceIsAnError) {
    EXPECT_EQ(error_option({"--dgram", "udp:127.0.0.1:5,127.0.0.1:6", "--dgram",
                            "udp:127.0.0.1:5,127.0.0.1:7"}),
              "--dgram");
    EXPECT_EQ(error_option({"--mcast", "239.1.2.3:5", "--mcast", "239.1.2.3:5,mtu=1400"}),
              "--mcast");
}

TEST(Options, Options_TftpTakesAnExistingDirectoryAsItsCanonicalPath) {
    EXPECT_TRUE(parse({}).net.tftp_root.empty());
    Config c = parse({"--tftp", "/tmp/../tmp/"});
    EXPECT_EQ(c.net.tftp_root, "/tmp");
    EXPECT_EQ(error_option({"--tftp", "/nonexistent/usernet-tftp"}), "--tftp");
    EXPECT_EQ(error_option({"--tftp", "/etc/hostname"}), "--tftp");  // a file
    EXPECT_NE(error_message({"--tftp", "/nonexistent/usernet-tftp"}).find("is not a directory"),
              std::string::npos);
}

TEST(Options, Options_BootfileIsANameOrAUrl) {
    EXPECT_TRUE(parse({}).net.bootfile.empty());
    EXPECT_EQ(parse({"--bootfile", "pxelinux.0"}).net.bootfile, "pxelinux.0");
    EXPECT_FALSE(parse({"--bootfile", "pxelinux.0"}).net.bootfile_is_url());
    EXPECT_TRUE(parse({"--bootfile", "http://10.0.2.2:8080/ipxe.efi"}).net.bootfile_is_url());
    EXPECT_EQ(error_option({"--bootfile", ""}), "--bootfile");
    EXPECT_EQ(error_option({"--bootfile", "a name"}), "--bootfile");
    EXPECT_EQ(error_option({"--bootfile", std::string(256, 'x')}), "--bootfile");
    EXPECT_EQ(parse({"--bootfile", "pxelinux.0", "--tftp-server-name", "10.0.0.9"}).net.tftp_server_name,
              "10.0.0.9");
    EXPECT_EQ(error_option({"--tftp-server-name", "10.0.0.9"}), "--tftp-server-name");
    EXPECT_EQ(error_option({"--bootfile", "pxelinux.0", "--tftp-server-name", "a b"}),
              "--tftp-server-name");
}

TEST(Options, Options_LocalDnsNames) {
    Config d = parse({});
    EXPECT_EQ(d.net.host_alias, "host.usernet.internal");
    EXPECT_TRUE(d.net.dns_hosts.empty());
    Config c = parse({"--host-alias", "Host.Example.", "--dns-host", "DB.test=10.0.2.100",
                      "--dns-host", "db.test=fec0::64"});
    EXPECT_EQ(c.net.host_alias, "host.example");
    ASSERT_EQ(c.net.dns_hosts.size(), 2u);
    EXPECT_EQ(c.net.dns_hosts[0].first, "db.test");
    EXPECT_EQ(c.net.dns_hosts[0].second, IpAddr::v4(ip("10.0.2.100")));
    EXPECT_EQ(c.net.dns_hosts[1].second, *IpAddr::parse("fec0::64"));
    EXPECT_EQ(error_option({"--dns-host", "db.test"}), "--dns-host");
    EXPECT_EQ(error_option({"--dns-host", "db.test=nowhere"}), "--dns-host");
    EXPECT_EQ(error_option({"--dns-host", "bad name=10.0.2.1"}), "--dns-host");
    EXPECT_EQ(error_option({"--dns-host", "=10.0.2.1"}), "--dns-host");
    EXPECT_EQ(error_option({"--host-alias", "a..b"}), "--host-alias");
}

TEST(Options, Options_DhcpHostnameSearchLeaseStaticLeasesAndRoutes) {
    Config c = parse({"--hostname", "VM", "--dns-search", "a.test,B.test", "--dns-search", "c.test",
                      "--lease-time", "600", "--dhcp-host", "52:54:00:12:34:56=10.0.2.200,Web",
                      "--dhcp-host", "52:54:00:12:34:57=10.0.2.201", "--dhcp-route",
                      "192.168.50.7/24", "--dhcp-route", "172.16.0.0/12,10.0.2.9"});
    EXPECT_EQ(c.net.hostname, "vm");
    EXPECT_EQ(c.net.dns_search, (std::vector<std::string>{"a.test", "b.test", "c.test"}));
    EXPECT_EQ(c.net.lease_seconds, 600u);
    ASSERT_EQ(c.net.dhcp_hosts.size(), 2u);
    EXPECT_EQ(c.net.dhcp_hosts[0].ip, ip("10.0.2.200"));
    EXPECT_EQ(c.net.dhcp_hosts[0].name, "web");
    EXPECT_EQ(c.net.dhcp_hosts[1].name, "");
    ASSERT_EQ(c.net.dhcp_routes.size(), 2u);
    EXPECT_EQ(c.net.dhcp_routes[0].net, ip("192.168.50.0"));  // host bits cleared
    EXPECT_EQ(c.net.dhcp_routes[0].via, ip("10.0.2.2"));      // the gateway
    EXPECT_EQ(c.net.dhcp_routes[1].prefix_len, 12);
    EXPECT_EQ(error_option({"--hostname", "a.b"}), "--hostname");
    EXPECT_EQ(error_option({"--lease-time", "59"}), "--lease-time");
    EXPECT_EQ(error_option({"--lease-time", "1h"}), "--lease-time");
    EXPECT_EQ(error_option({"--dhcp-host", "52:54:00:12:34:56"}), "--dhcp-host");
    EXPECT_EQ(error_option({"--dhcp-host", "52:54:00:12:34:56=10.0.3.5"}), "--dhcp-host");
    EXPECT_EQ(error_option({"--dhcp-host", "52:54:00:12:34:56=10.0.2.2"}), "--dhcp-host");
    EXPECT_EQ(error_option({"--dhcp-host", "01:00:5e:00:00:01=10.0.2.20"}), "--dhcp-host");
    // Names DNS could not answer as a guest's.
    for (const char* bad : {"52:54:00:12:34:56=10.0.2.20,web_2", "52:54:00:12:34:56=10.0.2.20,web-",
                            "52:54:00:12:34:56=10.0.2.20,localhost"})
        EXPECT_EQ(error_option({"--dhcp-host", bad}), "--dhcp-host") << bad;
    EXPECT_EQ(error_option({"--dhcp-host", "52:54:00:12:34:56=10.0.2.20", "--dhcp-host",
                            "52:54:00:12:34:57=10.0.2.20"}),
              "--dhcp-host");
    EXPECT_EQ(error_option({"--dhcp-route", "192.168.50.0"}), "--dhcp-route");
    EXPECT_EQ(error_option({"--dhcp-route", "192.168.50.0/24,192.168.1.1"}), "--dhcp-route");
    std::string long_list;
    for (int i = 0; i < 30; i++) long_list += (i ? "," : "") + std::string("domain") + std::to_string(i) + ".test";
    EXPECT_EQ(error_option({"--dns-search", long_list}), "--dns-search");
}

TEST(Options, Options_GuestForwardsAndSmb) {
    Config c = parse({"--guestfwd", "tcp:10.0.2.100:80-127.0.0.1:8080", "--guestfwd",
                      "tcp:10.0.2.100:81-cmd:cat", "--guestfwd", "tcp:[fec0::100]:80-/tmp/s"});
    ASSERT_EQ(c.guest_forwards.size(), 3u);
    EXPECT_EQ(c.guest_forwards[1].command, "cat");
    // One service address per distinct address, in the default LAN.
    EXPECT_EQ(c.net.service_addrs,
              (std::vector<IpAddr>{IpAddr::v4(ip("10.0.2.100")), *IpAddr::parse("fec0::100")}));
    EXPECT_TRUE(parse({}).net.service_addrs.empty());
    // Addresses no guest forward may take: outside the LAN, the gateway's,
    // DNS's, the DHCP range, a static lease, --guest-addr, twice the same.
    for (const char* bad : {"tcp:10.0.3.100:80-127.0.0.1:1", "tcp:10.0.2.2:80-127.0.0.1:1",
                            "tcp:10.0.2.3:80-127.0.0.1:1", "tcp:10.0.2.15:80-127.0.0.1:1",
                            "tcp:10.0.2.30:80-127.0.0.1:1", "tcp:10.0.2.255:80-127.0.0.1:1",
                            "tcp:[fec0::2]:80-127.0.0.1:1", "tcp:[fec0::f]:80-127.0.0.1:1",
                            "tcp:[2001:db8::1]:80-127.0.0.1:1", "bogus"})
        EXPECT_EQ(error_option({"--guestfwd", bad}), "--guestfwd") << bad;
    EXPECT_EQ(error_option({"--dhcp-host", "52:54:00:00:00:01=10.0.2.99", "--guestfwd",
                            "tcp:10.0.2.99:80-127.0.0.1:1"}),
              "--guestfwd");
    EXPECT_EQ(error_option({"--guest-addr", "10.0.2.99", "--guestfwd", "tcp:10.0.2.99:80-127.0.0.1:1"}),
              "--guestfwd");
    EXPECT_EQ(error_option({"--guestfwd", "tcp:10.0.2.99:80-127.0.0.1:1", "--guestfwd",
                            "tcp:10.0.2.99:80-cmd:cat"}),
              "--guestfwd");
    EXPECT_EQ(error_option({"--no-gateway", "--guestfwd", "tcp:10.0.2.99:80-127.0.0.1:1"}),
              "--guestfwd");
    EXPECT_NE(error_message({"--guestfwd", "tcp:10.0.2.15:80-127.0.0.1:1"}).find("DHCP range"),
              std::string::npos);

    // --smb: QEMU's 10.0.2.4 (the network's .4), or --smb-server.
    const std::string dir = std::filesystem::temp_directory_path();
    Config s = parse({"--smb", dir});
    EXPECT_EQ(s.smb_dir, std::filesystem::canonical(dir).string());
    EXPECT_EQ(s.smb_addr, IpAddr::v4(ip("10.0.2.4")));
    EXPECT_EQ(s.net.service_addrs, std::vector<IpAddr>{IpAddr::v4(ip("10.0.2.4"))});
    EXPECT_EQ(parse({"--net", "192.168.7.0/24", "--smb", dir}).smb_addr,
              IpAddr::v4(ip("192.168.7.4")));
    EXPECT_EQ(parse({"--smb", dir, "--smb-server", "10.0.2.9"}).smb_addr,
              IpAddr::v4(ip("10.0.2.9")));
    EXPECT_EQ(error_option({"--smb", "/nonexistent/dir"}), "--smb");
    EXPECT_EQ(error_option({"--smb-server", "10.0.2.9"}), "--smb-server");
    EXPECT_EQ(error_option({"--smb", dir, "--smb-server", "10.0.2.2"}), "--smb-server");
    EXPECT_EQ(error_option({"--smb", dir, "--guestfwd", "tcp:10.0.2.4:445-cmd:cat"}), "--smb");
}

TEST(Options, Options_ForwardSource) {
    EXPECT_TRUE(parse({}).net.forward_keep_client);
    EXPECT_TRUE(parse({"--forward-source", "client"}).net.forward_keep_client);
    EXPECT_FALSE(parse({"--forward-source", "gateway"}).net.forward_keep_client);
    EXPECT_EQ(error_option({"--forward-source", "host"}), "--forward-source");
}

TEST(Options, Options_PolicyRules) {
    Config c = parse({"--restrict", "--no-tcp", "--no-udp", "--no-icmp"});
    EXPECT_TRUE(c.net.restrict && c.net.no_tcp && c.net.no_udp && c.net.no_icmp);
    EXPECT_FALSE(parse({}).net.restrict);
    c = parse({"--deny", "192.0.2.77/24", "--allow", "10.0.2.2:8080", "--allow",
               "[2001:db8::1/32]:80-89", "--allow", "::/0"});
    ASSERT_EQ(c.net.policy.size(), 4u);
    // Allows first, then denies (order does not matter: a deny always wins).
    const auto& a = c.net.policy[0];
    EXPECT_TRUE(a.allow);
    EXPECT_EQ(a.net, IpAddr::v4(ip("10.0.2.2")));
    EXPECT_EQ(a.prefix_len, 32);
    EXPECT_FALSE(a.any_port);
    EXPECT_EQ(a.port_lo, 8080);
    EXPECT_EQ(a.port_hi, 8080);
    EXPECT_EQ(c.net.policy[1].net, *IpAddr::parse("2001:db8::"));  // host bits cleared
    EXPECT_EQ(c.net.policy[1].port_hi, 89);
    EXPECT_TRUE(c.net.policy[2].any_port);
    EXPECT_EQ(c.net.policy[2].prefix_len, 0);
    EXPECT_FALSE(c.net.policy[3].allow);
    EXPECT_EQ(c.net.policy[3].net, IpAddr::v4(ip("192.0.2.0")));
    for (const char* bad : {"", "nowhere", "10.0.2.2/33", "10.0.2.2:", "10.0.2.2:0", "10.0.2.2:90-80",
                            "[::1", "[::1]80", "::1/129", "10.0.2.2:70000"})
        EXPECT_EQ(error_option({"--allow", bad}), "--allow") << bad;
    EXPECT_EQ(error_option({"--deny", "x"}), "--deny");
}

}  // namespace
TEST(Options, OutboundAddrTakesAnAddressOrAnInterfaceOncePerFamily) {
    // The loopback interface always exists and holds 127.0.0.1 (and ::1
    // where IPv6 is on): by name it gives both, by address one family.
    Config c = parse({"--socket", "/tmp/x.sock", "--outbound-addr", "127.0.0.1"});
    EXPECT_EQ(c.net.outbound4, *IpAddr::parse("127.0.0.1"));
    EXPECT_TRUE(c.net.outbound6.is_unspecified());
    c = parse({"--socket", "/tmp/x.sock", "--outbound-addr", "lo"});
    EXPECT_EQ(c.net.outbound4, *IpAddr::parse("127.0.0.1"));
    EXPECT_TRUE(Config{}.net.outbound4.is_unspecified());
    // Not an address of this host, not a unicast address, no such
    // interface, two of one family: each refused at start.
    EXPECT_NE(error_message({"--socket", "/tmp/x.sock", "--outbound-addr", "192.0.2.254"})
                  .find("cannot use 192.0.2.254 as a source address"),
              std::string::npos);
    EXPECT_EQ(error_option({"--socket", "/tmp/x.sock", "--outbound-addr", "224.0.0.1"}),
              "--outbound-addr");
    EXPECT_EQ(error_option({"--socket", "/tmp/x.sock", "--outbound-addr", "no-such-if0"}),
              "--outbound-addr");
    EXPECT_EQ(error_option({"--socket", "/tmp/x.sock", "--outbound-addr", "127.0.0.1",
                            "--outbound-addr", "127.0.0.2"}),
              "--outbound-addr");
}

TEST(Options, NoDhcpTurnsOffTheDhcp4ServerOnly) {
    EXPECT_TRUE(parse({"--socket", "/tmp/x.sock"}).net.dhcp4);
    Config c = parse({"--socket", "/tmp/x.sock", "--no-dhcp"});
    EXPECT_FALSE(c.net.dhcp4);
    EXPECT_TRUE(c.net.ipv6);
    EXPECT_TRUE(c.net.dns_service);
}

}  // namespace usernet::app
