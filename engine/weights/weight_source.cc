#include "engine/weights/weight_source.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/status_macros.h"
#include "engine/weights/str_util.h"

namespace kvasir {

using weights_internal::Cat;

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return Cat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<TensorView> WeightSource::GetWithShape(std::string_view name,
                                                      absl::Span<const int64_t> shape) const {
  KV_ASSIGN_OR_RETURN(TensorView view, Get(name));
  if (absl::Span<const int64_t>(view.shape) != shape) {
    return absl::InvalidArgumentError(Cat(Describe(), ": tensor '", name, "' has shape ",
                                          ShapeString(view.shape), " (", DTypeName(view.dtype),
                                          "), expected ", ShapeString(shape)));
  }
  return view;
}

absl::StatusOr<TensorView> GetChecked(const WeightSource& source, std::string_view name,
                                      absl::Span<const int64_t> shape) {
  return source.GetWithShape(name, shape);
}

}  // namespace kvasir
