//===- LoopIdioms.h - ONNX Loops that are embedding bags ---------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_LOOPIDIOMS_H
#define KILN_COMPILER_IMPORT_LOOPIDIOMS_H

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace onnx {
class NodeProto;
}

namespace kiln {

/// A Loop whose iteration i computes reduce(table[indices[begin[i]:end[i]]])
/// (rows optionally scaled by weights[begin[i]:end[i]]) and stacks it: as a
/// scan output (TorchScript's nn.EmbeddingBag) or by SequenceInsert into a
/// sequence that starts empty and is carried through the loop. The dynamo
/// exporter's form is a while loop: it carries its own counter i, runs while
/// i + 1 < `count`, reads begin/end as offsets[i], offsets[i + 1], reduces
/// rows it gathered before the loop (`rows`, in place of table[indices]) and
/// gives an empty bag zeros by an If. Names are of outer-scope values.
struct EmbeddingBagLoop {
  std::string table, indices, begin, end, weights;
  std::string rows;       // rows gathered before the loop, windowed directly
  int64_t beginShift = 0; // begin[i] is begin's element i + beginShift
  int64_t endShift = 0;   // likewise for end
  int mode = 0;           // 0 sum, 1 mean, 2 max
  bool sequence = false;  // the Loop's output is a sequence of the bags
  bool keepdims = false;  // each bag is [1, dim], not [dim]
  // The while form: the carried counter's position among the carried values
  // (-1: none), its start value and the trip limit it is compared with.
  int counter = -1;
  std::string counterStart, count;
};

/// The values of an outer-scope constant integer tensor, if it is one.
using OuterInts = std::function<std::optional<std::vector<int64_t>>(const std::string &)>;
/// Whether an outer-scope value is a constant tensor of zeros.
using OuterZeros = std::function<bool(const std::string &)>;

/// Recognises `loop` by what its body computes, not by names. On a mismatch
/// returns nothing and says in `why` which body node breaks the pattern.
std::optional<EmbeddingBagLoop> matchEmbeddingBagLoop(const onnx::NodeProto &loop,
                                                      const OuterInts &outerInts,
                                                      const OuterZeros &outerZeros,
                                                      std::string &why);

} // namespace kiln

#endif
