// descriptor_regions.h - where in a model .so file the bytes the runtime
// reads through its descriptor lie: the descriptor itself, its tensor specs,
// their shapes and id bounds, the buckets and their slot offsets. The loader
// fuzzer mutates these; the runtime tests patch single fields of them.
#ifndef KILN_TEST_DESCRIPTOR_REGIONS_H
#define KILN_TEST_DESCRIPTOR_REGIONS_H

#include "kiln/model_abi.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kiln::test {

struct Region {
  std::string what;    // "descriptor", "input 0", "input 0 shape", "bucket 1 inputs", ...
  uint64_t fileOffset; // in the .so file
  uint64_t bytes;
};

/// The regions of the model at `path` (a valid kiln model), found by opening
/// it once; empty when it cannot be opened. Only regions that the file holds
/// (not .bss, not relocated pointers' targets outside the file) are listed.
inline std::vector<Region> descriptorRegions(const std::string &path) {
  std::vector<Region> regions;
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    return regions;
  auto *abi = static_cast<const kiln_abi_model *>(dlsym(handle, KILN_DESCRIPTOR_SYMBOL));
  link_map *map = nullptr;
  if (!abi || dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0) {
    dlclose(handle);
    return regions;
  }
  struct Segments {
    uintptr_t base;
    const char *name;
    std::vector<ElfW(Phdr)> loads;
  } segments{map->l_addr, map->l_name, {}};
  dl_iterate_phdr(
      [](dl_phdr_info *info, size_t, void *data) {
        auto *s = static_cast<Segments *>(data);
        if (info->dlpi_addr != s->base || std::strcmp(info->dlpi_name, s->name))
          return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i)
          if (info->dlpi_phdr[i].p_type == PT_LOAD)
            s->loads.push_back(info->dlpi_phdr[i]);
        return 1;
      },
      &segments);
  auto add = [&](std::string what, const void *p, uint64_t bytes) {
    auto vaddr = reinterpret_cast<uintptr_t>(p) - segments.base;
    for (const ElfW(Phdr) &s : segments.loads)
      if (p && bytes && vaddr >= s.p_vaddr && vaddr + bytes <= s.p_vaddr + s.p_filesz)
        regions.push_back({std::move(what), s.p_offset + (vaddr - s.p_vaddr), bytes});
  };
  add("descriptor", abi, sizeof *abi);
  auto tensors = [&](const char *role, const kiln_abi_tensor *t, int32_t n) {
    add(std::string(role) + "s", t, n * sizeof *t);
    for (int32_t i = 0; i < n; ++i) {
      std::string name = std::string(role) + " " + std::to_string(i);
      add(name + " shape", t[i].shape, t[i].rank * sizeof(int64_t));
      int64_t row = 1;
      for (int32_t d = t[i].batched ? 1 : 0; d < t[i].rank; ++d)
        row *= t[i].shape[d];
      add(name + " bounds", t[i].index_bounds, 2 * row * sizeof(int64_t));
    }
  };
  tensors("input", abi->inputs, abi->num_inputs);
  tensors("output", abi->outputs, abi->num_outputs);
  add("buckets", abi->buckets, abi->num_buckets * sizeof(kiln_abi_bucket));
  for (int32_t b = 0; b < abi->num_buckets; ++b) {
    std::string name = "bucket " + std::to_string(b);
    add(name + " inputs", abi->buckets[b].input_offsets, abi->num_inputs * sizeof(uint64_t));
    add(name + " outputs", abi->buckets[b].output_offsets, abi->num_outputs * sizeof(uint64_t));
  }
  dlclose(handle);
  return regions;
}

/// The region named `what`, or nullptr.
inline const Region *findRegion(const std::vector<Region> &regions, const std::string &what) {
  for (const Region &r : regions)
    if (r.what == what)
      return &r;
  return nullptr;
}

} // namespace kiln::test

#endif // KILN_TEST_DESCRIPTOR_REGIONS_H
