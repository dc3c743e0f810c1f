//===- QuantizeTables.cpp - row-wise int8 / int4 embedding tables ---------===//
//
// Rewrites the constant f32 tables of every kiln.embedding_bags as ui8 rows
// in quantized.h's row-wise format (quantizeTableRow: values, then an fp16
// scale and bias), which the bag kernel dequantises as it pools. Row
// gathers from constant tables are first turned into unpooled bags so that
// their tables are quantised too. Tables whose rows would not shrink (dim
// 1, or an odd dim at 4 bits) stay f32.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "runtime/kernels/cpu/quantized.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_QUANTIZETABLES
#include "compiler/transforms/Passes.h.inc"

namespace {

/// The table stored row-wise at `bits`; null when a row holds NaN or Inf,
/// which no code of a row-wise table stands for (the table stays f32).
ElementsAttr quantizeTable(ElementsAttr attr, int bits, Builder &b) {
  auto type = cast<RankedTensorType>(attr.getType());
  const int64_t rows = type.getDimSize(0), dim = type.getDimSize(1);
  const int64_t rowBytes = cpu::quantizedRowBytes(dim, bits);
  std::vector<char> storage;
  ArrayRef<char> bytes = constantData(attr, storage); // the blob in place: a map of the data
  std::vector<char> out(rows * rowBytes);
  for (int64_t r = 0; r < rows; ++r)
    if (!cpu::quantizeTableRow(reinterpret_cast<const float *>(bytes.data()) + r * dim, dim, bits,
                               reinterpret_cast<uint8_t *>(out.data()) + r * rowBytes))
      return {};
  auto ui8 = IntegerType::get(b.getContext(), 8, IntegerType::Unsigned);
  return makeConstant(RankedTensorType::get({rows, rowBytes}, ui8), out,
                      bits == 4 ? "int4_table" : "int8_table");
}

/// Whether a table of this dim is worth storing row-wise at `bits`: a
/// quantised row is smaller than the f32 one.
bool shrinks(int64_t dim, int bits) {
  return cpu::quantizedRowBytes(dim, bits) < dim * int64_t(sizeof(float)) &&
         (bits == 8 || dim % 2 == 0);
}

} // namespace

FailureOr<EmbeddingBagsOp> rowGatherAsEmbeddingBags(GatherOp g, RewriterBase &rewriter) {
  auto table = g.getData().getType(), ids = g.getIndices().getType();
  if (g.getAxis() != 0 || table.getRank() != 2 || !g.getData().getDefiningOp<ConstantOp>() ||
      !table.getElementType().isF32() || !table.hasStaticShape() || ids.getRank() < 1 ||
      !ids.hasStaticShape() || ids.getDimSize(0) == 0)
    return failure();
  const int64_t batch = ids.getDimSize(0), perRow = ids.getNumElements() / batch;
  rewriter.setInsertionPoint(g);
  auto rows = EmbeddingBagsOp::create(
      rewriter, g.getLoc(),
      RankedTensorType::get({batch, perRow * table.getDimSize(1)}, rewriter.getF32Type()),
      g.getIndices(), ValueRange{g.getData()},
      rewriter.getDenseI64ArrayAttr(llvm::to_vector(llvm::seq<int64_t>(0, perRow))),
      rewriter.getDenseI64ArrayAttr({perRow}), rewriter.getI64IntegerAttr(3),
      rewriter.getUnitAttr(), nullptr);
  auto shapeType = RankedTensorType::get({g.getType().getRank()}, rewriter.getI64Type());
  Value shape = ConstantOp::create(rewriter, g.getLoc(),
                                   DenseIntElementsAttr::get(shapeType, g.getType().getShape()));
  rewriter.replaceOpWithNewOp<ReshapeOp>(g, g.getType(), rows, shape);
  return rows;
}

SmallVector<ConstantOp> quantizableTables(func::FuncOp f, int bits, RewriterBase &rewriter) {
  // Row gathers from a constant table become unpooled lookups (mode 3),
  // the one kernel that reads row-wise tables.
  f.walk([&](GatherOp g) {
    auto table = g.getData().getType();
    if (table.getRank() == 2 && table.hasStaticShape() && shrinks(table.getDimSize(1), bits))
      (void)rowGatherAsEmbeddingBags(g, rewriter);
  });
  SmallVector<ConstantOp> tables;
  DenseSet<Attribute> seen;
  f.walk([&](EmbeddingBagsOp e) {
    if (e.getBits() != 32)
      return;
    for (Value t : e.getTables()) {
      auto c = t.getDefiningOp<ConstantOp>();
      if (!c || !shrinks(cast<RankedTensorType>(t.getType()).getDimSize(1), bits) ||
          !seen.insert(c.getValue()).second)
        continue;
      std::vector<char> storage;
      ArrayRef<char> bytes = constantData(c.getValue(), storage);
      if (cpu::allFinite(reinterpret_cast<const float *>(bytes.data()),
                         int64_t(bytes.size() / sizeof(float))))
        tables.push_back(c);
    }
  });
  return tables;
}

namespace {

/// `e` with the tables `quantized` gives (null: stays f32) at `bits`: one op
/// when all or none change, else one op per run of tables at one precision
/// and a concat of their results.
void rewriteBags(EmbeddingBagsOp e, ArrayRef<Value> quantized, int64_t bits,
                 RewriterBase &rewriter) {
  auto isQuantized = [&](size_t t) { return bool(quantized[t]); };
  const size_t n = e.getTables().size();
  const size_t changed = llvm::count_if(llvm::seq<size_t>(0, n), isQuantized);
  if (changed == 0)
    return;
  if (changed == n) {
    rewriter.modifyOpInPlace(e, [&] {
      e.getTablesMutable().assign(quantized);
      e.setBits(bits);
    });
    return;
  }
  rewriter.setInsertionPoint(e);
  ArrayRef<int64_t> columns = e.getColumns(), hotness = e.getHotness();
  const int64_t batch = e.getType().getDimSize(0);
  SmallVector<Value> parts;
  for (size_t begin = 0, column = 0; begin < n;) {
    size_t end = begin;
    while (end < n && isQuantized(end) == isQuantized(begin))
      ++end;
    SmallVector<Value> tables;
    int64_t width = 0, runColumns = 0;
    for (size_t t = begin; t < end; ++t) {
      Value table = isQuantized(t) ? quantized[t] : e.getTables()[t];
      tables.push_back(table);
      width += cast<RankedTensorType>(e.getTables()[t].getType()).getDimSize(1) *
               (e.getMode() == 3 ? hotness[t] : 1);
      runColumns += hotness[t];
    }
    parts.push_back(EmbeddingBagsOp::create(
        rewriter, e.getLoc(), RankedTensorType::get({batch, width}, rewriter.getF32Type()),
        e.getIds(), tables, rewriter.getDenseI64ArrayAttr(columns.slice(column, runColumns)),
        rewriter.getDenseI64ArrayAttr(hotness.slice(begin, end - begin)), e.getModeAttr(),
        e.getWrapNegativeAttr(), rewriter.getI64IntegerAttr(isQuantized(begin) ? bits : 32)));
    column += runColumns;
    begin = end;
  }
  rewriter.replaceOpWithNewOp<ConcatOp>(e, e.getType(), parts, rewriter.getI64IntegerAttr(1));
}

struct QuantizeTablesPass : impl::QuantizeTablesBase<QuantizeTablesPass> {
  using QuantizeTablesBase::QuantizeTablesBase;

  void runOnOperation() override {
    if (bits != 8 && bits != 4) {
      getOperation().emitError("kiln-quantize-tables: bits must be 8 or 4, got ") << int64_t(bits);
      return signalPassFailure();
    }
    IRRewriter rewriter(&getContext());
    DenseMap<Attribute, ElementsAttr> done; // f32 table -> row-wise table; null: stays f32
    for (func::FuncOp f : getOperation().getOps<func::FuncOp>())
      for (auto [i, c] : llvm::enumerate(quantizableTables(f, int(bits), rewriter))) {
        auto [it, fresh] = done.try_emplace(c.getValue());
        if (fresh && !llvm::is_contained(keepTables, int64_t(i)))
          it->second = quantizeTable(c.getValue(), int(bits), rewriter);
      }

    DenseMap<Operation *, Value> values; // per original constant op
    SmallVector<Operation *> originals;
    SmallVector<EmbeddingBagsOp> bags;
    getOperation().walk([&](EmbeddingBagsOp e) {
      if (e.getBits() == 32)
        bags.push_back(e);
    });
    for (EmbeddingBagsOp e : bags) {
      SmallVector<Value> quantized;
      for (Value t : e.getTables()) {
        auto c = t.getDefiningOp<ConstantOp>();
        ElementsAttr q = c ? done.lookup(c.getValue()) : ElementsAttr();
        if (!q) {
          quantized.push_back(nullptr);
          continue;
        }
        Value &v = values[c];
        if (!v) {
          rewriter.setInsertionPoint(c);
          v = ConstantOp::create(rewriter, c.getLoc(), q);
          originals.push_back(c);
        }
        quantized.push_back(v);
      }
      rewriteBags(e, quantized, bits, rewriter);
    }
    for (Operation *c : originals)
      if (c->use_empty())
        rewriter.eraseOp(c);
  }
};
} // namespace
} // namespace kiln
