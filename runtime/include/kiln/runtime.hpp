// kiln/runtime.hpp - a small RAII wrapper over the C ABI of kiln/runtime.h.
// Failures throw kiln::Error in the caller's code; nothing throws across the ABI.
#ifndef KILN_RUNTIME_HPP
#define KILN_RUNTIME_HPP

#include "kiln/runtime.h"

#include <memory>
#include <stdexcept>
#include <string>

namespace kiln {

struct Error : std::runtime_error {
  Error(kiln_status status, const std::string &message)
      : std::runtime_error(message), status(status) {}
  kiln_status status;
};

class Model {
public:
  /// Opens the model to run it, or with `descriptorOnly` to read its
  /// descriptor on any machine (kiln_model_open_descriptor).
  explicit Model(const std::string &path, bool descriptorOnly = false) {
    char error[512];
    kiln_model *model = nullptr;
    kiln_status status = (descriptorOnly ? kiln_model_open_descriptor : kiln_model_open)(
        path.c_str(), &model, error, sizeof error);
    if (status != KILN_OK)
      throw Error(status, error);
    model_.reset(model);
  }
  const kiln_model *get() const { return model_.get(); }

private:
  struct Close {
    void operator()(kiln_model *m) const { kiln_model_close(m); }
  };
  std::unique_ptr<kiln_model, Close> model_;
};

class Session {
public:
  /// A session of `numThreads` threads, the calling one included.
  explicit Session(const Model &model, int32_t numThreads = 1) {
    kiln_session_options options;
    kiln_session_options_init(&options);
    options.num_threads = numThreads;
    kiln_session *session = nullptr;
    kiln_status status = kiln_session_create_with_options(model.get(), &options, &session);
    if (status != KILN_OK)
      throw Error(status, "cannot create a session of " + std::to_string(numThreads) +
                              " threads (invalid count or out of memory)");
    session_.reset(session);
  }
  /// Runs one request; throws kiln::Error with the runtime's message.
  void run(int64_t batch, const kiln_tensor *inputs, int32_t numInputs, const kiln_tensor *outputs,
           int32_t numOutputs) {
    kiln_status status = kiln_run(session_.get(), batch, inputs, numInputs, outputs, numOutputs);
    if (status != KILN_OK)
      throw Error(status, kiln_session_error(session_.get()));
  }
  kiln_session *get() const { return session_.get(); }

private:
  struct Destroy {
    void operator()(kiln_session *s) const { kiln_session_destroy(s); }
  };
  std::unique_ptr<kiln_session, Destroy> session_;
};

} // namespace kiln

#endif
