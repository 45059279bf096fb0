#include "kernels/cuda/rope_table.h"

#include <cmath>

namespace kvasir::cuda {

std::vector<float> RopeCosSinTable(const std::vector<float>& inv_freq, int32_t max_positions,
                                   float attention_factor) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  std::vector<float> table(static_cast<size_t>(max_positions) * 2 * half);
  for (int64_t p = 0; p < max_positions; ++p) {
    float* row = table.data() + p * 2 * half;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<float>(p) * inv_freq[i];
      row[i] = static_cast<float>(std::cos(angle) * attention_factor);
      row[half + i] = static_cast<float>(std::sin(angle) * attention_factor);
    }
  }
  return table;
}

}  // namespace kvasir::cuda
