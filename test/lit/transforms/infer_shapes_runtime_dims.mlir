// RUN: kiln-opt %s --kiln-infer-shapes --verify-diagnostics

// A reshape whose target comes from an input cannot be planned ahead.
func.func @main_b1(%x: tensor<1x4xf32> {kiln.batched}, %s: tensor<2xi64>) -> tensor<?x?xf32> attributes {kiln.batch = 1 : i64} {
  // expected-error @below {{result shape 'tensor<?x?xf32>' depends on values known only at run time}}
  %r = kiln.reshape %x, %s : (tensor<1x4xf32>, tensor<2xi64>) -> tensor<?x?xf32>
  return %r : tensor<?x?xf32>
}
