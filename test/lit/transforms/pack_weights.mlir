// RUN: kiln-opt %s --kiln-pack-weights | FileCheck %s

// A [3, 2] weight becomes one 16-column panel [1, 3, 16]: row k holds
// W[k, 0], W[k, 1] and fourteen zeros. The weight shared by two layers is
// packed once.
// CHECK-LABEL: func.func @pack
// CHECK: %[[P:.*]] = kiln.constant dense<{{\[\[\[}}1.000000e+00, 2.000000e+00, 0.000000e+00, {{.*}}], [3.000000e+00, 4.000000e+00, 0.000000e+00, {{.*}}], [5.000000e+00, 6.000000e+00, 0.000000e+00, {{.*}}]]]> : tensor<1x3x16xf32>
// CHECK: kiln.dense %arg0, %[[P]] {units = 2 : i64} : (tensor<4x3xf32>, tensor<1x3x16xf32>) -> tensor<4x2xf32>
// CHECK: kiln.dense %arg0, %[[P]] {activation = "relu", units = 2 : i64}
// CHECK-NOT: tensor<3x2xf32>
func.func @pack(%x: tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<4x2xf32>) {
  %w = kiln.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>
  %d = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %e = kiln.dense %x, %w {units = 2 : i64, activation = "relu"} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return %d, %e : tensor<4x2xf32>, tensor<4x2xf32>
}
