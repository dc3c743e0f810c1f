//===- LoopIdioms.cpp - ONNX Loops that are embedding bags ----------------===//
//
// kiln has no general Loop: a Loop is imported only when its body is a known
// idiom. The body is interpreted symbolically, node by node: each value gets
// a role (the iteration number, "element i of outer X", "the window
// D[X[i]:Y[i]]", "table rows of that window", "their reduction") and any
// node that does not fit a role rejects the match. The dynamo exporter's
// while form adds a carried counter ("the counter plus k", "element i + k of
// outer X"), its loop condition, and an If that gives an empty bag zeros.
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
  Ints,
  Counter,
  LoopCond,
  EmptyTest,
  Elem,
  Window,
  WindowColumn,
  Rows,
  Bag,
  Sequence
};

struct Value {
  Role role;
  // Elem: x = the outer tensor indexed by the iteration (plus `shift`).
  // Window/WindowColumn: data[x[i + shift]:y[i + endShift]]. Rows:
  // table[window]. Bag: reduced rows (of `data` itself when table is empty).
  // Counter: the carried counter plus `shift`. LoopCond: counter + shift < x.
  // EmptyTest: x[i + shift] == y[i + endShift].
  std::string x, y, data, table, weights;
  const onnx::TensorProto *constant = nullptr;
  std::vector<int64_t> ints; // Ints
  int64_t shift = 0, endShift = 0;
  int mode = 0;
  bool keepdims = false;
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

/// Whether a float tensor holds only zeros (+0 or -0).
bool isZeros(const onnx::TensorProto &t) {
  if (t.data_type() != onnx::TensorProto::FLOAT && t.data_type() != onnx::TensorProto::FLOAT16 &&
      t.data_type() != onnx::TensorProto::BFLOAT16 && t.data_type() != onnx::TensorProto::DOUBLE)
    return false;
  if (t.has_raw_data()) {
    // Only the sign bit of each element may be set; the widest sign bit is
    // the top bit of the last byte of each element (little endian).
    size_t width = t.data_type() == onnx::TensorProto::FLOAT    ? 4
                   : t.data_type() == onnx::TensorProto::DOUBLE ? 8
                                                                : 2;
    const std::string &raw = t.raw_data();
    for (size_t i = 0; i < raw.size(); ++i)
      if ((static_cast<unsigned char>(raw[i]) & (i % width == width - 1 ? 0x7f : 0xff)) != 0)
        return false;
    return true;
  }
  for (float v : t.float_data())
    if (v != 0)
      return false;
  for (double v : t.double_data())
    if (v != 0)
      return false;
  for (int32_t v : t.int32_data()) // fp16/bf16 bit patterns
    if ((v & 0x7fff) != 0)
      return false;
  return true;
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
  Matcher(const OuterInts &outerInts, const OuterZeros &outerZeros)
      : outerInts(outerInts), outerZeros(outerZeros) {}
  std::optional<EmbeddingBagLoop> run(const onnx::NodeProto &loop, std::string &why);

private:
  bool node(const onnx::NodeProto &n);
  /// An If on an empty-bag test: zeros for an empty bag, else the bag.
  bool emptyBagIf(const onnx::NodeProto &n, const Value &test);
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
  const OuterZeros &outerZeros;
  std::map<std::string, Value> values;
  std::map<std::string, bool> produced;
};

std::optional<std::vector<int64_t>> Matcher::constantInts(const std::string &name) const {
  if (isOuter(name))
    return outerInts(name);
  const Value *v = get(name);
  if (v && v->role == Role::Const)
    return ints(*v->constant);
  if (v && v->role == Role::Ints)
    return v->ints;
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
  if (op == "CastLike" || op == "Reshape") {
    // An integer constant cast like the counter, or the counter made 1-D.
    const Value *v = in(0);
    if (v && v->role == Role::Counter &&
        (op == "CastLike" || (constantInts(n.input(1)) == std::vector<int64_t>{-1} ||
                              constantInts(n.input(1)) == std::vector<int64_t>{1})))
      return define(*v);
    auto c = op == "CastLike" ? constantInts(first) : std::nullopt;
    if (!c)
      return false;
    Value v2{Role::Ints};
    v2.ints = *c;
    return define(v2);
  }
  if (op == "Add") {
    const Value *a = in(0);
    auto c = n.input_size() == 2 ? constantInts(n.input(1)) : std::nullopt;
    if (!a || a->role != Role::Counter) {
      a = in(1);
      c = constantInts(first);
    }
    if (!a || a->role != Role::Counter || !c || c->size() != 1)
      return false;
    Value v = *a;
    v.shift += (*c)[0];
    return define(v);
  }
  if (op == "Less") {
    const Value *a = in(0);
    if (!a || a->role != Role::Counter || a->shift != 1 || n.input_size() != 2 ||
        !isOuter(n.input(1)))
      return false;
    Value v{Role::LoopCond, n.input(1)};
    v.shift = a->shift;
    return define(v);
  }
  if (op == "Equal") {
    const Value *a = in(0), *b = in(1);
    if (!a || !b || a->role != Role::Elem || b->role != Role::Elem)
      return false;
    Value v{Role::EmptyTest, a->x, b->x};
    v.shift = a->shift;
    v.endShift = b->shift;
    return define(v);
  }
  if (op == "If") {
    const Value *test = in(0);
    return test && test->role == Role::EmptyTest && emptyBagIf(n, *test);
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
    if (index->role == Role::Counter) {
      Value elem{Role::Elem, first};
      elem.shift = index->shift;
      return define(elem);
    }
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
    if (!isOuter(first) || !start || !end)
      return false;
    bool element = start->role == Role::Counter && end->role == Role::Counter &&
                   end->shift == start->shift + 1; // x[i + k : i + k + 1]
    if (!element && (start->role != Role::Elem || end->role != Role::Elem))
      return false;
    if (n.input_size() > 3 && !n.input(3).empty()) {
      auto a = axes(n, 3);
      if (!a || *a != std::vector<int64_t>{0})
        return false;
    }
    if (n.input_size() > 4 && !n.input(4).empty() &&
        constantInts(n.input(4)) != std::vector<int64_t>{1})
      return false;
    if (element) {
      Value elem{Role::Elem, first};
      elem.shift = start->shift;
      return define(elem);
    }
    Value window{Role::Window, start->x, end->x, first};
    window.shift = start->shift;
    window.endShift = end->shift;
    return define(window);
  }
  if (op == "Mul") {
    const Value *a = in(0), *b = in(1);
    if (a && b && b->role == Role::Rows)
      std::swap(a, b);
    if (!a || !b || a->role != Role::Rows || !a->weights.empty() || b->role != Role::WindowColumn ||
        a->x != b->x || a->y != b->y || a->shift != b->shift || a->endShift != b->endShift)
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
    // Table rows of a window, or a window of rows gathered before the loop.
    if (!v || (v->role != Role::Rows && v->role != Role::Window) || !a ||
        *a != std::vector<int64_t>{0})
      return false;
    Value bag = *v;
    bag.role = Role::Bag;
    bag.keepdims = !keep || keep->i() != 0;
    bag.mode = op == "ReduceSum" ? 0 : op == "ReduceMean" ? 1 : 2;
    if (bag.mode != 0 && !bag.weights.empty())
      return false; // per-sample weights only make sense for sums
    return define(bag);
  }
  return false;
}

bool Matcher::emptyBagIf(const onnx::NodeProto &n, const Value &test) {
  const onnx::GraphProto *then = nullptr, *otherwise = nullptr;
  for (const auto &a : n.attribute())
    (a.name() == "then_branch" ? then : otherwise) = a.has_g() ? &a.g() : nullptr;
  if (!then || !otherwise || then->output_size() != 1 || otherwise->output_size() != 1)
    return false;
  // The empty bag: a constant of zeros, made in the branch or outside.
  const std::string &zero = then->output(0).name();
  const onnx::TensorProto *own = nullptr; // the branch's initializer shadows outer values
  for (const auto &t : then->initializer())
    if (t.name() == zero)
      own = &t;
  bool zeros = false;
  if (then->node_size() == 0)
    zeros = own ? isZeros(*own) : isOuter(zero) && outerZeros(zero);
  if (then->node_size() == 1 && then->node(0).op_type() == "Constant" &&
      then->node(0).output(0) == zero) {
    const auto *a = findAttr(then->node(0), "value");
    zeros = a && a->has_t() && isZeros(a->t());
  }
  if (!zeros)
    return false;
  for (const auto &bn : otherwise->node()) {
    for (const auto &o : bn.output())
      produced[o] = true;
    if (!node(bn))
      return false;
  }
  const Value *bag = get(otherwise->output(0).name());
  if (!bag || bag->role != Role::Bag || bag->x != test.x || bag->y != test.y ||
      bag->shift != test.shift || bag->endShift != test.endShift)
    return false;
  values[n.output(0)] = *bag;
  return true;
}

std::optional<EmbeddingBagLoop> Matcher::run(const onnx::NodeProto &loop, std::string &why) {
  const auto *body = findAttr(loop, "body");
  if (!body || !body->has_g()) {
    why = "it has no body";
    return std::nullopt;
  }
  const onnx::GraphProto &g = body->g();
  // No carried state and one scan output; or one carried sequence; or the
  // while form: a carried sequence and a carried counter, in either order.
  int carried = g.input_size() - 2, sequenceAt = -1, counterAt = -1;
  // The sequence is what SequenceInsert appends to (exporters may leave the
  // carried values' types empty); any other carried value is the counter.
  auto appendedTo = [&](const std::string &name) {
    for (const auto &n : g.node())
      if (n.op_type() == "SequenceInsert" && n.input_size() && n.input(0) == name)
        return true;
    return false;
  };
  for (int k = 0; k < carried; ++k)
    (g.input(2 + k).type().has_sequence_type() || appendedTo(g.input(2 + k).name()) ? sequenceAt
                                                                                    : counterAt) =
        k;
  bool known = carried == 0 || (carried == 1 && counterAt < 0) ||
               (carried == 2 && sequenceAt >= 0 && counterAt >= 0);
  if (!known || g.output_size() != 2 + (carried == 2) ||
      loop.output_size() != std::max(carried, 1) || loop.input_size() != 2 + carried) {
    why = "it carries state between iterations other than a sequence of bags and a counter";
    return std::nullopt;
  }
  bool sequence = sequenceAt >= 0;
  values[g.input(0).name()] = {Role::Iter};
  values[g.input(1).name()] = {Role::CondIn};
  if (sequence)
    values[g.input(2 + sequenceAt).name()] = {Role::SequenceIn};
  if (counterAt >= 0)
    values[g.input(2 + counterAt).name()] = {Role::Counter};
  for (const auto &n : g.node())
    for (const auto &o : n.output())
      produced[o] = true;
  for (const auto &n : g.node())
    if (n.op_type() == "Loop") {
      why = "its body holds a nested Loop: the dynamo exporter writes nn.EmbeddingBag with "
            "padding_idx this way, filtering each bag id by id; kiln would need that filter "
            "raised to an embedding bag that skips padding_idx (export without padding_idx, or "
            "with the TorchScript exporter, which refuses padding_idx itself)";
      return std::nullopt;
    }
  for (int i = 0; i < g.node_size(); ++i)
    if (!node(g.node(i))) {
      why = "its body node #" + std::to_string(i) + " (" + g.node(i).op_type() +
            ") is not part of an embedding bag";
      return std::nullopt;
    }
  const Value *cond = get(g.output(0).name());
  const Value *bag = get(g.output(1 + (sequence ? sequenceAt : 0)).name());
  EmbeddingBagLoop out;
  if (counterAt >= 0) {
    const Value *next = get(g.output(1 + counterAt).name());
    if (!cond || cond->role != Role::LoopCond || !next || next->role != Role::Counter ||
        next->shift != 1) {
      why = "it is a while loop whose condition is not its counter plus one below a limit";
      return std::nullopt;
    }
    out.counter = counterAt;
    out.counterStart = loop.input(2 + counterAt);
    out.count = cond->x;
  } else if (!cond || (cond->role != Role::True && cond->role != Role::CondIn)) {
    why = "its condition is not constantly true";
    return std::nullopt;
  }
  if (!bag || bag->role != (sequence ? Role::Sequence : Role::Bag) ||
      (bag->keepdims && !sequence)) {
    why = "its per-iteration result is not a reduction of table rows";
    return std::nullopt;
  }
  if (bag->table.empty())
    out.rows = bag->data;
  else
    out.table = bag->table, out.indices = bag->data;
  out.begin = bag->x;
  out.end = bag->y;
  out.beginShift = bag->shift;
  out.endShift = bag->endShift;
  out.weights = bag->weights;
  out.mode = bag->mode;
  out.sequence = sequence;
  out.keepdims = bag->keepdims;
  return out;
}

} // namespace

std::optional<EmbeddingBagLoop> matchEmbeddingBagLoop(const onnx::NodeProto &loop,
                                                      const OuterInts &outerInts,
                                                      const OuterZeros &outerZeros,
                                                      std::string &why) {
  return Matcher(outerInts, outerZeros).run(loop, why);
}

} // namespace kiln
