// Run-time CPU feature detection and the choice of SIMD kernels.
// Kernels are compiled per ISA with target attributes (never -march=native) and chosen here once.
#ifndef KVASIR_KERNELS_CPU_CPU_FEATURES_H_
#define KVASIR_KERNELS_CPU_CPU_FEATURES_H_

#include <string>

namespace kvasir::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vnni = false;
};

// Features of the CPU this process runs on; detected once, thread-safe.
const CpuFeatures& GetCpuFeatures();

// True when the AVX2+FMA+F16C kernels are used: the CPU has them and scalar is not forced.
bool UseAvx2();

// Forces the portable scalar kernels (for tests comparing scalar and SIMD results). Not meant to be
// flipped while kernels run on other threads.
void ForceScalarForTesting(bool force);

// Names the kernels in use, e.g. "avx2+fma+f16c (cpu: avx2 fma f16c)"; the server logs it.
std::string DescribeKernels();

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_CPU_FEATURES_H_
