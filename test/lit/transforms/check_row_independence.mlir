// RUN: kiln-opt %s --split-input-file --kiln-check-row-independence --verify-diagnostics | FileCheck %s
// RUN: kiln-opt %s --split-input-file --kiln-check-row-independence=exact-buckets 2>%t.err | FileCheck %s --check-prefix=EXACT
// RUN: FileCheck %s --check-prefix=WARN < %t.err

// One case per op family: each per-row form is accepted, each form that
// mixes the batch's rows is refused naming the op. The rules only look at
// buckets above 1 (a one-row bucket is never padded).

// Elementwise with broadcasting, reshapes, transposes, a reduction and a
// softmax along a feature axis, layer norm: row by row.
// CHECK-LABEL: func.func @per_row
func.func @per_row(%x: tensor<4x6xf32> {kiln.batched}, %g: tensor<3xf32>) -> (tensor<4x3xf32> {kiln.batched, kiln.name = "y"}, tensor<3xf32> {kiln.name = "c"}) attributes {kiln.batch = 4 : i64} {
  %b = kiln.constant dense<1.0> : tensor<6xf32>
  %a = kiln.add %x, %b : (tensor<4x6xf32>, tensor<6xf32>) -> tensor<4x6xf32>
  %shape = kiln.constant dense<[4, 2, 3]> : tensor<3xi64>
  %r = kiln.reshape %a, %shape : (tensor<4x6xf32>, tensor<3xi64>) -> tensor<4x2x3xf32>
  %t = kiln.transpose %r {perm = array<i64: 1, 0, 2>} : tensor<4x2x3xf32> -> tensor<2x4x3xf32>
  %s = kiln.softmax %t {axis = 2 : i64} : tensor<2x4x3xf32> -> tensor<2x4x3xf32>
  %m = kiln.reduce_mean %s {axes = array<i64: 0>, keepdims = false} : tensor<2x4x3xf32> -> tensor<4x3xf32>
  %n = kiln.layer_norm %m, %g {axis = 1 : i64, epsilon = 1.0e-5 : f64} : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xf32>
  return %n, %g : tensor<4x3xf32>, tensor<3xf32>
}

// -----

// Softmax over the batch axis: every row has the others in its sum.
func.func @softmax_batch(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  // WARN: warning: output 'y' mixes rows of the batch: 'kiln.softmax' normalises along the batch axis (dim 0); the model runs only at its bucket sizes (--row-mixing=exact-buckets)
  // expected-error @below {{output 'y' mixes rows of the batch: 'kiln.softmax' normalises along the batch axis (dim 0); padding a request to a bucket would change its answer. Compile with --row-mixing=exact-buckets}}
  %s = kiln.softmax %x {axis = 0 : i64} : tensor<4x6xf32> -> tensor<4x6xf32>
  return %s : tensor<4x6xf32>
}
// EXACT: module attributes {kiln.exact_buckets}

// -----

// BatchNorm in training form: x minus the batch's mean. The culprit is the
// reduction, followed through the subtraction to the output.
func.func @batch_mean(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  // expected-error @below {{'kiln.reduce_mean' reduces along the batch axis (dim 0)}}
  %m = kiln.reduce_mean %x {axes = array<i64: 0>, keepdims = true} : tensor<4x6xf32> -> tensor<1x6xf32>
  %y = kiln.sub %x, %m : (tensor<4x6xf32>, tensor<1x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// A reduction over every axis, the batch's too.
func.func @reduce_all(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<f32> {kiln.name = "s"}) attributes {kiln.batch = 4 : i64} {
  // expected-error @below {{'kiln.reduce_sum' reduces along the batch axis (dim 0)}}
  %s = kiln.reduce_sum %x {axes = array<i64: 0, 1>, keepdims = false} : tensor<4x6xf32> -> tensor<f32>
  return %s : tensor<f32>
}

// -----

// An outer product of the batch with itself (x[:, None] * x[None, :]) keeps
// the shapes of a per-row model at every bucket but mixes rows.
func.func @in_batch_product(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %u = kiln.unsqueeze %x {axes = array<i64: 1>} : tensor<4x6xf32> -> tensor<4x1x6xf32>
  // expected-error @below {{'kiln.mul' combines operands whose batch axes do not line up (an in-batch product)}}
  %y = kiln.mul %u, %x : (tensor<4x1x6xf32>, tensor<4x6xf32>) -> tensor<4x4x6xf32>
  return %y : tensor<4x4x6xf32>
}

// -----

// Matrix products: a batched left operand times weights is per row;
// x^T x sums over the batch.
// CHECK-LABEL: func.func @matmul_rows
func.func @matmul_rows(%x: tensor<4x6xf32> {kiln.batched}, %w: tensor<6x2xf32>) -> (tensor<4x2xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %y = kiln.matmul %x, %w : (tensor<4x6xf32>, tensor<6x2xf32>) -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

func.func @gram(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<6x6xf32> {kiln.name = "g"}) attributes {kiln.batch = 4 : i64} {
  %t = kiln.transpose %x {perm = array<i64: 1, 0>} : tensor<4x6xf32> -> tensor<6x4xf32>
  // expected-error @below {{'kiln.matmul' sums over the batch axis (its contracted dim)}}
  %g = kiln.matmul %t, %x : (tensor<6x4xf32>, tensor<4x6xf32>) -> tensor<6x6xf32>
  return %g : tensor<6x6xf32>
}

// -----

// x @ x^T: each row is multiplied by every other row.
func.func @similarity(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x4xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %t = kiln.transpose %x {perm = array<i64: 1, 0>} : tensor<4x6xf32> -> tensor<6x4xf32>
  // expected-error @below {{'kiln.matmul' multiplies rows of the batch by other rows of the batch}}
  %y = kiln.matmul %x, %t : (tensor<4x6xf32>, tensor<6x4xf32>) -> tensor<4x4xf32>
  return %y : tensor<4x4xf32>
}

// -----

// Dense layers: per row; their residual must be the same rows.
// CHECK-LABEL: func.func @dense_rows
func.func @dense_rows(%x: tensor<4x6xf32> {kiln.batched}, %w: tensor<6x6xf32>) -> (tensor<4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %y = kiln.dense %x, %w residual %x {units = 6 : i64} : (tensor<4x6xf32>, tensor<6x6xf32>, tensor<4x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// Concat along a feature axis is per row; along the batch it moves rows.
// CHECK-LABEL: func.func @concat_features
func.func @concat_features(%x: tensor<4x6xf32> {kiln.batched}, %c: tensor<4x2xf32>) -> (tensor<4x8xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %y = kiln.concat %x, %c {axis = 1 : i64} : (tensor<4x6xf32>, tensor<4x2xf32>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

func.func @concat_batch(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<8x6xf32> {kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  // expected-error @below {{'kiln.concat' concatenates along the batch axis}}
  %y = kiln.concat %x, %x {axis = 0 : i64} : (tensor<4x6xf32>, tensor<4x6xf32>) -> tensor<8x6xf32>
  return %y : tensor<8x6xf32>
}

// -----

// Slices: columns of every row are per row; rows 1.. of the batch are not.
// CHECK-LABEL: func.func @slice_columns
func.func @slice_columns(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x2xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %s = kiln.constant dense<1> : tensor<1xi64>
  %e = kiln.constant dense<3> : tensor<1xi64>
  %a = kiln.constant dense<1> : tensor<1xi64>
  %y = kiln.slice %x, %s, %e, %a {axes = array<i64: 1>} : (tensor<4x6xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

func.func @slice_rows(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<3x6xf32> {kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %s = kiln.constant dense<1> : tensor<1xi64>
  %e = kiln.constant dense<4> : tensor<1xi64>
  %a = kiln.constant dense<1> : tensor<1xi64>
  // expected-error @below {{'kiln.slice' selects rows of the batch}}
  %y = kiln.slice %x, %s, %e, %a {axes = array<i64: 0>} : (tensor<4x6xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>
}

// -----

// Gathers: a lookup of per-row ids in a table is per row, and so is a
// gather of constant ids within each row; a gather of rows of the batch
// by the batch's own ids reads other requests' rows.
// CHECK-LABEL: func.func @gather_lookup
func.func @gather_lookup(%ids: tensor<4x3xi64> {kiln.batched}, %x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x3x8xf32> {kiln.batched, kiln.name = "e"}, tensor<4x2xf32> {kiln.batched, kiln.name = "p"}) attributes {kiln.batch = 4 : i64} {
  %t = kiln.constant dense<0.5> : tensor<10x8xf32>
  %e = kiln.gather %t, %ids {axis = 0 : i64} : (tensor<10x8xf32>, tensor<4x3xi64>) -> tensor<4x3x8xf32>
  %c = kiln.constant dense<[5, 0]> : tensor<2xi64>
  %p = kiln.gather %x, %c {axis = 1 : i64} : (tensor<4x6xf32>, tensor<2xi64>) -> tensor<4x2xf32>
  return %e, %p : tensor<4x3x8xf32>, tensor<4x2xf32>
}

// -----

func.func @gather_rows(%x: tensor<4x6xf32> {kiln.batched}, %ids: tensor<4xi64> {kiln.batched}) -> (tensor<4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  // expected-error @below {{'kiln.gather' looks up rows of the batch with ids of the batch}}
  %y = kiln.gather %x, %ids {axis = 0 : i64} : (tensor<4x6xf32>, tensor<4xi64>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// A constant gather that swaps rows 0 and 1 of the batch: no row stays put.
func.func @gather_swap(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %c = kiln.constant dense<[1, 0, 2, 3]> : tensor<4xi64>
  // expected-error @below {{'kiln.gather' selects rows of the batch}}
  %y = kiln.gather %x, %c {axis = 0 : i64} : (tensor<4x6xf32>, tensor<4xi64>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// GatherND as the dynamo exporter writes mask[arange(B), pos]: the index
// tuples are computed (a Range over the batch, concatenated with positions),
// evaluated, and each result row is seen to read its own row; ids of the
// batch into a uniform table are a lookup; shared batch_dims are row by row.
// CHECK-LABEL: func.func @gather_nd_rows
func.func @gather_nd_rows(%m: tensor<4x3xi1> {kiln.batched}, %ids: tensor<4x2x2xi64> {kiln.batched}, %x: tensor<4x3x5xf32> {kiln.batched}, %p: tensor<4x1xi64> {kiln.batched}) -> (tensor<4x3xi1> {kiln.batched, kiln.name = "y"}, tensor<4x2x8xf32> {kiln.batched, kiln.name = "e"}, tensor<4x5xf32> {kiln.batched, kiln.name = "s"}) attributes {kiln.batch = 4 : i64} {
  %zero = kiln.constant dense<0> : tensor<i64>
  %four = kiln.constant dense<4> : tensor<i64>
  %one = kiln.constant dense<1> : tensor<i64>
  %b = kiln.range %zero, %four, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<4xi64>
  %shape = kiln.constant dense<[4, 3, 1]> : tensor<3xi64>
  %bshape = kiln.constant dense<[4, 1, 1]> : tensor<3xi64>
  %b3 = kiln.reshape %b, %bshape : (tensor<4xi64>, tensor<3xi64>) -> tensor<4x1x1xi64>
  %bx = kiln.expand %b3, %shape : (tensor<4x1x1xi64>, tensor<3xi64>) -> tensor<4x3x1xi64>
  %pos = kiln.constant dense<[[[0], [1], [2]]]> : tensor<1x3x1xi64>
  %px = kiln.expand %pos, %shape : (tensor<1x3x1xi64>, tensor<3xi64>) -> tensor<4x3x1xi64>
  %idx = kiln.concat %bx, %px {axis = 2 : i64} : (tensor<4x3x1xi64>, tensor<4x3x1xi64>) -> tensor<4x3x2xi64>
  %y = kiln.gather_nd %m, %idx {batch_dims = 0 : i64} : (tensor<4x3xi1>, tensor<4x3x2xi64>) -> tensor<4x3xi1>
  %t = kiln.constant dense<1.0> : tensor<10x6x8xf32>
  %e = kiln.gather_nd %t, %ids {batch_dims = 0 : i64} : (tensor<10x6x8xf32>, tensor<4x2x2xi64>) -> tensor<4x2x8xf32>
  %s = kiln.gather_nd %x, %p {batch_dims = 1 : i64} : (tensor<4x3x5xf32>, tensor<4x1xi64>) -> tensor<4x5xf32>
  return %y, %e, %s : tensor<4x3xi1>, tensor<4x2x8xf32>, tensor<4x5xf32>
}

// -----

// The same tuples with rows 0 and 1 swapped: row 0 reads row 1's mask.
func.func @gather_nd_swap(%m: tensor<4x3xi1> {kiln.batched}) -> (tensor<4x3xi1> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %idx = kiln.constant dense<[[[1, 0], [1, 1], [1, 2]], [[0, 0], [0, 1], [0, 2]], [[2, 0], [2, 1], [2, 2]], [[3, 0], [3, 1], [3, 2]]]> : tensor<4x3x2xi64>
  // expected-error @below {{'kiln.gather_nd' selects along the batch axis}}
  %y = kiln.gather_nd %m, %idx {batch_dims = 0 : i64} : (tensor<4x3xi1>, tensor<4x3x2xi64>) -> tensor<4x3xi1>
  return %y : tensor<4x3xi1>
}

// -----

// An exporter's mask re-expansion: the batch flattened into the ids' dim,
// then gathered back with ids computed as row * 3 + column (index arithmetic
// the folders leave for run time in a large bucket). The ids are evaluated,
// so each result row is seen to take its own row's elements.
// CHECK-LABEL: func.func @gather_flattened_rows
func.func @gather_flattened_rows(%m: tensor<4x3xi1> {kiln.batched}) -> (tensor<4x1x3xi1> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %f = kiln.flatten %m {axis = 2 : i64} : tensor<4x3xi1> -> tensor<12x1xi1>
  %rows = kiln.constant dense<[[0], [3], [6], [9]]> : tensor<4x1xi64>
  %start = kiln.constant dense<0> : tensor<i64>
  %limit = kiln.constant dense<3> : tensor<i64>
  %one = kiln.constant dense<1> : tensor<i64>
  %cols = kiln.range %start, %limit, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<3xi64>
  %ids = kiln.add %rows, %cols : (tensor<4x1xi64>, tensor<3xi64>) -> tensor<4x3xi64>
  %g = kiln.gather %f, %ids {axis = 0 : i64} : (tensor<12x1xi1>, tensor<4x3xi64>) -> tensor<4x3x1xi1>
  %shape = kiln.constant dense<[4, 1, 3]> : tensor<3xi64>
  %y = kiln.reshape %g, %shape : (tensor<4x3x1xi1>, tensor<3xi64>) -> tensor<4x1x3xi1>
  return %y : tensor<4x1x3xi1>
}

// -----

// The same with each row's ids shifted by one: row b reads row b+1's first
// element.
func.func @gather_flattened_shifted(%m: tensor<4x3xi1> {kiln.batched}) -> (tensor<4x3x1xi1> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %f = kiln.flatten %m {axis = 2 : i64} : tensor<4x3xi1> -> tensor<12x1xi1>
  %rows = kiln.constant dense<[[1], [4], [7], [8]]> : tensor<4x1xi64>
  %start = kiln.constant dense<0> : tensor<i64>
  %limit = kiln.constant dense<3> : tensor<i64>
  %one = kiln.constant dense<1> : tensor<i64>
  %cols = kiln.range %start, %limit, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<3xi64>
  %ids = kiln.add %rows, %cols : (tensor<4x1xi64>, tensor<3xi64>) -> tensor<4x3xi64>
  // expected-error @below {{'kiln.gather' reads its batched operand with the batch merged into other dims}}
  %g = kiln.gather %f, %ids {axis = 0 : i64} : (tensor<12x1xi1>, tensor<4x3xi64>) -> tensor<4x3x1xi1>
  return %g : tensor<4x3x1xi1>
}

// -----

// Cumulative sums and triangles along the batch.
func.func @cumsum_batch(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  // expected-error @below {{'kiln.cumsum' accumulates along the batch axis (dim 0)}}
  %y = kiln.cumsum %x {axis = 0 : i64, exclusive = false, reverse = false} : tensor<4x6xf32> -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// Interaction and attention work per sample of dim 0.
// CHECK-LABEL: func.func @interaction_rows
func.func @interaction_rows(%x: tensor<4x3x8xf32> {kiln.batched}) -> (tensor<4x3xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %y = kiln.interaction %x {pairs = array<i64: 1, 0, 2, 0, 2, 1>} : tensor<4x3x8xf32> -> tensor<4x3xf32>
  return %y : tensor<4x3xf32>
}

// -----

// Batch moved off dim 0 before an interaction: it interacts across the
// batch.
func.func @interaction_across(%x: tensor<4x3x8xf32> {kiln.batched}) -> (tensor<3x3xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %u = kiln.transpose %x {perm = array<i64: 1, 0, 2>} : tensor<4x3x8xf32> -> tensor<3x4x8xf32>
  // expected-error @below {{'kiln.interaction' interacts across the batch (its batch is not the leading dim)}}
  %y = kiln.interaction %u {pairs = array<i64: 1, 0, 2, 0, 2, 1>} : tensor<3x4x8xf32> -> tensor<3x3xf32>
  return %y : tensor<3x3xf32>
}

// -----

// Embedding bags: bounds fed per row, or constant bounds that keep each bag
// inside its row's ids, are per row; a bag over two rows' ids is not.
// CHECK-LABEL: func.func @bags_rows
func.func @bags_rows(%ids: tensor<8xi64> {kiln.batched}) -> (tensor<4x8xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %t = kiln.constant dense<0.5> : tensor<10x8xf32>
  %b = kiln.constant dense<[0, 2, 4, 6]> : tensor<4xi64>
  %e = kiln.constant dense<[1, 4, 4, 8]> : tensor<4xi64>
  %y = kiln.embedding_bag %t, %ids, %b, %e {mode = 0 : i64} : (tensor<10x8xf32>, tensor<8xi64>, tensor<4xi64>, tensor<4xi64>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

func.func @bags_across(%ids: tensor<8xi64> {kiln.batched}) -> (tensor<4x8xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %t = kiln.constant dense<0.5> : tensor<10x8xf32>
  %b = kiln.constant dense<[0, 1, 4, 6]> : tensor<4xi64>
  %e = kiln.constant dense<[1, 4, 6, 8]> : tensor<4xi64>
  // expected-error @below {{'kiln.embedding_bag' pools a bag that reaches into another row's ids}}
  %y = kiln.embedding_bag %t, %ids, %b, %e {mode = 0 : i64} : (tensor<10x8xf32>, tensor<8xi64>, tensor<4xi64>, tensor<4xi64>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// An unbatched output computed from the batch (a per-batch statistic).
// expected-error @below {{output 'y' has no batch dim but depends on the batch's rows}}
func.func @unbatched_from_rows(%x: tensor<4x6xf32> {kiln.batched}) -> (tensor<4x6xf32> {kiln.name = "y"}) attributes {kiln.batch = 4 : i64} {
  %y = kiln.relu %x : tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// The one-row bucket is not looked at: it is never padded.
// CHECK-LABEL: func.func @one_row
func.func @one_row(%x: tensor<1x6xf32> {kiln.batched}) -> (tensor<1x6xf32> {kiln.batched, kiln.name = "y"}) attributes {kiln.batch = 1 : i64} {
  %s = kiln.softmax %x {axis = 0 : i64} : tensor<1x6xf32> -> tensor<1x6xf32>
  return %s : tensor<1x6xf32>
}
