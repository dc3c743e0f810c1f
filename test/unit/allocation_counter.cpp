// The counting allocator of allocation_counter.h.
#include "allocation_counter.h"

#include <cstddef>

std::atomic<bool> counting{false};
std::atomic<long> allocations{0};

#if KILN_COUNT_ALLOCATIONS
extern "C" void *__libc_malloc(size_t);
extern "C" void *__libc_calloc(size_t, size_t);
extern "C" void *__libc_realloc(void *, size_t);
extern "C" void *__libc_memalign(size_t, size_t);

extern "C" void *malloc(size_t n) {
  if (counting)
    ++allocations;
  return __libc_malloc(n);
}
extern "C" void *calloc(size_t n, size_t s) {
  if (counting)
    ++allocations;
  return __libc_calloc(n, s);
}
extern "C" void *realloc(void *p, size_t n) {
  if (counting)
    ++allocations;
  return __libc_realloc(p, n);
}
extern "C" void *aligned_alloc(size_t a, size_t n) {
  if (counting)
    ++allocations;
  return __libc_memalign(a, n);
}
#endif
