// RUN: kiln-opt %s --kiln-order-for-memory --split-input-file | FileCheck %s

// Two branches written breadth-first keep both 16 KiB intermediates live at
// once; depth-first, each is reduced to 256 bytes before the other exists.
// CHECK-LABEL: func.func @branches
// CHECK: %[[A:.*]] = kiln.add %arg0
// CHECK-NEXT: %[[RA:.*]] = kiln.reduce_sum %[[A]]
// CHECK-NEXT: %[[B:.*]] = kiln.add %arg1
// CHECK-NEXT: %[[RB:.*]] = kiln.reduce_sum %[[B]]
// CHECK-NEXT: kiln.concat %[[RA]], %[[RB]]
func.func @branches(%x: tensor<1x64xf32>, %y: tensor<1x64xf32>) -> tensor<2x64xf32> {
  %w = kiln.constant dense<1.0> : tensor<64x64xf32>
  %a = kiln.add %x, %w : (tensor<1x64xf32>, tensor<64x64xf32>) -> tensor<64x64xf32>
  %b = kiln.add %y, %w : (tensor<1x64xf32>, tensor<64x64xf32>) -> tensor<64x64xf32>
  %ra = kiln.reduce_sum %a {axes = array<i64: 0>, keepdims = true} : tensor<64x64xf32> -> tensor<1x64xf32>
  %rb = kiln.reduce_sum %b {axes = array<i64: 0>, keepdims = true} : tensor<64x64xf32> -> tensor<1x64xf32>
  %c = kiln.concat %ra, %rb {axis = 0 : i64} : (tensor<1x64xf32>, tensor<1x64xf32>) -> tensor<2x64xf32>
  return %c : tensor<2x64xf32>
}

// -----

// An order that is already as good stays as it is, even where the greedy
// choice would differ only in ties.
// CHECK-LABEL: func.func @chain
// CHECK: kiln.exp %arg0
// CHECK-NEXT: kiln.exp %arg1
// CHECK-NEXT: kiln.add
func.func @chain(%x: tensor<4xf32>, %y: tensor<4xf32>) -> tensor<4xf32> {
  %a = kiln.exp %x : tensor<4xf32>
  %b = kiln.exp %y : tensor<4xf32>
  %c = kiln.add %a, %b : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %c : tensor<4xf32>
}

// -----

// Found by import_fuzzer: inputs whose bytes sum past 2^63 (each fits). The
// live peak saturates instead of overflowing (UBSan would stop here); the
// order stays, and kiln-plan-memory refuses the arena.
// CHECK-LABEL: func.func @saturates
// CHECK: return %arg1
func.func @saturates(%x: tensor<9223372036854775807xui8>, %s: tensor<i64>) -> tensor<i64> {
  return %s : tensor<i64>
}
