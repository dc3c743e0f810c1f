// RUN: kiln-opt %s --kiln-fuse-elementwise --split-input-file | FileCheck %s

// A scale, an activation and a residual add: one loop; the one-element
// constant is an input like the others, read once.
// CHECK-LABEL: func.func @chain
// CHECK: %[[C:.*]] = kiln.constant dense<2.000000e+00> : tensor<f32>
// CHECK: %[[F:.*]] = kiln.fused_elementwise(%arg0, %[[C]], %arg1) : (tensor<4x8xf32>, tensor<f32>, tensor<4x8xf32>) -> tensor<4x8xf32> {
// CHECK-NEXT: ^bb0(%[[X:.*]]: tensor<f32>, %[[K:.*]]: tensor<f32>, %[[Y:.*]]: tensor<f32>):
// CHECK-NEXT: %[[M:.*]] = kiln.mul %[[X]], %[[K]] : (tensor<f32>, tensor<f32>) -> tensor<f32>
// CHECK-NEXT: %[[S:.*]] = kiln.sigmoid %[[M]] : tensor<f32>
// CHECK-NEXT: %[[A:.*]] = kiln.add %[[S]], %[[Y]] : (tensor<f32>, tensor<f32>) -> tensor<f32>
// CHECK-NEXT: kiln.yield %[[A]] : tensor<f32>
// CHECK: return %[[F]]
func.func @chain(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %c = kiln.constant dense<2.0> : tensor<f32>
  %m = kiln.mul %x, %c : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %s = kiln.sigmoid %m : tensor<4x8xf32>
  %a = kiln.add %s, %y : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return %a : tensor<4x8xf32>
}

// -----

// An intermediate with another user (%e) stays a tensor and roots no tree
// of its own consumers; a row broadcast ([4, 1] against [4, 8]) is not a
// flat loop, so the div stays too. Two trees remain: relu + sub and
// neg + tanh.
// CHECK-LABEL: func.func @stops
// CHECK: %[[E:.*]] = kiln.exp %arg0
// CHECK: %[[D:.*]] = kiln.div %arg0, %arg1
// CHECK: kiln.fused_elementwise(%[[D]], %[[E]])
// CHECK: kiln.relu
// CHECK-NEXT: kiln.sub
// CHECK: kiln.fused_elementwise(%[[E]])
// CHECK: kiln.neg
// CHECK-NEXT: kiln.tanh
func.func @stops(%x: tensor<4x8xf32>, %n: tensor<4x1xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %e = kiln.exp %x : tensor<4x8xf32>
  %d = kiln.div %x, %n : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %r = kiln.relu %d : tensor<4x8xf32>
  %s = kiln.sub %e, %r : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %g = kiln.neg %e : tensor<4x8xf32>
  %t = kiln.tanh %g : tensor<4x8xf32>
  return %s, %t : tensor<4x8xf32>, tensor<4x8xf32>
}
