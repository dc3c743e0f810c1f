// RUN: kiln-opt %s --kiln-fuse-interaction --split-input-file | FileCheck %s

// Kaggle-style: Gram matrix, flattened rows, strict lower triangle gathered
// by constant column indices (F = 3: entries 3, 6, 7 = (1,0), (2,0), (2,1)).
// CHECK-LABEL: func.func @reshape_gather
// CHECK: %[[I:.*]] = kiln.interaction %arg0 {pairs = array<i64: 1, 0, 2, 0, 2, 1>} : tensor<2x3x4xf32> -> tensor<2x3xf32>
// CHECK-NEXT: return %[[I]]
func.func @reshape_gather(%z: tensor<2x3x4xf32>) -> tensor<2x3xf32> {
  %shape = kiln.constant dense<[2, 9]> : tensor<2xi64>
  %li = kiln.constant dense<[3, 6, 7]> : tensor<3xi64>
  %zt = kiln.transpose %z {perm = array<i64: 0, 2, 1>} : tensor<2x3x4xf32> -> tensor<2x4x3xf32>
  %g = kiln.matmul %z, %zt : (tensor<2x3x4xf32>, tensor<2x4x3xf32>) -> tensor<2x3x3xf32>
  %f = kiln.reshape %g, %shape : (tensor<2x3x3xf32>, tensor<2xi64>) -> tensor<2x9xf32>
  %t = kiln.gather %f, %li {axis = 1 : i64} : (tensor<2x9xf32>, tensor<3xi64>) -> tensor<2x3xf32>
  return %t : tensor<2x3xf32>
}

// -----

// TorchScript-style: batch moved last, flattened, rows gathered with the
// diagonal included, then transposed back.
// CHECK-LABEL: func.func @transpose_gather
// CHECK: %[[I:.*]] = kiln.interaction %arg0 {pairs = array<i64: 0, 0, 1, 0, 1, 1>} : tensor<2x2x4xf32> -> tensor<2x3xf32>
// CHECK-NEXT: return %[[I]]
func.func @transpose_gather(%z: tensor<2x2x4xf32>) -> tensor<2x3xf32> {
  %rows = kiln.constant dense<[0, 2, 3]> : tensor<3xi64>
  %zt = kiln.transpose %z {perm = array<i64: 0, 2, 1>} : tensor<2x2x4xf32> -> tensor<2x4x2xf32>
  %g = kiln.matmul %z, %zt : (tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<2x2x2xf32>
  %p = kiln.transpose %g {perm = array<i64: 1, 2, 0>} : tensor<2x2x2xf32> -> tensor<2x2x2xf32>
  %f = kiln.flatten %p {axis = 2 : i64} : tensor<2x2x2xf32> -> tensor<4x2xf32>
  %s = kiln.gather %f, %rows {axis = 0 : i64} : (tensor<4x2xf32>, tensor<3xi64>) -> tensor<3x2xf32>
  %t = kiln.transpose %s {perm = array<i64: 1, 0>} : tensor<3x2xf32> -> tensor<2x3xf32>
  return %t : tensor<2x3xf32>
}

// -----

// A Gram matrix whose entries are used elsewhere stays as it is.
// CHECK-LABEL: func.func @gram_escapes
// CHECK-NOT: kiln.interaction
func.func @gram_escapes(%z: tensor<2x3x4xf32>) -> (tensor<2x3xf32>, tensor<2x3x3xf32>) {
  %shape = kiln.constant dense<[2, 9]> : tensor<2xi64>
  %li = kiln.constant dense<[3, 6, 7]> : tensor<3xi64>
  %zt = kiln.transpose %z {perm = array<i64: 0, 2, 1>} : tensor<2x3x4xf32> -> tensor<2x4x3xf32>
  %g = kiln.matmul %z, %zt : (tensor<2x3x4xf32>, tensor<2x4x3xf32>) -> tensor<2x3x3xf32>
  %f = kiln.reshape %g, %shape : (tensor<2x3x3xf32>, tensor<2xi64>) -> tensor<2x9xf32>
  %t = kiln.gather %f, %li {axis = 1 : i64} : (tensor<2x9xf32>, tensor<3xi64>) -> tensor<2x3xf32>
  return %t, %g : tensor<2x3xf32>, tensor<2x3x3xf32>
}

// -----

// Rows that mix samples (row i holds feature i's entries of both samples)
// are not an interaction.
// CHECK-LABEL: func.func @mixes_samples
// CHECK-NOT: kiln.interaction
func.func @mixes_samples(%z: tensor<2x2x4xf32>) -> tensor<2x4xf32> {
  %shape = kiln.constant dense<[2, 4]> : tensor<2xi64>
  %zt = kiln.transpose %z {perm = array<i64: 0, 2, 1>} : tensor<2x2x4xf32> -> tensor<2x4x2xf32>
  %g = kiln.matmul %z, %zt : (tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<2x2x2xf32>
  %p = kiln.transpose %g {perm = array<i64: 1, 0, 2>} : tensor<2x2x2xf32> -> tensor<2x2x2xf32>
  %r = kiln.reshape %p, %shape : (tensor<2x2x2xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  return %r : tensor<2x4xf32>
}

// -----

// A product of two different tensors is not a Gram matrix.
// CHECK-LABEL: func.func @not_gram
// CHECK-NOT: kiln.interaction
func.func @not_gram(%a: tensor<2x3x4xf32>, %b: tensor<2x3x4xf32>) -> tensor<2x9xf32> {
  %shape = kiln.constant dense<[2, 9]> : tensor<2xi64>
  %bt = kiln.transpose %b {perm = array<i64: 0, 2, 1>} : tensor<2x3x4xf32> -> tensor<2x4x3xf32>
  %g = kiln.matmul %a, %bt : (tensor<2x3x4xf32>, tensor<2x4x3xf32>) -> tensor<2x3x3xf32>
  %f = kiln.reshape %g, %shape : (tensor<2x3x3xf32>, tensor<2xi64>) -> tensor<2x9xf32>
  return %f : tensor<2x9xf32>
}
