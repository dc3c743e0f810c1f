// RUN: kiln-opt %s --kiln-plan-memory --verify-diagnostics

func.func @dynamic(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  // expected-error @below {{result has no static shape after specialisation: 'tensor<?x4xf32>'}}
  %r = kiln.relu %x : tensor<?x4xf32>
  return %r : tensor<?x4xf32>
}
