// Figures the documentation states about the code, checked against the
// code. Prose drifts: tcp.md and architecture.md once gave the flow record
// as 172/248 and 240 bytes while sizeof said 176/256. Each figure here
// lives in one marked sentence of a doc ("`sizeof(Flow)` is N bytes"); the
// test finds that sentence and compares its number with sizeof, so a change
// to the struct that does not update the docs fails here, and so does a
// doc edit that drops or garbles the sentence. The figures are for x86-64
// (g++ and clang agree; the docs say so).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "nat/tcp_flow.hpp"

namespace usernet::testing {
namespace {

std::string read_doc(const std::string& name) {
    auto path = std::filesystem::path(__FILE__).parent_path() / "../../docs" / name;
    std::ifstream in(path);
    EXPECT_TRUE(in) << path;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every number the doc gives in "<marker> is N bytes" (several mentions of
// one figure must all agree with the code).
std::vector<size_t> figures(const std::string& doc, const std::string& marker) {
    // Markdown wraps lines: one space for every run of white space, so a
    // marked sentence may be wrapped anywhere.
    const std::string text = std::regex_replace(doc, std::regex(R"(\s+)"), " ");
    std::string quoted;
    for (char c : marker) {
        if (std::string("()[]{}.*+?^$|\\").find(c) != std::string::npos) quoted += '\\';
        quoted += c;
    }
    std::regex re(quoted + R"( is (\d+) bytes)");
    std::vector<size_t> out;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
         ++it)
        out.push_back(std::stoul((*it)[1].str()));
    return out;
}

void expect_figure(const std::string& doc, const std::string& marker, size_t actual) {
    auto found = figures(read_doc(doc), marker);
    ASSERT_FALSE(found.empty()) << doc << " has no sentence \"" << marker
                                << " is N bytes\" (the figure this test checks)";
    for (size_t n : found)
        EXPECT_EQ(n, actual) << doc << " says \"" << marker << " is " << n
                             << " bytes\"; the code says " << actual;
}

TEST(DocsFigures, DocsFigures_FindsMarkedSentencesAcrossLineBreaks) {
    EXPECT_EQ(figures("a `sizeof(Flow)` is 12 bytes, b `sizeof(Flow)` is\n 7 bytes", "`sizeof(Flow)`"),
              (std::vector<size_t>{12, 7}));
    EXPECT_TRUE(figures("`sizeof(Flow)` = 12 bytes", "`sizeof(Flow)`").empty());
}

#if defined(__x86_64__)
TEST(DocsFigures, DocsFigures_TcpFlowSizesInTcpMd) {
    expect_figure("tcp.md", "`sizeof(FlowState)`", sizeof(nat::tcp::FlowState));
    expect_figure("tcp.md", "`sizeof(Flow)`", sizeof(nat::tcp::Flow));
}

TEST(DocsFigures, DocsFigures_TcpFlowSizeInArchitectureMd) {
    expect_figure("architecture.md", "`sizeof(Flow)`", sizeof(nat::tcp::Flow));
}
#endif

}  // namespace
}  // namespace usernet::testing
