// Host launchers of moe.h: argument checks (INVALID_ARGUMENT naming the field), then the device
// launchers of moe.cu, their cudaError_t turned into a Status naming the kernel.
#include "kernels/cuda/moe.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/arg_check.h"
#include "kernels/cuda/cuda_status.h"

namespace kvasir::cuda {
namespace {

using internal::Aligned;

absl::Status CheckRouting(const char* op, const MoeRouting& r) {
  KV_CUDA_REQUIRE(
      r.num_experts >= 1 && r.num_experts <= kMoeMaxExperts, op,
      absl::StrCat("routing.num_experts ", r.num_experts, " outside [1, ", kMoeMaxExperts, "]"));
  KV_CUDA_REQUIRE(r.top_k >= 1 && r.top_k <= r.num_experts, op,
                  absl::StrCat("routing.top_k ", r.top_k, " outside [1, num_experts]"));
  KV_CUDA_REQUIRE(r.num_groups >= 1 && r.num_experts % r.num_groups == 0, op,
                  absl::StrCat("routing.num_groups ", r.num_groups, " does not divide num_experts ",
                               r.num_experts));
  KV_CUDA_REQUIRE(r.topk_groups >= 1 && r.topk_groups <= r.num_groups, op,
                  absl::StrCat("routing.topk_groups ", r.topk_groups, " outside [1, num_groups]"));
  KV_CUDA_REQUIRE(
      r.num_groups == 1 || r.top_k <= r.topk_groups * (r.num_experts / r.num_groups), op,
      absl::StrCat("routing.top_k ", r.top_k, " exceeds the experts of topk_groups groups"));
  KV_CUDA_REQUIRE(r.scoring == MoeScoring::kSoftmax || r.scoring == MoeScoring::kSigmoid, op,
                  "routing.scoring is not a MoeScoring");
  KV_CUDA_REQUIRE(r.group_score == MoeGroupScore::kMax || r.group_score == MoeGroupScore::kTop2Sum,
                  op, "routing.group_score is not a MoeGroupScore");
  return absl::OkStatus();
}

absl::Status CheckWeight(const char* op, const char* name, const MoeWeight& w, int64_t elems) {
  if (w.ptrs != nullptr) {
    KV_CUDA_REQUIRE(Aligned(w.ptrs, alignof(const bf16*)), op,
                    absl::StrCat(name, ".ptrs is misaligned"));
    return absl::OkStatus();
  }
  KV_CUDA_REQUIRE(w.base != nullptr, op, absl::StrCat(name, ": ptrs and base are both null"));
  KV_CUDA_REQUIRE(Aligned(w.base, 16), op, absl::StrCat(name, ".base must be 16-byte aligned"));
  KV_CUDA_REQUIRE(w.expert_stride % 8 == 0 && w.expert_stride >= elems, op,
                  absl::StrCat(name, ".expert_stride ", w.expert_stride,
                               " must be a multiple of 8 and >= ", elems, " elements"));
  return absl::OkStatus();
}

absl::Status CheckShape(const char* op, int64_t hidden, int64_t inter) {
  KV_CUDA_REQUIRE(hidden > 0 && hidden % 8 == 0, op,
                  absl::StrCat("hidden ", hidden, " must be a positive multiple of 8"));
  KV_CUDA_REQUIRE(inter > 0 && inter % 8 == 0, op,
                  absl::StrCat("inter ", inter, " must be a positive multiple of 8"));
  return absl::OkStatus();
}

// Where MoeForward keeps its intermediates (offsets in bytes, each 256-byte aligned).
struct Layout {
  size_t ids, weights, offsets, source_token, row_of, tile_expert, tile_row, num_tiles, xs, h, ys;
  size_t bytes;
  int64_t tiles;
};

Layout MakeLayout(int64_t tokens, int32_t top_k, int32_t num_experts, int64_t hidden,
                  int64_t inter) {
  const int64_t n = tokens * top_k;
  Layout l;
  l.tiles = std::max(MoeMaxTiles(n, num_experts, kMoeBlockMSmall),
                     MoeMaxTiles(n, num_experts, kMoeBlockMLarge));
  size_t at = 0;
  auto take = [&at](int64_t bytes) {
    const size_t off = at;
    at += (static_cast<size_t>(bytes) + 255) / 256 * 256;
    return off;
  };
  l.ids = take(n * 4);
  l.weights = take(n * 4);
  l.offsets = take((int64_t{num_experts} + 1) * 4);
  l.source_token = take(n * 4);
  l.row_of = take(n * 4);
  l.tile_expert = take(l.tiles * 4);
  l.tile_row = take(l.tiles * 4);
  l.num_tiles = take(4);
  l.xs = take(n * hidden * 2);
  l.h = take(n * inter * 2);
  l.ys = take(n * hidden * 2);
  l.bytes = at;
  return l;
}

}  // namespace

int64_t MoeMaxTiles(int64_t n, int32_t num_experts, int32_t block_m) {
  if (n <= 0 || block_m <= 0) return 0;
  return std::min(n, (n + int64_t{num_experts} * (block_m - 1)) / block_m);
}

absl::Status MoeRoute(const float* logits, int32_t num_tokens, const MoeRouting& routing,
                      const float* selection_bias, int32_t* expert_ids, float* weights,
                      cudaStream_t stream) {
  const char* op = "MoeRoute";
  if (absl::Status s = CheckRouting(op, routing); !s.ok()) return s;
  KV_CUDA_REQUIRE(num_tokens >= 0, op, absl::StrCat("num_tokens ", num_tokens, " < 0"));
  if (num_tokens == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(logits != nullptr, op, "logits is null");
  KV_CUDA_REQUIRE(expert_ids != nullptr && weights != nullptr, op, "expert_ids or weights is null");
  return CudaStatus(internal::LaunchMoeRoute(logits, num_tokens, routing, selection_bias,
                                             expert_ids, weights, stream),
                    "MoeRouteKernel");
}

absl::Status MoeAlign(const int32_t* expert_ids, int32_t num_tokens, int32_t top_k,
                      int32_t num_experts, int32_t block_m, const MoeAlignOut& out,
                      cudaStream_t stream) {
  const char* op = "MoeAlign";
  KV_CUDA_REQUIRE(num_experts >= 1 && num_experts <= kMoeMaxExperts, op,
                  absl::StrCat("num_experts ", num_experts, " outside [1, ", kMoeMaxExperts, "]"));
  KV_CUDA_REQUIRE(top_k >= 1 && top_k <= num_experts, op,
                  absl::StrCat("top_k ", top_k, " outside [1, num_experts]"));
  KV_CUDA_REQUIRE(num_tokens >= 0 && int64_t{num_tokens} * top_k <= INT32_MAX, op,
                  absl::StrCat("num_tokens ", num_tokens, " * top_k must be in [0, 2^31)"));
  KV_CUDA_REQUIRE(block_m == kMoeBlockMSmall || block_m == kMoeBlockMLarge, op,
                  absl::StrCat("block_m ", block_m, " is not 16 or 64"));
  const int64_t n = int64_t{num_tokens} * top_k;
  KV_CUDA_REQUIRE(out.expert_offsets != nullptr && out.num_tiles != nullptr, op,
                  "out.expert_offsets or out.num_tiles is null");
  KV_CUDA_REQUIRE(n == 0 || (expert_ids && out.source_token && out.row_of), op,
                  "expert_ids, out.source_token or out.row_of is null");
  const int64_t need = MoeMaxTiles(n, num_experts, block_m);
  KV_CUDA_REQUIRE(out.max_tiles >= need, op,
                  absl::StrCat("out.max_tiles ", out.max_tiles, " < MoeMaxTiles ", need));
  KV_CUDA_REQUIRE(need == 0 || (out.tile_expert && out.tile_row), op,
                  "out.tile_expert or out.tile_row is null");
  return CudaStatus(
      internal::LaunchMoeAlign(expert_ids, num_tokens, top_k, num_experts, block_m, out, stream),
      "MoeAlignKernel");
}

absl::Status MoeGatherRows(const bf16* x, int32_t num_tokens, int64_t hidden,
                           const int32_t* source_token, int32_t num_rows, bf16* xs,
                           cudaStream_t stream) {
  const char* op = "MoeGatherRows";
  KV_CUDA_REQUIRE(hidden > 0 && hidden % 8 == 0, op,
                  absl::StrCat("hidden ", hidden, " must be a positive multiple of 8"));
  KV_CUDA_REQUIRE(num_tokens >= 0 && num_rows >= 0, op, "num_tokens or num_rows < 0");
  if (num_rows == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(source_token && xs && (x || num_tokens == 0), op, "null pointer");
  KV_CUDA_REQUIRE(Aligned(x, 16) && Aligned(xs, 16), op, "x and xs must be 16-byte aligned");
  return CudaStatus(
      internal::LaunchMoeGatherRows(x, num_tokens, hidden, source_token, num_rows, xs, stream),
      "MoeGatherKernel");
}

absl::Status MoeExperts(const MoeExpertsArgs& a, cudaStream_t stream) {
  const char* op = "MoeExperts";
  if (absl::Status s = CheckShape(op, a.hidden, a.inter); !s.ok()) return s;
  KV_CUDA_REQUIRE(a.num_experts >= 1, op, absl::StrCat("num_experts ", a.num_experts, " < 1"));
  KV_CUDA_REQUIRE(a.block_m == kMoeBlockMSmall || a.block_m == kMoeBlockMLarge, op,
                  absl::StrCat("block_m ", a.block_m, " is not 16 or 64"));
  KV_CUDA_REQUIRE(a.max_tiles >= 0, op, absl::StrCat("max_tiles ", a.max_tiles, " < 0"));
  if (a.max_tiles == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(a.expert_offsets && a.tile_expert && a.tile_row && a.num_tiles, op,
                  "expert_offsets, tile_expert, tile_row or num_tiles is null");
  KV_CUDA_REQUIRE(a.xs && a.h && a.ys, op, "xs, h or ys is null");
  KV_CUDA_REQUIRE(Aligned(a.xs, 16) && Aligned(a.h, 16) && Aligned(a.ys, 16), op,
                  "xs, h and ys must be 16-byte aligned");
  KV_CUDA_REQUIRE(a.inter <= int64_t{65535} * 64 && a.hidden <= int64_t{65535} * 64, op,
                  "hidden or inter too large for the grid");
  if (absl::Status s = CheckWeight(op, "gate", a.gate, a.inter * a.hidden); !s.ok()) return s;
  if (absl::Status s = CheckWeight(op, "up", a.up, a.inter * a.hidden); !s.ok()) return s;
  if (absl::Status s = CheckWeight(op, "down", a.down, a.hidden * a.inter); !s.ok()) return s;
  return CudaStatus(internal::LaunchMoeExperts(a, stream), "MoeGemmKernel");
}

absl::Status MoeCombine(const bf16* ys, int64_t hidden, const int32_t* row_of, const float* weights,
                        int32_t num_tokens, int32_t top_k, bf16* out, cudaStream_t stream) {
  const char* op = "MoeCombine";
  KV_CUDA_REQUIRE(hidden > 0 && hidden % 8 == 0, op,
                  absl::StrCat("hidden ", hidden, " must be a positive multiple of 8"));
  KV_CUDA_REQUIRE(top_k >= 1, op, absl::StrCat("top_k ", top_k, " < 1"));
  KV_CUDA_REQUIRE(num_tokens >= 0, op, absl::StrCat("num_tokens ", num_tokens, " < 0"));
  if (num_tokens == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(ys && row_of && weights && out, op, "null pointer");
  KV_CUDA_REQUIRE(Aligned(ys, 16) && Aligned(out, 16), op, "ys and out must be 16-byte aligned");
  return CudaStatus(
      internal::LaunchMoeCombine(ys, hidden, row_of, weights, num_tokens, top_k, out, stream),
      "MoeCombineKernel");
}

size_t MoeWorkspaceBytes(int64_t max_tokens, int32_t top_k, int32_t num_experts, int64_t hidden,
                         int64_t inter) {
  return MakeLayout(std::max<int64_t>(max_tokens, 0), std::max(top_k, 0), std::max(num_experts, 0),
                    hidden, inter)
      .bytes;
}

absl::Status MoeForward(const MoeForwardArgs& a, cudaStream_t stream) {
  const char* op = "MoeForward";
  const MoeRouting& r = a.routing;
  if (absl::Status s = CheckRouting(op, r); !s.ok()) return s;
  if (absl::Status s = CheckShape(op, a.hidden, a.inter); !s.ok()) return s;
  KV_CUDA_REQUIRE(a.num_tokens >= 0 && int64_t{a.num_tokens} * r.top_k <= INT32_MAX, op,
                  absl::StrCat("num_tokens ", a.num_tokens, " * top_k must be in [0, 2^31)"));
  if (a.num_tokens == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(a.x && a.router_logits && a.out, op, "x, router_logits or out is null");
  KV_CUDA_REQUIRE(Aligned(a.x, 16) && Aligned(a.out, 16), op, "x and out must be 16-byte aligned");
  const Layout l = MakeLayout(a.num_tokens, r.top_k, r.num_experts, a.hidden, a.inter);
  KV_CUDA_REQUIRE(a.workspace != nullptr && Aligned(a.workspace, 256), op,
                  "workspace must be set and 256-byte aligned");
  KV_CUDA_REQUIRE(a.workspace_bytes >= l.bytes, op,
                  absl::StrCat("workspace_bytes ", a.workspace_bytes, " < MoeWorkspaceBytes ",
                               l.bytes, " for ", a.num_tokens, " tokens"));
  char* ws = static_cast<char*>(a.workspace);
  auto at = [ws](size_t off) { return ws + off; };
  int32_t* ids = reinterpret_cast<int32_t*>(at(l.ids));
  float* weights = reinterpret_cast<float*>(at(l.weights));
  const int32_t n = a.num_tokens * r.top_k;
  // Decode-sized batches (under ~32 rows per expert on average) use 16-row tiles.
  const int32_t block_m = n < 32 * r.num_experts ? kMoeBlockMSmall : kMoeBlockMLarge;
  MoeAlignOut align;
  align.expert_offsets = reinterpret_cast<int32_t*>(at(l.offsets));
  align.source_token = reinterpret_cast<int32_t*>(at(l.source_token));
  align.row_of = reinterpret_cast<int32_t*>(at(l.row_of));
  align.tile_expert = reinterpret_cast<int32_t*>(at(l.tile_expert));
  align.tile_row = reinterpret_cast<int32_t*>(at(l.tile_row));
  align.num_tiles = reinterpret_cast<int32_t*>(at(l.num_tiles));
  align.max_tiles = static_cast<int32_t>(MoeMaxTiles(n, r.num_experts, block_m));
  bf16* xs = reinterpret_cast<bf16*>(at(l.xs));
  MoeExpertsArgs e;
  e.xs = xs;
  e.num_experts = r.num_experts;
  e.hidden = a.hidden;
  e.inter = a.inter;
  e.gate = a.gate;
  e.up = a.up;
  e.down = a.down;
  e.expert_offsets = align.expert_offsets;
  e.tile_expert = align.tile_expert;
  e.tile_row = align.tile_row;
  e.num_tiles = align.num_tiles;
  e.max_tiles = align.max_tiles;
  e.block_m = block_m;
  e.h = reinterpret_cast<bf16*>(at(l.h));
  e.ys = reinterpret_cast<bf16*>(at(l.ys));

  if (absl::Status s =
          MoeRoute(a.router_logits, a.num_tokens, r, a.selection_bias, ids, weights, stream);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = MoeAlign(ids, a.num_tokens, r.top_k, r.num_experts, block_m, align, stream);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          MoeGatherRows(a.x, a.num_tokens, a.hidden, align.source_token, n, xs, stream);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = MoeExperts(e, stream); !s.ok()) return s;
  return MoeCombine(e.ys, a.hidden, align.row_of, weights, a.num_tokens, r.top_k, a.out, stream);
}

}  // namespace kvasir::cuda
