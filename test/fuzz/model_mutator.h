// model_mutator.h - a structure-aware libFuzzer mutator over ONNX ModelProto
// (Debian has no libprotobuf-mutator): it parses the input, changes one thing
// a trainer's export or a hostile file could get wrong, and serialises it
// again, so that most inputs stay valid protobuf and reach the importer's and
// the passes' checks instead of the parser's.
//
// What it changes: dims (to 0, -1, 2^31, 2^62, INT64_MIN...), dtypes (known,
// unknown and invalid enums), raw_data (truncated, grown, bytes flipped),
// attributes (ints to extreme values, removed, retyped), node inputs and
// outputs (renamed to another value, undefined, duplicated), node order
// (swapped: unsorted graphs, cycles), op types, opset versions, graph inputs
// and outputs (removed, duplicated, shapes dropped).
#ifndef KILN_TEST_MODEL_MUTATOR_H
#define KILN_TEST_MODEL_MUTATOR_H

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>

extern "C" size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t maxSize);

namespace kiln::fuzz {

class ModelMutator {
public:
  explicit ModelMutator(unsigned seed) : rng(seed) {}

  /// Mutates the serialised model in data[0, size) in place; returns its
  /// new size (at most maxSize).
  size_t mutate(uint8_t *data, size_t size, size_t maxSize) {
    onnx::ModelProto model;
    if (pick(8) == 0 || !model.ParseFromArray(data, int(size)))
      return LLVMFuzzerMutate(data, size, maxSize); // bytes, now and then
    for (int n = 1 + int(pick(3)); n > 0; --n)
      mutateOnce(model);
    std::string out;
    if (!model.SerializeToString(&out) || out.size() > maxSize)
      return LLVMFuzzerMutate(data, size, maxSize);
    std::memcpy(data, out.data(), out.size());
    return out.size();
  }

private:
  uint64_t pick(uint64_t n) { return n ? std::uniform_int_distribution<uint64_t>(0, n - 1)(rng) : 0; }

  int64_t interesting() {
    static const int64_t values[] = {0, 1, 2, 3, -1, -2, 7, 64, 255, 256, 1 << 16, int64_t(1) << 31,
                                     (int64_t(1) << 31) - 1, int64_t(1) << 32, int64_t(1) << 62,
                                     INT64_MAX, INT64_MIN, INT64_MIN + 1};
    return values[pick(std::size(values))];
  }

  /// One of the names values have in the graph, or a fresh one.
  std::string someName(const onnx::GraphProto &g) {
    std::vector<const std::string *> names;
    for (const auto &i : g.input())
      names.push_back(&i.name());
    for (const auto &t : g.initializer())
      names.push_back(&t.name());
    for (const auto &n : g.node())
      for (const auto &o : n.output())
        names.push_back(&o);
    if (names.empty() || pick(6) == 0)
      return pick(2) ? std::string() : "undefined_" + std::to_string(pick(4));
    return *names[pick(names.size())];
  }

  void mutateShape(onnx::TensorShapeProto *shape) {
    if (shape->dim_size() == 0 || pick(6) == 0) {
      shape->add_dim()->set_dim_value(interesting());
      return;
    }
    auto *d = shape->mutable_dim(int(pick(shape->dim_size())));
    switch (pick(4)) {
    case 0:
      d->set_dim_param("N");
      break;
    case 1:
      shape->mutable_dim()->RemoveLast();
      break;
    default:
      d->set_dim_value(interesting());
    }
  }

  void mutateTensor(onnx::TensorProto *t) {
    switch (pick(6)) {
    case 0:
      if (t->dims_size())
        t->set_dims(int(pick(t->dims_size())), interesting());
      else
        t->add_dims(interesting());
      break;
    case 1:
      t->set_data_type(int32_t(pick(2) ? pick(24) : interesting()));
      break;
    case 2: { // truncate or grow raw_data
      std::string *raw = t->mutable_raw_data();
      if (!raw->empty() && pick(2))
        raw->resize(pick(raw->size()));
      else
        raw->append(size_t(1 + pick(16)), '\x7f');
      break;
    }
    case 3: { // flip bytes of the data
      std::string *raw = t->mutable_raw_data();
      for (int i = 0; !raw->empty() && i < 4; ++i)
        (*raw)[pick(raw->size())] ^= char(1u << pick(8));
      break;
    }
    case 4:
      t->clear_dims();
      break;
    default:
      t->set_data_location(onnx::TensorProto::EXTERNAL);
      t->add_external_data()->set_key(pick(2) ? "location" : "offset");
      t->mutable_external_data(t->external_data_size() - 1)->set_value(pick(2) ? "../w.bin" : "-1");
    }
  }

  void mutateAttribute(onnx::NodeProto *n) {
    if (n->attribute_size() == 0 || pick(5) == 0) {
      static const char *names[] = {"axis", "axes", "perm", "keepdims", "to", "transA", "transB",
                                    "alpha", "beta", "mode", "value", "shape", "starts", "split"};
      auto *a = n->add_attribute();
      a->set_name(names[pick(std::size(names))]);
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(interesting());
      return;
    }
    auto *a = n->mutable_attribute(int(pick(n->attribute_size())));
    switch (pick(5)) {
    case 0:
      a->set_i(interesting());
      break;
    case 1:
      if (a->ints_size())
        a->set_ints(int(pick(a->ints_size())), interesting());
      else
        a->add_ints(interesting());
      break;
    case 2:
      a->set_type(onnx::AttributeProto::AttributeType(pick(15)));
      break;
    case 3:
      if (a->has_t())
        mutateTensor(a->mutable_t());
      else
        a->set_f(pick(2) ? 1e30f : -0.0f);
      break;
    default:
      n->mutable_attribute()->DeleteSubrange(int(pick(n->attribute_size())), 1);
    }
  }

  void mutateNode(onnx::GraphProto *g) {
    if (g->node_size() == 0)
      return;
    int i = int(pick(g->node_size()));
    auto *n = g->mutable_node(i);
    switch (pick(7)) {
    case 0:
      mutateAttribute(n);
      break;
    case 1:
      if (n->input_size())
        n->set_input(int(pick(n->input_size())), someName(*g));
      else
        n->add_input(someName(*g));
      break;
    case 2: // an output another node (or a graph input) also defines
      if (n->output_size())
        n->set_output(int(pick(n->output_size())), someName(*g));
      break;
    case 3: { // unsorted, and with a renamed input a cycle
      int j = int(pick(g->node_size()));
      g->mutable_node()->SwapElements(i, j);
      break;
    }
    case 4: {
      static const char *ops[] = {"Add",     "MatMul",  "Gemm",      "Gather",   "Reshape",
                                  "Concat",  "Slice",   "Softmax",   "ReduceSum", "Transpose",
                                  "Expand",  "Loop",    "If",        "Unsqueeze", "Squeeze",
                                  "Cast",    "Where",   "GatherND",  "TopK",     "NoSuchOp"};
      n->set_op_type(ops[pick(std::size(ops))]);
      break;
    }
    case 5:
      if (n->input_size())
        n->mutable_input()->RemoveLast();
      break;
    default:
      g->mutable_node()->DeleteSubrange(i, 1);
    }
  }

  void mutateOnce(onnx::ModelProto &model) {
    onnx::GraphProto *g = model.mutable_graph();
    switch (pick(8)) {
    case 0:
    case 1:
    case 2:
      mutateNode(g);
      break;
    case 3:
      if (g->initializer_size())
        mutateTensor(g->mutable_initializer(int(pick(g->initializer_size()))));
      break;
    case 4: { // a graph input's or output's type
      auto *list = pick(2) ? g->mutable_input() : g->mutable_output();
      if (list->empty())
        break;
      auto *v = list->Mutable(int(pick(list->size())));
      auto *tt = v->mutable_type()->mutable_tensor_type();
      if (pick(4) == 0)
        tt->set_elem_type(int32_t(pick(2) ? pick(24) : interesting()));
      else if (pick(8) == 0)
        tt->clear_shape();
      else
        mutateShape(tt->mutable_shape());
      break;
    }
    case 5: { // graph outputs: removed, duplicated, renamed
      if (g->output_size() == 0)
        break;
      if (pick(3) == 0)
        *g->add_output() = g->output(int(pick(g->output_size())));
      else if (pick(2))
        g->mutable_output(int(pick(g->output_size())))->set_name(someName(*g));
      else
        g->mutable_output()->RemoveLast();
      break;
    }
    case 6:
      if (model.opset_import_size())
        model.mutable_opset_import(0)->set_version(int64_t(pick(2) ? 1 + pick(24) : interesting()));
      break;
    default:
      if (g->input_size() && pick(2))
        g->mutable_input()->DeleteSubrange(int(pick(g->input_size())), 1);
      else
        model.set_ir_version(int64_t(pick(12)));
    }
  }

  std::mt19937_64 rng;
};

} // namespace kiln::fuzz

#endif // KILN_TEST_MODEL_MUTATOR_H
