// RUN: kiln-opt %s --kiln-infer-shapes | FileCheck %s

// After specialisation the exporter's Shape -> Slice -> Concat -> Reshape
// chain folds to a constant and every result type becomes static.
// CHECK-LABEL: func.func @main_b4(
// CHECK-SAME: -> (tensor<4x12xf32> {kiln.batched})
// CHECK-NOT: kiln.shape
// CHECK-NOT: kiln.slice
// CHECK-NOT: kiln.concat
// CHECK: %[[SHAPE:.*]] = kiln.constant dense<[4, -1]> : tensor<2xi64>
// CHECK: %[[R:.*]] = kiln.reshape %{{.*}}, %[[SHAPE]] : (tensor<4x3x4xf32>, tensor<2xi64>) -> tensor<4x12xf32>
// CHECK: %[[Y:.*]] = kiln.relu %[[R]] : tensor<4x12xf32>
// CHECK: return %[[Y]] : tensor<4x12xf32>
func.func @main_b4(%x: tensor<4x3x4xf32> {kiln.batched}) -> (tensor<?x?xf32> {kiln.batched}) attributes {kiln.batch = 4 : i64} {
  %s = kiln.shape %x {start = 0 : i64, end = 3 : i64} : tensor<4x3x4xf32> -> tensor<3xi64>
  %zero = kiln.constant dense<0> : tensor<1xi64>
  %one = kiln.constant dense<1> : tensor<1xi64>
  %b = kiln.slice %s, %zero, %one, %one {axes = array<i64: 0>} : (tensor<3xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1xi64>
  %m1 = kiln.constant dense<-1> : tensor<1xi64>
  %shape = kiln.concat %b, %m1 {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>) -> tensor<2xi64>
  %r = kiln.reshape %x, %shape : (tensor<4x3x4xf32>, tensor<2xi64>) -> tensor<?x?xf32>
  %y = kiln.relu %r : tensor<?x?xf32>
  return %y : tensor<?x?xf32>
}
