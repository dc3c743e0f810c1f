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
/// sequence that starts empty and is carried through the loop (the dynamo
/// exporter's form). Names are of outer-scope values.
struct EmbeddingBagLoop {
  std::string table, indices, begin, end, weights;
  int mode = 0;          // 0 sum, 1 mean, 2 max
  bool sequence = false; // the Loop's output is a sequence of the bags
};

/// The values of an outer-scope constant integer tensor, if it is one.
using OuterInts = std::function<std::optional<std::vector<int64_t>>(const std::string &)>;

/// Recognises `loop` by what its body computes, not by names. On a mismatch
/// returns nothing and says in `why` which body node breaks the pattern.
std::optional<EmbeddingBagLoop> matchEmbeddingBagLoop(const onnx::NodeProto &loop,
                                                      const OuterInts &outerInts, std::string &why);

} // namespace kiln

#endif
