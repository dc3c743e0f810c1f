// RUN: kiln-opt %s --kiln-quantize-dense --split-input-file | FileCheck %s --check-prefix=INT8
// RUN: kiln-opt %s --kiln-quantize-dense=precision=bf16 --split-input-file | FileCheck %s --check-prefix=BF16
// RUN: kiln-opt %s --kiln-quantize-dense=precision=fp16 --split-input-file | FileCheck %s --check-prefix=FP16
// RUN: kiln-opt %s --kiln-quantize-dense --kiln-pack-weights --split-input-file | FileCheck %s --check-prefix=PACK
// RUN: not kiln-opt %s --kiln-quantize-dense=precision=int3 --split-input-file 2>&1 | FileCheck %s --check-prefix=BAD

// int8: column 0 has max |w| 2 (scale 2/127), column 1 max |w| 0.5; each
// column's largest magnitude becomes +-127. The sums are those of q. The
// weight shared by two layers is quantised once; the epilogue is kept.
// INT8-LABEL: func.func @int8
// INT8-DAG: %[[Q:.*]] = kiln.constant dense<{{\[\[}}127, 127], [-64, -64], [0, 0]]> : tensor<3x2xi8>
// INT8-DAG: %[[S:.*]] = kiln.constant dense<[0.0157480314, 0.00393700786]> : tensor<2xf32>
// INT8-DAG: %[[N:.*]] = kiln.constant dense<63> : tensor<2xi32>
// INT8: kiln.dense %arg0, %[[Q]] bias %{{.*}} scale %[[S]] sums %[[N]] {activation = "relu", units = 2 : i64}
// INT8: kiln.dense %arg0, %[[Q]] scale %[[S]] sums %[[N]] {units = 2 : i64}
// INT8-NOT: xf32> = kiln.constant dense<{{\[\[}}2.0
// BF16-LABEL: func.func @int8
// BF16: kiln.constant dense<{{\[\[}}2.000000e+00, 5.000000e-01], [-1.000000e+00, -2.500000e-01], [0.000000e+00, 0.000000e+00]]> : tensor<3x2xbf16>
// FP16-LABEL: func.func @int8
// FP16: tensor<3x2xf16>
// PACK-LABEL: func.func @int8
// Packed, each column's four k values are adjacent: [127, -64, 0, 0] (k = 3
// is padding), then the 14 padding columns.
// PACK: kiln.constant dense<{{\[\[\[}}127, -64, 0, 0, 127, -64, 0, 0, 0, 0, {{.*}}]]]> : tensor<1x1x64xi8>
// PACK: kiln.dense %arg0, %{{.*}} scale
// BAD: kiln-quantize-dense: unknown precision 'int3' (int8, fp16, bf16 or fp8)
func.func @int8(%x: tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<4x2xf32>) {
  %w = kiln.constant dense<[[2.0, 0.5], [-1.0, -0.25], [0.0, 0.0]]> : tensor<3x2xf32>
  %b = kiln.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %d = kiln.dense %x, %w bias %b {units = 2 : i64, activation = "relu"} : (tensor<4x3xf32>, tensor<3x2xf32>, tensor<2xf32>) -> tensor<4x2xf32>
  %e = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return %d, %e : tensor<4x2xf32>, tensor<4x2xf32>
}

// -----

// A weight that is not a constant is left alone.
// INT8-LABEL: func.func @runtime_weight
// INT8: kiln.dense %arg0, %arg1 {units = 2 : i64}
func.func @runtime_weight(%x: tensor<4x3xf32>, %w: tensor<3x2xf32>) -> tensor<4x2xf32> {
  %d = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return %d : tensor<4x2xf32>
}

// -----

// A NaN (0x7FC00000) or Inf weight has no int8 code: the layer stays f32,
// at every precision (found by import_fuzzer).
// INT8-LABEL: func.func @non_finite_weight
// INT8: kiln.dense %arg0, %{{.*}} {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
// INT8-NOT: xi8>
// BF16-LABEL: func.func @non_finite_weight
// BF16-NOT: xbf16>
func.func @non_finite_weight(%x: tensor<4x3xf32>) -> tensor<4x2xf32> {
  %w = kiln.constant dense<[[2.0, 0x7FC00000], [-1.0, 0x7F800000], [0.0, 0.0]]> : tensor<3x2xf32>
  %d = kiln.dense %x, %w {units = 2 : i64} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return %d : tensor<4x2xf32>
}

// -----

// A one-column layer (a logit) stays f32 at every precision.
// INT8-LABEL: func.func @one_column
// INT8: kiln.dense %arg0, %{{.*}} {units = 1 : i64} : (tensor<4x3xf32>, tensor<3x1xf32>) -> tensor<4x1xf32>
// INT8-NOT: xi8>
// BF16-LABEL: func.func @one_column
// BF16-NOT: xbf16>
// FP16-LABEL: func.func @one_column
// FP16-NOT: xf16>
func.func @one_column(%x: tensor<4x3xf32>) -> tensor<4x1xf32> {
  %w = kiln.constant dense<[[2.0], [-1.0], [0.5]]> : tensor<3x1xf32>
  %d = kiln.dense %x, %w {units = 1 : i64} : (tensor<4x3xf32>, tensor<3x1xf32>) -> tensor<4x1xf32>
  return %d : tensor<4x1xf32>
}
