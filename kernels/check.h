// Fatal checks for broken invariants (never for bad input: that is a Status).
// Debian's Abseil (20220623) has no absl/log, so these are ours. Header-only, usable everywhere.
//   KV_CHECK(ptr != nullptr) << "while doing " << x;
//   KV_CHECK_EQ(a, b);  KV_DCHECK(...) compiles away under NDEBUG.
#ifndef KVASIR_KERNELS_CHECK_H_
#define KVASIR_KERNELS_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace kvasir::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* expr) {
    stream_ << file << ":" << line << ": check failed: " << expr << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::fprintf(stderr, "%s\n", stream_.str().c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Makes `cond ? (void)0 : Voidify() & stream << ...` type-check.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace kvasir::internal

#define KV_CHECK(cond)                     \
  (cond) ? (void)0                         \
         : ::kvasir::internal::Voidify() & \
               ::kvasir::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()
#define KV_CHECK_OP_(a, op, b) KV_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define KV_CHECK_EQ(a, b) KV_CHECK_OP_(a, ==, b)
#define KV_CHECK_NE(a, b) KV_CHECK_OP_(a, !=, b)
#define KV_CHECK_LT(a, b) KV_CHECK_OP_(a, <, b)
#define KV_CHECK_LE(a, b) KV_CHECK_OP_(a, <=, b)
#define KV_CHECK_GT(a, b) KV_CHECK_OP_(a, >, b)
#define KV_CHECK_GE(a, b) KV_CHECK_OP_(a, >=, b)
#ifdef NDEBUG
#define KV_DCHECK(cond) \
  while (false) KV_CHECK(cond)
#else
#define KV_DCHECK(cond) KV_CHECK(cond)
#endif

#endif  // KVASIR_KERNELS_CHECK_H_
