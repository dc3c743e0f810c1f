// RUN: kiln-opt %s --kiln-quantize-tables --split-input-file | FileCheck %s --check-prefix=INT8
// RUN: kiln-opt %s --kiln-quantize-tables=bits=4 --split-input-file | FileCheck %s --check-prefix=INT4
// RUN: not kiln-opt %s --kiln-quantize-tables=bits=2 --split-input-file 2>&1 | FileCheck %s --check-prefix=BAD

// Rows [0, 1, 2, 3] range over [0, 3]: at 8 bits the scale is 3/255 (fp16
// 0x2206, stored low byte first: 6, 34) and the bias 0, so the values
// become 0, 85, 170, 255. At 4 bits two values share a byte (low nibble
// first: 0 + 5 * 16 = 80, 10 + 15 * 16 = 250) and the scale is 3/15 (fp16
// 0x3266: 102, 50). A table used twice is quantised once; the result type
// (dims 4 + 4) is unchanged.
// INT8-LABEL: func.func @tables
// INT8: %[[T:.*]] = kiln.constant dense<{{\[\[}}0, 85, 170, 255, 6, 34, 0, 0], [0, 85, 170, 255, 6, 34, 0, 0]]> : tensor<2x8xui8>
// INT8: kiln.embedding_bags %arg0, %[[T]], %[[T]] {bits = 8 : i64, {{.*}}} : (tensor<3x2xi64>, tensor<2x8xui8>, tensor<2x8xui8>) -> tensor<3x8xf32>
// INT4-LABEL: func.func @tables
// INT4: kiln.constant dense<{{\[\[}}80, 250, 102, 50, 0, 0], [80, 250, 102, 50, 0, 0]]> : tensor<2x6xui8>
// INT4: kiln.embedding_bags {{.*}} {bits = 4 : i64, {{.*}}} : (tensor<3x2xi64>, tensor<2x6xui8>, tensor<2x6xui8>) -> tensor<3x8xf32>
// BAD: kiln-quantize-tables: bits must be 8 or 4, got 2
func.func @tables(%ids: tensor<3x2xi64>) -> tensor<3x8xf32> {
  %t = kiln.constant dense<[[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]]> : tensor<2x4xf32>
  %b = kiln.embedding_bags %ids, %t, %t {columns = array<i64: 0, 1>, hotness = array<i64: 1, 1>, mode = 0 : i64} : (tensor<3x2xi64>, tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<3x8xf32>
  return %b : tensor<3x8xf32>
}

// -----

// An odd dim does not split into nibbles: at 4 bits the op keeps f32 tables.
// INT8-LABEL: func.func @odd_dim
// INT8: tensor<2x7xui8>
// INT4-LABEL: func.func @odd_dim
// INT4: kiln.embedding_bags {{.*}} : (tensor<3x1xi64>, tensor<2x3xf32>) -> tensor<3x3xf32>
func.func @odd_dim(%ids: tensor<3x1xi64>) -> tensor<3x3xf32> {
  %t = kiln.constant dense<1.0> : tensor<2x3xf32>
  %b = kiln.embedding_bags %ids, %t {columns = array<i64: 0>, hotness = array<i64: 1>, mode = 0 : i64} : (tensor<3x1xi64>, tensor<2x3xf32>) -> tensor<3x3xf32>
  return %b : tensor<3x3xf32>
}

// -----

// A row gather from a constant table becomes an unpooled lookup (mode 3) of
// the quantised table, reshaped back to [batch, 3, dim]; negative ids keep
// wrapping as in ONNX Gather. A table of dim 1 would grow: left alone.
// INT8-LABEL: func.func @gathers
// INT8: %[[R:.*]] = kiln.embedding_bags %arg0, %{{.*}} {bits = 8 : i64, columns = array<i64: 0, 1, 2>, hotness = array<i64: 3>, mode = 3 : i64, wrap_negative} : (tensor<2x3xi64>, tensor<5x8xui8>) -> tensor<2x12xf32>
// INT8: kiln.reshape %[[R]], %{{.*}} : (tensor<2x12xf32>, tensor<3xi64>) -> tensor<2x3x4xf32>
// INT8: kiln.gather %{{.*}}, %arg0 {axis = 0 : i64} : (tensor<5x1xf32>, tensor<2x3xi64>) -> tensor<2x3x1xf32>
func.func @gathers(%ids: tensor<2x3xi64>) -> (tensor<2x3x4xf32>, tensor<2x3x1xf32>) {
  %t = kiln.constant dense<0.5> : tensor<5x4xf32>
  %w = kiln.constant dense<0.5> : tensor<5x1xf32>
  %g = kiln.gather %t, %ids {axis = 0 : i64} : (tensor<5x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  %h = kiln.gather %w, %ids {axis = 0 : i64} : (tensor<5x1xf32>, tensor<2x3xi64>) -> tensor<2x3x1xf32>
  return %g, %h : tensor<2x3x4xf32>, tensor<2x3x1xf32>
}

// -----

// A table with a NaN (0x7FC00000) has no row-wise code for it: the bags
// keep the f32 table (found by import_fuzzer).
// INT8-LABEL: func.func @non_finite_table
// INT8: kiln.embedding_bags %arg0, %{{.*}} {{{.*}}mode = 0 : i64} : (tensor<3x1xi64>, tensor<2x4xf32>) -> tensor<3x4xf32>
func.func @non_finite_table(%ids: tensor<3x1xi64>) -> tensor<3x4xf32> {
  %t = kiln.constant dense<[[0.0, 1.0, 2.0, 3.0], [0.0, 0x7FC00000, 2.0, 3.0]]> : tensor<2x4xf32>
  %b = kiln.embedding_bags %ids, %t {columns = array<i64: 0>, hotness = array<i64: 1>, mode = 0 : i64} : (tensor<3x1xi64>, tensor<2x4xf32>) -> tensor<3x4xf32>
  return %b : tensor<3x4xf32>
}
