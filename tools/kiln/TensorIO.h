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
  /// Element i as a double, whatever the dtype.
  double value(int64_t i) const;
  /// Rows [begin, begin + count) of the leading dim.
  HostTensor rows(int64_t begin, int64_t count) const;
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

/// The rows of an .npz of model inputs (keys: input names), ordered like the
/// model's inputs; `rows` is their leading dim (that of every batched input).
bool readInputRows(const kiln_model *m, const std::string &path, std::vector<HostTensor> &out,
                   int64_t &rows, std::string &error);

/// Rows [begin, begin + count) of each batched input of `inputs` (ordered
/// like the model's inputs), the others whole: one chunk of a row set.
std::vector<HostTensor> inputRows(const kiln_model *m, const std::vector<HostTensor> &inputs,
                                  int64_t begin, int64_t count);

/// The tensors as the C ABI takes them (views of their data).
std::vector<kiln_tensor> views(std::vector<HostTensor> &tensors);

/// A compiled model's input (or output) specs.
std::vector<kiln_tensor_info> tensorInfos(const kiln_model *m, bool inputs);

/// A zeroed tensor of `info` at this batch.
HostTensor tensorFor(const kiln_tensor_info &info, int64_t batch);

/// Zeroed output tensors of the model at this batch.
std::vector<HostTensor> outputBuffers(const kiln_model *m, int64_t batch);

/// Random inputs at this batch, the same for the same seed: ids inside
/// their valid range (per position of a row), other integers in [0, 9],
/// floats in [-1, 1].
std::vector<HostTensor> randomInputs(const kiln_model *m, int64_t batch, uint64_t seed);

} // namespace kiln

#endif
