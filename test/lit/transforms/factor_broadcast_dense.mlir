// RUN: kiln-opt %s --kiln-factor-broadcast-dense --split-input-file | FileCheck %s

// DIN's attention unit: [q, k, q - k, q * k] with q a per-sample [2, 1, 2]
// value expanded over 3 rows. W's rows: q 0-1, k 2-3, q - k 4-5, q * k 6-7
// (row r is [r + 1, 10 (r + 1)]). q's
// weight is rows 0-1 plus rows 4-5 ([1,10]+[5,50], [2,20]+[6,60]); k's is
// rows 2-3 minus rows 4-5 ([3-5, 30-50], [4-6, 40-60]); q * k keeps rows 6-7.
// The per-row dense is over [k, q * k] with the bias; the per-sample one over
// q at [2, 1, 2]; the sum broadcasts, then the activation.
// CHECK-LABEL: func.func @din_attention
// CHECK: %[[R:.*]] = kiln.concat %arg1, %[[P:.*]] {axis = 2 : i64} : (tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x4xf32>
// CHECK: %[[WR:.*]] = kiln.constant dense<{{\[\[}}-2.000000e+00, -2.000000e+01], [-2.000000e+00, -2.000000e+01], [7.000000e+00, 7.000000e+01], [8.000000e+00, 8.000000e+01]]> : tensor<4x2xf32>
// CHECK: %[[D:.*]] = kiln.dense %[[R]], %[[WR]] bias %{{.*}} {units = 2 : i64} : (tensor<2x3x4xf32>, tensor<4x2xf32>, tensor<2xf32>) -> tensor<2x3x2xf32>
// CHECK: %[[WQ:.*]] = kiln.constant dense<{{\[\[}}6.000000e+00, 6.000000e+01], [8.000000e+00, 8.000000e+01]]> : tensor<2x2xf32>
// CHECK: %[[Q:.*]] = kiln.dense %arg0, %[[WQ]] {units = 2 : i64} : (tensor<2x1x2xf32>, tensor<2x2xf32>) -> tensor<2x1x2xf32>
// CHECK: %[[S:.*]] = kiln.add %[[D]], %[[Q]] : (tensor<2x3x2xf32>, tensor<2x1x2xf32>) -> tensor<2x3x2xf32>
// CHECK: %[[A:.*]] = kiln.sigmoid %[[S]]
// CHECK: return %[[A]]
// CHECK-NOT: kiln.sub
func.func @din_attention(%q: tensor<2x1x2xf32>, %k: tensor<2x3x2xf32>) -> tensor<2x3x2xf32> {
  %shape = kiln.constant dense<[2, 3, 2]> : tensor<3xi64>
  %e = kiln.expand %q, %shape : (tensor<2x1x2xf32>, tensor<3xi64>) -> tensor<2x3x2xf32>
  %d = kiln.sub %e, %k : (tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %p = kiln.mul %e, %k : (tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %x = kiln.concat %e, %k, %d, %p {axis = 2 : i64} : (tensor<2x3x2xf32>, tensor<2x3x2xf32>, tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x8xf32>
  %w = kiln.constant dense<[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0], [6.0, 60.0], [7.0, 70.0], [8.0, 80.0]]> : tensor<8x2xf32>
  %b = kiln.constant dense<[0.5, -0.5]> : tensor<2xf32>
  %y = kiln.dense %x, %w bias %b {units = 2 : i64, activation = "sigmoid"} : (tensor<2x3x8xf32>, tensor<8x2xf32>, tensor<2xf32>) -> tensor<2x3x2xf32>
  return %y : tensor<2x3x2xf32>
}

// -----

// No broadcast part, a residual, or a gelu: left alone.
// CHECK-LABEL: func.func @left_alone
// CHECK-COUNT-3: kiln.dense %{{.*}}, %{{.*}} {{.*}}tensor<2x3x4xf32>
// CHECK-NOT: kiln.add
func.func @left_alone(%q: tensor<2x1x2xf32>, %k: tensor<2x3x2xf32>, %r: tensor<2x3x2xf32>) -> (tensor<2x3x2xf32>, tensor<2x3x2xf32>, tensor<2x3x2xf32>) {
  %shape = kiln.constant dense<[2, 3, 2]> : tensor<3xi64>
  %e = kiln.expand %q, %shape : (tensor<2x1x2xf32>, tensor<3xi64>) -> tensor<2x3x2xf32>
  %rows = kiln.concat %k, %k {axis = 2 : i64} : (tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x4xf32>
  %mixed = kiln.concat %e, %k {axis = 2 : i64} : (tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x4xf32>
  %w = kiln.constant dense<1.0> : tensor<4x2xf32>
  %a = kiln.dense %rows, %w {units = 2 : i64} : (tensor<2x3x4xf32>, tensor<4x2xf32>) -> tensor<2x3x2xf32>
  %b = kiln.dense %mixed, %w residual %r {units = 2 : i64} : (tensor<2x3x4xf32>, tensor<4x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %c = kiln.dense %mixed, %w {units = 2 : i64, activation = "gelu"} : (tensor<2x3x4xf32>, tensor<4x2xf32>) -> tensor<2x3x2xf32>
  return %a, %b, %c : tensor<2x3x2xf32>, tensor<2x3x2xf32>, tensor<2x3x2xf32>
}
