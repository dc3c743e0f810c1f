//===- Weights.h - a model's weight bytes, laid out and written -*- C++ -*-===//
#ifndef KILN_CODEGEN_WEIGHTS_H
#define KILN_CODEGEN_WEIGHTS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace kiln {

/// Every weight starts at a multiple of this (the kernels' vector loads).
constexpr uint64_t kWeightAlignment = 64;

/// The weights of a model as the emitter lays them out: each constant at a
/// kWeightAlignment-aligned offset, zero padding between. A piece is a view
/// of bytes that outlive the image (a constant's resource blob, which may be
/// a map of the model's external data) or bytes the image owns, so that no
/// table is copied on its way to the output.
class WeightImage {
public:
  /// Appends `bytes`, which must outlive the image; returns their offset.
  uint64_t appendView(llvm::ArrayRef<char> bytes);
  /// Appends bytes the image keeps; returns their offset.
  uint64_t appendOwned(std::vector<char> bytes);
  /// Appends all of `other`'s pieces at the next aligned offset; returns it.
  uint64_t append(WeightImage &&other);
  uint64_t size() const { return bytes; }

  /// weightsHash of the image as write() writes it (reads every piece once).
  uint64_t hash() const;
  /// Writes the image, padding included.
  void write(llvm::raw_ostream &os) const;

private:
  struct Piece {
    uint64_t offset;
    llvm::ArrayRef<char> bytes;
  };
  template <typename Fn> void forEachChunk(Fn fn) const;

  std::vector<Piece> pieces;
  std::deque<std::vector<char>> owned; // stable addresses for the views
  uint64_t bytes = 0;
};

/// kiln's hash of weight data: xxh3 of each 1 MiB chunk, combined in order.
/// The same whether the data is fed in one piece or in many (WeightImage).
class WeightsHasher {
public:
  void update(llvm::ArrayRef<char> data);
  uint64_t finish();

private:
  void chunk(llvm::ArrayRef<char> data);
  std::vector<char> pending;
  uint64_t state = 0, chunks = 0;
};

/// Writes `image` as a weights file (kiln_weights_header, then the data) to
/// `path` through a temporary file renamed over it, so that a process that
/// opens the path sees a whole file. Returns false with `error` set.
bool writeWeightsFile(const std::string &path, const WeightImage &image, uint64_t hash,
                      const std::string &modelHash, std::string &error);

} // namespace kiln

#endif
