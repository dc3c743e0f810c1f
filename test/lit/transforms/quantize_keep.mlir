// RUN: kiln-opt %s --kiln-quantize-tables=keep-tables=1 --split-input-file | FileCheck %s --check-prefix=KEEP1
// RUN: kiln-opt %s --kiln-quantize-tables=keep-tables=0,2 --split-input-file | FileCheck %s --check-prefix=KEEP02
// RUN: kiln-opt %s --kiln-quantize-dense=keep-layers=1 --split-input-file | FileCheck %s --check-prefix=LAYER

// What --quantize auto keeps f32: tables by their index among the distinct
// quantisable tables (first use first: %t0 0, %t1 1, %t2 2), layers by
// theirs among the int8 candidates. Keeping the middle table splits the op
// into three runs (columns and hotness sliced), concatenated in order.
// KEEP1-LABEL: func.func @three_tables
// KEEP1: %[[A:.*]] = kiln.embedding_bags %arg0, %{{.*}} {bits = 8 : i64, columns = array<i64: 0>, hotness = array<i64: 1>, mode = 0 : i64} : (tensor<3x4xi64>, tensor<6x8xui8>) -> tensor<3x4xf32>
// KEEP1: %[[B:.*]] = kiln.embedding_bags %arg0, %{{.*}} {columns = array<i64: 1, 2>, hotness = array<i64: 2>, mode = 0 : i64} : (tensor<3x4xi64>, tensor<6x4xf32>) -> tensor<3x4xf32>
// KEEP1: %[[C:.*]] = kiln.embedding_bags %arg0, %{{.*}} {bits = 8 : i64, columns = array<i64: 3>, hotness = array<i64: 1>, mode = 0 : i64} : (tensor<3x4xi64>, tensor<6x8xui8>) -> tensor<3x4xf32>
// KEEP1: kiln.concat %[[A]], %[[B]], %[[C]] {axis = 1 : i64} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x12xf32>
// Keeping the first and last, the two f32 runs keep one op each around the
// quantised one; keeping all would leave the op as it is.
// KEEP02-LABEL: func.func @three_tables
// KEEP02: kiln.embedding_bags %arg0, %{{.*}} {columns = array<i64: 0>{{.*}}(tensor<3x4xi64>, tensor<6x4xf32>) -> tensor<3x4xf32>
// KEEP02: kiln.embedding_bags %arg0, %{{.*}} {bits = 8 : i64, columns = array<i64: 1, 2>{{.*}}(tensor<3x4xi64>, tensor<6x8xui8>) -> tensor<3x4xf32>
// KEEP02: kiln.embedding_bags %arg0, %{{.*}} {columns = array<i64: 3>{{.*}}(tensor<3x4xi64>, tensor<6x4xf32>) -> tensor<3x4xf32>
// KEEP02: kiln.concat
// LAYER-LABEL: func.func @three_tables
// LAYER-NOT: ui8
func.func @three_tables(%ids: tensor<3x4xi64>) -> tensor<3x12xf32> {
  %t0 = kiln.constant dense<1.0> : tensor<6x4xf32>
  %t1 = kiln.constant dense<2.0> : tensor<6x4xf32>
  %t2 = kiln.constant dense<3.0> : tensor<6x4xf32>
  %b = kiln.embedding_bags %ids, %t0, %t1, %t2 {columns = array<i64: 0, 1, 2, 3>, hotness = array<i64: 1, 2, 1>, mode = 0 : i64} : (tensor<3x4xi64>, tensor<6x4xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<3x12xf32>
  return %b : tensor<3x12xf32>
}

// -----

// A table of dim 1 (a quantised row would be larger) no longer keeps its
// neighbours f32: unpooled (mode 3), its run's width is hotness x dim. A
// table used twice has one index.
// KEEP1-LABEL: func.func @narrow_and_shared
// KEEP1: kiln.embedding_bags %arg0, %{{.*}}, %{{.*}} {bits = 8 : i64, columns = array<i64: 0, 1, 2, 3>, hotness = array<i64: 2, 2>, mode = 3 : i64} : (tensor<2x5xi64>, tensor<6x8xui8>, tensor<6x8xui8>) -> tensor<2x16xf32>
// KEEP1: kiln.embedding_bags %arg0, %{{.*}} {columns = array<i64: 4>, hotness = array<i64: 1>, mode = 3 : i64} : (tensor<2x5xi64>, tensor<6x1xf32>) -> tensor<2x1xf32>
// KEEP1: kiln.concat {{.*}} -> tensor<2x17xf32>
// KEEP02-LABEL: func.func @narrow_and_shared
// KEEP02: kiln.embedding_bags %arg0, %{{.*}}, %{{.*}}, %{{.*}} {columns = {{.*}}} : (tensor<2x5xi64>, tensor<6x4xf32>, tensor<6x4xf32>, tensor<6x1xf32>) -> tensor<2x17xf32>
// KEEP02-NOT: kiln.concat
func.func @narrow_and_shared(%ids: tensor<2x5xi64>) -> tensor<2x17xf32> {
  %t = kiln.constant dense<1.0> : tensor<6x4xf32>
  %n = kiln.constant dense<1.0> : tensor<6x1xf32>
  %b = kiln.embedding_bags %ids, %t, %t, %n {columns = array<i64: 0, 1, 2, 3, 4>, hotness = array<i64: 2, 2, 1>, mode = 3 : i64} : (tensor<2x5xi64>, tensor<6x4xf32>, tensor<6x4xf32>, tensor<6x1xf32>) -> tensor<2x17xf32>
  return %b : tensor<2x17xf32>
}

// -----

// The second int8 candidate keeps its f32 weight; the first and third change.
// LAYER-LABEL: func.func @layers
// LAYER: kiln.dense %arg0, %{{.*}} scale
// LAYER: kiln.dense %{{.*}}, %{{.*}} {units = 4 : i64} : (tensor<2x4xf32>, tensor<4x4xf32>)
// LAYER: kiln.dense %{{.*}}, %{{.*}} scale
func.func @layers(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %w = kiln.constant dense<0.5> : tensor<4x4xf32>
  %v = kiln.constant dense<0.25> : tensor<4x4xf32>
  %u = kiln.constant dense<0.125> : tensor<4x4xf32>
  %a = kiln.dense %x, %w {units = 4 : i64} : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  %b = kiln.dense %a, %v {units = 4 : i64} : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  %c = kiln.dense %b, %u {units = 4 : i64} : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  return %c : tensor<2x4xf32>
}
