//===- Weights.cpp - a model's weight bytes, laid out and written ---------===//

#include "Weights.h"

#include "kiln/model_abi.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/xxhash.h"

#include <cstring>

namespace kiln {

namespace {
constexpr size_t kHashChunk = size_t(1) << 20;
const char kZeros[kWeightAlignment] = {};
} // namespace

uint64_t WeightImage::appendView(llvm::ArrayRef<char> data) {
  const uint64_t offset = llvm::alignTo(bytes, kWeightAlignment);
  if (!data.empty())
    pieces.push_back({offset, data});
  bytes = offset + data.size();
  return offset;
}

uint64_t WeightImage::appendOwned(std::vector<char> data) {
  owned.push_back(std::move(data));
  return appendView(owned.back());
}

uint64_t WeightImage::append(WeightImage &&other) {
  const uint64_t base = llvm::alignTo(bytes, kWeightAlignment);
  for (Piece &p : other.pieces)
    pieces.push_back({base + p.offset, p.bytes});
  for (auto &o : other.owned)
    owned.push_back(std::move(o)); // a deque's move keeps the bytes where they are
  bytes = base + other.bytes;
  other = WeightImage();
  return base;
}

/// Calls fn(bytes) for the image's bytes in order, padding included.
template <typename Fn> void WeightImage::forEachChunk(Fn fn) const {
  uint64_t at = 0;
  auto pad = [&](uint64_t to) {
    for (; at < to; at += std::min<uint64_t>(to - at, sizeof kZeros))
      fn(llvm::ArrayRef<char>(kZeros, std::min<uint64_t>(to - at, sizeof kZeros)));
  };
  for (const Piece &p : pieces) {
    pad(p.offset);
    fn(p.bytes);
    at += p.bytes.size();
  }
  pad(bytes);
}

uint64_t WeightImage::hash() const {
  WeightsHasher hasher;
  forEachChunk([&](llvm::ArrayRef<char> data) { hasher.update(data); });
  return hasher.finish();
}

void WeightImage::write(llvm::raw_ostream &os) const {
  forEachChunk([&](llvm::ArrayRef<char> data) { os.write(data.data(), data.size()); });
}

void WeightsHasher::chunk(llvm::ArrayRef<char> data) {
  const uint64_t h = llvm::xxh3_64bits(
      llvm::ArrayRef(reinterpret_cast<const uint8_t *>(data.data()), data.size()));
  state = (state ^ h) * 0x9e3779b97f4a7c15ull + ++chunks;
}

void WeightsHasher::update(llvm::ArrayRef<char> data) {
  if (!pending.empty()) {
    const size_t take = std::min(data.size(), kHashChunk - pending.size());
    pending.insert(pending.end(), data.begin(), data.begin() + take);
    data = data.drop_front(take);
    if (pending.size() < kHashChunk)
      return;
    chunk(pending);
    pending.clear();
  }
  for (; data.size() >= kHashChunk; data = data.drop_front(kHashChunk))
    chunk(data.take_front(kHashChunk));
  pending.assign(data.begin(), data.end());
}

uint64_t WeightsHasher::finish() {
  if (!pending.empty())
    chunk(pending);
  pending.clear();
  return state ^ chunks;
}

bool writeWeightsFile(const std::string &path, const WeightImage &image, uint64_t hash,
                      const std::string &modelHash, std::string &error) {
  kiln_weights_header header{};
  std::memcpy(header.magic, KILN_WEIGHTS_MAGIC, sizeof KILN_WEIGHTS_MAGIC);
  header.version = KILN_WEIGHTS_VERSION;
  header.header_bytes = KILN_WEIGHTS_HEADER_BYTES;
  header.data_bytes = image.size();
  header.data_hash = hash;
  std::strncpy(header.model_hash, modelHash.c_str(), sizeof header.model_hash - 1);
  static_assert(sizeof header <= KILN_WEIGHTS_HEADER_BYTES);

  llvm::SmallString<256> temp;
  int fd = -1;
  if (std::error_code ec = llvm::sys::fs::createUniqueFile(path + ".tmp%%%%%%", fd, temp)) {
    error = "cannot create " + path + ".tmp*: " + ec.message();
    return false;
  }
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os.write(reinterpret_cast<const char *>(&header), sizeof header);
    os.write_zeros(KILN_WEIGHTS_HEADER_BYTES - sizeof header);
    image.write(os);
    os.close();
    if (os.has_error()) {
      error = "writing " + path + ": " + os.error().message();
      os.clear_error();
      llvm::sys::fs::remove(temp);
      return false;
    }
  }
  llvm::sys::fs::setPermissions(temp, llvm::sys::fs::perms(0644));
  if (std::error_code ec = llvm::sys::fs::rename(temp, path)) {
    error = "cannot rename " + temp.str().str() + " to " + path + ": " + ec.message();
    llvm::sys::fs::remove(temp);
    return false;
  }
  return true;
}

} // namespace kiln
