// kiln's Triton Inference Server backend: serves a kiln model .so (one
// version folder each: VERSION/model.so) with one kiln session per model
// instance. The model configuration is completed from the kiln descriptor and
// checked against it; each batch Triton's dynamic batcher forms is staged
// request by request (a bad request fails alone) and run at kiln's buckets.
#include "Batcher.h"
#include "triton_api.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
using kiln::serving::Batcher;

TRITONSERVER_Error *fail(TRITONSERVER_Error_Code code, const std::string &message) {
  return TRITONSERVER_ErrorNew(code, message.c_str());
}

void log(TRITONSERVER_LogLevel level, const std::string &message) {
  if (TRITONSERVER_Error *e = TRITONSERVER_LogMessage(level, __FILE__, __LINE__, message.c_str()))
    TRITONSERVER_ErrorDelete(e);
}

#define KILN_TRY(call)                                                                             \
  do {                                                                                             \
    if (TRITONSERVER_Error *kiln_error_ = (call))                                                  \
      return kiln_error_;                                                                          \
  } while (0)

uint64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// kiln's dtypes, in kiln_dtype's order, as Triton names them.
struct DtypeName {
  kiln_dtype kiln;
  TRITONSERVER_DataType triton;
  const char *config; // model configuration's data_type
};
constexpr DtypeName kDtypes[] = {
    {KILN_DTYPE_F32, TRITONSERVER_TYPE_FP32, "TYPE_FP32"},
    {KILN_DTYPE_F64, TRITONSERVER_TYPE_FP64, "TYPE_FP64"},
    {KILN_DTYPE_I64, TRITONSERVER_TYPE_INT64, "TYPE_INT64"},
    {KILN_DTYPE_I32, TRITONSERVER_TYPE_INT32, "TYPE_INT32"},
    {KILN_DTYPE_I8, TRITONSERVER_TYPE_INT8, "TYPE_INT8"},
    {KILN_DTYPE_U8, TRITONSERVER_TYPE_UINT8, "TYPE_UINT8"},
    {KILN_DTYPE_BOOL, TRITONSERVER_TYPE_BOOL, "TYPE_BOOL"},
    {KILN_DTYPE_I16, TRITONSERVER_TYPE_INT16, "TYPE_INT16"},
    {KILN_DTYPE_U16, TRITONSERVER_TYPE_UINT16, "TYPE_UINT16"},
    {KILN_DTYPE_U32, TRITONSERVER_TYPE_UINT32, "TYPE_UINT32"},
    {KILN_DTYPE_U64, TRITONSERVER_TYPE_UINT64, "TYPE_UINT64"},
    {KILN_DTYPE_F16, TRITONSERVER_TYPE_FP16, "TYPE_FP16"},
    {KILN_DTYPE_BF16, TRITONSERVER_TYPE_BF16, "TYPE_BF16"},
};
const DtypeName *dtypeOf(kiln_dtype d) {
  for (const DtypeName &n : kDtypes)
    if (n.kiln == d)
      return &n;
  return nullptr;
}

/// A model tensor as the configuration and the requests see it.
struct Tensor {
  std::string name;
  const DtypeName *dtype = nullptr;
  std::vector<int64_t> dims; // without the batch
};

/// kiln's counters in Triton's metrics, one family each, per model version.
enum Counter { kRuns, kRows, kPadding, kRejected, kCounters };
constexpr const char *kCounterNames[kCounters][2] = {
    {"kiln_runs_total", "kiln_run calls (one per bucket-sized piece of a batch)"},
    {"kiln_rows_total", "Request rows run by kiln"},
    {"kiln_padding_rows_total", "Rows kiln computed beyond the requests' to fill a compiled bucket"},
    {"kiln_rejected_requests_total",
     "Requests kiln refused (bad dtype, shape or ids) while their batch ran"}};
TRITONSERVER_MetricFamily *families[kCounters] = {};

struct ModelState {
  kiln_model *model = nullptr;
  std::string path;
  int threads = 1;
  std::vector<Tensor> inputs, outputs;
  TRITONSERVER_Metric *metrics[kCounters] = {};
  ~ModelState() {
    for (TRITONSERVER_Metric *m : metrics)
      if (m)
        if (TRITONSERVER_Error *e = TRITONSERVER_MetricDelete(m))
          TRITONSERVER_ErrorDelete(e);
    kiln_model_close(model);
  }
  void count(Counter counter, double value) const {
    if (metrics[counter] && value > 0)
      if (TRITONSERVER_Error *e = TRITONSERVER_MetricIncrement(metrics[counter], value))
        TRITONSERVER_ErrorDelete(e);
  }
};

/// One request of the batch being staged.
struct Pending {
  TRITONBACKEND_Request *request;
  int64_t row, rows; // its first row in the staging, and how many
};

struct InstanceState {
  const ModelState *model = nullptr;
  TRITONBACKEND_ModelInstance *instance = nullptr;
  std::unique_ptr<Batcher> batcher;
  std::vector<Pending> pending; // capacity: the largest bucket
  std::vector<const char *> requested; // a request's output names
};

/// "[13, 4]", or "[batch, 13, 4]" with `batch`.
std::string dimsText(const std::vector<int64_t> &dims, bool batch = false) {
  std::string s = batch ? "[batch" : "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i || batch ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

bool readTensors(const kiln_model *model, bool inputs, std::vector<Tensor> &out,
                 std::string &error) {
  const int32_t n = inputs ? kiln_model_num_inputs(model) : kiln_model_num_outputs(model);
  for (int32_t i = 0; i < n; ++i) {
    kiln_tensor_info info;
    if ((inputs ? kiln_model_input(model, i, &info) : kiln_model_output(model, i, &info)) !=
        KILN_OK)
      return false;
    Tensor t;
    t.name = info.name;
    t.dtype = dtypeOf(info.dtype);
    if (!t.dtype) {
      error = std::string(inputs ? "input '" : "output '") + info.name + "' has dtype " +
              kiln_dtype_name(info.dtype) + ", which Triton cannot carry";
      return false;
    }
    if (info.rank < 1 || info.shape[0] != -1) {
      error = std::string(inputs ? "input '" : "output '") + info.name +
              "' has no batch dimension: kiln serves models whose every input and output is "
              "batched";
      return false;
    }
    t.dims.assign(info.shape + 1, info.shape + info.rank);
    out.push_back(std::move(t));
  }
  return true;
}

/// The config's dims as integers (Triton writes int64 as numbers or strings).
bool configDims(const json &dims, std::vector<int64_t> &out) {
  if (!dims.is_array())
    return false;
  for (const json &d : dims) {
    if (d.is_number_integer())
      out.push_back(d.get<int64_t>());
    else if (d.is_string())
      out.push_back(std::stoll(d.get<std::string>()));
    else
      return false;
  }
  return true;
}

int64_t configInt(const json &config, const char *key, int64_t otherwise) {
  auto it = config.find(key);
  if (it == config.end())
    return otherwise;
  if (it->is_string())
    return std::stoll(it->get<std::string>());
  return it->get<int64_t>();
}

/// Fills in what the config leaves out (when Triton lets the backend
/// complete it) and checks the rest against the descriptor. Every error
/// names the config field.
bool completeConfig(json &config, const ModelState &state, bool autoComplete, bool &changed,
                    std::string &error) {
  const int32_t buckets = kiln_model_num_buckets(state.model);
  const int64_t largest = kiln_model_bucket_batch(state.model, buckets - 1);
  int64_t maxBatch = configInt(config, "max_batch_size", 0);
  if (maxBatch == 0 && autoComplete) {
    config["max_batch_size"] = maxBatch = largest;
    changed = true;
  }
  if (maxBatch <= 0) {
    error = "max_batch_size is " + std::to_string(maxBatch) +
            ": kiln models are batched; set it to the largest bucket, " + std::to_string(largest);
    return false;
  }
  if (maxBatch > largest) {
    error = "max_batch_size " + std::to_string(maxBatch) + " is above the model's largest bucket " +
            std::to_string(largest);
    return false;
  }

  for (bool inputs : {true, false}) {
    const char *field = inputs ? "input" : "output";
    const std::vector<Tensor> &model = inputs ? state.inputs : state.outputs;
    json &list = config[field];
    if ((list.is_null() || list.empty()) && autoComplete) {
      list = json::array();
      for (const Tensor &t : model) {
        json entry = {{"name", t.name}, {"data_type", t.dtype->config}, {"dims", t.dims}};
        if (t.dims.empty()) { // Triton's form of one value per batch row
          entry["dims"] = {1};
          entry["reshape"] = {{"shape", json::array()}};
        }
        list.push_back(std::move(entry));
      }
      changed = true;
    }
    for (const json &entry : list) {
      const std::string name = entry.value("name", "");
      const Tensor *t = nullptr;
      for (const Tensor &m : model)
        if (m.name == name)
          t = &m;
      if (!t) {
        std::string names;
        for (const Tensor &m : model)
          names += (names.empty() ? "" : ", ") + m.name;
        error = std::string(field) + " '" + name + "' is not one of the model's " + field +
                "s (" + names + ")";
        return false;
      }
      const std::string dtype = entry.value("data_type", "");
      if (dtype != t->dtype->config) {
        error = std::string(field) + " '" + name + "': data_type " + dtype +
                ", the model's is " + t->dtype->config;
        return false;
      }
      // The tensor's dims as the model sees them: after a reshape.
      std::vector<int64_t> dims;
      const json &shape = entry.contains("reshape") ? entry["reshape"].value("shape", json::array())
                                                    : entry.value("dims", json::array());
      if (!configDims(shape, dims) || dims != t->dims) {
        error = std::string(field) + " '" + name + "': dims " +
                dimsText(dims) + ", the model's (without the batch) are " + dimsText(t->dims);
        return false;
      }
    }
    if (inputs && list.size() != model.size()) {
      error = "input: lists " + std::to_string(list.size()) + " of the model's " +
              std::to_string(model.size()) + " inputs; every input must be listed";
      return false;
    }
  }

  // Triton takes a backend's dynamic_batching only where the config has
  // none; kiln package writes it whole, from the descriptor.
  if (!config.contains("dynamic_batching") && !config.contains("sequence_batching") &&
      autoComplete) {
    json sizes = json::array(); // the buckets but 1, as kiln package writes them
    for (int32_t b = 0; b < buckets; ++b) {
      const int64_t size = kiln_model_bucket_batch(state.model, b);
      if (size <= maxBatch && (size > 1 || maxBatch == 1))
        sizes.push_back(size);
    }
    config["dynamic_batching"] = {{"preferred_batch_size", sizes}};
    changed = true;
  }
  return true;
}

/// The config's parameters { key: "num_threads" value { string_value: "N" } }.
bool readThreads(const json &config, int &threads, std::string &error) {
  auto params = config.find("parameters");
  if (params == config.end() || !params->contains("num_threads"))
    return true;
  const std::string text = (*params)["num_threads"].value("string_value", "");
  char *end = nullptr;
  long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || n < 1 || n > 1024) {
    error = "parameters num_threads is '" + text + "': a thread count in [1, 1024]";
    return false;
  }
  threads = int(n);
  return true;
}

TRITONSERVER_Error *createMetrics(ModelState &state, const char *name, uint64_t version) {
  const std::string versionText = std::to_string(version);
  const TRITONSERVER_Parameter *labels[] = {
      TRITONSERVER_ParameterNew("model", TRITONSERVER_PARAMETER_STRING, name),
      TRITONSERVER_ParameterNew("version", TRITONSERVER_PARAMETER_STRING, versionText.c_str())};
  TRITONSERVER_Error *error = nullptr;
  for (int c = 0; c < kCounters && !error; ++c)
    if (families[c])
      error = TRITONSERVER_MetricNew(&state.metrics[c], families[c], labels, 2);
  for (const TRITONSERVER_Parameter *p : labels)
    TRITONSERVER_ParameterDelete(const_cast<TRITONSERVER_Parameter *>(p));
  return error;
}

TRITONSERVER_Error *initializeModel(TRITONBACKEND_Model *model, ModelState &state) {
  const char *name = nullptr, *location = nullptr;
  uint64_t version = 0;
  TRITONBACKEND_ArtifactType artifact;
  KILN_TRY(TRITONBACKEND_ModelName(model, &name));
  KILN_TRY(TRITONBACKEND_ModelVersion(model, &version));
  KILN_TRY(TRITONBACKEND_ModelRepository(model, &artifact, &location));
  if (artifact != TRITONBACKEND_ARTIFACT_FILESYSTEM)
    return fail(TRITONSERVER_ERROR_UNSUPPORTED, "kiln: the model repository must be a file system");

  TRITONSERVER_Message *message = nullptr;
  KILN_TRY(TRITONBACKEND_ModelConfig(model, 1, &message));
  const char *text = nullptr;
  size_t bytes = 0;
  TRITONSERVER_Error *error = TRITONSERVER_MessageSerializeToJson(message, &text, &bytes);
  json config = error ? json() : json::parse(text, text + bytes, nullptr, false);
  TRITONSERVER_MessageDelete(message);
  KILN_TRY(error);
  if (!config.is_object())
    return fail(TRITONSERVER_ERROR_INTERNAL, "kiln: Triton's model configuration is not JSON");

  const std::string file = config.value("default_model_filename", "");
  state.path = std::string(location) + "/" + std::to_string(version) + "/" +
               (file.empty() ? "model.so" : file);
  char why[1024] = "";
  if (kiln_model_open(state.path.c_str(), &state.model, why, sizeof why) != KILN_OK)
    return fail(TRITONSERVER_ERROR_INVALID_ARG, std::string("kiln: ") + why);

  if (kiln_model_exact_buckets(state.model))
    return fail(TRITONSERVER_ERROR_INVALID_ARG, "kiln: " + state.path +
                    ": the model's rows depend on each other (compiled with "
                    "--row-mixing=exact-buckets), and Triton's batches combine requests");

  std::string problem;
  if (!readTensors(state.model, true, state.inputs, problem) ||
      !readTensors(state.model, false, state.outputs, problem) ||
      !readThreads(config, state.threads, problem))
    return fail(TRITONSERVER_ERROR_INVALID_ARG, "kiln: " + state.path + ": " + problem);

  bool autoComplete = false, changed = false;
  KILN_TRY(TRITONBACKEND_ModelAutoCompleteConfig(model, &autoComplete));
  try {
    if (!completeConfig(config, state, autoComplete, changed, problem))
      return fail(TRITONSERVER_ERROR_INVALID_ARG,
                  "kiln: config.pbtxt of model '" + std::string(name) + "' contradicts " +
                      state.path + ": " + problem);
  } catch (const std::exception &e) { // a field of an unexpected JSON type
    return fail(TRITONSERVER_ERROR_INVALID_ARG,
                "kiln: config.pbtxt of model '" + std::string(name) + "': " + e.what());
  }
  if (changed) {
    const std::string completed = config.dump();
    KILN_TRY(TRITONSERVER_MessageNewFromSerializedJson(&message, completed.data(),
                                                       completed.size()));
    error = TRITONBACKEND_ModelSetConfig(model, 1, message);
    TRITONSERVER_MessageDelete(message);
    KILN_TRY(error);
  }
  KILN_TRY(createMetrics(state, name, version));
  kiln_model_info info;
  kiln_model_get_info(state.model, &info);
  log(TRITONSERVER_LOG_INFO, "kiln: model '" + std::string(name) + "' version " +
                                 std::to_string(version) + ": " + state.path + " (target " +
                                 info.target + ", hash " + info.model_hash + ", " +
                                 std::to_string(state.threads) + " thread(s) per instance)");
  return nullptr;
}

/// Logs and drops a failure to answer a request.
void logUnanswered(TRITONSERVER_Error *e) {
  if (!e)
    return;
  log(TRITONSERVER_LOG_ERROR,
      std::string("kiln: cannot answer a request: ") + TRITONSERVER_ErrorMessage(e));
  TRITONSERVER_ErrorDelete(e);
}

/// Answers `request` with an error carrying `message`.
TRITONSERVER_Error *sendError(TRITONBACKEND_Request *request, TRITONSERVER_Error_Code code,
                              const std::string &message) {
  TRITONBACKEND_Response *response = nullptr;
  KILN_TRY(TRITONBACKEND_ResponseNew(&response, request));
  TRITONSERVER_Error *error = fail(code, message);
  TRITONSERVER_Error *sent =
      TRITONBACKEND_ResponseSend(response, TRITONSERVER_RESPONSE_COMPLETE_FINAL, error);
  TRITONSERVER_ErrorDelete(error);
  return sent;
}

/// Fails one request alone: its response carries `message`.
void refuse(InstanceState &s, TRITONBACKEND_Request *request, const std::string &message) {
  logUnanswered(sendError(request, TRITONSERVER_ERROR_INVALID_ARG, message));
  const uint64_t t = nowNs();
  if (TRITONSERVER_Error *e =
          TRITONBACKEND_ModelInstanceReportStatistics(s.instance, request, false, t, t, t, t))
    TRITONSERVER_ErrorDelete(e);
  if (TRITONSERVER_Error *e = TRITONBACKEND_RequestRelease(request, TRITONSERVER_REQUEST_RELEASE_ALL))
    TRITONSERVER_ErrorDelete(e);
  s.model->count(kRejected, 1);
}

/// Copies one request's inputs into the staging and checks them. Returns
/// its rows, or 0 after refusing it.
int64_t stageRequest(InstanceState &s, TRITONBACKEND_Request *request) {
  const ModelState &m = *s.model;
  Batcher &b = *s.batcher;
  int64_t rows = 0;
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    const Tensor &t = m.inputs[i];
    TRITONBACKEND_Input *input = nullptr;
    const char *name = nullptr;
    TRITONSERVER_DataType dtype;
    const int64_t *shape = nullptr;
    uint32_t rank = 0, buffers = 0;
    uint64_t bytes = 0;
    TRITONSERVER_Error *e = TRITONBACKEND_RequestInput(request, t.name.c_str(), &input);
    if (!e)
      e = TRITONBACKEND_InputProperties(input, &name, &dtype, &shape, &rank, &bytes, &buffers);
    if (e) {
      std::string why = TRITONSERVER_ErrorMessage(e);
      TRITONSERVER_ErrorDelete(e);
      refuse(s, request, "kiln: input '" + t.name + "': " + why);
      return 0;
    }
    if (dtype != t.dtype->triton || rank != t.dims.size() + 1 ||
        !std::equal(t.dims.begin(), t.dims.end(), shape + 1) || shape[0] < 1 ||
        (i > 0 && shape[0] != rows)) {
      refuse(s, request,
             "kiln: input '" + t.name + "': expected " + t.dtype->config + " " +
                 dimsText(t.dims, true) + (i > 0 ? " with the batch of the other inputs" : ""));
      return 0;
    }
    rows = shape[0];
    if (!b.fits(rows) && b.stagedRows() == 0) { // Triton keeps to max_batch_size
      refuse(s, request, "kiln: a request of " + std::to_string(rows) +
                             " rows is above the model's largest bucket");
      return 0;
    }
    if (!b.fits(rows))
      return -rows; // the caller runs what is staged first
    uint8_t *slot = b.inputSlot(int(i));
    uint64_t copied = 0;
    for (uint32_t k = 0; k < buffers; ++k) {
      const void *data = nullptr;
      uint64_t size = 0;
      TRITONSERVER_MemoryType memory = TRITONSERVER_MEMORY_CPU;
      int64_t memoryId = 0;
      if (TRITONSERVER_Error *e2 = TRITONBACKEND_InputBuffer(input, k, &data, &size, &memory, &memoryId)) {
        std::string why = TRITONSERVER_ErrorMessage(e2);
        TRITONSERVER_ErrorDelete(e2);
        refuse(s, request, "kiln: input '" + t.name + "': " + why);
        return 0;
      }
      if (memory == TRITONSERVER_MEMORY_GPU) {
        refuse(s, request, "kiln: input '" + t.name +
                               "' is in GPU memory; kiln's backend takes inputs in host memory");
        return 0;
      }
      if (copied + size > uint64_t(rows) * b.inputRowBytes(int(i)))
        break;
      std::memcpy(slot + copied, data, size);
      copied += size;
    }
    if (copied != uint64_t(rows) * b.inputRowBytes(int(i))) {
      refuse(s, request, "kiln: input '" + t.name + "' holds " + std::to_string(bytes) +
                             " bytes, its shape needs " +
                             std::to_string(uint64_t(rows) * b.inputRowBytes(int(i))));
      return 0;
    }
  }
  if (!b.stage(rows)) {
    refuse(s, request, std::string("kiln: ") + b.error());
    return 0;
  }
  return rows;
}

/// Whether the request asked for output `name` (all outputs when it named none).
bool wanted(InstanceState &s, const char *name) {
  if (s.requested.empty())
    return true;
  for (const char *r : s.requested)
    if (std::strcmp(r, name) == 0)
      return true;
  return false;
}

TRITONSERVER_Error *respond(InstanceState &s, const Pending &p) {
  const ModelState &m = *s.model;
  TRITONBACKEND_Response *response = nullptr;
  KILN_TRY(TRITONBACKEND_ResponseNew(&response, p.request));
  s.requested.clear();
  uint32_t count = 0;
  TRITONSERVER_Error *error = TRITONBACKEND_RequestOutputCount(p.request, &count);
  for (uint32_t k = 0; !error && k < count; ++k) {
    const char *name = nullptr;
    error = TRITONBACKEND_RequestOutputName(p.request, k, &name);
    if (!error)
      s.requested.push_back(name);
  }
  int64_t shape[8];
  for (size_t o = 0; !error && o < m.outputs.size(); ++o) {
    const Tensor &t = m.outputs[o];
    if (!wanted(s, t.name.c_str()) || t.dims.size() + 1 > 8)
      continue;
    shape[0] = p.rows;
    std::copy(t.dims.begin(), t.dims.end(), shape + 1);
    TRITONBACKEND_Output *output = nullptr;
    void *buffer = nullptr;
    TRITONSERVER_MemoryType memory = TRITONSERVER_MEMORY_CPU;
    int64_t memoryId = 0;
    const uint64_t bytes = uint64_t(p.rows) * s.batcher->outputRowBytes(int(o));
    error = TRITONBACKEND_ResponseOutput(response, &output, t.name.c_str(), t.dtype->triton, shape,
                                         uint32_t(t.dims.size() + 1));
    if (!error)
      error = TRITONBACKEND_OutputBuffer(output, &buffer, bytes, &memory, &memoryId);
    if (!error && memory == TRITONSERVER_MEMORY_GPU)
      error = fail(TRITONSERVER_ERROR_UNSUPPORTED,
                   "kiln: Triton offered GPU memory for output '" + t.name + "'");
    if (!error)
      std::memcpy(buffer, s.batcher->output(int(o), p.row), bytes);
  }
  TRITONSERVER_Error *sent =
      TRITONBACKEND_ResponseSend(response, TRITONSERVER_RESPONSE_COMPLETE_FINAL, error);
  if (error)
    TRITONSERVER_ErrorDelete(error);
  return sent;
}

/// Runs what is staged and answers its requests.
void runStaged(InstanceState &s, uint64_t execStart) {
  if (s.pending.empty())
    return;
  const int64_t rows = s.batcher->stagedRows();
  const uint64_t computeStart = nowNs();
  const bool ok = s.batcher->run();
  const uint64_t computeEnd = nowNs();
  std::string why;
  if (!ok)
    why = std::string("kiln: ") + s.batcher->error();
  for (const Pending &p : s.pending) {
    logUnanswered(ok ? respond(s, p) : sendError(p.request, TRITONSERVER_ERROR_INTERNAL, why));
    const uint64_t execEnd = nowNs();
    if (TRITONSERVER_Error *e2 = TRITONBACKEND_ModelInstanceReportStatistics(
            s.instance, p.request, ok, execStart, computeStart, computeEnd, execEnd))
      TRITONSERVER_ErrorDelete(e2);
    if (TRITONSERVER_Error *e2 =
            TRITONBACKEND_RequestRelease(p.request, TRITONSERVER_REQUEST_RELEASE_ALL))
      TRITONSERVER_ErrorDelete(e2);
  }
  if (TRITONSERVER_Error *e = TRITONBACKEND_ModelInstanceReportBatchStatistics(
          s.instance, uint64_t(rows), execStart, computeStart, computeEnd, nowNs()))
    TRITONSERVER_ErrorDelete(e);
  if (ok) {
    s.model->count(kRuns, 1);
    s.model->count(kRows, double(rows));
    s.model->count(kPadding, double(s.batcher->lastBucketRows() - rows));
  }
  s.pending.clear();
}

} // namespace

extern "C" {

TRITONSERVER_Error *TRITONBACKEND_Initialize(TRITONBACKEND_Backend *) {
  uint32_t major = 0, minor = 0;
  KILN_TRY(TRITONBACKEND_ApiVersion(&major, &minor));
  if (major != kTritonBackendApiMajor || minor < kTritonBackendApiMinor)
    return fail(TRITONSERVER_ERROR_UNSUPPORTED,
                "kiln: this Triton's backend API is " + std::to_string(major) + "." +
                    std::to_string(minor) + "; kiln's backend needs " +
                    std::to_string(kTritonBackendApiMajor) + "." +
                    std::to_string(kTritonBackendApiMinor) + " or a later minor");
  for (int c = 0; c < kCounters; ++c)
    if (!families[c])
      KILN_TRY(TRITONSERVER_MetricFamilyNew(&families[c], TRITONSERVER_METRIC_KIND_COUNTER,
                                            kCounterNames[c][0], kCounterNames[c][1]));
  return nullptr;
}

TRITONSERVER_Error *TRITONBACKEND_Finalize(TRITONBACKEND_Backend *) {
  for (TRITONSERVER_MetricFamily *&family : families)
    if (family) {
      if (TRITONSERVER_Error *e = TRITONSERVER_MetricFamilyDelete(family))
        TRITONSERVER_ErrorDelete(e);
      family = nullptr;
    }
  return nullptr;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInitialize(TRITONBACKEND_Model *model) {
  auto state = std::make_unique<ModelState>();
  KILN_TRY(initializeModel(model, *state));
  KILN_TRY(TRITONBACKEND_ModelSetState(model, state.get()));
  state.release();
  return nullptr;
}

TRITONSERVER_Error *TRITONBACKEND_ModelFinalize(TRITONBACKEND_Model *model) {
  void *state = nullptr;
  KILN_TRY(TRITONBACKEND_ModelState(model, &state));
  delete static_cast<ModelState *>(state);
  return nullptr;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInstanceInitialize(TRITONBACKEND_ModelInstance *instance) {
  TRITONBACKEND_Model *model = nullptr;
  void *modelState = nullptr;
  const char *name = nullptr;
  TRITONSERVER_InstanceGroupKind kind;
  KILN_TRY(TRITONBACKEND_ModelInstanceModel(instance, &model));
  KILN_TRY(TRITONBACKEND_ModelState(model, &modelState));
  KILN_TRY(TRITONBACKEND_ModelInstanceName(instance, &name));
  KILN_TRY(TRITONBACKEND_ModelInstanceKind(instance, &kind));
  const ModelState &m = *static_cast<ModelState *>(modelState);
  const bool device = kiln_model_is_device(m.model);
  if (device && kind != TRITONSERVER_INSTANCEGROUPKIND_GPU)
    return fail(TRITONSERVER_ERROR_INVALID_ARG,
                "kiln: instance '" + std::string(name) + "': " + m.path +
                    " is a CUDA model (--target cuda); give it instance_group kind KIND_GPU");
  if (!device && kind == TRITONSERVER_INSTANCEGROUPKIND_GPU)
    return fail(TRITONSERVER_ERROR_INVALID_ARG,
                "kiln: instance '" + std::string(name) + "': " + m.path +
                    " is a CPU model; give it instance_group kind KIND_CPU");
  if (device) {
    int32_t deviceId = 0;
    KILN_TRY(TRITONBACKEND_ModelInstanceDeviceId(instance, &deviceId));
    if (deviceId != 0)
      return fail(TRITONSERVER_ERROR_UNSUPPORTED,
                  "kiln: instance '" + std::string(name) + "' is on GPU " +
                      std::to_string(deviceId) +
                      "; kiln sessions run on GPU 0 (one Triton per GPU: CUDA_VISIBLE_DEVICES)");
  }
  auto state = std::make_unique<InstanceState>();
  state->model = &m;
  state->instance = instance;
  std::string error;
  state->batcher = Batcher::create(m.model, m.threads, error);
  if (!state->batcher)
    return fail(TRITONSERVER_ERROR_INVALID_ARG, "kiln: instance '" + std::string(name) + "': " + error);
  state->pending.reserve(size_t(state->batcher->maxBatch()));
  state->requested.reserve(m.outputs.size());
  KILN_TRY(TRITONBACKEND_ModelInstanceSetState(instance, state.get()));
  state.release();
  return nullptr;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInstanceFinalize(TRITONBACKEND_ModelInstance *instance) {
  void *state = nullptr;
  KILN_TRY(TRITONBACKEND_ModelInstanceState(instance, &state));
  delete static_cast<InstanceState *>(state);
  return nullptr;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInstanceExecute(TRITONBACKEND_ModelInstance *instance,
                                                       TRITONBACKEND_Request **requests,
                                                       const uint32_t request_count) {
  void *state = nullptr;
  KILN_TRY(TRITONBACKEND_ModelInstanceState(instance, &state));
  InstanceState &s = *static_cast<InstanceState *>(state);
  uint64_t execStart = nowNs();
  for (uint32_t r = 0; r < request_count; ++r) {
    const int64_t row = s.batcher->stagedRows();
    int64_t rows = stageRequest(s, requests[r]);
    if (rows < 0) { // the batch is larger than the largest bucket: run a piece
      runStaged(s, execStart);
      execStart = nowNs();
      --r;
      continue;
    }
    if (rows > 0)
      s.pending.push_back({requests[r], row, rows});
  }
  runStaged(s, execStart);
  return nullptr;
}

} // extern "C"
