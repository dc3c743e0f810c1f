// RUN: kiln-opt %s --split-input-file --verify-diagnostics

func.func @gather_constant_index_out_of_range(%t: tensor<4x2xf32>) -> tensor<1x2xf32> {
  %i = kiln.constant dense<[4]> : tensor<1xi64>
  // expected-error @below {{constant index 4 out of range [-4, 4)}}
  %g = kiln.gather %t, %i {axis = 0 : i64} : (tensor<4x2xf32>, tensor<1xi64>) -> tensor<1x2xf32>
  return %g : tensor<1x2xf32>
}

// -----

func.func @transpose_not_a_permutation(%x: tensor<2x3xf32>) -> tensor<2x2xf32> {
  // expected-error @below {{perm is not a permutation}}
  %t = kiln.transpose %x {perm = array<i64: 0, 0>} : tensor<2x3xf32> -> tensor<2x2xf32>
  return %t : tensor<2x2xf32>
}

// -----

func.func @gemm_inner_dims(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) -> tensor<2x5xf32> {
  // expected-error @+2 {{gemm inner dims differ: 3 vs 4}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = kiln.gemm %a, %b : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32>
  return %y : tensor<2x5xf32>
}

// -----

func.func @result_contradicts_operands(%x: tensor<2x3xf32>) -> tensor<3x3xf32> {
  // expected-error @+2 {{inferred type(s) 'tensor<2x3xf32>' are incompatible with return type(s) of operation 'tensor<3x3xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = kiln.add %x, %x : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<3x3xf32>
  return %y : tensor<3x3xf32>
}

// -----

func.func @reshape_count(%x: tensor<2x3xf32>) -> tensor<7xf32> {
  %s = kiln.constant dense<[7]> : tensor<1xi64>
  // expected-error @+2 {{reshape changes the element count from 6 to 7}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = kiln.reshape %x, %s : (tensor<2x3xf32>, tensor<1xi64>) -> tensor<7xf32>
  return %y : tensor<7xf32>
}

// -----

func.func @mixed_element_types(%x: tensor<2xf32>, %i: tensor<2xi64>) -> tensor<2xf32> {
  // expected-error @+2 {{operand element types differ}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = kiln.add %x, %i : (tensor<2xf32>, tensor<2xi64>) -> tensor<2xf32>
  return %y : tensor<2xf32>
}

// -----

func.func @static_input_range_on_f32_weights(%x: tensor<2x3xf32>) -> tensor<2x2xf32> {
  %w = kiln.constant dense<1.0> : tensor<3x2xf32>
  // expected-error @below {{a static input range (input_scale with input_zero_point) needs i8 weights}}
  %y = kiln.dense %x, %w {units = 2 : i64, input_scale = 0.5 : f32, input_zero_point = 3 : i32} : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x2xf32>
  return %y : tensor<2x2xf32>
}

// -----

func.func @static_input_zero_point_out_of_range(%x: tensor<2x3xf32>, %w: tensor<3x2xi8>, %s: tensor<2xf32>, %n: tensor<2xi32>) -> tensor<2x2xf32> {
  // expected-error @below {{input_zero_point must be in [0, 127]}}
  %y = kiln.dense %x, %w scale %s sums %n {units = 2 : i64, input_scale = 0.5 : f32, input_zero_point = 200 : i32} : (tensor<2x3xf32>, tensor<3x2xi8>, tensor<2xf32>, tensor<2xi32>) -> tensor<2x2xf32>
  return %y : tensor<2x2xf32>
}

// -----

func.func @ui8_input_without_a_range(%x: tensor<2x4xui8>, %w: tensor<4x2xi8>, %s: tensor<2xf32>, %n: tensor<2xi32>) -> tensor<2x2xf32> {
  // expected-error @below {{a ui8 input (a requantised layer's result) needs input_scale and a depth that is a multiple of 4}}
  %y = kiln.dense %x, %w scale %s sums %n {units = 2 : i64} : (tensor<2x4xui8>, tensor<4x2xi8>, tensor<2xf32>, tensor<2xi32>) -> tensor<2x2xf32>
  return %y : tensor<2x2xf32>
}

// -----

func.func @ui8_input_depth_not_a_multiple_of_4(%x: tensor<2x6xui8>, %w: tensor<6x2xi8>, %s: tensor<2xf32>, %n: tensor<2xi32>) -> tensor<2x2xf32> {
  // expected-error @below {{a ui8 input (a requantised layer's result) needs input_scale and a depth that is a multiple of 4}}
  %y = kiln.dense %x, %w scale %s sums %n {units = 2 : i64, input_scale = 0.5 : f32, input_zero_point = 3 : i32} : (tensor<2x6xui8>, tensor<6x2xi8>, tensor<2xf32>, tensor<2xi32>) -> tensor<2x2xf32>
  return %y : tensor<2x2xf32>
}

// -----

func.func @requantising_f32_weights(%x: tensor<2x3xf32>) -> tensor<2x4xui8> {
  %w = kiln.constant dense<1.0> : tensor<3x4xf32>
  // expected-error @below {{requantisation (output_scale with output_zero_point) needs i8 weights}}
  %y = kiln.dense %x, %w {units = 4 : i64, output_scale = 0.5 : f32, output_zero_point = 3 : i32} : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xui8>
  return %y : tensor<2x4xui8>
}

// -----

func.func @output_zero_point_out_of_range(%x: tensor<2x3xf32>, %w: tensor<3x4xi8>, %s: tensor<4xf32>, %n: tensor<4xi32>) -> tensor<2x4xui8> {
  // expected-error @below {{output_zero_point must be in [0, 127]}}
  %y = kiln.dense %x, %w scale %s sums %n {units = 4 : i64, output_scale = 0.5 : f32, output_zero_point = 128 : i32} : (tensor<2x3xf32>, tensor<3x4xi8>, tensor<4xf32>, tensor<4xi32>) -> tensor<2x4xui8>
  return %y : tensor<2x4xui8>
}

// -----

// fp8 weights are [units, K] (transposed)...
func.func @fp8_weight_not_transposed(%x: tensor<2x3xf32>) -> tensor<2x4xf32> {
  %w = kiln.constant dense<1.0> : tensor<3x4xf8E4M3FN>
  %s = kiln.constant dense<1.0> : tensor<1xf32>
  // expected-error @below {{f8E4M3FN weight must be [4, 3], got 'tensor<3x4xf8E4M3FN>'}}
  %y = kiln.dense %x, %w scale %s {units = 4 : i64, input_scale = 0.5 : f32} : (tensor<2x3xf32>, tensor<3x4xf8E4M3FN>, tensor<1xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// ... with one weight scale and the input's scale.
func.func @fp8_without_input_scale(%x: tensor<2x3xf32>) -> tensor<2x4xf32> {
  %w = kiln.constant dense<1.0> : tensor<4x3xf8E4M3FN>
  %s = kiln.constant dense<1.0> : tensor<1xf32>
  // expected-error @below {{f8E4M3FN weights take a positive finite input_scale, and no zero point or output range}}
  %y = kiln.dense %x, %w scale %s {units = 4 : i64} : (tensor<2x3xf32>, tensor<4x3xf8E4M3FN>, tensor<1xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

func.func @fp8_scale_per_column(%x: tensor<2x3xf32>) -> tensor<2x4xf32> {
  %w = kiln.constant dense<1.0> : tensor<4x3xf8E4M3FN>
  %s = kiln.constant dense<1.0> : tensor<4xf32>
  // expected-error @below {{f8E4M3FN weights take a weight scale of [1] and no weight sums}}
  %y = kiln.dense %x, %w scale %s {units = 4 : i64, input_scale = 0.5 : f32} : (tensor<2x3xf32>, tensor<4x3xf8E4M3FN>, tensor<4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

func.func @gather_nd_constant_index_out_of_range(%t: tensor<4x3xf32>) -> tensor<2xf32> {
  %i = kiln.constant dense<[[0, 1], [3, 3]]> : tensor<2x2xi64>
  // expected-error @below {{constant index 3 out of range [-3, 3)}}
  %y = kiln.gather_nd %t, %i {batch_dims = 0 : i64} : (tensor<4x3xf32>, tensor<2x2xi64>) -> tensor<2xf32>
  return %y : tensor<2xf32>
}

// -----

func.func @gather_nd_tuple_too_long(%t: tensor<4x3xf32>, %i: tensor<2x3xi64>) -> tensor<2xf32> {
  // expected-error @below {{gather_nd: needs indices of rank > batch_dims}}
  // expected-error @below {{failed to infer returned types}}
  %y = kiln.gather_nd %t, %i {batch_dims = 0 : i64} : (tensor<4x3xf32>, tensor<2x3xi64>) -> tensor<2xf32>
  return %y : tensor<2xf32>
}
