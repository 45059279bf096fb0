#include "engine/models/moe_weights.h"

#include <bit>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace kvasir {
namespace {

absl::StatusOr<Weight> Fetch(const WeightSource& w, Ops& ops, const std::string& name,
                             std::vector<int64_t> shape) {
  KV_ASSIGN_OR_RETURN(TensorView t, GetChecked(w, name, shape));
  return ops.Upload(t);
}

// The selection bias as float32 (the file may store F32 or BF16).
absl::StatusOr<Weight> FetchBias(const WeightSource& w, Ops& ops, const std::string& name,
                                 int64_t experts) {
  KV_ASSIGN_OR_RETURN(TensorView t, GetChecked(w, name, {experts}));
  std::vector<float> values(experts);
  for (int64_t e = 0; e < experts; ++e) {
    switch (t.dtype) {
      case DType::kF32:
        values[e] = static_cast<const float*>(t.data)[e];
        break;
      case DType::kBF16:
        values[e] = std::bit_cast<float>(
            static_cast<uint32_t>(static_cast<const uint16_t*>(t.data)[e]) << 16);
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(w.Describe(), ": tensor '", name,
                                                       "' must be F32 or BF16, got ",
                                                       std::string(DTypeName(t.dtype))));
    }
  }
  return ops.UploadFloats(values);
}

}  // namespace

MoeTensorNames MixtralMoeNames() { return {"block_sparse_moe", "w1", "w3", "w2"}; }
MoeTensorNames QwenMoeNames() { return {"mlp"}; }

absl::StatusOr<MoeWeights> LoadMoeWeights(const WeightSource& w, Ops& ops, const ModelConfig& c,
                                          const MoeTensorNames& names, int64_t layer) {
  const int64_t h = c.hidden_size, inter = c.moe.expert_intermediate_size;
  const int32_t experts = c.moe.routing.num_experts;
  const std::string p = absl::StrCat("model.layers.", layer, ".", names.block, ".");
  MoeWeights m;
  m.routing = c.moe.routing;
  m.inter = inter;
  KV_ASSIGN_OR_RETURN(m.router, Fetch(w, ops, p + "gate.weight", {experts, h}));
  if (w.Has(p + "gate.e_score_correction_bias")) {
    KV_ASSIGN_OR_RETURN(m.selection_bias,
                        FetchBias(w, ops, p + "gate.e_score_correction_bias", experts));
  }
  m.gate.resize(experts);
  m.up.resize(experts);
  m.down.resize(experts);
  if (w.Has(p + "experts.gate_up_proj")) {
    KV_ASSIGN_OR_RETURN(Weight gate_up,
                        Fetch(w, ops, p + "experts.gate_up_proj", {experts, 2 * inter, h}));
    KV_ASSIGN_OR_RETURN(Weight down, Fetch(w, ops, p + "experts.down_proj", {experts, h, inter}));
    for (int32_t e = 0; e < experts; ++e) {
      m.gate[e] = SliceRows(gate_up, 2 * inter * e, inter);
      m.up[e] = SliceRows(gate_up, 2 * inter * e + inter, inter);
      m.down[e] = SliceRows(down, h * e, h);
    }
    return m;
  }
  for (int32_t e = 0; e < experts; ++e) {
    const std::string ep = absl::StrCat(p, "experts.", e, ".");
    KV_ASSIGN_OR_RETURN(m.gate[e], Fetch(w, ops, ep + names.gate + ".weight", {inter, h}));
    KV_ASSIGN_OR_RETURN(m.up[e], Fetch(w, ops, ep + names.up + ".weight", {inter, h}));
    KV_ASSIGN_OR_RETURN(m.down[e], Fetch(w, ops, ep + names.down + ".weight", {h, inter}));
  }
  return m;
}

}  // namespace kvasir
