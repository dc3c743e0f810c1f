//===- KilnDialect.cpp - the kiln dialect ---------------------------------===//

#include "KilnDialect.h"
#include "KilnOps.h"

#include "KilnDialect.cpp.inc"

using namespace mlir;

namespace kiln {

void KilnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "KilnOps.cpp.inc"
      >();
}

Operation *KilnDialect::materializeConstant(OpBuilder &builder, Attribute value, Type type,
                                            Location loc) {
  auto elements = dyn_cast<ElementsAttr>(value);
  if (!elements || elements.getType() != type)
    return nullptr;
  return ConstantOp::create(builder, loc, elements);
}

} // namespace kiln
