#include "Serve.h"

#include "kiln/runtime.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <system_error>

#include <glob.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace kiln {

namespace {

int fail(const std::string &message) {
  std::cerr << "kiln: error: " << message << "\n";
  return 1;
}

/// A Triton model name from a file stem: letters, digits, '_' and '-'.
std::string modelName(const std::string &stem) {
  std::string name;
  for (char c : stem)
    name += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return name.empty() ? "model" : name;
}

bool validName(const std::string &name) {
  if (name.empty() || name == "." || name == "..")
    return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      return false;
  return true;
}

std::string configText(const PackageOptions &o, const std::string &name, bool device,
                       int64_t maxBatch, const std::string &buckets) {
  std::string text;
  text += "# Written by kiln package. kiln's Triton backend completes the rest from the model's\n"
          "# descriptor when the model loads (inputs, outputs) and checks what is set here or\n"
          "# added by hand against it. max_batch_size is the largest compiled bucket, the\n"
          "# preferred batch sizes are the buckets above 1 (a preferred size of 1 would let\n"
          "# the batcher send each request alone).\n";
  text += "name: \"" + name + "\"\nbackend: \"kiln\"\n";
  text += "max_batch_size: " + std::to_string(maxBatch) + "\n";
  text += "dynamic_batching { preferred_batch_size: [ " + buckets +
          " ] max_queue_delay_microseconds: " + std::to_string(o.maxQueueDelayUs) + " }\n";
  text += "instance_group [ { count: " + std::to_string(o.instances) +
          (device ? " kind: KIND_GPU gpus: [ 0 ]" : " kind: KIND_CPU") + " } ]\n";
  text += "parameters { key: \"num_threads\" value { string_value: \"" +
          std::to_string(o.threads) + "\" } }\n";
  return text;
}

/// Writes `text` to `path` through a temporary file and a rename.
bool writeAtomically(const fs::path &path, const std::string &text, std::string &error) {
  fs::path temp = path;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) {
      error = "cannot write " + temp.string();
      return false;
    }
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec)
    error = "cannot rename " + temp.string() + " to " + path.string() + ": " + ec.message();
  return !ec;
}

/// tritonserver from the environment or the pinned wheel in .venv.
std::string findTritonServer() {
  if (const char *env = std::getenv("KILN_TRITONSERVER"))
    return env;
  std::string pattern =
      std::string(KILN_VENV) + "/lib/python3*/site-packages/pytriton/tritonserver/bin/tritonserver";
  glob_t found;
  std::string path;
  if (glob(pattern.c_str(), 0, nullptr, &found) == 0 && found.gl_pathc > 0)
    path = found.gl_pathv[0];
  globfree(&found);
  return path;
}

volatile sig_atomic_t child = 0;

void forward(int signal) {
  if (child > 0)
    kill(child, signal);
}

} // namespace

int packageModel(const PackageOptions &o) {
  if (o.version < 1)
    return fail("--version must be at least 1 (Triton's version folders are 1, 2, ...)");
  if (o.instances < 1 || o.threads < 1 || o.maxQueueDelayUs < 0)
    return fail("--instances and --threads must be at least 1, --max-queue-delay-us at least 0");
  kiln_model *model = nullptr;
  char why[1024] = "";
  if (kiln_model_open_descriptor(o.model.c_str(), &model, why, sizeof why) != KILN_OK)
    return fail(why);
  if (kiln_model_exact_buckets(model)) {
    kiln_model_close(model);
    return fail(o.model + ": its rows depend on each other (compiled with "
                          "--row-mixing=exact-buckets): Triton's dynamic batcher combines "
                          "requests into one batch, which would change each one's answer");
  }
  const bool device = kiln_model_is_device(model) != 0;
  const int64_t maxBatch = kiln_model_bucket_batch(model, kiln_model_num_buckets(model) - 1);
  // The batches Triton should form: the compiled buckets but 1, since a
  // preferred size of 1 lets the batcher send every request alone.
  std::string buckets;
  for (int32_t b = 0; b < kiln_model_num_buckets(model); ++b)
    if (kiln_model_bucket_batch(model, b) > 1 || maxBatch == 1)
      buckets += (buckets.empty() ? "" : ", ") + std::to_string(kiln_model_bucket_batch(model, b));
  const std::string weights = kiln_model_weights_path(model) ? kiln_model_weights_path(model) : "";
  bool batched = true;
  for (int32_t i = 0; i < kiln_model_num_inputs(model) + kiln_model_num_outputs(model); ++i) {
    kiln_tensor_info info;
    const bool input = i < kiln_model_num_inputs(model);
    const kiln_status read = input
                                 ? kiln_model_input(model, i, &info)
                                 : kiln_model_output(model, i - kiln_model_num_inputs(model), &info);
    if (read == KILN_OK && (info.rank < 1 || info.shape[0] != -1)) {
      std::cerr << "kiln: error: " << o.model << ": " << (input ? "input '" : "output '")
                << info.name << "' has no batch dimension; Triton serves batched models\n";
      batched = false;
    }
  }
  kiln_model_close(model);
  if (!batched)
    return 1;

  const std::string name = o.name.empty() ? modelName(fs::path(o.model).stem().string()) : o.name;
  if (!validName(name))
    return fail("--name '" + name + "': a model name is letters, digits, '_', '-' and '.'");
  const fs::path entry = fs::path(o.repository) / name;
  const fs::path final = entry / std::to_string(o.version);
  const fs::path staging = entry / ("." + std::to_string(o.version) + ".partial");
  std::error_code ec;
  if (fs::exists(final))
    return fail(final.string() + " exists: versions are immutable, package a new --version");
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec)
    return fail("cannot create " + staging.string() + ": " + ec.message());
  fs::copy_file(o.model, staging / "model.so", ec);
  if (!ec && !weights.empty())
    fs::copy_file(weights, staging / fs::path(weights).filename(), ec);
  if (ec) {
    fs::remove_all(staging);
    return fail("cannot copy the model into " + staging.string() + ": " + ec.message());
  }
  std::string error;
  if (!writeAtomically(entry / "config.pbtxt", configText(o, name, device, maxBatch, buckets), error))
    return fail(error);
  fs::rename(staging, final, ec);
  if (ec)
    return fail("cannot rename " + staging.string() + " to " + final.string() + ": " + ec.message());
  std::cout << "kiln package: " << (final / "model.so").string()
            << (weights.empty() ? "" : " with its weights file") << ", "
            << (entry / "config.pbtxt").string() << " (" << o.instances << " "
            << (device ? "KIND_GPU" : "KIND_CPU") << " instance(s), " << o.threads
            << " thread(s) each, max queue delay " << o.maxQueueDelayUs << " us)\n";
  return 0;
}

int serveRepository(const ServeOptions &o) {
  if (!fs::is_directory(o.repository))
    return fail("model repository " + o.repository + " is not a folder");
  const std::string server = findTritonServer();
  if (server.empty() || access(server.c_str(), X_OK) != 0)
    return fail("tritonserver not found: scripts/bootstrap.sh installs it into .venv (the "
                "nvidia-pytriton wheel), or set KILN_TRITONSERVER to its path");
  const char *env = std::getenv("KILN_TRITON_BACKENDS");
  const std::string backends = env ? env : KILN_TRITON_BACKENDS;
  if (access((backends + "/kiln/libtriton_kiln.so").c_str(), R_OK) != 0)
    return fail("kiln's backend is not at " + backends +
                "/kiln/libtriton_kiln.so: build kiln (or set KILN_TRITON_BACKENDS)");

  std::vector<std::string> args = {
      server,
      "--model-repository=" + o.repository,
      "--backend-directory=" + backends,
      "--http-address=" + o.address,
      "--grpc-address=" + o.address,
      "--metrics-address=" + o.address,
      "--http-port=" + std::to_string(o.httpPort),
      "--grpc-port=" + std::to_string(o.grpcPort),
      "--metrics-port=" + std::to_string(o.metricsPort),
      "--model-control-mode=" + o.modelControl,
  };
  if (o.modelControl == "explicit") // what is in the repository serves from the start
    args.push_back("--load-model=*");
  if (o.modelControl == "poll")
    args.push_back("--repository-poll-secs=" + std::to_string(o.pollSeconds));
  args.insert(args.end(), o.tritonArgs.begin(), o.tritonArgs.end());
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  std::cout << "kiln serve: " << o.repository << " with Triton on " << o.address << ": HTTP "
            << o.httpPort << ", gRPC " << o.grpcPort << ", metrics " << o.metricsPort
            << " (http://" << o.address << ":" << o.metricsPort << "/metrics); model control "
            << o.modelControl << "; Ctrl-C stops it" << std::endl;
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    return fail(std::string("cannot start tritonserver: ") + std::strerror(errno));
  if (pid == 0) {
    // Its own process group (a terminal's Ctrl-C reaches it once, through
    // kiln), and it stops when kiln dies, however kiln dies.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(1);
    execv(argv[0], argv.data());
    std::fprintf(stderr, "kiln: error: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  child = pid;
  struct sigaction action = {};
  action.sa_handler = forward;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP})
    sigaction(s, &action, nullptr);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  child = 0;
  if (WIFSIGNALED(status)) {
    std::cerr << "kiln serve: tritonserver ended by signal " << WTERMSIG(status) << "\n";
    return 128 + WTERMSIG(status);
  }
  const int code = WEXITSTATUS(status);
  std::cerr << "kiln serve: tritonserver exited with status " << code << "\n";
  return code;
}

} // namespace kiln
