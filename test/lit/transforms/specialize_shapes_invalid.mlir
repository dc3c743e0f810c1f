// RUN: kiln-opt %s --kiln-specialize-shapes="batch=2" --verify-diagnostics

// expected-error @below {{input 'tokens' has dynamic dim 1: only the leading (batch) dim may be dynamic}}
func.func @main(%x: tensor<?x?xi64> {kiln.batched, kiln.name = "tokens"}) -> tensor<?x?xi64> {
  return %x : tensor<?x?xi64>
}
