// RUN: kiln-opt %s --kiln-form-dense --split-input-file | FileCheck %s

// A matmul against a constant matrix is a dense layer; the weight is reused.
// CHECK-LABEL: func.func @matmul
// CHECK: %[[W:.*]] = kiln.constant dense<{{\[\[}}1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
// CHECK-NEXT: kiln.dense %arg0, %[[W]] {units = 2 : i64} : (tensor<3x5x2xf32>, tensor<2x2xf32>) -> tensor<3x5x2xf32>
// CHECK-NOT: kiln.matmul
func.func @matmul(%x: tensor<3x5x2xf32>) -> tensor<3x5x2xf32> {
  %w = kiln.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %y = kiln.matmul %x, %w : (tensor<3x5x2xf32>, tensor<2x2xf32>) -> tensor<3x5x2xf32>
  return %y : tensor<3x5x2xf32>
}

// -----

// Gemm: alpha * B^T becomes the [K, N] weight, beta * C the bias.
// CHECK-LABEL: func.func @gemm_trans_b
// CHECK-DAG: %[[W:.*]] = kiln.constant dense<{{\[\[}}2.000000e+00, 6.000000e+00, 1.000000e+01], [4.000000e+00, 8.000000e+00, 1.200000e+01]]> : tensor<2x3xf32>
// CHECK-DAG: %[[B:.*]] = kiln.constant dense<[5.000000e-01, 1.000000e+00, 1.500000e+00]> : tensor<3xf32>
// CHECK: kiln.dense %arg0, %[[W]] bias %[[B]] {units = 3 : i64}
// CHECK-NOT: tensor<3x2xf32>
func.func @gemm_trans_b(%x: tensor<4x2xf32>) -> tensor<4x3xf32> {
  %b = kiln.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>
  %c = kiln.constant dense<[[1.0, 2.0, 3.0]]> : tensor<1x3xf32>
  %y = kiln.gemm %x, %b, %c {alpha = 2.0 : f32, beta = 0.5 : f32, trans_b = true} : (tensor<4x2xf32>, tensor<3x2xf32>, tensor<1x3xf32>) -> tensor<4x3xf32>
  return %y : tensor<4x3xf32>
}

// -----

// A full-shape C with beta 1 is the residual.
// CHECK-LABEL: func.func @gemm_residual
// CHECK: kiln.dense %arg0, %{{.*}} residual %arg1 {units = 2 : i64}
func.func @gemm_residual(%x: tensor<4x2xf32>, %r: tensor<4x2xf32>) -> tensor<4x2xf32> {
  %b = kiln.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %y = kiln.gemm %x, %b, %r : (tensor<4x2xf32>, tensor<2x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// Products of two activations, transposed A and a full C scaled by beta stay.
// CHECK-LABEL: func.func @not_dense
// CHECK-NOT: kiln.dense
// CHECK: kiln.matmul
// CHECK: kiln.gemm
// CHECK: kiln.gemm
func.func @not_dense(%x: tensor<4x2xf32>, %y: tensor<2x4xf32>, %r: tensor<4x2xf32>) -> (tensor<4x4xf32>, tensor<2x2xf32>, tensor<4x2xf32>) {
  %b = kiln.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %m = kiln.matmul %x, %y : (tensor<4x2xf32>, tensor<2x4xf32>) -> tensor<4x4xf32>
  %b4 = kiln.constant dense<1.0> : tensor<4x2xf32>
  %t = kiln.gemm %x, %b4 {trans_a = true} : (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<2x2xf32>
  %s = kiln.gemm %x, %b, %r {beta = 2.0 : f32} : (tensor<4x2xf32>, tensor<2x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
  return %m, %t, %s : tensor<4x4xf32>, tensor<2x2xf32>, tensor<4x2xf32>
}
