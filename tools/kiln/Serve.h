// kiln package (a Triton model-repository entry for a compiled model) and
// kiln serve (Triton Inference Server with kiln's backend).
#ifndef KILN_TOOLS_SERVE_H
#define KILN_TOOLS_SERVE_H

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

struct PackageOptions {
  std::string model;         // the compiled .so
  std::string repository;    // the model repository folder
  std::string name;          // default: the .so's file stem
  int64_t version = 1;
  int64_t maxQueueDelayUs = 100;
  int instances = 1;
  int threads = 1;
};

/// Writes REPO/NAME/config.pbtxt and REPO/NAME/VERSION/model.so (with its
/// weights file, if it has one); the version folder appears whole or not at
/// all, so a polling server never loads a half-copied model.
int packageModel(const PackageOptions &options);

struct ServeOptions {
  std::string repository;
  std::string address = "127.0.0.1";
  int httpPort = 8000, grpcPort = 8001, metricsPort = 8002;
  std::string modelControl = "none"; // none | poll | explicit
  int pollSeconds = 2;
  std::vector<std::string> tritonArgs; // passed through after --
};

/// Runs tritonserver (from the pinned nvidia-pytriton wheel in .venv) on the
/// repository with kiln's backend until it exits; SIGINT/SIGTERM/SIGHUP are
/// passed on to it. Returns its exit status.
int serveRepository(const ServeOptions &options);

} // namespace kiln

#endif // KILN_TOOLS_SERVE_H
