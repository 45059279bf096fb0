// KV cache bytes per token and how many sequences of a given length fit in a KV pool, for the
// models whose config.json is given, computed through the code's own KvCacheSpec: the model's
// (Model::KvSpec, what ModelRunner sizes the pool from) and, for MLA models, the equivalent
// multi-head cache that keeps K (nope + rope) and V per head, as an engine without MLA would.
// Each spec is shown with float32 elements (the CPU backend's cache) and bf16 (a GPU cache).
//
//   kv_capacity [--pool-gb 80] [--seq-len 4096] bench/models/deepseek_v3/config.json ...
//
// 1 GB = 10^9 bytes; the pool is the KV cache alone (weights and activations elsewhere).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "engine/models/model.h"
#include "engine/ops.h"

namespace kvasir {
namespace {

struct Options {
  double pool_gb = 80;
  int64_t seq_len = 4096;
  std::vector<std::string> configs;
};

void PrintRow(const char* name, const char* cache, KvCacheSpec spec, const Options& o) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    spec.dtype = dtype;
    const int64_t per_token = spec.bytes_per_token();
    const double per_seq = static_cast<double>(per_token) * static_cast<double>(o.seq_len);
    const auto max_seqs = static_cast<int64_t>(o.pool_gb * 1e9 / per_seq);
    std::printf("| %s | %s | %s | %lld | %.1f | %lld |\n", name, cache,
                std::string(DTypeName(dtype)).c_str(), static_cast<long long>(per_token),
                per_seq / 1e6, static_cast<long long>(max_seqs));
  }
}

int Run(const Options& o) {
  std::printf("KV pool %.0f GB, sequences of %lld tokens\n\n", o.pool_gb,
              static_cast<long long>(o.seq_len));
  std::printf(
      "| model | cache | dtype | bytes/token | MB per sequence | max concurrent sequences |\n"
      "|---|---|---|---|---|---|\n");
  for (const std::string& path : o.configs) {
    auto c = ParseHfConfig(path);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 1;
    }
    auto model = ModelRegistry::Get().Create(*c);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      return 1;
    }
    const KvCacheSpec spec = (*model)->KvSpec();
    const bool mla = spec.layout == KvLayout::kMlaLatent;
    PrintRow(c->architecture.c_str(), mla ? "MLA latent + RoPE key" : "K/V per KV head", spec, o);
    if (mla) {
      KvCacheSpec mha;
      mha.num_layers = spec.num_layers;
      mha.num_kv_heads = static_cast<int32_t>(c->num_heads);
      mha.head_dim = static_cast<int32_t>(c->mla.nope_head_dim + c->mla.rope_head_dim);
      mha.v_head_dim = static_cast<int32_t>(c->mla.v_head_dim);
      PrintRow(c->architecture.c_str(), "MHA equivalent: K and V per head", mha, o);
    }
  }
  return 0;
}

}  // namespace
}  // namespace kvasir

int main(int argc, char** argv) {
  kvasir::Options o;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--pool-gb") == 0 && i + 1 < argc) {
      o.pool_gb = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--seq-len") == 0 && i + 1 < argc) {
      o.seq_len = std::atoll(argv[++i]);
    } else {
      o.configs.push_back(argv[i]);
    }
  }
  if (o.configs.empty() || o.pool_gb <= 0 || o.seq_len <= 0) {
    std::fprintf(stderr, "usage: %s [--pool-gb GB] [--seq-len N] config.json...\n", argv[0]);
    return 2;
  }
  return kvasir::Run(o);
}
