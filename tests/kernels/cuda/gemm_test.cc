// CublasLtGemm against a float64 reference and the CPU MatMul (float weights = the bf16 values).
#include "kernels/cuda/gemm.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/matmul.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

struct GemmCase {
  int64_t m, n, k;
  bool bias;
  DType out;
};

std::string Name(const GemmCase& c) {
  return absl::StrCat("m", c.m, "_n", c.n, "_k", c.k, c.bias ? "_bias" : "",
                      c.out == DType::kF32 ? "_f32" : "_bf16");
}
void PrintTo(const GemmCase& c, std::ostream* os) { *os << Name(c); }

class GemmTest : public GpuTest, public ::testing::WithParamInterface<GemmCase> {};

TEST_P(GemmTest, MatchesFloat64AndCpu) {
  const GemmCase c = GetParam();
  const uint32_t seed = static_cast<uint32_t>(c.m * 131 + c.n * 7 + c.k);
  const std::vector<uint16_t> x = RandomBf16(c.m * c.k, seed);
  const std::vector<uint16_t> w = RandomBf16(c.n * c.k, seed + 1, -0.5f, 0.5f);
  const std::vector<float> bias_f = RandomFloats(c.n, seed + 2);
  std::vector<uint16_t> bias_bf(c.n);
  std::vector<double> bias_ref(c.n, 0.0);
  for (int64_t j = 0; j < c.n; ++j) {
    bias_bf[j] = cpu::Fp32ToBf16(bias_f[j]);
    if (c.bias) bias_ref[j] = c.out == DType::kF32 ? bias_f[j] : Bf(bias_bf[j]);
  }

  std::vector<double> ref(c.m * c.n);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double s = bias_ref[j];
      for (int64_t kk = 0; kk < c.k; ++kk) s += Bf(x[i * c.k + kk]) * Bf(w[j * c.k + kk]);
      ref[i * c.n + j] = s;
    }
  }
  const std::vector<float> xf = Bf16ToFloat(x), wf = Bf16ToFloat(w);
  std::vector<float> cpu_bias(c.n);
  for (int64_t j = 0; j < c.n; ++j) cpu_bias[j] = static_cast<float>(bias_ref[j]);
  std::vector<float> cpu_out(c.m * c.n);
  cpu::MatMul(xf.data(), c.m, c.k, wf.data(), DType::kF32, c.n, c.bias ? cpu_bias.data() : nullptr,
              cpu_out.data(), nullptr);

  auto gemm = CublasLtGemm::Create();
  KV_ASSERT_OK(gemm.status());
  DeviceArray<uint16_t> dx(x), dw(w), dbias_bf(bias_bf);
  DeviceArray<float> dbias_f(bias_f);
  DeviceArray<float> y32(c.m * c.n);
  DeviceArray<uint16_t> y16(c.m * c.n);
  KV_ASSERT_OK(y32.Poison());
  KV_ASSERT_OK(y16.Poison());
  GemmArgs a;
  a.x = dx.bf();
  a.w = dw.bf();
  a.m = c.m;
  a.n = c.n;
  a.k = c.k;
  a.y_dtype = c.out;
  a.y = c.out == DType::kF32 ? static_cast<void*>(y32.get()) : static_cast<void*>(y16.get());
  if (c.bias) {
    a.bias = c.out == DType::kF32 ? static_cast<const void*>(dbias_f.get())
                                  : static_cast<const void*>(dbias_bf.get());
  }
  for (int rep = 0; rep < 2; ++rep) KV_ASSERT_OK((*gemm)->Run(a, nullptr));  // second: cached
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ((*gemm)->num_cached_plans(), 1u);

  std::vector<float> out;
  double tol;
  if (c.out == DType::kF32) {
    out = y32.Download();
    tol = kF32OutTol;
  } else {
    out = Bf16ToFloat(y16.Download());
    tol = kBf16Tol;
  }
  const double err_ref = RelError(out, ref);
  const double err_cpu = RelError(out, ToDouble(cpu_out));
  EXPECT_LT(err_ref, tol) << "vs float64";
  EXPECT_LT(err_cpu, tol) << "vs CPU MatMul";
  RecordProperty("rel_err_f64", std::to_string(err_ref));
}

// Odd sizes: m = 1 (decode), m not a tile multiple, n not a multiple of 64 or 128.
INSTANTIATE_TEST_SUITE_P(Shapes, GemmTest,
                         ::testing::Values(GemmCase{1, 256, 512, false, DType::kBF16},
                                           GemmCase{1, 1000, 1024, true, DType::kBF16},
                                           GemmCase{7, 264, 328, false, DType::kBF16},
                                           GemmCase{64, 384, 2048, true, DType::kBF16},
                                           GemmCase{129, 1032, 264, false, DType::kBF16},
                                           GemmCase{3, 5000, 256, false, DType::kF32},
                                           GemmCase{33, 520, 136, true, DType::kF32}),
                         [](const ::testing::TestParamInfo<GemmCase>& i) {
                           const GemmCase& c = i.param;
                           return "m" + std::to_string(c.m) + "_n" + std::to_string(c.n) + "_k" +
                                  std::to_string(c.k) + (c.bias ? "_bias" : "") +
                                  (c.out == DType::kF32 ? "_f32" : "_bf16");
                         });

// One CublasLtGemm across plan-cache keys: the same (m, n, k) with and without bias, bf16 and f32
// output, and x or y offset by 1-2 elements (lower operand alignment), each against float64; then
// every variant again, from the cache, with no new plan.
class GemmPlanCacheTest : public GpuTest {};

TEST_F(GemmPlanCacheTest, OneObjectAcrossKeys) {
  const int64_t m = 19, n = 264, k = 328, pad = 2;
  const std::vector<uint16_t> x = RandomBf16(m * k + pad, 77);
  const std::vector<uint16_t> w = RandomBf16(n * k, 78, -0.5f, 0.5f);
  const std::vector<float> bias_f = RandomFloats(n, 79);
  std::vector<uint16_t> bias_bf(n);
  for (int64_t j = 0; j < n; ++j) bias_bf[j] = cpu::Fp32ToBf16(bias_f[j]);

  struct Variant {
    bool bias;
    DType out;
    int64_t x_off, y_off;  // elements
  };
  const std::vector<Variant> variants = {
      {false, DType::kBF16, 0, 0}, {true, DType::kBF16, 0, 0},  {false, DType::kF32, 0, 0},
      {true, DType::kF32, 0, 0},   {false, DType::kBF16, 1, 0}, {true, DType::kBF16, 0, 1},
      {true, DType::kF32, 2, 0},   {false, DType::kF32, 0, 1},  {true, DType::kF32, 1, 2},
  };

  auto gemm = CublasLtGemm::Create();
  KV_ASSERT_OK(gemm.status());
  DeviceArray<uint16_t> dx(x), dw(w), dbias_bf(bias_bf);
  DeviceArray<float> dbias_f(bias_f);
  DeviceArray<float> y32(m * n + pad);
  DeviceArray<uint16_t> y16(m * n + pad);
  size_t plans_after_first_pass = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (const Variant& v : variants) {
      const std::string what =
          absl::StrCat("pass ", pass, v.bias ? " bias" : "",
                       v.out == DType::kF32 ? " f32" : " bf16", " x+", v.x_off, " y+", v.y_off);
      std::vector<double> ref(m * n);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double s = !v.bias ? 0.0 : v.out == DType::kF32 ? bias_f[j] : Bf(bias_bf[j]);
          for (int64_t kk = 0; kk < k; ++kk) {
            s += Bf(x[v.x_off + i * k + kk]) * Bf(w[j * k + kk]);
          }
          ref[i * n + j] = s;
        }
      }
      KV_ASSERT_OK(y32.Poison());
      KV_ASSERT_OK(y16.Poison());
      GemmArgs a;
      a.x = dx.bf() + v.x_off;
      a.w = dw.bf();
      a.m = m;
      a.n = n;
      a.k = k;
      a.y_dtype = v.out;
      a.y = v.out == DType::kF32 ? static_cast<void*>(y32.get() + v.y_off)
                                 : static_cast<void*>(y16.get() + v.y_off);
      if (v.bias) {
        a.bias = v.out == DType::kF32 ? static_cast<const void*>(dbias_f.get())
                                      : static_cast<const void*>(dbias_bf.get());
      }
      SCOPED_TRACE(what);
      KV_ASSERT_OK((*gemm)->Run(a, nullptr));
      KV_ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<float> out;
      double tol;
      if (v.out == DType::kF32) {
        const std::vector<float> all = y32.Download();
        out.assign(all.begin() + v.y_off, all.begin() + v.y_off + m * n);
        tol = kF32OutTol;
      } else {
        const std::vector<float> all = Bf16ToFloat(y16.Download());
        out.assign(all.begin() + v.y_off, all.begin() + v.y_off + m * n);
        tol = kBf16Tol;
      }
      EXPECT_LT(RelError(out, ref), tol);
    }
    if (pass == 0) {
      plans_after_first_pass = (*gemm)->num_cached_plans();
      // At least: {no bias, bias} x {bf16, f32} aligned, plus misaligned keys.
      EXPECT_GT(plans_after_first_pass, 4u);
    } else {
      EXPECT_EQ((*gemm)->num_cached_plans(), plans_after_first_pass) << "second pass: cached";
    }
  }
}

class GemmErrorsTest : public GpuTest {};

TEST_F(GemmErrorsTest, RejectsBadShapesAndTypes) {
  auto gemm = CublasLtGemm::Create(0);
  KV_ASSERT_OK(gemm.status());
  GemmArgs a;
  a.m = 1;
  a.n = 0;
  a.k = 8;
  EXPECT_EQ((*gemm)->Run(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.n = 8;
  a.y_dtype = DType::kQ8_0;
  EXPECT_EQ((*gemm)->Run(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvasir::cuda::testing
