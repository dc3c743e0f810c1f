// RUN: kiln-opt %s --kiln-infer-shapes --verify-diagnostics

// A batched output whose leading dim is not the batch is an error.
// expected-error @below {{output 'sum' is declared batched but has type 'tensor<4xf32>' at batch 2}}
func.func @main_b2(%x: tensor<2x4xf32> {kiln.batched}) -> (tensor<?xf32> {kiln.batched, kiln.name = "sum"}) attributes {kiln.batch = 2 : i64} {
  %0 = kiln.reduce_sum %x {axes = array<i64: 0>, keepdims = false} : tensor<2x4xf32> -> tensor<?xf32>
  return %0 : tensor<?xf32>
}
