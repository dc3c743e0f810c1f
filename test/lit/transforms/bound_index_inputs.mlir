// RUN: kiln-opt %s --kiln-bound-index-inputs | FileCheck %s

// One input holds the ids of two tables: column 0 indexes t0 (100 rows, also
// through a gather of that column), column 1 indexes t1 (300 rows) through an
// embedding bag, which takes no negative ids. Ids that are computed on (here:
// added to) get no bounds; the kernels check them when they run.
// CHECK-LABEL: func.func @main_b2(
// CHECK-SAME: %{{.*}}: tensor<2x2xi64> {kiln.batched, kiln.index_bounds = array<i64: -100, 99, 0, 299>}
// CHECK-SAME: %{{.*}}: tensor<2xi64> {kiln.batched}, %{{.*}}: tensor<2x3xf32>)
func.func @main_b2(%ids: tensor<2x2xi64> {kiln.batched}, %computed: tensor<2xi64> {kiln.batched}, %dense: tensor<2x3xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) attributes {kiln.batch = 2 : i64} {
  %t0 = kiln.constant dense_resource<t0> : tensor<100x8xf32>
  %t1 = kiln.constant dense_resource<t1> : tensor<300x8xf32>
  %c0 = kiln.constant dense<0> : tensor<i64>
  %c1 = kiln.constant dense<1> : tensor<i64>
  %first = kiln.gather %ids, %c0 {axis = 1 : i64} : (tensor<2x2xi64>, tensor<i64>) -> tensor<2xi64>
  %a = kiln.gather %t0, %first {axis = 0 : i64} : (tensor<100x8xf32>, tensor<2xi64>) -> tensor<2x8xf32>
  %second = kiln.gather %ids, %c1 {axis = 1 : i64} : (tensor<2x2xi64>, tensor<i64>) -> tensor<2xi64>
  %begin = kiln.constant dense<[0, 1]> : tensor<2xi64>
  %end = kiln.constant dense<[1, 2]> : tensor<2xi64>
  %b = kiln.embedding_bag %t1, %second, %begin, %end {mode = 0 : i64} : (tensor<300x8xf32>, tensor<2xi64>, tensor<2xi64>, tensor<2xi64>) -> tensor<2x8xf32>
  %shifted = kiln.add %computed, %c1 : (tensor<2xi64>, tensor<i64>) -> tensor<2xi64>
  %c = kiln.gather %t0, %shifted {axis = 0 : i64} : (tensor<100x8xf32>, tensor<2xi64>) -> tensor<2x8xf32>
  return %a, %b, %c : tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>
}
{-#
  dialect_resources: {
    builtin: {
      t0: "0x04000000",
      t1: "0x04000000"
    }
  }
#-}
