// RUN: kiln-opt %s --kiln-expose-dense-inputs | FileCheck %s --check-prefix=EXPOSE
// RUN: kiln-opt %s "--kiln-quantize-dense=precision=int8 input-ranges=-1,2,0,5" | FileCheck %s --check-prefix=RANGES
// RUN: not kiln-opt %s "--kiln-quantize-dense=precision=int8 input-ranges=-1,2" 2>&1 | FileCheck %s --check-prefix=FEWER
// RUN: not kiln-opt %s "--kiln-quantize-dense=precision=int8 input-ranges=-1,2,0,5,0,1" 2>&1 | FileCheck %s --check-prefix=MORE
// RUN: not kiln-opt %s "--kiln-quantize-dense=precision=bf16 input-ranges=0,1" 2>&1 | FileCheck %s --check-prefix=BF16

// Static calibration. The observer returns, after the model's output, the
// input of each layer int8 would quantise, in layer order (the argument
// itself for the first).
// EXPOSE: func.func @main_b2(%arg0: tensor<2x4xf32>) -> (tensor<2x3xf32>, tensor<2x4xf32> {kiln.name = "kiln.calibration.0"}, tensor<2x3xf32> {kiln.name = "kiln.calibration.1"})
// EXPOSE: return %{{.*}}, %arg0, %[[Y:.*]] : tensor<2x3xf32>, tensor<2x4xf32>, tensor<2x3xf32>

// The ranges, in the same order, become each layer's static scale and zero
// point (quantized.h's activationQuantization): [-1, 2] is 3/127 per step
// with 0 at 42; [0, 5] is 5/127 with 0 at 0.
// RANGES: kiln.dense %arg0, {{.*}} {input_scale = 0.0236220472 : f32, input_zero_point = 42 : i32, units = 3 : i64}
// RANGES: kiln.dense {{.*}} {input_scale = 0.0393700786 : f32, input_zero_point = 0 : i32, units = 3 : i64}
// FEWER: error: kiln-quantize-dense: input-ranges has 1 layers' ranges; this function has 2 calibrated layers
// MORE: error: kiln-quantize-dense: input-ranges has 3 layers' ranges; this function has 2 calibrated layers
// BF16: error: kiln-quantize-dense: input-ranges takes lo, hi pairs, for int8
func.func @main_b2(%x: tensor<2x4xf32>) -> tensor<2x3xf32> attributes {kiln.batch = 2 : i64} {
  %w = kiln.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [1.0, 0.5, -1.0]]> : tensor<4x3xf32>
  %w2 = kiln.constant dense<0.5> : tensor<3x3xf32>
  %y = kiln.dense %x, %w {units = 3 : i64} : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
  %z = kiln.dense %y, %w2 {units = 3 : i64} : (tensor<2x3xf32>, tensor<3x3xf32>) -> tensor<2x3xf32>
  return %z : tensor<2x3xf32>
}
