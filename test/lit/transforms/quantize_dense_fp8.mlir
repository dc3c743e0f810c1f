// RUN: kiln-opt %s --kiln-quantize-dense="precision=fp8 input-ranges=-2,3.5,0,1" | FileCheck %s
// RUN: not kiln-opt %s --kiln-quantize-dense=precision=fp8 2>&1 | FileCheck %s --check-prefix=NORANGES
// RUN: not kiln-opt %s --kiln-quantize-dense="precision=fp8 input-ranges=-2,3.5" 2>&1 | FileCheck %s --check-prefix=COUNT

// fp8 (the CUDA target's --precision fp8): the 16 x 16 layer's weight, one
// column of ones, becomes E4M3 transposed to [units, K] (unit 0's row is
// all 448, 0x7E: max |w| maps to the largest E4M3) with the one scale 1/448; its
// input scale is max(|-2|, 3.5) / 448. The depth-3 layer is not a multiple
// of 16 and keeps f32 weights, though it has a range.
// CHECK-LABEL: func.func @fp8
// CHECK-DAG: %[[Q:.*]] = kiln.constant dense<"0x7E7E7E7E7E7E7E7E7E7E7E7E7E7E7E7E0000{{0*}}"> : tensor<16x16xf8E4M3FN>
// CHECK-DAG: %[[S:.*]] = kiln.constant dense<0.00223214296> : tensor<1xf32>
// CHECK: kiln.dense %arg0, %[[Q]] bias %{{.*}} scale %[[S]] {activation = "relu", input_scale = 7.812500e-03 : f32, units = 16 : i64}
// CHECK: kiln.dense %arg1, %{{.*}} {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>)
// NORANGES: input-ranges takes lo, hi pairs, for int8 (optional) and fp8 (required)
// COUNT: input-ranges has 1 layers' ranges; this function has 2 calibrated layers
func.func @fp8(%x: tensor<4x16xf32>, %y: tensor<4x3xf32>) -> (tensor<4x16xf32>, tensor<4x2xf32>) {
  %w = kiln.constant dense<[[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]> : tensor<16x16xf32>
  %b = kiln.constant dense<1.0> : tensor<16xf32>
  %d = kiln.dense %x, %w bias %b {units = 16 : i64, activation = "relu"} : (tensor<4x16xf32>, tensor<16x16xf32>, tensor<16xf32>) -> tensor<4x16xf32>
  %v = kiln.constant dense<0.5> : tensor<3x2xf32>
  %e = kiln.dense %y, %v {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return %d, %e : tensor<4x16xf32>, tensor<4x2xf32>
}
