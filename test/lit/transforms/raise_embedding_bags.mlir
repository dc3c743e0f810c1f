// RUN: kiln-opt %s --kiln-raise-embedding-bags --split-input-file | FileCheck %s

// Gather of [batch, hotness] ids + ReduceSum over the hotness axis pools each
// row: one embedding_bag over the flattened ids with fixed-size bags. ONNX
// Gather's negative ids keep their meaning.
// CHECK-LABEL: func.func @sum_over_hotness
// CHECK-DAG: %[[FLAT_SHAPE:.*]] = kiln.constant dense<6> : tensor<1xi64>
// CHECK-DAG: %[[BEGIN:.*]] = kiln.constant dense<[0, 3]> : tensor<2xi64>
// CHECK-DAG: %[[END:.*]] = kiln.constant dense<[3, 6]> : tensor<2xi64>
// CHECK: %[[FLAT:.*]] = kiln.reshape %arg1, %[[FLAT_SHAPE]] : (tensor<2x3xi64>, tensor<1xi64>) -> tensor<6xi64>
// CHECK: %[[BAG:.*]] = kiln.embedding_bag %arg0, %[[FLAT]], %[[BEGIN]], %[[END]] {mode = 0 : i64, wrap_negative}
// CHECK-NOT: kiln.gather
// CHECK-NOT: kiln.reduce_sum
func.func @sum_over_hotness(%table: tensor<10x4xf32>, %ids: tensor<2x3xi64>) -> tensor<2x4xf32> {
  %rows = kiln.gather %table, %ids {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %bag = kiln.reduce_sum %rows {axes = array<i64: 1>, keepdims = false} : tensor<2x3x4xf32> -> tensor<2x4xf32>
  return %bag : tensor<2x4xf32>
}

// -----

// Mean with keepdims: a mean bag, reshaped back.
// CHECK-LABEL: func.func @mean_keepdims
// CHECK: kiln.embedding_bag {{.*}} {mode = 1 : i64, wrap_negative} {{.*}} -> tensor<2x4xf32>
// CHECK: kiln.reshape {{.*}} -> tensor<2x1x4xf32>
func.func @mean_keepdims(%table: tensor<10x4xf32>, %ids: tensor<2x3xi64>) -> tensor<2x1x4xf32> {
  %rows = kiln.gather %table, %ids {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %bag = kiln.reduce_mean %rows {axes = array<i64: 1>, keepdims = true} : tensor<2x3x4xf32> -> tensor<2x1x4xf32>
  return %bag : tensor<2x1x4xf32>
}

// -----

// A reduction over another axis is not a bag.
// CHECK-LABEL: func.func @not_the_hotness_axis
// CHECK: kiln.gather
// CHECK: kiln.reduce_sum
func.func @not_the_hotness_axis(%table: tensor<10x4xf32>, %ids: tensor<2x3xi64>) -> tensor<3x4xf32> {
  %rows = kiln.gather %table, %ids {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %sum = kiln.reduce_sum %rows {axes = array<i64: 0>, keepdims = false} : tensor<2x3x4xf32> -> tensor<3x4xf32>
  return %sum : tensor<3x4xf32>
}
