// RUN: kiln-opt %s --kiln-group-embedding-bags --split-input-file | FileCheck %s

// MLPerf-style: each table's ids are a slice of one [batch, 5] id row,
// flattened into fixed-size bags. Both tables become one lookup over the
// id rows, columns [0, 1, 2] and [3, 4]; the slices disappear.
// CHECK-LABEL: func.func @sliced_bags
// CHECK: %[[B:.*]] = kiln.embedding_bags %arg0, %{{.*}}, %{{.*}} {columns = array<i64: 0, 1, 2, 3, 4>, hotness = array<i64: 3, 2>, mode = 0 : i64, wrap_negative} : (tensor<2x5xi64>, tensor<10x4xf32>, tensor<7x8xf32>) -> tensor<2x12xf32>
// CHECK-NEXT: return %[[B]]
// CHECK-NOT: kiln.slice
func.func @sliced_bags(%ids: tensor<2x5xi64>) -> tensor<2x12xf32> {
  %t0 = kiln.constant dense<1.0> : tensor<10x4xf32>
  %t1 = kiln.constant dense<2.0> : tensor<7x8xf32>
  %s0 = kiln.constant dense<0> : tensor<1xi64>
  %e0 = kiln.constant dense<3> : tensor<1xi64>
  %e1 = kiln.constant dense<5> : tensor<1xi64>
  %ax = kiln.constant dense<1> : tensor<1xi64>
  %f0 = kiln.constant dense<6> : tensor<1xi64>
  %f1 = kiln.constant dense<4> : tensor<1xi64>
  %b0 = kiln.constant dense<[0, 3]> : tensor<2xi64>
  %n0 = kiln.constant dense<[3, 6]> : tensor<2xi64>
  %b1 = kiln.constant dense<[0, 2]> : tensor<2xi64>
  %n1 = kiln.constant dense<[2, 4]> : tensor<2xi64>
  %i0 = kiln.slice %ids, %s0, %e0, %ax {axes = array<i64: 1>} : (tensor<2x5xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x3xi64>
  %r0 = kiln.reshape %i0, %f0 : (tensor<2x3xi64>, tensor<1xi64>) -> tensor<6xi64>
  %p0 = kiln.embedding_bag %t0, %r0, %b0, %n0 {mode = 0 : i64, wrap_negative} : (tensor<10x4xf32>, tensor<6xi64>, tensor<2xi64>, tensor<2xi64>) -> tensor<2x4xf32>
  %i1 = kiln.slice %ids, %e0, %e1, %ax {axes = array<i64: 1>} : (tensor<2x5xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x2xi64>
  %r1 = kiln.reshape %i1, %f1 : (tensor<2x2xi64>, tensor<1xi64>) -> tensor<4xi64>
  %p1 = kiln.embedding_bag %t1, %r1, %b1, %n1 {mode = 0 : i64, wrap_negative} : (tensor<7x8xf32>, tensor<4xi64>, tensor<2xi64>, tensor<2xi64>) -> tensor<2x8xf32>
  %c = kiln.concat %p0, %p1 {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x8xf32>) -> tensor<2x12xf32>
  return %c : tensor<2x12xf32>
}

// -----

// Kaggle-style: one id per table, a column gathered out of the id row, then
// a row gather, stacked on axis 1 next to a dense feature. The two lookups
// become one embedding_bags, reshaped to their [batch, 2, 4] block; the
// dense feature keeps its place.
// CHECK-LABEL: func.func @gathered_columns
// CHECK: %[[B:.*]] = kiln.embedding_bags %arg0, %{{.*}}, %{{.*}} {columns = array<i64: 2, 0>, hotness = array<i64: 1, 1>, mode = 0 : i64, wrap_negative} : (tensor<3x4xi64>, tensor<10x4xf32>, tensor<6x4xf32>) -> tensor<3x8xf32>
// CHECK: %[[R:.*]] = kiln.reshape %[[B]], %{{.*}} : (tensor<3x8xf32>, tensor<3xi64>) -> tensor<3x2x4xf32>
// CHECK: kiln.concat %arg1, %[[R]] {axis = 1 : i64} : (tensor<3x1x4xf32>, tensor<3x2x4xf32>) -> tensor<3x3x4xf32>
func.func @gathered_columns(%ids: tensor<3x4xi64>, %x: tensor<3x1x4xf32>) -> tensor<3x3x4xf32> {
  %t0 = kiln.constant dense<1.0> : tensor<10x4xf32>
  %t1 = kiln.constant dense<2.0> : tensor<6x4xf32>
  %k2 = kiln.constant dense<2> : tensor<i64>
  %k0 = kiln.constant dense<0> : tensor<i64>
  %c2 = kiln.gather %ids, %k2 {axis = 1 : i64} : (tensor<3x4xi64>, tensor<i64>) -> tensor<3xi64>
  %g0 = kiln.gather %t0, %c2 {axis = 0 : i64} : (tensor<10x4xf32>, tensor<3xi64>) -> tensor<3x4xf32>
  %u0 = kiln.unsqueeze %g0 {axes = array<i64: 1>} : tensor<3x4xf32> -> tensor<3x1x4xf32>
  %c0 = kiln.gather %ids, %k0 {axis = 1 : i64} : (tensor<3x4xi64>, tensor<i64>) -> tensor<3xi64>
  %g1 = kiln.gather %t1, %c0 {axis = 0 : i64} : (tensor<6x4xf32>, tensor<3xi64>) -> tensor<3x4xf32>
  %u1 = kiln.unsqueeze %g1 {axes = array<i64: 1>} : tensor<3x4xf32> -> tensor<3x1x4xf32>
  %c = kiln.concat %x, %u0, %u1 {axis = 1 : i64} : (tensor<3x1x4xf32>, tensor<3x1x4xf32>, tensor<3x1x4xf32>) -> tensor<3x3x4xf32>
  return %c : tensor<3x3x4xf32>
}

// -----

// Not grouped: ids from different tensors, a lookup that is also returned,
// and ids that are not the same columns of every sample (the ids of both
// samples come from sample 0's row).
// CHECK-LABEL: func.func @not_grouped
// CHECK-NOT: kiln.embedding_bags
func.func @not_grouped(%a: tensor<2xi64>, %b: tensor<2xi64>, %c: tensor<2x2xi64>) -> (tensor<2x12xf32>, tensor<2x4xf32>, tensor<2x8xf32>) {
  %t = kiln.constant dense<1.0> : tensor<10x4xf32>
  %zero = kiln.constant dense<[0, 0]> : tensor<2xi64>
  %ga = kiln.gather %t, %a {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %gb = kiln.gather %t, %b {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %gc = kiln.gather %t, %b {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %x = kiln.concat %ga, %gb, %gc {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x12xf32>
  %row0 = kiln.gather %c, %zero {axis = 0 : i64} : (tensor<2x2xi64>, tensor<2xi64>) -> tensor<2x2xi64>
  %k0 = kiln.constant dense<0> : tensor<i64>
  %k1 = kiln.constant dense<1> : tensor<i64>
  %i0 = kiln.gather %row0, %k0 {axis = 1 : i64} : (tensor<2x2xi64>, tensor<i64>) -> tensor<2xi64>
  %i1 = kiln.gather %row0, %k1 {axis = 1 : i64} : (tensor<2x2xi64>, tensor<i64>) -> tensor<2xi64>
  %h0 = kiln.gather %t, %i0 {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %h1 = kiln.gather %t, %i1 {axis = 0 : i64} : (tensor<10x4xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %y = kiln.concat %h0, %h1 {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  return %x, %gc, %y : tensor<2x12xf32>, tensor<2x4xf32>, tensor<2x8xf32>
}
