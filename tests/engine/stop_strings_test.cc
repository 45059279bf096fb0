// Stop strings across token boundaries: held back until decided, never emitted (unless asked).
#include "engine/stop_strings.h"

#include "gtest/gtest.h"

namespace kvasir {
namespace {

// Feeds pieces one by one; returns everything emitted and the match.
std::pair<std::string, std::optional<std::string>> Feed(StopStringMatcher& m,
                                                        const std::vector<std::string>& pieces,
                                                        bool flush = true) {
  std::string out;
  std::optional<std::string> matched;
  for (const std::string& p : pieces) {
    out += m.Push(p, &matched);
    if (matched.has_value()) return {out, matched};
  }
  if (flush) out += m.Flush();
  return {out, matched};
}

TEST(StopStringsTest, MatchAcrossPiecesIsNotEmittedNorAnythingAfterIt) {
  StopStringMatcher m({"STOP"}, /*include_stop=*/false);
  auto [out, matched] = Feed(m, {"Hello S", "TO", "P and more"});
  EXPECT_EQ(out, "Hello ");
  EXPECT_EQ(matched, "STOP");
}

TEST(StopStringsTest, IncludeStopEmitsTheStopStringAndNothingAfter) {
  StopStringMatcher m({"STOP"}, /*include_stop=*/true);
  auto [out, matched] = Feed(m, {"ab", "cST", "OPxyz"});
  EXPECT_EQ(out, "abcSTOP");
  EXPECT_EQ(matched, "STOP");
}

TEST(StopStringsTest, APossiblePrefixIsHeldBackThenReleased) {
  StopStringMatcher m({"</end>"}, false);
  std::optional<std::string> matched;
  EXPECT_EQ(m.Push("text </e", &matched), "text ");  // "</e" might start the stop string
  EXPECT_EQ(m.Push("x", &matched), "</ex");          // it did not
  EXPECT_FALSE(matched.has_value());
  EXPECT_EQ(m.Push("<", &matched), "");
  EXPECT_EQ(m.Flush(), "<");  // the request ended otherwise: everything held comes out
}

TEST(StopStringsTest, EarliestMatchWinsThenTheLongest) {
  StopStringMatcher m({"cd", "bcd", "b"}, false);
  auto [out, matched] = Feed(m, {"abcde"});
  EXPECT_EQ(out, "a");
  EXPECT_EQ(matched, "bcd");
}

TEST(StopStringsTest, NoStopsPassEverythingThrough) {
  StopStringMatcher m({}, false);
  EXPECT_TRUE(m.empty());
  auto [out, matched] = Feed(m, {"a", "b"});
  EXPECT_EQ(out, "ab");
  EXPECT_FALSE(matched.has_value());
}

TEST(StopStringsTest, MultiByteStopStringSplitInsideACharacterIsHeld) {
  StopStringMatcher m({"\xC3\xA9t\xC3\xA9"}, false);  // "été"
  std::optional<std::string> matched;
  EXPECT_EQ(m.Push("un \xC3\xA9", &matched), "un ");
  EXPECT_EQ(m.Push("t", &matched), "");
  EXPECT_EQ(m.Push("\xC3\xA9 chaud", &matched), "");
  EXPECT_EQ(matched, "\xC3\xA9t\xC3\xA9");
}

}  // namespace
}  // namespace kvasir
