// RUN: kiln-opt %s --kiln-fuse-epilogues --split-input-file | FileCheck %s

// Bias, then activation, then residual, each absorbed into the dense.
// CHECK-LABEL: func.func @bias_relu_residual
// CHECK: %[[B:.*]] = kiln.constant dense<[1.000000e+00, 2.000000e+00]> : tensor<2xf32>
// CHECK: %[[D:.*]] = kiln.dense %arg0, %{{.*}} bias %[[B]] residual %arg1 {activation = "relu", units = 2 : i64}
// CHECK-NEXT: return %[[D]]
func.func @bias_relu_residual(%x: tensor<4x3xf32>, %r: tensor<4x2xf32>) -> tensor<4x2xf32> {
  %w = kiln.constant dense<1.0> : tensor<3x2xf32>
  %b = kiln.constant dense<[[1.0, 2.0]]> : tensor<1x2xf32>
  %d = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %a = kiln.add %b, %d : (tensor<1x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
  %t = kiln.relu %a : tensor<4x2xf32>
  %y = kiln.add %r, %t : (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// GELU (tanh form) and sigmoid become the activation names the kernels know.
// CHECK-LABEL: func.func @activations
// CHECK: kiln.dense {{.*}} {activation = "gelu_tanh", units = 2 : i64}
// CHECK: kiln.dense {{.*}} {activation = "sigmoid", units = 2 : i64}
func.func @activations(%x: tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<4x2xf32>) {
  %w = kiln.constant dense<1.0> : tensor<3x2xf32>
  %d = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %g = kiln.gelu %d {alpha = 1.0, beta = 0.0} : tensor<4x2xf32>
  %e = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %s = kiln.sigmoid %e : tensor<4x2xf32>
  return %g, %s : tensor<4x2xf32>, tensor<4x2xf32>
}

// -----

// A dense with another user, an activation after a residual, and a bias
// that is not a row vector stay separate ops.
// CHECK-LABEL: func.func @blocked
// CHECK: %[[D:.*]] = kiln.dense %arg0, %{{.*}} {units = 2 : i64}
// CHECK: kiln.relu %[[D]]
// CHECK: %[[E:.*]] = kiln.dense %arg0, %{{.*}} residual %arg1 {units = 2 : i64}
// CHECK: kiln.relu %[[E]]
// CHECK: %[[F:.*]] = kiln.dense %arg0, %{{.*}} {units = 2 : i64}
// CHECK: kiln.add %[[F]]
func.func @blocked(%x: tensor<4x3xf32>, %r: tensor<4x2xf32>) -> (tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>) {
  %w = kiln.constant dense<1.0> : tensor<3x2xf32>
  %d = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %a = kiln.relu %d : tensor<4x2xf32>
  %e = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %s = kiln.add %e, %r : (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
  %t = kiln.relu %s : tensor<4x2xf32>
  %c = kiln.constant dense<[[1.0], [2.0], [3.0], [4.0]]> : tensor<4x1xf32>
  %f = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %u = kiln.add %f, %c : (tensor<4x2xf32>, tensor<4x1xf32>) -> tensor<4x2xf32>
  return %d, %a, %t, %u : tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>
}

// -----

// A DCN cross layer, x0 * (W x + b) + x: the product is the multiplier.
// CHECK-LABEL: func.func @cross
// CHECK: %[[D:.*]] = kiln.dense %arg0, %{{.*}} bias %{{.*}} multiplier %arg1 residual %arg0 {units = 3 : i64}
// CHECK-NEXT: return %[[D]]
func.func @cross(%x: tensor<4x3xf32>, %x0: tensor<4x3xf32>) -> tensor<4x3xf32> {
  %w = kiln.constant dense<1.0> : tensor<3x3xf32>
  %b = kiln.constant dense<[1.0, 2.0, 3.0]> : tensor<3xf32>
  %d = kiln.dense %x, %w {units = 3 : i64} : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %a = kiln.add %d, %b : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xf32>
  %m = kiln.mul %x0, %a : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = kiln.add %m, %x : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<4x3xf32>
  return %y : tensor<4x3xf32>
}
