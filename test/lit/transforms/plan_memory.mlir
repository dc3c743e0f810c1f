// RUN: kiln-opt %s --kiln-plan-memory --split-input-file | FileCheck %s

// A chain reuses memory: reshapes alias their input, and an elementwise op
// reading a buffer for the last time writes its result over it (never over
// an input: the relu gets its own bytes). The arena meets the liveness lower
// bound.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: %{{.*}}: tensor<4x16xf32> {kiln.arena_offset = [[IN:[0-9]+]] : i64}
// CHECK-SAME: attributes {kiln.arena_bytes = 512 : i64, kiln.arena_lower_bound = 512 : i64
// CHECK: %[[A:.*]] = kiln.relu %arg0 {kiln.arena_offset = [[A_OFF:[0-9]+]] : i64}
// CHECK: kiln.reshape %[[A]], %{{.*}} {kiln.arena_offset = [[A_OFF]] : i64}
// CHECK: kiln.sigmoid %{{.*}} {kiln.arena_offset = [[A_OFF]] : i64}
// CHECK: kiln.tanh %{{.*}} {kiln.arena_offset = [[A_OFF]] : i64}
func.func @chain(%x: tensor<4x16xf32>) -> tensor<64xf32> {
  %a = kiln.relu %x : tensor<4x16xf32>
  %s = kiln.constant dense<[64]> : tensor<1xi64>
  %r = kiln.reshape %a, %s : (tensor<4x16xf32>, tensor<1xi64>) -> tensor<64xf32>
  %b = kiln.sigmoid %r : tensor<64xf32>
  %c = kiln.tanh %b : tensor<64xf32>
  return %c : tensor<64xf32>
}

// -----

// Outputs get their own bytes: an input, a constant or a repeated value is copied.
// CHECK-LABEL: func.func @outputs
// CHECK: %[[C:.*]] = kiln.constant
// CHECK: %[[R:.*]] = kiln.relu %arg0
// CHECK: %[[C1:.*]] = kiln.copy %arg0 {kiln.arena_offset
// CHECK: %[[C2:.*]] = kiln.copy %[[C]] {kiln.arena_offset
// CHECK: %[[C3:.*]] = kiln.copy %[[R]] {kiln.arena_offset
// CHECK: return %[[C1]], %[[C2]], %[[R]], %[[C3]]
func.func @outputs(%x: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) {
  %c = kiln.constant dense<1.0> : tensor<2xf32>
  %r = kiln.relu %x : tensor<2xf32>
  return %x, %c, %r, %r : tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
}

// -----

// Two values alive together never overlap.
// CHECK-LABEL: func.func @overlap
// CHECK-SAME: kiln.arena_bytes = 384 : i64, kiln.arena_lower_bound = 384 : i64
// CHECK: kiln.relu %arg0 {kiln.arena_offset = [[R:[0-9]+]] : i64}
// CHECK-NOT: kiln.arena_offset = [[R]] :
// CHECK: kiln.add
func.func @overlap(%x: tensor<32xf32>) -> tensor<32xf32> {
  %r = kiln.relu %x : tensor<32xf32>
  %s = kiln.sigmoid %x : tensor<32xf32>
  %a = kiln.add %r, %s : (tensor<32xf32>, tensor<32xf32>) -> tensor<32xf32>
  return %a : tensor<32xf32>
}

// -----

// Concat along the last dim: the gather, the dense and the sub write their
// rows straight into the concat's buffer at their column (row stride 20
// floats); the relu (not a strided writer) and the dense result that is also
// returned are copied in by the concat.
// CHECK-LABEL: func.func @concat_in_place
// CHECK: kiln.gather %{{.*}} {axis = 0 : i64, kiln.arena_offset = [[BASE:[0-9]+]] : i64, kiln.row_stride = 20 : i64}
// CHECK: kiln.dense %{{.*}} {kiln.arena_offset = {{[0-9]+}} : i64, units = 4 : i64}
// CHECK: kiln.dense %{{.*}} {kiln.arena_offset = {{[0-9]+}} : i64, kiln.row_stride = 20 : i64, units = 4 : i64}
// CHECK: kiln.relu
// CHECK: kiln.sub %{{.*}} {kiln.arena_offset = {{[0-9]+}} : i64, kiln.row_stride = 20 : i64}
// CHECK: kiln.concat {{.*}} {axis = 1 : i64, kiln.arena_offset = [[BASE]] : i64, kiln.in_place = array<i1: true, false, true, false, true>}
func.func @concat_in_place(%ids: tensor<2xi64>, %x: tensor<2x3xf32>, %y: tensor<2x4xf32>) -> (tensor<2x20xf32>, tensor<2x4xf32>) {
  %t = kiln.constant dense<1.0> : tensor<5x4xf32>
  %w = kiln.constant dense<1.0> : tensor<1x3x16xf32>
  %g = kiln.gather %t, %ids {axis = 0 : i64} : (tensor<5x4xf32>, tensor<2xi64>) -> tensor<2x4xf32>
  %e = kiln.dense %x, %w {units = 4 : i64} : (tensor<2x3xf32>, tensor<1x3x16xf32>) -> tensor<2x4xf32>
  %d = kiln.dense %x, %w {units = 4 : i64} : (tensor<2x3xf32>, tensor<1x3x16xf32>) -> tensor<2x4xf32>
  %r = kiln.relu %y : tensor<2x4xf32>
  %s = kiln.sub %y, %r : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  %c = kiln.concat %g, %e, %d, %r, %s {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x20xf32>
  return %c, %e : tensor<2x20xf32>, tensor<2x4xf32>
}

// -----

// A concat on a middle axis is [batch, row] blocks too: the lookups write
// their [3, 8] rows through the reshape into floats 4..11 of each 12-float
// row of the [3, 3, 4] concat, and the dense behind the unsqueeze writes
// floats 0..3 of the same rows.
// CHECK-LABEL: func.func @concat_in_place_through_reshapes
// CHECK: kiln.dense %{{.*}} {kiln.arena_offset = [[BASE:[0-9]+]] : i64, kiln.row_stride = 12 : i64, units = 4 : i64}
// CHECK: kiln.embedding_bags {{.*}}kiln.arena_offset = [[BAGS:[0-9]+]] : i64, kiln.row_stride = 12 : i64
// CHECK: kiln.reshape {{.*}}kiln.arena_offset = [[BAGS]] : i64
// CHECK: kiln.concat {{.*}}kiln.arena_offset = [[BASE]] : i64, kiln.in_place = array<i1: true, true>
func.func @concat_in_place_through_reshapes(%ids: tensor<3x2xi64>, %x: tensor<3x3xf32>) -> tensor<3x3x4xf32> {
  %w = kiln.constant dense<1.0> : tensor<1x3x16xf32>
  %t = kiln.constant dense<1.0> : tensor<5x4xf32>
  %shape = kiln.constant dense<[3, 2, 4]> : tensor<3xi64>
  %d = kiln.dense %x, %w {units = 4 : i64} : (tensor<3x3xf32>, tensor<1x3x16xf32>) -> tensor<3x4xf32>
  %u = kiln.unsqueeze %d {axes = array<i64: 1>} : tensor<3x4xf32> -> tensor<3x1x4xf32>
  %b = kiln.embedding_bags %ids, %t, %t {columns = array<i64: 0, 1>, hotness = array<i64: 1, 1>, mode = 0 : i64} : (tensor<3x2xi64>, tensor<5x4xf32>, tensor<5x4xf32>) -> tensor<3x8xf32>
  %r = kiln.reshape %b, %shape : (tensor<3x8xf32>, tensor<3xi64>) -> tensor<3x2x4xf32>
  %c = kiln.concat %u, %r {axis = 1 : i64} : (tensor<3x1x4xf32>, tensor<3x2x4xf32>) -> tensor<3x3x4xf32>
  return %c : tensor<3x3x4xf32>
}

// -----

// In place only where the operand's buffer is read for the last time: %e is
// read again by the add, so the sigmoid does not overwrite it; the add reads
// both for the last time and overwrites its first operand.
// (The input is never overwritten, but its slot is free once it is read.)
// CHECK-LABEL: func.func @in_place_elementwise
// CHECK-SAME: {kiln.arena_offset = [[IN:[0-9]+]] : i64}
// CHECK: %[[E:.*]] = kiln.exp %arg0 {kiln.arena_offset = [[E_OFF:[0-9]+]] : i64}
// CHECK: %[[S:.*]] = kiln.sigmoid %[[E]] {kiln.arena_offset = [[IN]] : i64}
// CHECK: kiln.add %[[S]], %[[E]] {kiln.arena_offset = [[IN]] : i64}
func.func @in_place_elementwise(%x: tensor<8xf32>) -> tensor<8xf32> {
  %e = kiln.exp %x : tensor<8xf32>
  %s = kiln.sigmoid %e : tensor<8xf32>
  %a = kiln.add %s, %e : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  return %a : tensor<8xf32>
}

// -----

// A slice that is one contiguous run of its source (a single index on axis
// 0, whole trailing axes) is a view at an offset: `kiln.alias`, no buffer
// and no code. Row 1 of a [3, 4] f32 tensor starts 16 bytes in. A slice of
// columns is strided and gets its own buffer.
// CHECK-LABEL: func.func @slice_views
// CHECK: kiln.exp %arg0 {kiln.arena_offset = 64 : i64}
// CHECK: kiln.slice {{.*}} {axes = array<i64: 0>, kiln.alias, kiln.arena_offset = 80 : i64}
// CHECK: kiln.slice {{.*}} {axes = array<i64: 1>, kiln.arena_offset = {{[0-9]+}} : i64}
func.func @slice_views(%x: tensor<3x4xf32>) -> (tensor<1x4xf32>, tensor<3x2xf32>) {
  %one = kiln.constant dense<1> : tensor<1xi64>
  %two = kiln.constant dense<2> : tensor<1xi64>
  %zero = kiln.constant dense<0> : tensor<1xi64>
  %e = kiln.exp %x : tensor<3x4xf32>
  %row = kiln.slice %e, %one, %two, %one {axes = array<i64: 0>} : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x4xf32>
  %r = kiln.relu %row : tensor<1x4xf32>
  %cols = kiln.slice %e, %zero, %two, %one {axes = array<i64: 1>} : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
  %c = kiln.relu %cols : tensor<3x2xf32>
  return %r, %c : tensor<1x4xf32>, tensor<3x2xf32>
}

// -----

// An elementwise op does not overwrite an operand's buffer that another of
// its operands reads a part of: %s, element 3 of %e (a view 12 bytes in), is
// broadcast over the product and would be read after the product overwrote
// it. So the product takes the input's free slot, not %e's; the relu may
// overwrite the product (its only operand).
// CHECK-LABEL: func.func @no_overwrite_under_a_view
// CHECK: %[[E:.*]] = kiln.exp %arg0 {kiln.arena_offset = 64 : i64}
// CHECK: kiln.slice {{.*}}kiln.alias, kiln.arena_offset = 76 : i64}
// CHECK: %[[M:.*]] = kiln.mul %[[E]], %{{.*}} {kiln.arena_offset = 0 : i64}
// CHECK: kiln.relu %[[M]] {kiln.arena_offset = 0 : i64}
func.func @no_overwrite_under_a_view(%x: tensor<8xf32>) -> tensor<8xf32> {
  %three = kiln.constant dense<3> : tensor<1xi64>
  %four = kiln.constant dense<4> : tensor<1xi64>
  %one = kiln.constant dense<1> : tensor<1xi64>
  %e = kiln.exp %x : tensor<8xf32>
  %s = kiln.slice %e, %three, %four, %one {axes = array<i64: 0>} : (tensor<8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1xf32>
  %m = kiln.mul %e, %s : (tensor<8xf32>, tensor<1xf32>) -> tensor<8xf32>
  %r = kiln.relu %m : tensor<8xf32>
  return %r : tensor<8xf32>
}
