/* checked.h - overflow-checked size arithmetic, shared by the compiler and
 * the runtime (C++ only; not part of the C ABI).
 *
 * Every element count, byte size, offset and arena sum kiln computes from a
 * model's numbers (dims, declared data sizes, descriptor fields) goes through
 * these: a size is a non-negative int64_t, and an operation whose operands or
 * result are not one gives std::nullopt instead of wrapping around. */
#ifndef KILN_CHECKED_H
#define KILN_CHECKED_H

#include <cstdint>
#include <initializer_list>
#include <optional>

namespace kiln {

/// a * b, or nullopt when either is negative or the product exceeds INT64_MAX.
constexpr std::optional<int64_t> checkedMul(int64_t a, int64_t b) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out))
    return std::nullopt;
  return out;
}

/// a + b, or nullopt when either is negative or the sum exceeds INT64_MAX.
constexpr std::optional<int64_t> checkedAdd(int64_t a, int64_t b) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &out))
    return std::nullopt;
  return out;
}

/// a + b for sizes a, b, saturated at INT64_MAX: for estimates that are only
/// compared (a live peak); what gets allocated is summed with checkedAdd.
constexpr int64_t saturatingAdd(int64_t a, int64_t b) {
  return checkedAdd(a, b).value_or(INT64_MAX);
}

/// The product of dims[0..n) times `init` (an element's bytes, say), or
/// nullopt for a negative dim or an overflow.
constexpr std::optional<int64_t> checkedProductN(const int64_t *dims, int64_t n, int64_t init = 1) {
  std::optional<int64_t> p = init < 0 ? std::nullopt : std::optional<int64_t>(init);
  for (int64_t i = 0; i < n && p; ++i)
    p = checkedMul(*p, dims[i]);
  return p;
}

/// The same over any range of integers (an llvm::ArrayRef, a std::vector).
template <typename Range>
constexpr std::optional<int64_t> checkedProduct(const Range &dims, int64_t init = 1) {
  std::optional<int64_t> p = init < 0 ? std::nullopt : std::optional<int64_t>(init);
  for (auto d : dims) {
    if (!p)
      break;
    p = checkedMul(*p, int64_t(d));
  }
  return p;
}

/// The sum of sizes, or nullopt for a negative one or an overflow.
constexpr std::optional<int64_t> checkedSum(std::initializer_list<int64_t> sizes) {
  std::optional<int64_t> s = 0;
  for (int64_t v : sizes)
    if (s)
      s = checkedAdd(*s, v);
  return s;
}

} // namespace kiln

#endif // KILN_CHECKED_H
