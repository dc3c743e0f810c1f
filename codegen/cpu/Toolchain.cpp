//===- Toolchain.cpp - building a model .so with the system compiler ------===//
//
// The kernel and ABI headers are embedded in kiln at build time, so a kiln
// binary compiles models without its source tree.
//
//===----------------------------------------------------------------------===//

#include "Toolchain.h"
#include "EmbeddedFiles.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>

using namespace mlir;

namespace kiln {

static LogicalResult writeFile(StringRef path, StringRef text, std::string &error) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec) {
    error = "cannot write " + path.str() + ": " + ec.message();
    return failure();
  }
  os << text;
  return success();
}

LogicalResult writeSupportHeaders(StringRef dir, std::string &error) {
  for (int i = 0; i < kNumEmbeddedFiles; ++i) {
    SmallString<256> path(dir);
    llvm::sys::path::append(path, kEmbeddedFiles[i].path);
    if (std::error_code ec = llvm::sys::fs::create_directories(llvm::sys::path::parent_path(path))) {
      error = "cannot create the folder of " + path.str().str() + ": " + ec.message();
      return failure();
    }
    if (failed(writeFile(path, kEmbeddedFiles[i].text, error)))
      return failure();
  }
  return success();
}

LogicalResult buildSharedLibrary(StringRef dir, StringRef source, StringRef output,
                                 std::string &error) {
  const char *cxxEnv = std::getenv("CXX");
  std::string cxx = cxxEnv && *cxxEnv ? cxxEnv : "c++";
  auto program = llvm::sys::findProgramByName(cxx);
  if (!program) {
    error = "cannot find the C++ compiler '" + cxx + "' (set CXX)";
    return failure();
  }
  std::string include = "-I" + dir.str(), asmInclude = "-Wa,-I" + dir.str();
  std::string src = (dir + "/" + source).str(), out = output.str();
  SmallVector<StringRef> args = {*program, "-std=c++17", "-O3", "-fno-math-errno", "-shared",
                                 "-fPIC", "-fvisibility=hidden", "-mavx2", "-mfma", "-mf16c", "-w",
                                 include, asmInclude, src, "-o", out};
  std::string log = (dir + "/compiler.log").str();
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log), StringRef(log)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*program, args, std::nullopt, redirects, 0, 0, &message);
  if (rc != 0) {
    error = "the C++ compiler failed (" +
            (message.empty() ? "exit " + std::to_string(rc) : message) + ")";
    if (auto text = llvm::MemoryBuffer::getFile(log))
      error += ":\n" + (*text)->getBuffer().take_back(4000).str();
    return failure();
  }
  return success();
}

} // namespace kiln
