// RUN: kiln-opt %s --kiln-widen-half --split-input-file | FileCheck %s

// A chain of computing ops on f16: the input is widened once, the ops pass
// f32 to each other, the constant is converted at compile time, and only
// the result is rounded back to f16.
// CHECK-LABEL: func.func @chain
// CHECK-DAG: %[[X:.*]] = kiln.cast %arg0 {to = f32} : tensor<?x4xf16> to tensor<?x4xf32>
// CHECK-DAG: %[[C:.*]] = kiln.constant dense<[1.000000e+00, 2.000000e+00, 5.000000e-01, -1.000000e+00]> : tensor<4xf32>
// CHECK: %[[A:.*]] = kiln.add %[[X]], %[[C]] : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
// CHECK: %[[R:.*]] = kiln.relu %[[A]] : tensor<?x4xf32>
// CHECK: %[[S:.*]] = kiln.softmax %[[R]] {axis = 1 : i64} : tensor<?x4xf32> -> tensor<?x4xf32>
// CHECK: %[[N:.*]] = kiln.cast %[[S]] {to = f16} : tensor<?x4xf32> to tensor<?x4xf16>
// CHECK: return %[[N]]
func.func @chain(%x: tensor<?x4xf16>) -> tensor<?x4xf16> {
  %c = kiln.constant dense<[1.0, 2.0, 0.5, -1.0]> : tensor<4xf16>
  %a = kiln.add %x, %c : (tensor<?x4xf16>, tensor<4xf16>) -> tensor<?x4xf16>
  %r = kiln.relu %a : tensor<?x4xf16>
  %s = kiln.softmax %r {axis = 1 : i64} : tensor<?x4xf16> -> tensor<?x4xf16>
  return %s : tensor<?x4xf16>
}

// -----

// Data movement and the model's own casts stay at 16 bits: the gather reads
// the bf16 table as it is stored, the exp computes on its widened rows and
// is rounded to bf16 where the model's casts read it, and a comparison's i1
// result needs no narrowing.
// CHECK-LABEL: func.func @storage
// CHECK: %[[T:.*]] = kiln.constant {{.*}} : tensor<6x2xbf16>
// CHECK: %[[G:.*]] = kiln.gather %[[T]], %arg0
// CHECK-SAME: -> tensor<?x2xbf16>
// CHECK: %[[W:.*]] = kiln.cast %[[G]] {to = f32} : tensor<?x2xbf16> to tensor<?x2xf32>
// CHECK: %[[E:.*]] = kiln.exp %[[W]] : tensor<?x2xf32>
// CHECK: %[[N:.*]] = kiln.cast %[[E]] {to = bf16} : tensor<?x2xf32> to tensor<?x2xbf16>
// CHECK: %[[M:.*]] = kiln.cast %[[N]] {to = f16}
// CHECK: %[[BM:.*]] = kiln.cast %[[M]] {to = bf16}
// CHECK: %[[B:.*]] = kiln.cast %[[BM]] {to = f32} : tensor<?x2xbf16> to tensor<?x2xf32>
// CHECK: %[[L:.*]] = kiln.less %[[W]], %[[B]] : (tensor<?x2xf32>, tensor<?x2xf32>) -> tensor<?x2xi1>
// CHECK: return %[[G]], %[[L]]
func.func @storage(%ids: tensor<?xi64>) -> (tensor<?x2xbf16>, tensor<?x2xi1>) {
  %t = kiln.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0], [11.0, 12.0]]> : tensor<6x2xbf16>
  %g = kiln.gather %t, %ids {axis = 0 : i64} : (tensor<6x2xbf16>, tensor<?xi64>) -> tensor<?x2xbf16>
  %e = kiln.exp %g : tensor<?x2xbf16>
  %m = kiln.cast %e {to = f16} : tensor<?x2xbf16> to tensor<?x2xf16>
  %bm = kiln.cast %m {to = bf16} : tensor<?x2xf16> to tensor<?x2xbf16>
  %l = kiln.less %g, %bm : (tensor<?x2xbf16>, tensor<?x2xbf16>) -> tensor<?x2xi1>
  return %g, %l : tensor<?x2xbf16>, tensor<?x2xi1>
}
