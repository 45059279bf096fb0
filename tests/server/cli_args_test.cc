// Command-line parsing: flag syntax, typed values with errors naming the flag, engine flags.
#include "server/cli_args.h"

#include "gtest/gtest.h"
#include "server/engine_flags.h"

namespace kvasir::server {
namespace {

const FlagSpec kFlags[] = {
    {"model", true, "PATH", "model"},
    {"json", false, "", "json"},
};

absl::StatusOr<ParsedArgs> Parse(std::vector<const char*> args,
                                 absl::Span<const FlagSpec> specs = kFlags) {
  return ParseArgs(specs, args);
}

TEST(CliArgsTest, ValuesSwitchesAndInlineValues) {
  auto a = Parse({"--model", "m.gguf", "--json"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->GetString("model", ""), "m.gguf");
  EXPECT_TRUE(a->Has("json"));
  auto b = Parse({"--model=x"});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->GetString("model", ""), "x");
  EXPECT_FALSE(b->Has("json"));
}

TEST(CliArgsTest, ErrorsNameTheFlag) {
  EXPECT_NE(Parse({"--nope"}).status().message().find("--nope"), std::string::npos);
  EXPECT_NE(Parse({"--model"}).status().message().find("needs a value"), std::string::npos);
  EXPECT_NE(Parse({"--json=1"}).status().message().find("takes no value"), std::string::npos);
  EXPECT_NE(Parse({"--json", "--json"}).status().message().find("twice"), std::string::npos);
  EXPECT_NE(Parse({"stray"}).status().message().find("stray"), std::string::npos);
}

TEST(CliArgsTest, BytesTakeBinarySuffixes) {
  const std::vector<FlagSpec> flags = WithEngineFlags({});
  auto get = [&](const char* v) {
    return Parse({"--kv-cache-bytes", v}, flags)->GetBytes("kv-cache-bytes", 0);
  };
  EXPECT_EQ(*get("1024"), 1024);
  EXPECT_EQ(*get("512M"), int64_t{512} << 20);
  EXPECT_EQ(*get("2g"), int64_t{2} << 30);
  EXPECT_EQ(*get("1K"), 1024);
  for (const char* bad : {"", "M", "-1", "1.5G", "9999999999T", "12X"}) {
    auto r = get(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--kv-cache-bytes"), std::string::npos);
  }
}

TEST(EngineFlagsTest, OverrideOnlyWhatIsGivenAndCheckConsistency) {
  const std::vector<FlagSpec> flags = WithEngineFlags(kFlags);
  auto a = Parse({"--max-num-seqs", "8", "--block-size", "32", "--no-prefix-caching",
                  "--kv-cache-bytes", "64M", "--long-prefill-chunk", "100"},
                 flags);
  ASSERT_TRUE(a.ok()) << a.status();
  EngineOptions o;
  o.max_batched_tokens = 512;
  ASSERT_TRUE(ReadEngineFlags(*a, &o).ok());
  EXPECT_EQ(o.max_num_seqs, 8);
  EXPECT_EQ(o.max_batched_tokens, 512);  // not given: kept
  EXPECT_EQ(o.block_size, 32);
  EXPECT_FALSE(o.enable_prefix_caching);
  EXPECT_EQ(o.kv_cache_bytes, int64_t{64} << 20);
  EXPECT_EQ(o.long_prefill_chunk, 100);

  EngineOptions p;
  auto c = Parse({"--block-size", "0"}, flags);
  EXPECT_NE(ReadEngineFlags(*c, &p).message().find("--block-size"), std::string::npos);
}

}  // namespace
}  // namespace kvasir::server
