//===- TensorIO.h - host tensors from .pb, .npy and .npz files --*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_TENSORIO_H
#define KILN_TOOLS_KILN_TENSORIO_H

#include "kiln/runtime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

struct HostTensor {
  std::string name;
  kiln_dtype dtype = KILN_DTYPE_F32;
  std::vector<int64_t> shape;
  std::vector<char> data;

  int64_t elements() const;
  kiln_tensor view() { return {data.data(), dtype, int32_t(shape.size()), shape.data()}; }
};

/// An ONNX TensorProto file (input_N.pb / output_N.pb of a test case).
bool readTensorProto(const std::string &path, HostTensor &out, std::string &error);

/// The `input_N.pb` (or `output_N.pb`) files of an ONNX test-case folder, in order.
bool readTestCase(const std::string &dir, const std::string &prefix, std::vector<HostTensor> &out,
                  std::string &error);

/// A numpy .npz archive (stored or deflated members); names are the keys.
bool readNpz(const std::string &path, std::vector<HostTensor> &out, std::string &error);
bool writeNpz(const std::string &path, const std::vector<HostTensor> &tensors, std::string &error);

} // namespace kiln

#endif
