// RUN: kiln-opt %s --split-input-file --kiln-check-bucket-rows --verify-diagnostics | FileCheck %s

// Rows of the same shape in every bucket (the leading dim of a batched
// output aside; an unbatched output whole): accepted unchanged.
// CHECK-LABEL: func.func @rows_b1
// CHECK-LABEL: func.func @rows_b4
func.func @rows_b1(%x: tensor<1x8xf32> {kiln.batched}) -> (tensor<1x8xf32> {kiln.batched, kiln.name = "y"}, tensor<3xf32> {kiln.name = "c"}) attributes {kiln.batch = 1 : i64} {
  %c = kiln.constant dense<1.0> : tensor<3xf32>
  return %x, %c : tensor<1x8xf32>, tensor<3xf32>
}
func.func @rows_b4(%x: tensor<4x8xf32> {kiln.batched}) -> (tensor<4x8xf32> {kiln.batched, kiln.name = "y"}, tensor<3xf32> {kiln.name = "c"}) attributes {kiln.batch = 4 : i64} {
  %c = kiln.constant dense<1.0> : tensor<3xf32>
  return %x, %c : tensor<4x8xf32>, tensor<3xf32>
}

// -----

// An in-batch product: each row has the batch's rows in it.
func.func @mix_b1(%x: tensor<1x8xf32> {kiln.batched}) -> (tensor<1x1x8xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 1 : i64} {
  %u = kiln.unsqueeze %x {axes = array<i64: 1>} : tensor<1x8xf32> -> tensor<1x1x8xf32>
  %y = kiln.mul %u, %x : (tensor<1x1x8xf32>, tensor<1x8xf32>) -> tensor<1x1x8xf32>
  return %y : tensor<1x1x8xf32>
}
// expected-error @below {{output 'y' has type 'tensor<1x1x8xf32>' at batch 1 but 'tensor<4x4x8xf32>' at batch 4: its rows depend on the batch size}}
func.func @mix_b4(%x: tensor<4x8xf32> {kiln.batched}) -> (tensor<4x4x8xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %u = kiln.unsqueeze %x {axes = array<i64: 1>} : tensor<4x8xf32> -> tensor<4x1x8xf32>
  %y = kiln.mul %u, %x : (tensor<4x1x8xf32>, tensor<4x8xf32>) -> tensor<4x4x8xf32>
  return %y : tensor<4x4x8xf32>
}

// -----

// An unbatched output must be the same whole in every bucket.
func.func @sum_b1(%x: tensor<1x8xf32> {kiln.batched}) -> (tensor<1x8xf32> {kiln.name = "s"}) attributes {kiln.batch = 1 : i64} {
  return %x : tensor<1x8xf32>
}
// expected-error @below {{output 's' has type 'tensor<1x8xf32>' at batch 1 but 'tensor<2x8xf32>' at batch 2}}
func.func @sum_b2(%x: tensor<2x8xf32> {kiln.batched}) -> (tensor<2x8xf32> {kiln.name = "s"}) attributes {kiln.batch = 2 : i64} {
  return %x : tensor<2x8xf32>
}
