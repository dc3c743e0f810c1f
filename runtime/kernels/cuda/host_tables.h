// host_tables.h - the host half of a CUDA embedding_bags op some of whose
// tables stay in host memory (kiln compile --host-tables-over).
//
// No CUDA here, so that the CPU tests check it. kernels.cuh's embeddingBags
// copies the ids into pinned memory, runs the CPU kernel over `tables` on a
// host node of the request's graph, and copies each run of pooled values
// into the op's output on the device.
#ifndef KILN_KERNELS_CUDA_HOST_TABLES_H
#define KILN_KERNELS_CUDA_HOST_TABLES_H

#include "kernels.h"

#include <cstdint>
#include <vector>

namespace kiln::cuda {

template <typename T> struct HostBags {
  /// The host tables in the op's order, and the ids' columns they read.
  std::vector<cpu::BagTable<T>> tables;
  std::vector<int64_t> columns;
  /// Values per sample the CPU writes (the host tables' results side by side).
  int64_t width = 0;
  /// Tables next to each other in the op's output are copied together:
  /// `width` values per sample from `from` of the CPU's rows to `to` of the
  /// output's.
  struct Run {
    int64_t from, to, width;
  };
  std::vector<Run> runs;
};

/// The host part of embeddingBags over `tables` (the tables flagged `host`).
template <typename T>
HostBags<T> splitHostBags(const cpu::BagTable<T> *tables, int64_t count, const int64_t *columns,
                          int mode) {
  HostBags<T> h;
  int64_t firstId = 0, outOffset = 0;
  bool previousOnHost = false;
  for (int64_t t = 0; t < count; ++t) {
    const cpu::BagTable<T> &table = tables[t];
    const int64_t width = mode == 3 ? table.dim * table.hotness : table.dim;
    if (table.host) {
      h.tables.push_back(table);
      h.columns.insert(h.columns.end(), columns + firstId, columns + firstId + table.hotness);
      if (previousOnHost)
        h.runs.back().width += width;
      else
        h.runs.push_back({h.width, outOffset, width});
      h.width += width;
    }
    previousOnHost = table.host;
    firstId += table.hotness;
    outOffset += width;
  }
  return h;
}

} // namespace kiln::cuda

#endif
