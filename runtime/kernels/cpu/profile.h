//===- profile.h - per-op timing of a model built with --profile ----------===//
//
// Only models compiled with `kiln compile --profile` include this. Each op
// of the generated code registers a site once and times every run of itself
// with a scope; when the model library is unloaded (or the process exits)
// the sites are printed to stderr, slowest first. Counters are atomic so
// concurrent sessions can share the table; nothing is allocated.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CPU_PROFILE_H
#define KILN_CPU_PROFILE_H

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace kiln::cpu::profile {

struct Site {
  const char *function, *node, *op;
  std::atomic<int64_t> calls{0}, nanos{0};
};

constexpr int kMaxSites = 8192;

struct Table {
  Site sites[kMaxSites];
  std::atomic<int> count{0};

  ~Table() {
    int n = count.load() < kMaxSites ? count.load() : kMaxSites;
    static int order[kMaxSites];
    int64_t total = 0;
    for (int i = 0; i < n; ++i) {
      order[i] = i;
      total += sites[i].nanos.load();
    }
    // Insertion sort by time, slowest first (a few hundred sites).
    for (int i = 1; i < n; ++i)
      for (int j = i; j > 0 && sites[order[j]].nanos > sites[order[j - 1]].nanos; --j)
        std::swap(order[j], order[j - 1]);
    std::fprintf(stderr, "kiln profile: %-10s %-40s %-20s %8s %12s %10s %6s\n", "function", "node",
                 "op", "calls", "total us", "mean us", "%");
    for (int k = 0; k < n; ++k) {
      const Site &s = sites[order[k]];
      int64_t calls = s.calls.load(), nanos = s.nanos.load();
      std::fprintf(stderr, "kiln profile: %-10s %-40s %-20s %8lld %12.1f %10.2f %6.1f\n",
                   s.function, s.node, s.op, static_cast<long long>(calls), nanos / 1e3,
                   calls ? nanos / 1e3 / calls : 0.0, total ? 100.0 * nanos / total : 0.0);
    }
  }
};

inline Table table;

/// The index of a new site (-1 once the table is full: that op is not timed).
inline int site(const char *function, const char *node, const char *op) {
  int i = table.count.fetch_add(1);
  if (i >= kMaxSites)
    return -1;
  table.sites[i].function = function;
  table.sites[i].node = node;
  table.sites[i].op = op;
  return i;
}

/// Adds the time from its construction to its destruction to a site.
class Scope {
public:
  explicit Scope(int site) : site_(site), start_(std::chrono::steady_clock::now()) {}
  ~Scope() {
    if (site_ < 0)
      return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now() - start_)
                  .count();
    table.sites[site_].calls.fetch_add(1, std::memory_order_relaxed);
    table.sites[site_].nanos.fetch_add(ns, std::memory_order_relaxed);
  }
  Scope(const Scope &) = delete;
  Scope &operator=(const Scope &) = delete;

private:
  int site_;
  std::chrono::steady_clock::time_point start_;
};

} // namespace kiln::cpu::profile

#endif
