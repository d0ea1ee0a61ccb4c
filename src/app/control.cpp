// See control.hpp.
#include "app/control.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "app/daemon.hpp"
#include "embed/engine.hpp"
#include "gateway/dhcp4_server.hpp"
#include "gateway/dns_forwarder.hpp"
#include "gateway/dns_tcp.hpp"
#include "gateway/reassembly.hpp"
#include "nat/icmp_nat.hpp"
#include "nat/nat.hpp"
#include "nat/tcp_nat.hpp"
#include "nat/udp_nat.hpp"
#include "switch/switch.hpp"

namespace usernet::app {

using nlohmann::json;

namespace {

json error(const std::string& desc) { return json{{"error", {{"desc", desc}}}}; }

// A port number argument: an integer 1..65535.
uint16_t port_arg(const json& args, const char* name) {
    auto it = args.find(name);
    if (it == args.end()) throw std::invalid_argument(std::string("\"") + name + "\" is missing");
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 65535)
        throw std::invalid_argument(std::string("\"") + name + "\" must be a port, 1-65535");
    return static_cast<uint16_t>(it->get<int64_t>());
}

// A string argument; absent, null or "" (what rootlesskit sends for "no
// address", as slirp4netns takes it): none.
std::optional<std::string> string_arg(const json& args, const char* name) {
    auto it = args.find(name);
    if (it == args.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) throw std::invalid_argument(std::string("\"") + name + "\" must be a string");
    std::string v = it->get<std::string>();
    if (v.empty()) return std::nullopt;
    return v;
}

}  // namespace

// One connection: its request as it comes in, then the answer going out.
struct ControlServer::Client final : core::IoHandler {
    ControlServer& server;
    int fd;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool answered = false;
    core::Timer deadline;

    Client(ControlServer& s, int f)
        : server(s), fd(f), deadline([this] { server.drop(*this); }) {}

    void on_io(uint32_t events) override {
        if (!answered && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            if (!read_request()) return;  // dropped
        }
        if (answered) write_answer();
    }

    // False when the client was dropped.
    bool read_request() {
        char buf[4096];
        bool eof = false;
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n > 0) {
                if (in.size() + static_cast<size_t>(n) > kMaxRequest) {
                    answer(error("request longer than 64 KiB"));
                    return true;
                }
                in.append(buf, static_cast<size_t>(n));
                continue;
            }
            if (n == 0) {
                eof = true;
                break;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            server.drop(*this);
            return false;
        }
        if (json::accept(in)) {
            answer(server.handle(json::parse(in)));
        } else if (eof) {
            if (in.find_first_not_of(" \t\r\n") == std::string::npos) {
                server.drop(*this);  // connected and left without a word
                return false;
            }
            answer(error("the request is not one JSON object: send {\"execute\": COMMAND, "
                         "\"arguments\": {...}}"));
        }
        return true;
    }

    void answer(const json& reply) {
        out = reply.dump() + "\n";
        answered = true;
        server.loop_.modify(fd, EPOLLOUT, this);
    }

    void write_answer() {
        while (sent < out.size()) {
            ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT
            break;
        }
        server.drop(*this);
    }
};

ControlServer::ControlServer(core::EventLoop& loop, Daemon& daemon, std::string path)
    : loop_(loop), daemon_(daemon), sock_(std::move(path), 16) {
    for (const nat::ForwardSpec& spec : daemon_.config().forwards)
        forwards_.push_back({next_id_++, spec});
    loop_.add(sock_.fd(), EPOLLIN, this);
    spdlog::info("control API on {}", sock_.path());
}

ControlServer::~ControlServer() {
    for (auto& c : clients_) {
        loop_.cancel(c->deadline);
        loop_.remove(c->fd, c.get());
        close(c->fd);
    }
    loop_.remove(sock_.fd(), this);
}

void ControlServer::on_io(uint32_t) {
    acceptor_.accept_some(sock_.fd(), sock_.path(), [&](int fd, const sockaddr_storage&) {
        if (clients_.size() >= kMaxClients) {
            spdlog::warn("control API: refusing a client, already {} connected", kMaxClients);
            close(fd);
            return;
        }
        auto c = std::make_unique<Client>(*this, fd);
        loop_.add(fd, EPOLLIN, c.get());
        loop_.arm(c->deadline, kRequestMs);
        clients_.push_back(std::move(c));
    });
}

void ControlServer::drop(Client& c) {
    loop_.cancel(c.deadline);
    loop_.remove(c.fd, &c);
    close(c.fd);
    std::erase_if(clients_, [&](const auto& p) { return p.get() == &c; });
}

json ControlServer::handle(const json& request) {
    if (!request.is_object() || !request.contains("execute") || !request["execute"].is_string())
        return error("no \"execute\": send {\"execute\": COMMAND, \"arguments\": {...}}");
    const std::string cmd = request["execute"].get<std::string>();
    const json args = request.contains("arguments") ? request["arguments"] : json::object();
    if (!args.is_object()) return error("\"arguments\" must be an object");
    try {
        if (cmd == "add_hostfwd") return add_hostfwd(args);
        if (cmd == "list_hostfwd") return list_hostfwd();
        if (cmd == "remove_hostfwd") return remove_hostfwd(args);
        if (cmd == "get_stats") return get_stats();
    } catch (const std::exception& e) {
        spdlog::debug("control API: {} failed: {}", cmd, e.what());
        return error(e.what());
    }
    return error("unknown command \"" + cmd +
                 "\": add_hostfwd, list_hostfwd, remove_hostfwd or get_stats");
}

json ControlServer::add_hostfwd(const json& args) {
    if (!daemon_.has_gateway()) throw std::runtime_error("no gateway (--no-gateway): no forwards");
    nat::ForwardSpec spec;
    const std::string proto = string_arg(args, "proto").value_or("");
    if (proto == "tcp") spec.proto = 't';
    else if (proto == "udp") spec.proto = 'u';
    else throw std::invalid_argument("\"proto\" must be \"tcp\" or \"udp\"");
    // slirp4netns's default host address: every IPv4 address.
    const std::string host = string_arg(args, "host_addr").value_or("0.0.0.0");
    auto bind = wire::IpAddr::parse(host);
    if (!bind) throw std::invalid_argument("\"host_addr\" " + host + " is not an IP address");
    spec.bind_addr = *bind;
    spec.host_first = spec.host_last = port_arg(args, "host_port");
    spec.guest_first = spec.guest_last = port_arg(args, "guest_port");
    if (auto g = string_arg(args, "guest_addr")) {
        auto ga = wire::IpAddr::parse(*g);
        if (!ga || !daemon_.gateway().config().is_guest_addr(*ga))
            throw std::invalid_argument("\"guest_addr\" " + *g +
                                        " is not a guest address of the network");
        spec.guest_addr = *ga;
    } else if (daemon_.config().forward_target) {
        spec.guest_addr = wire::IpAddr::v4(*daemon_.config().forward_target);
    }
    daemon_.nat().add_forward(spec);
    forwards_.push_back({next_id_, spec});
    spdlog::info("control API: forwarding {} (id {})", spec.to_string(), next_id_);
    return json{{"return", {{"id", next_id_++}}}};
}

json ControlServer::list_hostfwd() const {
    json entries = json::array();
    for (const Forward& f : forwards_) {
        const nat::ForwardSpec& s = f.spec;
        json e{{"id", f.id},
               {"proto", s.proto == 'u' ? "udp" : "tcp"},
               {"host_addr", s.bind_addr ? s.bind_addr->to_string() : std::string("")},
               {"host_port", s.host_first},
               {"guest_addr", s.guest_addr ? s.guest_addr->to_string() : std::string("")},
               {"guest_port", s.guest_first}};
        if (s.host_last != s.host_first) {  // a range from the command line
            e["host_port_end"] = s.host_last;
            e["guest_port_end"] = s.guest_last;
        }
        entries.push_back(std::move(e));
    }
    // As slirp4netns answers it: the entries at the top, not in "return".
    return json{{"entries", std::move(entries)}};
}

json ControlServer::remove_hostfwd(const json& args) {
    auto it = args.find("id");
    if (it == args.end() || !it->is_number_integer())
        throw std::invalid_argument("\"id\" must be the number add_hostfwd or list_hostfwd gave");
    const int64_t id = it->get<int64_t>();
    auto f = std::find_if(forwards_.begin(), forwards_.end(),
                          [&](const Forward& x) { return static_cast<int64_t>(x.id) == id; });
    if (f == forwards_.end()) throw std::invalid_argument("no forward with id " + std::to_string(id));
    const nat::ForwardSpec& s = f->spec;
    for (uint32_t p = s.host_first; p <= s.host_last; p++)
        daemon_.engine().remove_forward(s.proto, s.bind_addr, static_cast<uint16_t>(p));
    spdlog::info("control API: removed forward {} (id {})", s.to_string(), id);
    forwards_.erase(f);
    return json{{"return", json::object()}};
}

json ControlServer::get_stats() const { return json{{"return", stats_json(daemon_)}}; }

json stats_json(Daemon& daemon_) {
    json lans = json::array();
    for (size_t i = 0; i < daemon_.lan_count(); i++) {
        json ports = json::array();
        daemon_.lan(i).for_each_port([&](const sw::Port& p) {
            const sw::PortStats& s = p.stats();
            ports.push_back({{"id", p.id()},
                             {"name", p.describe()},
                             {"rx_frames", s.rx_frames},
                             {"rx_bytes", s.rx_bytes},
                             {"tx_frames", s.tx_frames},
                             {"tx_bytes", s.tx_bytes},
                             {"rx_dropped", s.rx_dropped},
                             {"tx_dropped", s.tx_dropped}});
        });
        const sw::SwitchStats& ss = daemon_.lan(i).stats();
        json lan{{"name", daemon_.lan_name(i)},
                 {"attachments", std::move(ports)},
                 {"switch",
                  {{"frames", ss.frames},
                   {"flooded", ss.flooded},
                   {"dropped_runt", ss.dropped_runt},
                   {"dropped_giant", ss.dropped_giant},
                   {"dropped_bad_src", ss.dropped_bad_src},
                   {"dropped_mac_limit", ss.dropped_mac_limit},
                   {"dropped_guard", ss.dropped_guard}}}};
        embed::Engine& e = daemon_.engine(i);
        if (e.has_gateway()) {
            const gw::GatewayStats& g = e.gateway().gw_stats();
            lan["gateway"] = {{"routed", g.routed},
                              {"dropped_malformed", g.dropped_malformed},
                              {"dropped_spoofed", g.dropped_spoofed},
                              {"dropped_martian", g.dropped_martian},
                              {"dropped_unsupported", g.dropped_unsupported},
                              {"dropped_not_for_us", g.dropped_not_for_us},
                              {"dropped_ttl", g.dropped_ttl},
                              {"dropped_too_big", g.dropped_too_big},
                              {"dropped_no_neighbor", g.dropped_no_neighbor},
                              {"dropped_rate", g.dropped_rate},
                              {"icmp_rate_limited", g.icmp_rate_limited},
                              {"icmp6_param_problems", g.icmp6_param_problems}};
            const gw::ReassemblyStats& rs = e.gateway().reassembly_stats();
            lan["gateway"]["reassembly"] = {{"fragments", rs.fragments},
                                            {"reassembled", rs.reassembled},
                                            {"dropped_overlap", rs.dropped_overlap},
                                            {"dropped_timeout", rs.dropped_timeout},
                                            {"dropped_limit", rs.dropped_limit},
                                            {"dropped_invalid", rs.dropped_invalid}};
            const gw::DnsForwarderStats& ds = e.gateway().dns().stats();
            lan["dns"] = {{"queries", ds.queries},
                          {"local_answers", ds.local_answers},
                          {"replies", ds.replies},
                          {"truncated", ds.truncated},
                          {"refused", ds.refused},
                          {"servfail", ds.servfail},
                          {"formerr", ds.formerr},
                          {"timeouts", ds.timeouts},
                          {"upstream_errors", ds.upstream_errors},
                          {"socket_rotations", ds.socket_rotations},
                          {"dropped_malformed", ds.dropped_malformed},
                          {"dropped_evicted", ds.dropped_evicted},
                          {"dropped_unmatched", ds.dropped_unmatched},
                          {"dropped_quota", ds.dropped_quota}};
            const gw::DnsTcpStats& dt = e.gateway().dns_tcp().stats();
            lan["dns"]["tcp"] = {{"sessions", dt.sessions},
                                 {"refused", dt.refused},
                                 {"local_answers", dt.local_answers},
                                 {"forwarded", dt.forwarded},
                                 {"answers", dt.answers},
                                 {"servfail", dt.servfail},
                                 {"no_upstream", dt.no_upstream},
                                 {"formerr", dt.formerr},
                                 {"bad_queries", dt.bad_queries},
                                 {"idle_closed", dt.idle_closed},
                                 {"upstream_timeouts", dt.upstream_timeouts}};
            const gw::Dhcp4Stats& hs = e.gateway().dhcp().stats();
            lan["dhcp"] = {{"offers", hs.offers},
                           {"acks", hs.acks},
                           {"naks", hs.naks},
                           {"bootp_replies", hs.bootp_replies},
                           {"pool_exhausted", hs.pool_exhausted},
                           {"names_refused", hs.names_refused},
                           {"dropped_malformed", hs.dropped_malformed},
                           {"dropped_ignored", hs.dropped_ignored}};
            const embed::EngineStats es = e.stats();
            const nat::NatStats& ns = e.nat().stats();
            const auto& ts = e.nat().tcp().stats();
            const nat::UdpStats& us = e.nat().udp().stats();
            lan["nat"] = {{"tcp_flows", es.tcp_flows},
                          {"udp_flows", es.udp_flows},
                          {"icmp_flows", es.icmp_flows},
                          {"tcp_bytes_to_host", ts.bytes_to_host},
                          {"tcp_bytes_to_guest", ts.bytes_to_guest},
                          {"tcp_retransmits_rto", ts.retransmits_rto},
                          {"tcp_retransmits_fast", ts.retransmits_fast},
                          {"tcp_retransmits_sack", ts.retransmits_sack},
                          {"tcp_retransmits_lost", ts.retransmits_lost},
                          {"tcp_tail_loss_probes", ts.tail_loss_probes},
                          {"tcp_out_of_order", ts.out_of_order},
                          {"tcp_out_of_order_not_held", ts.out_of_order_dropped},
                          {"tcp_bytes_reassembled", ts.reassembled_bytes},
                          {"tcp_partial_writes", ts.partial_writes},
                          {"udp_to_host", us.to_host},
                          {"udp_to_guest", us.to_guest},
                          {"udp_forwarded_to_guest", us.fwd_to_guest},
                          {"udp_forwarded_to_host", us.fwd_to_host},
                          {"dropped_malformed", ns.dropped_malformed},
                          {"dropped_unreachable", ns.dropped_unreachable},
                          {"dropped_forbidden", ns.dropped_forbidden},
                          {"dropped_policy", ns.dropped_policy + us.dropped_policy},
                          {"dropped_limit", ns.dropped_limit},
                          {"icmp_errors_rate_limited",
                           e.nat().icmp().stats().errors_rate_limited}};
        }
        lans.push_back(std::move(lan));
    }
    return json{{"lans", std::move(lans)}};
}

}  // namespace usernet::app
