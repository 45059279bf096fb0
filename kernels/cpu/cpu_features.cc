#include "kernels/cpu/cpu_features.h"

#include <atomic>

namespace kvasir::cpu {
namespace {

std::atomic<bool> g_force_scalar{false};

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  // GCC 12 has no "f16c" name for __builtin_cpu_supports; every AVX2 CPU shipped has F16C, and
  // CPUID leaf 1 ECX bit 29 confirms it.
  unsigned eax = 1, ebx = 0, ecx = 0, edx = 0;
  __asm__("cpuid" : "+a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "c"(0));
  f.f16c = (ecx >> 29) & 1u;
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#endif
  return f;
}

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

bool UseAvx2() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c && !g_force_scalar.load(std::memory_order_relaxed);
}

void ForceScalarForTesting(bool force) { g_force_scalar.store(force, std::memory_order_relaxed); }

std::string DescribeKernels() {
  const CpuFeatures& f = GetCpuFeatures();
  std::string cpu;
  auto add = [&cpu](bool has, const char* name) {
    if (!has) return;
    if (!cpu.empty()) cpu += ' ';
    cpu += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vnni, "avx512vnni");
  const std::string chosen = UseAvx2() ? "avx2+fma+f16c" : "scalar";
  return chosen + " (cpu: " + (cpu.empty() ? "baseline" : cpu) + ")";
}

}  // namespace kvasir::cpu
