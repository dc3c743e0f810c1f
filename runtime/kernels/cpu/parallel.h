// parallel.h - how the CPU kernels split work over the session's threads.
//
// The runtime owns the threads (a pool created with the session); a model's
// entry point receives them as a kiln_abi_exec and passes it to kernels,
// which cut their work into at most num_threads tasks. Nothing here
// allocates: the task body is passed by pointer.
#ifndef KILN_KERNELS_CPU_PARALLEL_H
#define KILN_KERNELS_CPU_PARALLEL_H

#include "kiln/model_abi.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace kiln::cpu {

inline int64_t threadCount(const kiln_abi_exec *exec) {
  return exec && exec->parallel_for ? std::max<int64_t>(exec->num_threads, 1) : 1;
}

/// Runs fn(task) for every task in [0, tasks), on the session's threads when
/// there are several; returns when all have finished.
template <typename Fn> void parallelFor(const kiln_abi_exec *exec, int64_t tasks, Fn &&fn) {
  if (tasks <= 1 || threadCount(exec) <= 1) {
    for (int64_t t = 0; t < tasks; ++t)
      fn(t);
    return;
  }
  using Body = std::remove_reference_t<Fn>;
  exec->parallel_for(
      exec->pool, tasks, [](void *ctx, int64_t task) { (*static_cast<Body *>(ctx))(task); },
      const_cast<void *>(static_cast<const void *>(&fn)));
}

/// Splits [0, n) into at most `threadCount` chunks of at least `grain`
/// elements (chunk bounds multiples of `align`) and runs fn(begin, end) on each.
template <typename Fn>
void parallelRange(const kiln_abi_exec *exec, int64_t n, int64_t grain, int64_t align, Fn &&fn) {
  int64_t tasks = std::min(threadCount(exec), std::max<int64_t>(n / std::max<int64_t>(grain, 1), 1));
  if (tasks <= 1) {
    fn(int64_t(0), n);
    return;
  }
  int64_t units = (n + align - 1) / align;
  parallelFor(exec, tasks, [&](int64_t t) {
    int64_t begin = std::min(units * t / tasks * align, n);
    int64_t end = std::min(units * (t + 1) / tasks * align, n);
    if (begin < end)
      fn(begin, end);
  });
}

} // namespace kiln::cpu

#endif
