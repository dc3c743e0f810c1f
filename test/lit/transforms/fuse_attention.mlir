// RUN: kiln-opt %s --kiln-fuse-attention --split-input-file | FileCheck %s

// The exporters' attention block: head transposes, q k^T, scale, additive
// mask, softmax, times v, transpose back.
// CHECK-LABEL: func.func @attention
// CHECK: %[[A:.*]] = kiln.attention %arg0, %arg1, %arg2 mask %arg3 {scale = 2.500000e-01 : f64} : (tensor<2x5x3x4xf32>, tensor<2x5x3x4xf32>, tensor<2x5x3x4xf32>, tensor<2x1x1x5xf32>) -> tensor<2x5x3x4xf32>
// CHECK-NEXT: return %[[A]]
func.func @attention(%q: tensor<2x5x3x4xf32>, %k: tensor<2x5x3x4xf32>, %v: tensor<2x5x3x4xf32>, %mask: tensor<2x1x1x5xf32>) -> tensor<2x5x3x4xf32> {
  %c = kiln.constant dense<4.0> : tensor<f32>
  %qt = kiln.transpose %q {perm = array<i64: 0, 2, 1, 3>} : tensor<2x5x3x4xf32> -> tensor<2x3x5x4xf32>
  %kt = kiln.transpose %k {perm = array<i64: 0, 2, 3, 1>} : tensor<2x5x3x4xf32> -> tensor<2x3x4x5xf32>
  %s = kiln.matmul %qt, %kt : (tensor<2x3x5x4xf32>, tensor<2x3x4x5xf32>) -> tensor<2x3x5x5xf32>
  %d = kiln.div %s, %c : (tensor<2x3x5x5xf32>, tensor<f32>) -> tensor<2x3x5x5xf32>
  %m = kiln.add %d, %mask : (tensor<2x3x5x5xf32>, tensor<2x1x1x5xf32>) -> tensor<2x3x5x5xf32>
  %p = kiln.softmax %m {axis = 3 : i64} : tensor<2x3x5x5xf32> -> tensor<2x3x5x5xf32>
  %vt = kiln.transpose %v {perm = array<i64: 0, 2, 1, 3>} : tensor<2x5x3x4xf32> -> tensor<2x3x5x4xf32>
  %o = kiln.matmul %p, %vt : (tensor<2x3x5x5xf32>, tensor<2x3x5x4xf32>) -> tensor<2x3x5x4xf32>
  %y = kiln.transpose %o {perm = array<i64: 0, 2, 1, 3>} : tensor<2x3x5x4xf32> -> tensor<2x5x3x4xf32>
  return %y : tensor<2x5x3x4xf32>
}

// -----

// Scores that are also returned block the fusion.
// CHECK-LABEL: func.func @scores_escape
// CHECK-NOT: kiln.attention
func.func @scores_escape(%q: tensor<1x2x1x4xf32>, %k: tensor<1x2x1x4xf32>, %v: tensor<1x2x1x4xf32>) -> (tensor<1x2x1x4xf32>, tensor<1x1x2x2xf32>) {
  %qt = kiln.transpose %q {perm = array<i64: 0, 2, 1, 3>} : tensor<1x2x1x4xf32> -> tensor<1x1x2x4xf32>
  %kt = kiln.transpose %k {perm = array<i64: 0, 2, 3, 1>} : tensor<1x2x1x4xf32> -> tensor<1x1x4x2xf32>
  %s = kiln.matmul %qt, %kt : (tensor<1x1x2x4xf32>, tensor<1x1x4x2xf32>) -> tensor<1x1x2x2xf32>
  %p = kiln.softmax %s {axis = 3 : i64} : tensor<1x1x2x2xf32> -> tensor<1x1x2x2xf32>
  %vt = kiln.transpose %v {perm = array<i64: 0, 2, 1, 3>} : tensor<1x2x1x4xf32> -> tensor<1x1x2x4xf32>
  %o = kiln.matmul %p, %vt : (tensor<1x1x2x2xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x2x4xf32>
  %y = kiln.transpose %o {perm = array<i64: 0, 2, 1, 3>} : tensor<1x1x2x4xf32> -> tensor<1x2x1x4xf32>
  return %y, %s : tensor<1x2x1x4xf32>, tensor<1x1x2x2xf32>
}
