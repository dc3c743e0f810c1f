// RUN: kiln-opt %s --kiln-fuse-requantize --split-input-file | FileCheck %s

// An int8 layer feeding a calibrated int8 layer takes its input range as
// its output range and returns ui8, which the next layer reads as it is.
// CHECK-LABEL: func.func @chain
// CHECK: %[[H:.*]] = kiln.dense %arg0, %arg1 scale %arg2 sums %arg3 {activation = "relu", output_scale = 2.500000e-01 : f32, output_zero_point = 0 : i32, units = 4 : i64} : ({{.*}}) -> tensor<2x4xui8>
// CHECK: kiln.dense %[[H]], %arg4 scale %arg5 sums %arg6 {input_scale = 2.500000e-01 : f32, input_zero_point = 0 : i32, units = 3 : i64} : (tensor<2x4xui8>, {{.*}}) -> tensor<2x3xf32>
func.func @chain(%x: tensor<2x8xf32>, %w1: tensor<8x4xi8>, %s1: tensor<4xf32>, %n1: tensor<4xi32>,
                 %w2: tensor<4x3xi8>, %s2: tensor<3xf32>, %n2: tensor<3xi32>) -> tensor<2x3xf32> {
  %h = kiln.dense %x, %w1 scale %s1 sums %n1 {units = 4 : i64, activation = "relu"} : (tensor<2x8xf32>, tensor<8x4xi8>, tensor<4xf32>, tensor<4xi32>) -> tensor<2x4xf32>
  %y = kiln.dense %h, %w2 scale %s2 sums %n2 {units = 3 : i64, input_scale = 0.25 : f32, input_zero_point = 0 : i32} : (tensor<2x4xf32>, tensor<4x3xi8>, tensor<3xf32>, tensor<3xi32>) -> tensor<2x3xf32>
  return %y : tensor<2x3xf32>
}

// -----

// Left alone: a next layer without a static range (it quantises per row),
// a result with a second use, a width that is not a multiple of 4, and a
// result that is the next layer's residual rather than its input.
// CHECK-LABEL: func.func @not_fused
// CHECK-NOT: output_scale
// CHECK-NOT: ui8
func.func @not_fused(%x: tensor<2x8xf32>, %w1: tensor<8x4xi8>, %s1: tensor<4xf32>, %n1: tensor<4xi32>,
                     %w3: tensor<8x3xi8>, %s3: tensor<3xf32>, %n3: tensor<3xi32>,
                     %w2: tensor<4x3xi8>, %s2: tensor<3xf32>, %n2: tensor<3xi32>,
                     %w4: tensor<3x3xi8>, %w5: tensor<4x4xi8>)
    -> (tensor<2x3xf32>, tensor<2x4xf32>, tensor<2x3xf32>, tensor<2x4xf32>) {
  %a = kiln.dense %x, %w1 scale %s1 sums %n1 {units = 4 : i64} : (tensor<2x8xf32>, tensor<8x4xi8>, tensor<4xf32>, tensor<4xi32>) -> tensor<2x4xf32>
  %b = kiln.dense %a, %w2 scale %s2 sums %n2 {units = 3 : i64} : (tensor<2x4xf32>, tensor<4x3xi8>, tensor<3xf32>, tensor<3xi32>) -> tensor<2x3xf32>
  %c = kiln.dense %x, %w1 scale %s1 sums %n1 {units = 4 : i64} : (tensor<2x8xf32>, tensor<8x4xi8>, tensor<4xf32>, tensor<4xi32>) -> tensor<2x4xf32>
  %d = kiln.dense %c, %w2 scale %s2 sums %n2 {units = 3 : i64, input_scale = 0.25 : f32, input_zero_point = 0 : i32} : (tensor<2x4xf32>, tensor<4x3xi8>, tensor<3xf32>, tensor<3xi32>) -> tensor<2x3xf32>
  %e = kiln.dense %x, %w3 scale %s3 sums %n3 {units = 3 : i64} : (tensor<2x8xf32>, tensor<8x3xi8>, tensor<3xf32>, tensor<3xi32>) -> tensor<2x3xf32>
  %f = kiln.dense %e, %w4 scale %s3 sums %n3 {units = 3 : i64, input_scale = 0.25 : f32, input_zero_point = 0 : i32} : (tensor<2x3xf32>, tensor<3x3xi8>, tensor<3xf32>, tensor<3xi32>) -> tensor<2x3xf32>
  %g = kiln.dense %x, %w1 scale %s1 sums %n1 {units = 4 : i64} : (tensor<2x8xf32>, tensor<8x4xi8>, tensor<4xf32>, tensor<4xi32>) -> tensor<2x4xf32>
  %h = kiln.dense %x, %w1 residual %g scale %s1 sums %n1 {units = 4 : i64, input_scale = 0.25 : f32, input_zero_point = 0 : i32} : (tensor<2x8xf32>, tensor<8x4xi8>, tensor<2x4xf32>, tensor<4xf32>, tensor<4xi32>) -> tensor<2x4xf32>
  %sum = kiln.add %f, %d : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
  return %b, %c, %sum, %h : tensor<2x3xf32>, tensor<2x4xf32>, tensor<2x3xf32>, tensor<2x4xf32>
}
