//===- LoopIdioms.cpp - ONNX Loops that are embedding bags ----------------===//
//
// kiln has no general Loop: a Loop is imported only when its body is a known
// idiom. The body is interpreted symbolically, node by node: each value gets
// a role (the iteration number, "element i of outer X", "the window
// D[X[i]:Y[i]]", "table rows of that window", "their reduction") and any
// node that does not fit a role rejects the match.
//
//===----------------------------------------------------------------------===//

#include "LoopIdioms.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <map>

namespace kiln {
namespace {

enum class Role {
  Iter,
  CondIn,
  SequenceIn,
  True,
  Const,
  Elem,
  Window,
  WindowColumn,
  Rows,
  Bag,
  Sequence
};

struct Value {
  Role role;
  // Elem: x = the outer tensor indexed by the iteration.
  // Window/WindowColumn: data[x[i]:y[i]]. Rows: table[window]. Bag: reduced rows.
  std::string x, y, data, table, weights;
  const onnx::TensorProto *constant = nullptr;
  int mode = 0;
};

const onnx::AttributeProto *findAttr(const onnx::NodeProto &n, const std::string &name) {
  for (const auto &a : n.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

/// The int64 values of a small constant tensor.
std::optional<std::vector<int64_t>> ints(const onnx::TensorProto &t) {
  std::vector<int64_t> out;
  if (t.data_type() != onnx::TensorProto::INT64)
    return std::nullopt;
  if (t.has_raw_data()) {
    if (t.raw_data().size() % 8)
      return std::nullopt;
    out.resize(t.raw_data().size() / 8);
    std::memcpy(out.data(), t.raw_data().data(), t.raw_data().size());
  } else {
    out.assign(t.int64_data().begin(), t.int64_data().end());
  }
  return out;
}

bool isTrue(const onnx::TensorProto &t) {
  if (t.data_type() != onnx::TensorProto::BOOL)
    return false;
  if (t.has_raw_data())
    return t.raw_data().size() == 1 && t.raw_data()[0] != 0;
  return t.int32_data_size() == 1 && t.int32_data(0) != 0;
}

class Matcher {
public:
  explicit Matcher(const OuterInts &outerInts) : outerInts(outerInts) {}
  std::optional<EmbeddingBagLoop> run(const onnx::NodeProto &loop, std::string &why);

private:
  bool node(const onnx::NodeProto &n);
  const Value *get(const std::string &name) const {
    auto it = values.find(name);
    return it == values.end() ? nullptr : &it->second;
  }
  bool isOuter(const std::string &name) const {
    return !name.empty() && !values.count(name) && !produced.count(name);
  }
  /// Axes from the attribute (old opsets) or a constant second input.
  std::optional<std::vector<int64_t>> axes(const onnx::NodeProto &n, int input) const;

  /// A constant's integers, whether the body or the outer graph defines it.
  std::optional<std::vector<int64_t>> constantInts(const std::string &name) const;

  const OuterInts &outerInts;
  std::map<std::string, Value> values;
  std::map<std::string, bool> produced;
};

std::optional<std::vector<int64_t>> Matcher::constantInts(const std::string &name) const {
  if (isOuter(name))
    return outerInts(name);
  const Value *v = get(name);
  if (v && v->role == Role::Const)
    return ints(*v->constant);
  return std::nullopt;
}

std::optional<std::vector<int64_t>> Matcher::axes(const onnx::NodeProto &n, int input) const {
  if (const auto *a = findAttr(n, "axes"))
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  if (n.input_size() > input)
    return constantInts(n.input(input));
  return std::nullopt;
}

bool Matcher::node(const onnx::NodeProto &n) {
  const std::string &op = n.op_type();
  auto in = [&](int i) { return i < n.input_size() ? get(n.input(i)) : nullptr; };
  static const std::string kNone; // a missing input: neither outer nor defined
  const std::string &first = n.input_size() ? n.input(0) : kNone;
  auto define = [&](Value v) {
    values[n.output(0)] = std::move(v);
    return true;
  };
  if (n.output_size() != 1)
    return false;
  if (op == "Constant") {
    const auto *a = findAttr(n, "value");
    if (!a || !a->has_t())
      return false;
    Value v{isTrue(a->t()) ? Role::True : Role::Const};
    v.constant = &a->t();
    return define(v);
  }
  if (op == "Identity" || op == "Cast") {
    const Value *v = in(0);
    auto c = isOuter(first) ? outerInts(first) : std::nullopt;
    if ((v && (v->role == Role::CondIn || v->role == Role::True)) ||
        (c && c->size() == 1 && (*c)[0] != 0))
      return define({Role::True});
    if (v && v->role == Role::Bag && op == "Identity")
      return define(*v);
    return false;
  }
  if (op == "Gather") {
    const auto *axis = findAttr(n, "axis");
    if (axis && axis->i() != 0)
      return false;
    const Value *index = in(1);
    if (!isOuter(first) || !index)
      return false;
    if (index->role == Role::Iter)
      return define({Role::Elem, first});
    if (index->role == Role::Window) {
      Value rows = *index;
      rows.role = Role::Rows;
      rows.table = first;
      return define(rows);
    }
    return false;
  }
  if (op == "Unsqueeze") {
    const Value *v = in(0);
    auto a = axes(n, 1);
    if (!v || !a || a->size() != 1)
      return false;
    if (v->role == Role::Elem && (*a)[0] == 0)
      return define(*v); // a 1-element bound serves as well as a scalar
    if (v->role == Role::Window && ((*a)[0] == 1 || (*a)[0] == -1)) {
      Value column = *v;
      column.role = Role::WindowColumn;
      return define(column);
    }
    return false;
  }
  if (op == "Slice") {
    const Value *start = in(1), *end = in(2);
    if (!isOuter(first) || !start || !end || start->role != Role::Elem ||
        end->role != Role::Elem)
      return false;
    if (n.input_size() > 3 && !n.input(3).empty()) {
      auto a = axes(n, 3);
      if (!a || *a != std::vector<int64_t>{0})
        return false;
    }
    if (n.input_size() > 4 && !n.input(4).empty() &&
        constantInts(n.input(4)) != std::vector<int64_t>{1})
      return false;
    Value window{Role::Window, start->x, end->x, first};
    return define(window);
  }
  if (op == "Mul") {
    const Value *a = in(0), *b = in(1);
    if (a && b && b->role == Role::Rows)
      std::swap(a, b);
    if (!a || !b || a->role != Role::Rows || !a->weights.empty() || b->role != Role::WindowColumn ||
        a->x != b->x || a->y != b->y)
      return false;
    Value rows = *a;
    rows.weights = b->data;
    return define(rows);
  }
  if (op == "SequenceInsert") {
    const Value *seq = in(0), *bag = in(1);
    if (n.input_size() != 2 || !seq || seq->role != Role::SequenceIn || !bag ||
        bag->role != Role::Bag)
      return false;
    Value appended = *bag;
    appended.role = Role::Sequence;
    return define(appended);
  }
  if (op == "ReduceSum" || op == "ReduceMean" || op == "ReduceMax") {
    const Value *v = in(0);
    const auto *keep = findAttr(n, "keepdims");
    auto a = axes(n, 1);
    if (!v || v->role != Role::Rows || !keep || keep->i() != 0 || !a ||
        *a != std::vector<int64_t>{0})
      return false;
    Value bag = *v;
    bag.role = Role::Bag;
    bag.mode = op == "ReduceSum" ? 0 : op == "ReduceMean" ? 1 : 2;
    if (bag.mode != 0 && !bag.weights.empty())
      return false; // per-sample weights only make sense for sums
    return define(bag);
  }
  return false;
}

std::optional<EmbeddingBagLoop> Matcher::run(const onnx::NodeProto &loop, std::string &why) {
  const auto *body = findAttr(loop, "body");
  if (!body || !body->has_g()) {
    why = "it has no body";
    return std::nullopt;
  }
  const onnx::GraphProto &g = body->g();
  // Either no carried state and one scan output, or one carried sequence.
  bool sequence = g.input_size() == 3;
  if (g.input_size() != 2 + sequence || g.output_size() != 2 || loop.output_size() != 1 ||
      loop.input_size() != 2 + sequence) {
    why = "it carries state between iterations (only stacked per-iteration results are an idiom)";
    return std::nullopt;
  }
  values[g.input(0).name()] = {Role::Iter};
  values[g.input(1).name()] = {Role::CondIn};
  if (sequence)
    values[g.input(2).name()] = {Role::SequenceIn};
  for (const auto &n : g.node())
    for (const auto &o : n.output())
      produced[o] = true;
  for (int i = 0; i < g.node_size(); ++i)
    if (!node(g.node(i))) {
      why = "its body node #" + std::to_string(i) + " (" + g.node(i).op_type() +
            ") is not part of an embedding bag";
      return std::nullopt;
    }
  const Value *cond = get(g.output(0).name()), *bag = get(g.output(1).name());
  if (!cond || (cond->role != Role::True && cond->role != Role::CondIn)) {
    why = "its condition is not constantly true";
    return std::nullopt;
  }
  if (!bag || bag->role != (sequence ? Role::Sequence : Role::Bag)) {
    why = "its per-iteration result is not a reduction of table rows";
    return std::nullopt;
  }
  return EmbeddingBagLoop{bag->table, bag->data, bag->x, bag->y, bag->weights, bag->mode, sequence};
}

} // namespace

std::optional<EmbeddingBagLoop>
matchEmbeddingBagLoop(const onnx::NodeProto &loop, const OuterInts &outerInts, std::string &why) {
  return Matcher(outerInts).run(loop, why);
}

} // namespace kiln
