//===- KilnDialect.td - the kiln dialect -------------------*- tablegen -*-===//
//
// The kiln dialect holds ONNX-level tensor operations with the semantics that
// ONNX quirks have already been resolved by the importer: axes are attributes
// and non-negative, opset differences are gone, and every op infers its result
// type from its operands so shapes can be re-derived after specialisation.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_DIALECT_TD
#define KILN_DIALECT_TD

include "mlir/IR/OpBase.td"

def Kiln_Dialect : Dialect {
  let name = "kiln";
  let cppNamespace = "::kiln";
  let summary = "ONNX-level tensor ops for ahead-of-time compiled ads models";
  let hasConstantMaterializer = 1;
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

#endif // KILN_DIALECT_TD
