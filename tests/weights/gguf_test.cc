#include "engine/weights/gguf.h"

#include "gtest/gtest.h"
#include "tests/weights/test_files.h"

namespace kvasir {
namespace {

using testing::Bytes;
using testing::GgufWriter;

constexpr uint32_t kF32 = 0, kF16 = 1, kQ8_0 = 8, kQ6_K = 14;

// A small llama-like file: metadata of every type and a few tensors.
GgufWriter SmallWriter() {
  GgufWriter w;
  w.String("general.architecture", "llama");
  w.String("general.name", "tiny");
  w.U32("llama.block_count", 1);
  w.Scalar<uint8_t>("t.u8", GgufType::kU8, 200);
  w.Scalar<int8_t>("t.i8", GgufType::kI8, -5);
  w.Scalar<uint16_t>("t.u16", GgufType::kU16, 60000);
  w.Scalar<int16_t>("t.i16", GgufType::kI16, -30000);
  w.I32("t.i32", -7);
  w.Scalar<uint64_t>("t.u64", GgufType::kU64, uint64_t{1} << 40);
  w.Scalar<int64_t>("t.i64", GgufType::kI64, -(int64_t{1} << 40));
  w.F32("t.f32", 0.5f);
  w.Scalar<double>("t.f64", GgufType::kF64, 1e-5);
  w.Bool("t.bool", true);
  w.StringArray("t.strings", {"a", "", "ccc"});
  w.Array<int32_t>("t.ints", GgufType::kI32, {1, -2, 3});
  w.Array<float>("t.floats", GgufType::kF32, {0.25f, 2.0f});
  w.Tensor("token_embd.weight", kF32, {3, 2}, testing::F32Data(6));     // [2, 3]
  w.Tensor("blk.0.attn_q.weight", kF16, {4, 4}, testing::U16Data(16));  // [4, 4]
  std::string q8(2 * 34, '\x01');                                       // 2 rows of 32
  w.Tensor("blk.0.ffn_down.weight", kQ8_0, {32, 2}, q8);
  w.Tensor("blk.0.ffn_up.weight", kQ6_K, {256, 1}, std::string(210, '\0'));
  w.Tensor("blk.0.attn_q.bias", 99, {4}, std::string(16, '\0'));  // unknown type id
  return w;
}

std::string WriteGguf(const std::string& bytes, const char* name = "m.gguf") {
  const auto path = testing::TestDir() / name;
  testing::WriteFile(path, bytes);
  return path.string();
}

TEST(GgufTest, ReadsEveryMetadataType) {
  auto f = GgufFile::Open(WriteGguf(SmallWriter().Build()));
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.architecture(), "llama");
  EXPECT_EQ(*g.GetString("general.name"), "tiny");
  EXPECT_EQ(*g.GetInt("t.u8"), 200);
  EXPECT_EQ(*g.GetInt("t.i8"), -5);
  EXPECT_EQ(*g.GetInt("t.u16"), 60000);
  EXPECT_EQ(*g.GetInt("t.i16"), -30000);
  EXPECT_EQ(*g.GetInt("t.i32"), -7);
  EXPECT_EQ(*g.GetInt("t.u64"), int64_t{1} << 40);
  EXPECT_EQ(*g.GetInt("t.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(*g.GetFloat("t.f32"), 0.5);
  EXPECT_EQ(*g.GetFloat("t.f64"), 1e-5);
  EXPECT_EQ(*g.GetFloat("t.i32"), -7.0);
  EXPECT_TRUE(*g.GetBool("t.bool"));
  EXPECT_EQ(*g.GetStringArray("t.strings"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(*g.GetIntArray("t.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*g.GetFloatArray("t.floats"), (std::vector<double>{0.25, 2.0}));
  EXPECT_EQ(*g.GetFloatArray("t.ints"), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(*g.KeyType("t.strings"), GgufType::kArray);
  EXPECT_EQ(g.Keys().front(), "general.architecture");
  EXPECT_TRUE(g.HasKey("t.bool"));
  EXPECT_FALSE(g.HasKey("t.nope"));
}

TEST(GgufTest, MetadataErrorsNameKeyAndFile) {
  const std::string path = WriteGguf(SmallWriter().Build());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto missing = (*f)->GetInt("llama.context_length");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_ERROR_HAS(missing.status(), "llama.context_length", path.c_str());
  auto wrong = (*f)->GetString("t.i32");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_ERROR_HAS(wrong.status(), "t.i32", path.c_str(), "i32", "string");
  EXPECT_ERROR_HAS((*f)->GetInt("t.f32").status(), "t.f32", "f32", "integer");
  EXPECT_ERROR_HAS((*f)->GetBool("t.u8").status(), "t.u8", "bool");
  EXPECT_ERROR_HAS((*f)->GetStringArray("t.ints").status(), "t.ints", "array<i32>");
  EXPECT_ERROR_HAS((*f)->GetIntArray("t.strings").status(), "t.strings", "array<string>");
  EXPECT_ERROR_HAS((*f)->GetFloat("t.strings").status(), "t.strings");
}

TEST(GgufTest, U64AboveInt64IsATypeError) {
  GgufWriter w;
  w.Scalar<uint64_t>("big", GgufType::kU64, ~uint64_t{0});
  auto f = GgufFile::Open(WriteGguf(w.Build()));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_ERROR_HAS((*f)->GetInt("big").status(), "big", "fits int64");
  EXPECT_GT(*(*f)->GetFloat("big"), 1e19);
}

TEST(GgufTest, TensorsHaveHfNamesReversedShapesAndExactBytes) {
  const GgufWriter w = SmallWriter();
  auto f = GgufFile::Open(WriteGguf(w.Build()));
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.TensorNames(),
            (std::vector<std::string>{
                "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.self_attn.q_proj.bias"}));
  EXPECT_EQ(g.RawTensorNames()[0], "token_embd.weight");

  auto e = g.Get("model.embed_tokens.weight");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->dtype, DType::kF32);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(e->numel(), 6);
  EXPECT_EQ(e->nbytes, 24);
  EXPECT_EQ(std::string(static_cast<const char*>(e->data), 24), testing::F32Data(6));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e->data) % 32, 0u);

  auto q = g.Get("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->dtype, DType::kF16);
  EXPECT_EQ(std::string(static_cast<const char*>(q->data), 32), testing::U16Data(16));

  auto d = g.Get("model.layers.0.mlp.down_proj.weight");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->dtype, DType::kQ8_0);
  EXPECT_EQ(d->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(d->nbytes, 68);

  auto raw = g.GetRaw("blk.0.ffn_down.weight");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->name, "blk.0.ffn_down.weight");
  EXPECT_EQ(raw->data, d->data);
  EXPECT_TRUE(g.HasRaw("token_embd.weight"));
  EXPECT_FALSE(g.Has("token_embd.weight"));
  EXPECT_EQ(*g.RawGgmlType("blk.0.ffn_up.weight"), kQ6_K);
}

TEST(GgufTest, UnsupportedTensorTypesAreReportedOnGet) {
  const std::string path = WriteGguf(SmallWriter().Build());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_ERROR_HAS((*f)->Get("model.layers.0.mlp.up_proj.weight").status(),
                   "model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight", "Q6_K", "14",
                   path.c_str(), "not supported");
  EXPECT_ERROR_HAS((*f)->Get("model.layers.0.self_attn.q_proj.bias").status(), "type 99");
  auto absent = (*f)->Get("lm_head.weight");
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_ERROR_HAS(absent.status(), "lm_head.weight", path.c_str());
}

TEST(GgufTest, GetCheckedComparesShapes) {
  auto f = GgufFile::Open(WriteGguf(SmallWriter().Build()));
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(GetChecked(**f, "model.embed_tokens.weight", {2, 3}).ok());
  EXPECT_ERROR_HAS(GetChecked(**f, "model.embed_tokens.weight", {3, 2}).status(),
                   "model.embed_tokens.weight", "[2, 3]", "expected [3, 2]");
}

TEST(GgufTest, OtherArchitecturesKeepGgufNames) {
  GgufWriter w;
  w.String("general.architecture", "gpt2");
  w.Tensor("token_embd.weight", kF32, {2}, testing::F32Data(2));
  auto f = GgufFile::Open(WriteGguf(w.Build()));
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE((*f)->Has("token_embd.weight"));
}

TEST(GgufTest, TranslatesEveryLayerName) {
  const std::pair<const char*, const char*> cases[] = {
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.12.attn_norm.weight", "model.layers.12.input_layernorm.weight"},
      {"blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"},
      {"blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"},
      {"blk.1.attn_v.bias", "model.layers.1.self_attn.v_proj.bias"},
      {"blk.1.attn_output.weight", "model.layers.1.self_attn.o_proj.weight"},
      {"blk.1.attn_q_norm.weight", "model.layers.1.self_attn.q_norm.weight"},
      {"blk.1.attn_k_norm.weight", "model.layers.1.self_attn.k_norm.weight"},
      {"blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"},
      {"blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"},
      {"rope_freqs.weight", "rope_freqs.weight"},
      {"blk.x.attn_k.weight", "blk.x.attn_k.weight"},
      {"blk.1.mystery.weight", "blk.1.mystery.weight"},
  };
  for (const auto& [gguf, hf] : cases) {
    EXPECT_EQ(GgufToHfName("qwen3", gguf), hf) << gguf;
  }
  EXPECT_EQ(GgufToHfName("phi3", "output.weight"), "output.weight");
}

TEST(GgufTest, ReadsVersion2AndCustomAlignment) {
  GgufWriter w = SmallWriter();
  w.version = 2;
  w.alignment = 64;
  w.U32("general.alignment", 64);
  auto f = GgufFile::Open(WriteGguf(w.Build()));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ((*f)->alignment(), 64u);
  auto e = (*f)->Get("model.embed_tokens.weight");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(std::string(static_cast<const char*>(e->data), 24), testing::F32Data(6));
}

TEST(GgufTest, EmptyFileHasNoTensors) {
  GgufWriter w;
  auto f = GgufFile::Open(WriteGguf(w.Build()));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->TensorNames().empty());
  EXPECT_EQ((*f)->architecture(), "");
}

// ---- hostile input ----

absl::Status OpenStatus(const std::string& bytes) {
  return GgufFile::Open(WriteGguf(bytes)).status();
}

TEST(GgufHostileTest, MissingFileIsNotFound) {
  auto f = GgufFile::Open("/nonexistent/x.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_ERROR_HAS(f.status(), "/nonexistent/x.gguf");
}

TEST(GgufHostileTest, BadMagic) {
  EXPECT_ERROR_HAS(OpenStatus(""), "bad magic");
  EXPECT_ERROR_HAS(OpenStatus("GGU"), "bad magic");
  std::string b = SmallWriter().Build();
  b[0] = 'X';
  const std::string path = WriteGguf(b);
  EXPECT_ERROR_HAS(GgufFile::Open(path).status(), "not a GGUF file", path.c_str());
}

TEST(GgufHostileTest, UnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    GgufWriter w;
    w.version = v;
    const std::string version = "version " + std::to_string(v);
    EXPECT_ERROR_HAS(OpenStatus(w.Build()), "unsupported GGUF version", version.c_str());
  }
}

TEST(GgufHostileTest, EveryTruncationFailsCleanly) {
  GgufWriter w = SmallWriter();
  w.Tensor("blk.0.ffn_gate.weight", kF32, {8}, testing::F32Data(8));  // ends the file exactly
  const std::string full = w.Build();
  const std::string path = (testing::TestDir() / "t.gguf").string();
  for (size_t n = 0; n < full.size(); ++n) {
    testing::WriteFile(path, full.substr(0, n));
    auto f = GgufFile::Open(path);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes opened";
    const auto code = f.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInvalidArgument)
        << f.status();
    EXPECT_NE(f.status().message().find(path), absl::string_view::npos) << f.status();
  }
}

Bytes Header(uint64_t tensors, uint64_t kvs) {
  Bytes b;
  b.Raw("GGUF").Put<uint32_t>(3).Put<uint64_t>(tensors).Put<uint64_t>(kvs);
  return b;
}

TEST(GgufHostileTest, StringLengthPastEnd) {
  Bytes b = Header(0, 1);
  b.Put<uint64_t>(1000).Raw("abc").Raw(std::string(20, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(b.str()), "truncated", "key 0", "length 1000");
  Bytes v = Header(0, 1);
  v.Str("k").Put<uint32_t>(8).Put<uint64_t>(~uint64_t{0}).Raw(std::string(8, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(v.str()), "truncated", "'k'");
}

TEST(GgufHostileTest, HugeCounts) {
  EXPECT_ERROR_HAS(OpenStatus(Header(0, uint64_t{1} << 60).Raw(std::string(64, '\0')).str()),
                   "kv_count", "larger than the file");
  EXPECT_ERROR_HAS(OpenStatus(Header(~uint64_t{0}, 0).Raw(std::string(64, '\0')).str()),
                   "tensor_count", "larger than the file");
  Bytes a = Header(0, 1);
  a.Str("arr").Put<uint32_t>(9).Put<uint32_t>(5).Put<uint64_t>(uint64_t{1} << 62);
  a.Raw(std::string(64, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(a.str()), "array length", "'arr'", "larger than");
  Bytes s = Header(0, 1);
  s.Str("arr").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(1000).Raw(std::string(64, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(s.str()), "'arr'");
}

TEST(GgufHostileTest, UnknownValueTypes) {
  Bytes b = Header(0, 1);
  b.Str("k").Put<uint32_t>(13).Raw(std::string(16, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(b.str()), "'k'", "unknown value type 13");
  Bytes a = Header(0, 1);
  a.Str("k").Put<uint32_t>(9).Put<uint32_t>(77).Put<uint64_t>(1).Raw(std::string(16, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(a.str()), "'k'", "unknown array element type 77");
  Bytes n = Header(0, 1);
  n.Str("k").Put<uint32_t>(9).Put<uint32_t>(9).Put<uint64_t>(1).Raw(std::string(16, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(n.str()), "'k'", "array of arrays");
}

TEST(GgufHostileTest, DuplicateKeysAndTensors) {
  GgufWriter w;
  w.U32("a", 1);
  w.U32("a", 2);
  EXPECT_ERROR_HAS(OpenStatus(w.Build()), "duplicate metadata key 'a'");
  GgufWriter t;
  t.Tensor("x", kF32, {1}, testing::F32Data(1));
  t.Tensor("x", kF32, {1}, testing::F32Data(1));
  EXPECT_ERROR_HAS(OpenStatus(t.Build()), "'x'", "duplicate tensor name");
}

TEST(GgufHostileTest, BadTensorInfos) {
  GgufWriter dims;
  dims.Tensor("x", kF32, {1, 1, 1, 1, 1}, testing::F32Data(1));
  EXPECT_ERROR_HAS(OpenStatus(dims.Build()), "'x'", "n_dims 5");
  GgufWriter overflow;
  overflow.Tensor("x", kF32, {uint64_t{1} << 32, uint64_t{1} << 32}, testing::F32Data(1));
  EXPECT_ERROR_HAS(OpenStatus(overflow.Build()), "'x'", "overflow");
  GgufWriter neg;
  neg.Tensor("x", kF32, {~uint64_t{0}}, testing::F32Data(1));
  EXPECT_ERROR_HAS(OpenStatus(neg.Build()), "'x'", "overflow");
  GgufWriter bytes_overflow;
  bytes_overflow.Tensor("x", kF32, {uint64_t{1} << 62}, testing::F32Data(1));
  EXPECT_ERROR_HAS(OpenStatus(bytes_overflow.Build()), "'x'");
  GgufWriter past;
  past.Tensor("x", kF32, {1000}, testing::F32Data(4));
  EXPECT_ERROR_HAS(OpenStatus(past.Build()), "truncated", "tensor 'x'", "F32 [1000]");
  GgufWriter blocks;
  blocks.Tensor("x", kQ8_0, {33}, std::string(64, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(blocks.Build()), "'x'", "row length 33", "Q8_0");
}

TEST(GgufHostileTest, UnalignedOffset) {
  Bytes b = Header(1, 0);
  b.Str("x").Put<uint32_t>(1).Put<uint64_t>(1).Put<uint32_t>(kF32).Put<uint64_t>(4);
  b.PadTo(32).Raw(std::string(64, '\0'));
  EXPECT_ERROR_HAS(OpenStatus(b.str()), "'x'", "offset 4", "alignment 32");
}

TEST(GgufHostileTest, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    GgufWriter w;
    w.U32("general.alignment", a);
    EXPECT_ERROR_HAS(OpenStatus(w.Build()), "general.alignment");
  }
  GgufWriter s;
  s.String("general.alignment", "32");
  EXPECT_ERROR_HAS(OpenStatus(s.Build()), "general.alignment");
}

}  // namespace
}  // namespace kvasir
