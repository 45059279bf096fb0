// cuBLASLt is column-major. Row-major y [m, n] is column-major y^T [n, m], so we compute
// y^T = w * x^T: A = w (row-major [n, k] = column-major [k, n], transposed), B = x (row-major
// [m, k] = column-major [k, m], not transposed), D = y^T with leading dimension n. The BIAS
// epilogue adds a vector along D's rows, i.e. bias[n] per output feature.
#include "kernels/cuda/gemm.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace kvasir::cuda {

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo = {};
  ~Plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

int AlignmentOf(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  if (v == 0) return 256;
  return static_cast<int>(std::min<uintptr_t>(256, v & (~v + 1)));  // lowest set bit
}

// RAII for the heuristic's preference object.
struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  ~Preference() {
    if (p) cublasLtMatmulPreferenceDestroy(p);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(size_t workspace_bytes) {
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&g->handle_));
  if (workspace_bytes > 0) {
    KV_CUDA_RETURN_IF_ERROR(cudaMalloc(&g->workspace_, workspace_bytes));
    g->workspace_bytes_ = workspace_bytes;
  }
  return g;
}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  const auto [m, n, k, y_type, has_bias, align] = key;
  const cudaDataType_t d_type = y_type == static_cast<int>(DType::kF32) ? CUDA_R_32F : CUDA_R_16BF;
  auto plan = std::make_unique<Plan>();
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                           &trans_a, sizeof(trans_a)));
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                           &trans_b, sizeof(trans_b)));
  if (has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  }
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, k));
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, k));
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, d_type, n, m, n));

  Preference pref;
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref.p));
  const uint64_t ws = workspace_bytes_;
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const uint32_t align_bytes = static_cast<uint32_t>(align);
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    KV_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulPreferenceSetAttribute(pref.p, attr, &align_bytes, sizeof(align_bytes)));
  }
  cublasLtMatmulHeuristicResult_t result = {};
  int found = 0;
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(
      handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref.p, 1, &result, &found));
  if (found == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    return absl::UnimplementedError(absl::StrCat("cuBLASLt has no bf16 algorithm for m=", m,
                                                 " n=", n, " k=", k, " bias=", has_bias));
  }
  plan->algo = result.algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

absl::Status CublasLtGemm::Run(const GemmArgs& g, cudaStream_t stream) {
  if (g.m < 0 || g.n <= 0 || g.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CublasLtGemm: bad shape m=", g.m, " n=", g.n, " k=", g.k));
  }
  if (g.y_dtype != DType::kBF16 && g.y_dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CublasLtGemm: output type ", std::string(DTypeName(g.y_dtype)), " (BF16 or F32)"));
  }
  if (g.m == 0) return absl::OkStatus();
  if (!g.x || !g.w || !g.y) return absl::InvalidArgumentError("CublasLtGemm: null pointer");
  const int align = std::min(
      {AlignmentOf(g.x), AlignmentOf(g.w), AlignmentOf(g.y), g.bias ? AlignmentOf(g.bias) : 256});
  const Key key{g.m, g.n, g.k, static_cast<int>(g.y_dtype), g.bias != nullptr, align};
  absl::StatusOr<Plan*> plan = GetPlan(key);
  if (!plan.ok()) return plan.status();
  if (g.bias) {
    KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        (*plan)->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  KV_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, (*plan)->desc, &alpha, g.w, (*plan)->a, g.x,
                                           (*plan)->b, &beta, g.y, (*plan)->d, g.y, (*plan)->d,
                                           &(*plan)->algo, workspace_, workspace_bytes_, stream));
  return absl::OkStatus();
}

}  // namespace kvasir::cuda
