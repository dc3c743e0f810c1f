//===- Toolchain.cpp - building a model .so with c++ or nvcc ---------------===//
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
    if (std::error_code ec =
            llvm::sys::fs::create_directories(llvm::sys::path::parent_path(path))) {
      error = "cannot create the folder of " + path.str().str() + ": " + ec.message();
      return failure();
    }
    if (failed(writeFile(path, kEmbeddedFiles[i].text, error)))
      return failure();
  }
  return success();
}

/// The program `name` from the environment variable `env`, else found on
/// the PATH, else at `fallback`.
static std::optional<std::string> findCompiler(const char *env, StringRef name,
                                               StringRef fallback) {
  const char *value = std::getenv(env);
  std::string program = value && *value ? value : name.str();
  if (auto found = llvm::sys::findProgramByName(program))
    return *found;
  if (!(value && *value) && !fallback.empty() && llvm::sys::fs::can_execute(fallback))
    return fallback.str();
  return std::nullopt;
}

LogicalResult buildSharedLibrary(StringRef dir, StringRef source, StringRef output, int cudaSm,
                                 CpuIsa cpu, std::string &error) {
  const bool cuda = cudaSm > 0;
  auto program = cuda ? findCompiler("NVCC", "nvcc", "/usr/local/cuda/bin/nvcc")
                      : findCompiler("CXX", "c++", "");
  if (!program) {
    error = cuda ? "cannot find the CUDA compiler 'nvcc' (install the CUDA toolkit, put nvcc on "
                   "the PATH or set NVCC)"
                 : "cannot find the C++ compiler (set CXX)";
    return failure();
  }
  std::string include = "-I" + dir.str(), src = (dir + "/" + source).str(), out = output.str();
  std::string arch = std::to_string(cudaSm);
  // Machine code for sm_<N>, and PTX the driver compiles for newer GPUs.
  std::string sass = "arch=compute_" + arch + ",code=sm_" + arch;
  std::string ptx = "arch=compute_" + arch + ",code=compute_" + arch;
  std::string asmInclude =
      cuda ? "-Xcompiler=-fPIC,-fvisibility=hidden,-Wa\\,-I" + dir.str() : "-Wa,-I" + dir.str();
  SmallVector<StringRef> args = {*program, "-std=c++17", "-O3",     "-shared",
                                 "-w",     include,      asmInclude};
  if (cuda) {
    args.append({"--extended-lambda", "--expt-relaxed-constexpr", "-gencode", sass, "-gencode", ptx,
                 src, "-o", out, "-lcublasLt"});
  } else {
    args.append({"-fno-math-errno", "-fPIC", "-fvisibility=hidden", "-mavx2", "-mfma", "-mf16c"});
    if (cpu >= CpuIsa::Avx512)
      args.append({"-mavx512f", "-mavx512bw", "-mavx512vl", "-mprefer-vector-width=512"});
    if (cpu >= CpuIsa::Avx512Vnni)
      args.push_back("-mavx512vnni");
    if (cpu >= CpuIsa::Avx512Bf16)
      args.push_back("-mavx512bf16");
    args.append({src, "-o", out});
  }
  std::string log = (dir + "/compiler.log").str();
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log), StringRef(log)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*program, args, std::nullopt, redirects, 0, 0, &message);
  if (rc != 0) {
    error = std::string(cuda ? "nvcc" : "the C++ compiler") + " failed (" +
            (message.empty() ? "exit " + std::to_string(rc) : message) + ")";
    if (auto text = llvm::MemoryBuffer::getFile(log))
      error += ":\n" + (*text)->getBuffer().take_back(4000).str();
    return failure();
  }
  return success();
}

} // namespace kiln
