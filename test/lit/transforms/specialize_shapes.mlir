// RUN: kiln-opt %s --kiln-specialize-shapes="batch=8,1" | FileCheck %s
// RUN: kiln-opt %s --kiln-specialize-shapes | FileCheck %s --check-prefix=DEFAULT

// One function per bucket, in ascending order; only batched inputs change.
// CHECK-NOT: func.func @main(
// CHECK-LABEL: func.func @main_b1(
// CHECK-SAME: %{{.*}}: tensor<1x4xf32> {kiln.batched, kiln.name = "x"}, %{{.*}}: tensor<3xf32> {kiln.name = "scale"})
// CHECK-SAME: -> (tensor<?x4xf32> {kiln.batched, kiln.name = "y"})
// CHECK-SAME: attributes {kiln.batch = 1 : i64}
// CHECK: kiln.mul
// CHECK-LABEL: func.func @main_b8(
// CHECK-SAME: tensor<8x4xf32>
// CHECK-SAME: attributes {kiln.batch = 8 : i64}
// DEFAULT: func.func @main_b1(
// DEFAULT-NOT: func.func
func.func @main(%x: tensor<?x4xf32> {kiln.batched, kiln.name = "x"},
                %s: tensor<3xf32> {kiln.name = "scale"}) -> (tensor<?x4xf32> {kiln.batched, kiln.name = "y"}) {
  %0 = kiln.mul %x, %x : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}
