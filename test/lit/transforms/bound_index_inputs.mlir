// RUN: kiln-opt %s --kiln-bound-index-inputs | FileCheck %s

// Ids reaching gathers through value-moving ops get the smallest table's
// range; ids that are computed on (here: added to) get none.
// CHECK-LABEL: func.func @main_b2(
// CHECK-SAME: %{{.*}}: tensor<2x2xi64> {kiln.index_range = array<i64: -100, 99>}
// CHECK-SAME: %{{.*}}: tensor<2xi64>, %{{.*}}: tensor<2x3xf32>)
func.func @main_b2(%ids: tensor<2x2xi64>, %computed: tensor<2xi64>, %dense: tensor<2x3xf32>) -> (tensor<2x8xf32>, tensor<2x2x8xf32>, tensor<2x8xf32>) attributes {kiln.batch = 2 : i64} {
  %t0 = kiln.constant dense_resource<t0> : tensor<100x8xf32>
  %t1 = kiln.constant dense_resource<t1> : tensor<300x8xf32>
  %col = kiln.constant dense<0> : tensor<i64>
  %first = kiln.gather %ids, %col {axis = 1 : i64} : (tensor<2x2xi64>, tensor<i64>) -> tensor<2xi64>
  %a = kiln.gather %t0, %first {axis = 0 : i64} : (tensor<100x8xf32>, tensor<2xi64>) -> tensor<2x8xf32>
  %b = kiln.gather %t1, %ids {axis = 0 : i64} : (tensor<300x8xf32>, tensor<2x2xi64>) -> tensor<2x2x8xf32>
  %one = kiln.constant dense<1> : tensor<i64>
  %shifted = kiln.add %computed, %one : (tensor<2xi64>, tensor<i64>) -> tensor<2xi64>
  %c = kiln.gather %t0, %shifted {axis = 0 : i64} : (tensor<100x8xf32>, tensor<2xi64>) -> tensor<2x8xf32>
  return %a, %b, %c : tensor<2x8xf32>, tensor<2x2x8xf32>, tensor<2x8xf32>
}
{-#
  dialect_resources: {
    builtin: {
      t0: "0x04000000",
      t1: "0x04000000"
    }
  }
#-}
