//===- TensorIO.cpp - host tensors from .pb, .npy and .npz files ----------===//

#include "TensorIO.h"

#include "compiler/import/OnnxImporter.h"
#include "scalar.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CRC.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"

#include <onnx/onnx_pb.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <random>
#include <regex>

namespace kiln {

int64_t HostTensor::elements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

double HostTensor::value(int64_t i) const {
  const char *p = data.data();
  switch (dtype) {
  case KILN_DTYPE_F32:
    return reinterpret_cast<const float *>(p)[i];
  case KILN_DTYPE_F64:
    return reinterpret_cast<const double *>(p)[i];
  case KILN_DTYPE_I64:
    return double(reinterpret_cast<const int64_t *>(p)[i]);
  case KILN_DTYPE_I32:
    return reinterpret_cast<const int32_t *>(p)[i];
  case KILN_DTYPE_I8:
    return reinterpret_cast<const int8_t *>(p)[i];
  case KILN_DTYPE_I16:
    return reinterpret_cast<const int16_t *>(p)[i];
  case KILN_DTYPE_U16:
    return reinterpret_cast<const uint16_t *>(p)[i];
  case KILN_DTYPE_U32:
    return reinterpret_cast<const uint32_t *>(p)[i];
  case KILN_DTYPE_U64:
    return double(reinterpret_cast<const uint64_t *>(p)[i]);
  case KILN_DTYPE_F16:
    return scalar::fp16ToFloat(reinterpret_cast<const uint16_t *>(p)[i]);
  case KILN_DTYPE_BF16:
    return scalar::bf16ToFloat(reinterpret_cast<const uint16_t *>(p)[i]);
  default:
    return reinterpret_cast<const uint8_t *>(p)[i];
  }
}

HostTensor HostTensor::rows(int64_t begin, int64_t count) const {
  HostTensor t{name, dtype, shape, {}};
  const int64_t rowBytes =
      shape.empty() || shape[0] == 0 ? 0 : elements() / shape[0] * int64_t(kiln_dtype_size(dtype));
  t.shape[0] = count;
  t.data.assign(data.begin() + begin * rowBytes, data.begin() + (begin + count) * rowBytes);
  return t;
}

std::vector<kiln_tensor_info> tensorInfos(const kiln_model *m, bool inputs) {
  std::vector<kiln_tensor_info> out(inputs ? kiln_model_num_inputs(m) : kiln_model_num_outputs(m));
  for (size_t i = 0; i < out.size(); ++i)
    (inputs ? kiln_model_input : kiln_model_output)(m, i, &out[i]);
  return out;
}

HostTensor tensorFor(const kiln_tensor_info &info, int64_t batch) {
  HostTensor t;
  t.name = info.name;
  t.dtype = info.dtype;
  t.shape.assign(info.shape, info.shape + info.rank);
  if (!t.shape.empty() && t.shape[0] < 0)
    t.shape[0] = batch;
  t.data.resize(t.elements() * kiln_dtype_size(t.dtype));
  return t;
}

std::vector<HostTensor> outputBuffers(const kiln_model *m, int64_t batch) {
  std::vector<HostTensor> out;
  for (const auto &info : tensorInfos(m, false))
    out.push_back(tensorFor(info, batch));
  return out;
}

std::vector<HostTensor> randomInputs(const kiln_model *m, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<HostTensor> out;
  for (const auto &info : tensorInfos(m, true)) {
    HostTensor t = tensorFor(info, batch);
    std::uniform_real_distribution<double> reals(-1.0, 1.0);
    for (int64_t i = 0; i < t.elements(); ++i) {
      // Ids stay within their position's bounds; other integers in [0, 9].
      int64_t p = info.row_elements ? i % info.row_elements : 0;
      int64_t hi = info.index_bounds ? std::min<int64_t>(info.index_bounds[2 * p + 1], 1 << 30) : 9;
      int64_t lo = info.index_bounds ? std::max<int64_t>(info.index_bounds[2 * p], 0) : 0;
      int64_t v = std::uniform_int_distribution<int64_t>(lo, std::max(lo, hi))(rng);
      char *data = t.data.data();
      auto store = [&](auto value) {
        std::memcpy(data + i * sizeof(value), &value, sizeof(value));
      };
      switch (t.dtype) {
      case KILN_DTYPE_F32:
        store(float(reals(rng)));
        break;
      case KILN_DTYPE_F64:
        store(reals(rng));
        break;
      case KILN_DTYPE_F16:
        store(scalar::floatToFp16(float(reals(rng))));
        break;
      case KILN_DTYPE_BF16:
        store(scalar::floatToBf16(float(reals(rng))));
        break;
      case KILN_DTYPE_I64:
      case KILN_DTYPE_U64:
        store(v);
        break;
      case KILN_DTYPE_I32:
      case KILN_DTYPE_U32:
        store(int32_t(v));
        break;
      case KILN_DTYPE_I16:
      case KILN_DTYPE_U16:
        store(int16_t(v));
        break;
      case KILN_DTYPE_BOOL:
        store(char(v & 1));
        break;
      default:
        store(char(v));
        break;
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

struct DtypeCodes {
  kiln_dtype dtype;
  int onnx;
  const char *npy;
};
constexpr DtypeCodes kCodes[] = {
    {KILN_DTYPE_F32, onnx::TensorProto::FLOAT, "<f4"},
    {KILN_DTYPE_F64, onnx::TensorProto::DOUBLE, "<f8"},
    {KILN_DTYPE_I64, onnx::TensorProto::INT64, "<i8"},
    {KILN_DTYPE_I32, onnx::TensorProto::INT32, "<i4"},
    {KILN_DTYPE_I8, onnx::TensorProto::INT8, "|i1"},
    {KILN_DTYPE_U8, onnx::TensorProto::UINT8, "|u1"},
    {KILN_DTYPE_BOOL, onnx::TensorProto::BOOL, "|b1"},
    {KILN_DTYPE_I16, onnx::TensorProto::INT16, "<i2"},
    {KILN_DTYPE_U16, onnx::TensorProto::UINT16, "<u2"},
    {KILN_DTYPE_U32, onnx::TensorProto::UINT32, "<u4"},
    {KILN_DTYPE_U64, onnx::TensorProto::UINT64, "<u8"},
    {KILN_DTYPE_F16, onnx::TensorProto::FLOAT16, "<f2"},
    // numpy has no bfloat16: ml_dtypes' arrays are saved as two opaque bytes.
    {KILN_DTYPE_BF16, onnx::TensorProto::BFLOAT16, "<V2"},
};

/// Parses one .npy member.
bool parseNpy(const std::string &name, llvm::StringRef bytes, HostTensor &out, std::string &error) {
  if (bytes.size() < 10 || !bytes.starts_with("\x93NUMPY")) {
    error = name + ": not a .npy array";
    return false;
  }
  int major = bytes[6];
  size_t headerLen, headerStart;
  if (major == 1) {
    headerLen = uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8);
    headerStart = 10;
  } else {
    if (bytes.size() < 12) {
      error = name + ": truncated .npy header";
      return false;
    }
    headerLen = uint32_t(uint8_t(bytes[8])) | uint32_t(uint8_t(bytes[9])) << 8 |
                uint32_t(uint8_t(bytes[10])) << 16 | uint32_t(uint8_t(bytes[11])) << 24;
    headerStart = 12;
  }
  if (headerStart + headerLen > bytes.size()) {
    error = name + ": truncated .npy header";
    return false;
  }
  std::string header = bytes.substr(headerStart, headerLen).str();
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']+)'"))) {
    error = name + ": .npy header without descr";
    return false;
  }
  std::string descr = m[1];
  if (descr == "<b1")
    descr = "|b1";
  const DtypeCodes *code = nullptr;
  for (const auto &c : kCodes)
    if (descr == c.npy || (descr.size() == 3 && descr[0] == '|' && descr.substr(1) == c.npy + 1))
      code = &c;
  if (!code) {
    error = name + ": unsupported numpy dtype '" + descr + "'";
    return false;
  }
  if (header.find("'fortran_order': True") != std::string::npos) {
    error = name + ": Fortran-ordered arrays are not supported";
    return false;
  }
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) {
    error = name + ": .npy header without shape";
    return false;
  }
  out.name = name;
  out.dtype = code->dtype;
  out.shape.clear();
  std::string dims = m[1];
  std::regex number("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number);
       it != std::sregex_iterator(); ++it)
    out.shape.push_back(std::stoll(it->str()));
  size_t bytesNeeded = out.elements() * kiln_dtype_size(out.dtype);
  llvm::StringRef payload = bytes.drop_front(headerStart + headerLen);
  if (payload.size() != bytesNeeded) {
    error = name + ": holds " + std::to_string(payload.size()) + " data bytes, its shape needs " +
            std::to_string(bytesNeeded);
    return false;
  }
  out.data.assign(payload.begin(), payload.end());
  return true;
}

std::string npyBytes(const HostTensor &t) {
  const char *descr = "<f4";
  for (const auto &c : kCodes)
    if (c.dtype == t.dtype)
      descr = c.npy;
  std::string shape;
  for (size_t i = 0; i < t.shape.size(); ++i)
    shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  if (t.shape.size() == 1)
    shape += ",";
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  while ((10 + header.size() + 1) % 64)
    header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  out += header;
  out.append(t.data.begin(), t.data.end());
  return out;
}

uint32_t le32(const char *p) {
  return uint32_t(uint8_t(p[0])) | uint32_t(uint8_t(p[1])) << 8 | uint32_t(uint8_t(p[2])) << 16 |
         uint32_t(uint8_t(p[3])) << 24;
}
uint16_t le16(const char *p) { return uint16_t(uint8_t(p[0]) | uint8_t(p[1]) << 8); }

void put32(std::string &s, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    s += char((v >> (8 * i)) & 0xff);
}
void put16(std::string &s, uint16_t v) {
  s += char(v & 0xff);
  s += char(v >> 8);
}

bool inflateRaw(llvm::StringRef in, size_t outSize, std::string &out) {
  out.resize(outSize);
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
    return false;
  zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(in.data()));
  zs.avail_in = in.size();
  zs.next_out = reinterpret_cast<Bytef *>(out.data());
  zs.avail_out = outSize;
  int rc = inflate(&zs, Z_FINISH);
  inflateEnd(&zs);
  return rc == Z_STREAM_END && zs.total_out == outSize;
}

} // namespace

bool readTensorProto(const std::string &path, HostTensor &out, std::string &error) {
  std::ifstream file(path, std::ios::binary);
  onnx::TensorProto t;
  if (!file || !t.ParseFromIstream(&file)) {
    error = path + ": not a readable ONNX TensorProto";
    return false;
  }
  const DtypeCodes *code = nullptr;
  for (const auto &c : kCodes)
    if (c.onnx == t.data_type())
      code = &c;
  if (!code) {
    error = path + ": unsupported data type " + std::to_string(t.data_type());
    return false;
  }
  out.name = t.name();
  out.dtype = code->dtype;
  out.shape.assign(t.dims().begin(), t.dims().end());
  std::vector<char> bytes = tensorBytes(t, out.elements(), kiln_dtype_size(out.dtype), error);
  if (!error.empty()) {
    error = path + ": " + error;
    return false;
  }
  out.data = std::move(bytes);
  return true;
}

bool readTestCase(const std::string &dir, const std::string &prefix, std::vector<HostTensor> &out,
                  std::string &error) {
  out.clear();
  for (int i = 0;; ++i) {
    std::string path = dir + "/" + prefix + "_" + std::to_string(i) + ".pb";
    if (!llvm::sys::fs::exists(path))
      break;
    HostTensor t;
    if (!readTensorProto(path, t, error))
      return false;
    out.push_back(std::move(t));
  }
  if (out.empty()) {
    error = dir + ": no " + prefix + "_0.pb (not an ONNX test-case folder)";
    return false;
  }
  return true;
}

bool readNpz(const std::string &path, std::vector<HostTensor> &out, std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false);
  if (!buffer) {
    error = path + ": " + buffer.getError().message();
    return false;
  }
  llvm::StringRef zip = (*buffer)->getBuffer();
  // The end-of-central-directory record is within the last 64 KiB + 22 bytes.
  size_t eocd = llvm::StringRef::npos;
  for (size_t i = zip.size() >= 22 ? zip.size() - 22 : 0; zip.size() >= 22; --i) {
    if (le32(zip.data() + i) == 0x06054b50) {
      eocd = i;
      break;
    }
    if (i == 0 || zip.size() - i > 65557)
      break;
  }
  if (eocd == llvm::StringRef::npos) {
    error = path + ": not a .npz (zip) archive";
    return false;
  }
  uint16_t count = le16(zip.data() + eocd + 10);
  size_t cd = le32(zip.data() + eocd + 16);
  out.clear();
  for (uint16_t e = 0; e < count; ++e) {
    if (cd + 46 > zip.size() || le32(zip.data() + cd) != 0x02014b50) {
      error = path + ": corrupt central directory";
      return false;
    }
    uint16_t method = le16(zip.data() + cd + 10);
    size_t csize = le32(zip.data() + cd + 20), usize = le32(zip.data() + cd + 24);
    uint16_t nameLen = le16(zip.data() + cd + 28), extra = le16(zip.data() + cd + 30),
             comment = le16(zip.data() + cd + 32);
    size_t local = le32(zip.data() + cd + 42);
    std::string name = zip.substr(cd + 46, nameLen).str();
    cd += 46 + nameLen + extra + comment;
    if (local + 30 > zip.size() || le32(zip.data() + local) != 0x04034b50) {
      error = path + ": corrupt member '" + name + "'";
      return false;
    }
    size_t dataStart = local + 30 + le16(zip.data() + local + 26) + le16(zip.data() + local + 28);
    if (dataStart + csize > zip.size()) {
      error = path + ": truncated member '" + name + "'";
      return false;
    }
    llvm::StringRef raw = zip.substr(dataStart, csize);
    std::string data;
    if (method == 0) {
      data = raw.str();
    } else if (method != 8 || !inflateRaw(raw, usize, data)) {
      error = path + ": cannot decompress member '" + name + "'";
      return false;
    }
    if (llvm::StringRef(name).ends_with(".npy"))
      name.resize(name.size() - 4);
    HostTensor t;
    if (!parseNpy(name, data, t, error))
      return false;
    out.push_back(std::move(t));
  }
  return true;
}

bool writeNpz(const std::string &path, const std::vector<HostTensor> &tensors, std::string &error) {
  std::string zip, central;
  for (const HostTensor &t : tensors) {
    std::string name = t.name + ".npy", data = npyBytes(t);
    uint32_t crc = llvm::crc32(llvm::arrayRefFromStringRef(data));
    size_t offset = zip.size();
    auto header = [&](std::string &s, bool isCentral) {
      put32(s, isCentral ? 0x02014b50 : 0x04034b50);
      if (isCentral)
        put16(s, 20);
      put16(s, 20);
      put16(s, 0);
      put16(s, 0);
      put16(s, 0);
      put16(s, 0x21);
      put32(s, crc);
      put32(s, data.size());
      put32(s, data.size());
      put16(s, name.size());
      put16(s, 0);
      if (isCentral) {
        put16(s, 0);
        put16(s, 0);
        put16(s, 0);
        put32(s, 0);
        put32(s, offset);
      }
      s += name;
    };
    header(zip, false);
    zip += data;
    header(central, true);
  }
  size_t cdOffset = zip.size();
  zip += central;
  put32(zip, 0x06054b50);
  put16(zip, 0);
  put16(zip, 0);
  put16(zip, tensors.size());
  put16(zip, tensors.size());
  put32(zip, central.size());
  put32(zip, cdOffset);
  put16(zip, 0);
  std::ofstream file(path, std::ios::binary);
  file.write(zip.data(), zip.size());
  if (!file) {
    error = "cannot write " + path;
    return false;
  }
  return true;
}

bool readInputRows(const kiln_model *m, const std::string &path, std::vector<HostTensor> &out,
                   int64_t &rows, std::string &error) {
  std::vector<HostTensor> given;
  if (!readNpz(path, given, error))
    return false;
  rows = -1;
  for (const kiln_tensor_info &info : tensorInfos(m, true)) {
    auto it = std::find_if(given.begin(), given.end(),
                           [&](const HostTensor &t) { return t.name == info.name; });
    if (it == given.end()) {
      error = path + ": no input named '" + info.name + "'";
      return false;
    }
    if (info.rank > 0 && info.shape[0] < 0) {
      if (it->shape.empty() || (rows >= 0 && it->shape[0] != rows)) {
        error = path + ": input '" + info.name + "' does not have the others' rows";
        return false;
      }
      rows = it->shape[0];
    }
    out.push_back(*it);
  }
  if (rows <= 0) {
    error = path + ": no rows of batched inputs";
    return false;
  }
  return true;
}

std::vector<HostTensor> inputRows(const kiln_model *m, const std::vector<HostTensor> &inputs,
                                  int64_t begin, int64_t count) {
  const auto infos = tensorInfos(m, true);
  std::vector<HostTensor> out;
  for (size_t i = 0; i < inputs.size(); ++i)
    out.push_back(infos[i].rank > 0 && infos[i].shape[0] < 0 ? inputs[i].rows(begin, count)
                                                             : inputs[i]);
  return out;
}

std::vector<kiln_tensor> views(std::vector<HostTensor> &tensors) {
  std::vector<kiln_tensor> out;
  for (HostTensor &t : tensors)
    out.push_back(t.view());
  return out;
}

} // namespace kiln
