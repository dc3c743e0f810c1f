// RUN: kiln-opt %s --kiln-place-host-tables=bytes=64 --split-input-file --verify-diagnostics | FileCheck %s
// RUN: kiln-opt %s --kiln-place-host-tables=bytes=1000 --split-input-file 2>/dev/null | FileCheck %s --check-prefix=NONE
// RUN: not kiln-opt %s --kiln-place-host-tables=bytes=-1 --split-input-file 2>&1 | FileCheck %s --check-prefix=BAD

// Tables of more than 64 bytes go to host memory: the 80-byte one (5 x 4
// floats), not the 48-byte one. Nothing is over 1000 bytes.
// CHECK-LABEL: func.func @bags
// CHECK-DAG: %[[BIG:.*]] = kiln.constant {kiln.on_host} dense<1.000000e+00> : tensor<5x4xf32>
// CHECK-DAG: %[[SMALL:.*]] = kiln.constant dense<2.000000e+00> : tensor<3x4xf32>
// CHECK: kiln.embedding_bags %arg0, %[[BIG]], %[[SMALL]]
// NONE-LABEL: func.func @bags
// NONE-NOT: kiln.on_host
// BAD: kiln-place-host-tables: bytes must be >= 0, got -1
func.func @bags(%ids: tensor<2x2xi64>) -> tensor<2x8xf32> {
  %big = kiln.constant dense<1.0> : tensor<5x4xf32>
  %small = kiln.constant dense<2.0> : tensor<3x4xf32>
  %b = kiln.embedding_bags %ids, %big, %small {columns = array<i64: 0, 1>, hotness = array<i64: 1, 1>, mode = 0 : i64} : (tensor<2x2xi64>, tensor<5x4xf32>, tensor<3x4xf32>) -> tensor<2x8xf32>
  return %b : tensor<2x8xf32>
}

// -----

// A row gather from a large table becomes an unpooled lookup (mode 3),
// whose table can then stay on the host.
// CHECK-LABEL: func.func @gather
// CHECK: %[[T:.*]] = kiln.constant {kiln.on_host} dense<5.000000e-01> : tensor<5x4xf32>
// CHECK: %[[R:.*]] = kiln.embedding_bags %arg0, %[[T]] {columns = array<i64: 0, 1, 2>, hotness = array<i64: 3>, mode = 3 : i64, wrap_negative} : (tensor<2x3xi64>, tensor<5x4xf32>) -> tensor<2x12xf32>
// CHECK: kiln.reshape %[[R]]
// NONE-LABEL: func.func @gather
// NONE: kiln.gather
func.func @gather(%ids: tensor<2x3xi64>) -> tensor<2x3x4xf32> {
  %t = kiln.constant dense<0.5> : tensor<5x4xf32>
  %g = kiln.gather %t, %ids {axis = 0 : i64} : (tensor<5x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
  return %g : tensor<2x3x4xf32>
}

// -----

// A large table that another op also reads stays on the device, with a
// warning at that op; a large constant that no lookup reads (a dense
// weight) stays without one.
// CHECK-LABEL: func.func @shared
// CHECK-NOT: kiln.on_host
func.func @shared(%ids: tensor<2x1xi64>, %x: tensor<2x5xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) {
  %t = kiln.constant dense<1.0> : tensor<5x4xf32>
  %w = kiln.constant dense<1.0> : tensor<5x4xf32>
  %b = kiln.embedding_bags %ids, %t {columns = array<i64: 0>, hotness = array<i64: 1>, mode = 0 : i64} : (tensor<2x1xi64>, tensor<5x4xf32>) -> tensor<2x4xf32>
  // expected-warning @+1 {{an embedding table of 80 bytes stays in device memory: this kiln.matmul reads it there}}
  %m = kiln.matmul %x, %t : (tensor<2x5xf32>, tensor<5x4xf32>) -> tensor<2x4xf32>
  %n = kiln.matmul %x, %w : (tensor<2x5xf32>, tensor<5x4xf32>) -> tensor<2x4xf32>
  return %b, %m, %n : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>
}
