// Embedding, RmsNorm (also in place) / AddRmsNorm and SiluMul against float64 references and the
// CPU kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

class ElementwiseTest : public GpuTest, public ::testing::WithParamInterface<int64_t> {};

TEST_P(ElementwiseTest, EmbeddingGathersRowsAndPoisonsBadIds) {
  const int64_t dim = GetParam(), vocab = 1001, n = 37;
  const std::vector<uint16_t> table = RandomBf16(vocab * dim, 11 + dim);
  std::vector<int32_t> ids(n);
  for (int64_t t = 0; t < n; ++t) ids[t] = static_cast<int32_t>((t * 7919 + dim) % vocab);
  ids[5] = static_cast<int32_t>(vocab);  // out of range
  ids[6] = -3;
  DeviceArray<uint16_t> dtable(table), out(n * dim);
  DeviceArray<int32_t> dids(ids);
  KV_ASSERT_OK(out.Poison());
  KV_ASSERT_OK(Embedding(dtable.bf(), vocab, dim, dids.get(), n, out.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = out.Download();
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t d = 0; d < dim; ++d) {
      const float v = cpu::Bf16ToFp32(got[t * dim + d]);
      if (t == 5 || t == 6) {
        ASSERT_TRUE(std::isnan(v)) << t;
      } else {
        ASSERT_EQ(got[t * dim + d], table[ids[t] * dim + d]) << t << "," << d;
      }
    }
  }
  // The CPU embedding of the same bf16 table agrees on the valid rows.
  std::vector<float> cpu_out(dim);
  cpu::Embedding(table.data(), DType::kBF16, dim, &ids[0], 1, cpu_out.data());
  for (int64_t d = 0; d < dim; ++d) EXPECT_EQ(cpu::Bf16ToFp32(got[d]), cpu_out[d]);
}

TEST_P(ElementwiseTest, RmsNormMatchesFloat64AndCpu) {
  const int64_t dim = GetParam(), rows = 13;
  const float eps = 1e-5f;
  const std::vector<uint16_t> x = RandomBf16(rows * dim, 21 + dim, -2.0f, 2.0f);
  const std::vector<uint16_t> w = RandomBf16(dim, 22 + dim, 0.5f, 1.5f);
  std::vector<double> ref(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t d = 0; d < dim; ++d) ss += Bf(x[r * dim + d]) * Bf(x[r * dim + d]);
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t d = 0; d < dim; ++d) ref[r * dim + d] = Bf(x[r * dim + d]) * inv * Bf(w[d]);
  }
  const std::vector<float> xf = Bf16ToFloat(x), wf = Bf16ToFloat(w);
  std::vector<float> cpu_out(rows * dim);
  cpu::RmsNorm(xf.data(), wf.data(), rows, dim, eps, cpu_out.data(), nullptr);

  DeviceArray<uint16_t> dx(x), dw(w), out(rows * dim);
  KV_ASSERT_OK(out.Poison());
  KV_ASSERT_OK(RmsNorm(dx.bf(), dw.bf(), rows, dim, eps, out.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = out.Download();
  EXPECT_LT(RelError(got, ref), kBf16Tol);
  EXPECT_LT(RelError(got, ToDouble(cpu_out)), kBf16Tol);
  // In place (out == x): the same bits as out of place.
  KV_ASSERT_OK(RmsNorm(dx.bf(), dw.bf(), rows, dim, eps, dx.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(dx.Download(), got) << "in place";
}

TEST_P(ElementwiseTest, AddRmsNormUpdatesResidualThenNormalises) {
  const int64_t dim = GetParam(), rows = 9;
  const float eps = 1e-6f;
  const std::vector<uint16_t> x = RandomBf16(rows * dim, 31 + dim);
  const std::vector<uint16_t> res = RandomBf16(rows * dim, 32 + dim, -3.0f, 3.0f);
  const std::vector<uint16_t> w = RandomBf16(dim, 33 + dim, 0.5f, 1.5f);
  std::vector<double> sum(rows * dim), ref(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) sum[i] = Bf(x[i]) + Bf(res[i]);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t d = 0; d < dim; ++d) ss += sum[r * dim + d] * sum[r * dim + d];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t d = 0; d < dim; ++d) ref[r * dim + d] = sum[r * dim + d] * inv * Bf(w[d]);
  }
  std::vector<float> cpu_sum(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) cpu_sum[i] = static_cast<float>(sum[i]);
  const std::vector<float> wf = Bf16ToFloat(w);
  std::vector<float> cpu_out(rows * dim);
  cpu::RmsNorm(cpu_sum.data(), wf.data(), rows, dim, eps, cpu_out.data(), nullptr);

  DeviceArray<uint16_t> dx(x), dres(res), dw(w), out(rows * dim);
  KV_ASSERT_OK(out.Poison());
  KV_ASSERT_OK(AddRmsNorm(dx.bf(), dres.bf(), dw.bf(), rows, dim, eps, out.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LT(RelError(dres.Download(), sum), kBf16Tol) << "residual";
  EXPECT_LT(RelError(out.Download(), ref), kBf16Tol);
  EXPECT_LT(RelError(out.Download(), ToDouble(cpu_out)), kBf16Tol);
}

TEST_P(ElementwiseTest, SiluMulFusedAndSeparateLayouts) {
  const int64_t inter = GetParam(), rows = 11;
  const std::vector<uint16_t> gate_up = RandomBf16(rows * 2 * inter, 41 + inter, -4.0f, 4.0f);
  std::vector<double> ref(rows * inter);
  std::vector<float> g(rows * inter), u(rows * inter);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < inter; ++i) {
      const double gv = Bf(gate_up[r * 2 * inter + i]), uv = Bf(gate_up[r * 2 * inter + inter + i]);
      ref[r * inter + i] = gv / (1.0 + std::exp(-gv)) * uv;
      g[r * inter + i] = static_cast<float>(gv);
      u[r * inter + i] = static_cast<float>(uv);
    }
  }
  std::vector<float> cpu_out(rows * inter);
  cpu::SiluMul(g.data(), u.data(), rows * inter, cpu_out.data());

  DeviceArray<uint16_t> dgu(gate_up), out(rows * inter);
  KV_ASSERT_OK(out.Poison());
  KV_ASSERT_OK(SiluMul(dgu.bf(), dgu.bf() + inter, 2 * inter, rows, inter, out.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LT(RelError(out.Download(), ref), kBf16Tol) << "fused gate|up";
  EXPECT_LT(RelError(out.Download(), ToDouble(cpu_out)), kBf16Tol);

  // Separate gate and up buffers, in place into gate.
  std::vector<uint16_t> gs(rows * inter), us(rows * inter);
  for (int64_t i = 0; i < rows * inter; ++i) {
    gs[i] = cpu::Fp32ToBf16(g[i]);
    us[i] = cpu::Fp32ToBf16(u[i]);
  }
  DeviceArray<uint16_t> dg(gs), du(us);
  KV_ASSERT_OK(SiluMul(dg.bf(), du.bf(), inter, rows, inter, dg.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LT(RelError(dg.Download(), ref), kBf16Tol) << "in place";
}

// 4096: the 16-byte vector path; 100 and 72: scalar and short-row paths.
INSTANTIATE_TEST_SUITE_P(Dims, ElementwiseTest, ::testing::Values(4096, 100, 72, 14336));

}  // namespace
}  // namespace kvasir::cuda::testing
