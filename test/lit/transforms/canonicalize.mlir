// RUN: kiln-opt %s --canonicalize --split-input-file | FileCheck %s

// Shape sub-graph ops fold once their inputs are static or constant.
// CHECK-LABEL: func.func @shape_ops
// CHECK-DAG: %[[S:.*]] = kiln.constant dense<[3, 4]> : tensor<2xi64>
// CHECK-DAG: %[[R:.*]] = kiln.constant dense<[0, 2, 4]> : tensor<3xi64>
// CHECK-DAG: %[[C:.*]] = kiln.constant dense<7> : tensor<2x3xi32>
// CHECK-DAG: %[[G:.*]] = kiln.constant dense<4> : tensor<1xi64>
// CHECK-DAG: %[[A:.*]] = kiln.constant dense<[13, 24]> : tensor<2xi64>
// CHECK-DAG: %[[F:.*]] = kiln.constant dense<[3.000000e+00, 4.000000e+00]> : tensor<2xf32>
// CHECK: return %[[S]], %[[R]], %[[C]], %[[G]], %[[A]], %[[F]]
func.func @shape_ops(%x: tensor<2x3x4xf32>) -> (tensor<2xi64>, tensor<3xi64>, tensor<2x3xi32>, tensor<1xi64>, tensor<2xi64>, tensor<2xf32>) {
  %s = kiln.shape %x {start = 1 : i64, end = 3 : i64} : tensor<2x3x4xf32> -> tensor<2xi64>
  %start = kiln.constant dense<0> : tensor<i64>
  %limit = kiln.constant dense<5> : tensor<i64>
  %delta = kiln.constant dense<2> : tensor<i64>
  %r = kiln.range %start, %limit, %delta : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<3xi64>
  %dims = kiln.constant dense<[2, 3]> : tensor<2xi64>
  %c = kiln.constant_of_shape %dims {value = 7 : i32} : tensor<2xi64> -> tensor<2x3xi32>
  %idx = kiln.constant dense<[1]> : tensor<1xi64>
  %g = kiln.gather %s, %idx {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  %ten = kiln.constant dense<[10, 20]> : tensor<2xi64>
  %a = kiln.add %s, %ten : (tensor<2xi64>, tensor<2xi64>) -> tensor<2xi64>
  %f = kiln.cast %s {to = f32} : tensor<2xi64> to tensor<2xf32>
  return %s, %r, %c, %g, %a, %f : tensor<2xi64>, tensor<3xi64>, tensor<2x3xi32>, tensor<1xi64>, tensor<2xi64>, tensor<2xf32>
}

// -----

// Reshape-like ops of a weight become a re-typed weight sharing its blob;
// identities fold to their input.
// CHECK-LABEL: func.func @views
// CHECK-DAG: %[[W:.*]] = kiln.constant dense_resource<blob> : tensor<2x4xf32>
// CHECK-DAG: %[[T:.*]] = kiln.constant dense<{{\[\[}}1, 3], [2, 4]]> : tensor<2x2xi64>
// CHECK: return %[[W]], %arg0, %[[T]], %arg0
func.func @views(%x: tensor<2x3xf32>) -> (tensor<2x4xf32>, tensor<2x3xf32>, tensor<2x2xi64>, tensor<2x3xf32>) {
  %w = kiln.constant dense_resource<blob> : tensor<8xf32>
  %shape = kiln.constant dense<[2, 4]> : tensor<2xi64>
  %r = kiln.reshape %w, %shape : (tensor<8xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %t = kiln.transpose %x {perm = array<i64: 0, 1>} : tensor<2x3xf32> -> tensor<2x3xf32>
  %m = kiln.constant dense<[[1, 2], [3, 4]]> : tensor<2x2xi64>
  %mt = kiln.transpose %m {perm = array<i64: 1, 0>} : tensor<2x2xi64> -> tensor<2x2xi64>
  %c = kiln.concat %x {axis = 0 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  return %r, %t, %mt, %c : tensor<2x4xf32>, tensor<2x3xf32>, tensor<2x2xi64>, tensor<2x3xf32>
}
{-#
  dialect_resources: {
    builtin: {
      blob: "0x040000000000803F0000004000004040000080400000A0400000C0400000E04000000041"
    }
  }
#-}

// -----

// A constant index outside the gathered dim is not folded (the verifier
// reports it); ops on large tensors stay for generated code.
// CHECK-LABEL: func.func @not_folded
// CHECK: kiln.add
func.func @not_folded() -> tensor<5000xi64> {
  %a = kiln.constant dense<1> : tensor<5000xi64>
  %b = kiln.add %a, %a : (tensor<5000xi64>, tensor<5000xi64>) -> tensor<5000xi64>
  return %b : tensor<5000xi64>
}

// -----

// Chains of transposes compose; chains of reshapes collapse to one.
// CHECK-LABEL: func.func @chains
// CHECK-DAG: %[[T:.*]] = kiln.transpose %arg0 {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
// CHECK-DAG: %[[S:.*]] = kiln.constant dense<[4, 6]> : tensor<2xi64>
// CHECK: %[[R:.*]] = kiln.reshape %arg1, %[[S]] : (tensor<2x3x4xf32>, tensor<2xi64>) -> tensor<4x6xf32>
// CHECK: return %[[T]], %[[R]]
func.func @chains(%x: tensor<2x3x4xf32>, %y: tensor<2x3x4xf32>) -> (tensor<4x2x3xf32>, tensor<4x6xf32>) {
  %a = kiln.transpose %x {perm = array<i64: 1, 2, 0>} : tensor<2x3x4xf32> -> tensor<3x4x2xf32>
  %b = kiln.transpose %a {perm = array<i64: 1, 2, 0>} : tensor<3x4x2xf32> -> tensor<4x2x3xf32>
  %f = kiln.flatten %y {axis = 1 : i64} : tensor<2x3x4xf32> -> tensor<2x12xf32>
  %s = kiln.constant dense<[4, -1]> : tensor<2xi64>
  %r = kiln.reshape %f, %s : (tensor<2x12xf32>, tensor<2xi64>) -> tensor<4x6xf32>
  return %b, %r : tensor<4x2x3xf32>, tensor<4x6xf32>
}

// -----

// Found by import_fuzzer: integer folds wrap as the kernels do (INT64_MAX + 1
// is INT64_MIN); INT64_MIN / -1 and a cast of NaN or 1e30 to i64 have no
// value and are left to run.
// CHECK-LABEL: func.func @overflowing_folds
// CHECK-DAG: kiln.constant dense<-9223372036854775808> : tensor<1xi64>
// CHECK-DAG: kiln.div
// CHECK-DAG: kiln.cast
func.func @overflowing_folds() -> (tensor<1xi64>, tensor<1xi64>, tensor<2xi64>) {
  %max = kiln.constant dense<9223372036854775807> : tensor<1xi64>
  %one = kiln.constant dense<1> : tensor<1xi64>
  %min = kiln.constant dense<-9223372036854775808> : tensor<1xi64>
  %m1 = kiln.constant dense<-1> : tensor<1xi64>
  %f = kiln.constant dense<[0x7FC00000, 1.0e30]> : tensor<2xf32>
  %a = kiln.add %max, %one : (tensor<1xi64>, tensor<1xi64>) -> tensor<1xi64>
  %d = kiln.div %min, %m1 : (tensor<1xi64>, tensor<1xi64>) -> tensor<1xi64>
  %c = kiln.cast %f {to = i64} : tensor<2xf32> to tensor<2xi64>
  return %a, %d, %c : tensor<1xi64>, tensor<1xi64>, tensor<2xi64>
}
