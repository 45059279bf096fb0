#include "engine/tokenizer/jinja_eval.h"

#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/util/status_macros.h"

namespace kvasir::jinja {
namespace {

using EK = Expr::Kind;
using SK = Stmt::Kind;

absl::Status WithLine(const absl::Status& s, int line) {
  if (s.ok() || absl::StartsWith(s.message(), "chat template line ")) return s;
  return absl::Status(s.code(), absl::StrCat("chat template line ", line, ": ", s.message()));
}

absl::Status TypeError(std::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

absl::Status OperandError(std::string_view op, const Value& a, const Value& b) {
  for (const Value* v : {&a, &b}) {
    if (v->is_undefined()) return TypeError(v->as_undefined().reason);
  }
  return TypeError(absl::StrCat("unsupported operand type(s) for ", std::string(op), ": '",
                                a.TypeName(), "' and '", b.TypeName(), "'"));
}

// Python's arithmetic on int (int64, overflow is an error), float and bool.
absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (!a.is_number() || !b.is_number()) return OperandError(op, a, b);
  const bool floats = a.is_float() || b.is_float();
  const double x = a.as_float(), y = b.as_float();
  if (op == "/") {
    if (y == 0) return TypeError("division by zero");
    return Value(x / y);
  }
  if (op == "**" && (floats || b.as_int() < 0)) return Value(std::pow(x, y));
  if (floats) {
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (y == 0) return TypeError("float division by zero");
    const double m = std::fmod(x, y);
    const double mod = (m != 0 && ((m < 0) != (y < 0))) ? m + y : m;
    if (op == "%") return Value(mod);
    const double div = (x - mod) / y;  // CPython's float floor division
    double floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
    return Value(floordiv);
  }
  const int64_t i = a.as_int(), j = b.as_int();
  int64_t r = 0;
  bool overflow = false;
  if (op == "+") {
    overflow = __builtin_add_overflow(i, j, &r);
  } else if (op == "-") {
    overflow = __builtin_sub_overflow(i, j, &r);
  } else if (op == "*") {
    overflow = __builtin_mul_overflow(i, j, &r);
  } else if (op == "**") {
    r = 1;
    for (int64_t k = 0; k < j && !overflow; ++k) overflow = __builtin_mul_overflow(r, i, &r);
  } else {
    if (j == 0) return TypeError("integer division or modulo by zero");
    if (i == INT64_MIN && j == -1) return TypeError("integer overflow");
    int64_t q = i / j, m = i % j;
    if (m != 0 && ((m < 0) != (j < 0))) --q, m += j;  // Python floors
    r = op == "//" ? q : m;
  }
  if (overflow) return TypeError(absl::StrCat("integer overflow in ", i, " ", op, " ", j));
  return Value(r);
}

absl::StatusOr<Value> Repeat(const Value& seq, int64_t n, size_t max_bytes) {
  n = std::max<int64_t>(n, 0);
  const size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size();
  if (unit != 0 && static_cast<uint64_t>(n) > max_bytes / unit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("repetition result exceeds the output limit of ", max_bytes, " bytes"));
  }
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.as_string();
    return Value(std::move(out));
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
  return Value(std::move(out));
}

absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& a, const Value& b,
                               size_t max_bytes) {
  if (op == "~") {
    std::string s = a.Str() + b.Str();
    if (s.size() > max_bytes)
      return absl::ResourceExhaustedError("string exceeds the output limit");
    return Value(std::move(s));
  }
  if (op == "+" && a.is_string() && b.is_string()) {
    if (a.as_string().size() + b.as_string().size() > max_bytes) {
      return absl::ResourceExhaustedError("string exceeds the output limit");
    }
    return Value(a.as_string() + b.as_string());
  }
  if (op == "+" && a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    if (a.as_list().size() + b.as_list().size() > max_bytes) {
      return absl::ResourceExhaustedError("list exceeds the output limit");
    }
    List out = a.as_list();
    out.insert(out.end(), b.as_list().begin(), b.as_list().end());
    return a.is_tuple() ? Value::Tuple(std::move(out)) : Value(std::move(out));
  }
  if (op == "*" && (a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) {
    return Repeat(a, b.as_int(), max_bytes);
  }
  if (op == "*" && (b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) {
    return Repeat(b, a.as_int(), max_bytes);
  }
  if (op == "%" && a.is_string()) {
    return TypeError("printf-style string formatting ('%' on a str) is not supported");
  }
  return Arithmetic(op, a, b);
}

struct Frame {
  Frame* parent = nullptr;
  Dict vars;

  const Value* Lookup(const std::string& name) const {
    for (const Frame* f = this; f != nullptr; f = f->parent) {
      for (const auto& [k, v] : f->vars) {
        if (k == name) return &v;
      }
    }
    return nullptr;
  }
  void Set(const std::string& name, Value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, Frame* root) : limits_(limits), root_(root) {}

  absl::StatusOr<Flow> Exec(const Body& body, Frame& frame, std::string* out) {
    for (const auto& stmt : body) {
      KV_ASSIGN_OR_RETURN(Flow flow, ExecStmt(*stmt, frame, out));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(int* d) : depth(d) { ++*depth; }
    ~DepthGuard() { --*depth; }
    int* depth;
  };
  absl::Status CheckDepth() const {
    if (depth_ <= limits_.max_recursion) return absl::OkStatus();
    return absl::ResourceExhaustedError(
        absl::StrCat("recursion deeper than ", limits_.max_recursion));
  }

  absl::Status Append(std::string* out, std::string_view s) const {
    if (out->size() + s.size() > limits_.max_output_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("output exceeds ", limits_.max_output_bytes, " bytes"));
    }
    out->append(s);
    return absl::OkStatus();
  }

  absl::StatusOr<Flow> ExecStmt(const Stmt& s, Frame& frame, std::string* out) {
    DepthGuard guard(&depth_);
    KV_RETURN_IF_ERROR(WithLine(CheckDepth(), s.line));
    absl::StatusOr<Flow> flow = ExecStmtImpl(s, frame, out);
    if (!flow.ok()) return WithLine(flow.status(), s.line);
    return flow;
  }

  absl::StatusOr<Flow> ExecStmtImpl(const Stmt& s, Frame& frame, std::string* out) {
    switch (s.kind) {
      case SK::kText:
        KV_RETURN_IF_ERROR(Append(out, s.text));
        return Flow::kNormal;
      case SK::kOutput: {
        KV_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
        KV_RETURN_IF_ERROR(Append(out, v.Str()));
        return Flow::kNormal;
      }
      case SK::kIf:
        for (size_t i = 0; i < s.conds.size(); ++i) {
          KV_ASSIGN_OR_RETURN(Value c, Eval(*s.conds[i], frame));
          if (c.Truthy()) return Exec(s.bodies[i], frame, out);
        }
        return Exec(s.else_body, frame, out);
      case SK::kFor:
        return ExecFor(s, frame, out);
      case SK::kSet: {
        KV_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
        KV_RETURN_IF_ERROR(Assign(s, std::move(v), frame));
        return Flow::kNormal;
      }
      case SK::kSetBlock: {
        std::string text;
        KV_RETURN_IF_ERROR(Exec(s.body, frame, &text).status());
        frame.Set(s.targets[0], Value(std::move(text)));
        return Flow::kNormal;
      }
      case SK::kMacro:
        frame.Set(s.name, MakeMacro(s));
        return Flow::kNormal;
      case SK::kBreak:
        return Flow::kBreak;
      case SK::kContinue:
        return Flow::kContinue;
      case SK::kScope:
        return Exec(s.body, frame, out);
    }
    return Flow::kNormal;
  }

  // Binds `targets` to `v` (unpacking a sequence into several names).
  absl::Status Bind(const std::vector<std::string>& targets, const Value& v, Frame& frame) const {
    if (targets.size() == 1) {
      frame.Set(targets[0], v);
      return absl::OkStatus();
    }
    KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    if (items.size() != targets.size()) {
      return TypeError(
          absl::StrCat("cannot unpack ", items.size(), " values into ", targets.size(), " names"));
    }
    for (size_t i = 0; i < items.size(); ++i) frame.Set(targets[i], items[i]);
    return absl::OkStatus();
  }

  absl::Status Assign(const Stmt& s, Value v, Frame& frame) const {
    if (s.attr.empty()) return Bind(s.targets, v, frame);
    const Value* ns = frame.Lookup(s.targets[0]);
    if (ns == nullptr || !ns->is_namespace()) {
      return TypeError(
          absl::StrCat("cannot assign attribute on non-namespace object '", s.targets[0], "'"));
    }
    if (!s.attr.empty() && s.attr[0] == '_') {
      return TypeError(
          absl::StrCat("namespace attribute '", s.attr, "' starts with an underscore"));
    }
    Dict& attrs = ns->as_namespace().attrs;
    for (auto& [k, old] : attrs) {
      if (k == s.attr) {
        old = std::move(v);
        return absl::OkStatus();
      }
    }
    attrs.emplace_back(s.attr, std::move(v));
    return absl::OkStatus();
  }

  absl::Status CountIteration() {
    if (++iterations_ <= limits_.max_loop_iterations) return absl::OkStatus();
    return absl::ResourceExhaustedError(
        absl::StrCat("more than ", limits_.max_loop_iterations, " loop iterations"));
  }

  static Value LoopValue(const std::vector<Value>& items, size_t i) {
    const int64_t n = static_cast<int64_t>(items.size());
    const int64_t k = static_cast<int64_t>(i);
    Dict loop = {{"index", Value(k + 1)},    {"index0", Value(k)},
                 {"revindex", Value(n - k)}, {"revindex0", Value(n - k - 1)},
                 {"first", Value(k == 0)},   {"last", Value(k == n - 1)},
                 {"length", Value(n)},       {"depth", Value(1)},
                 {"depth0", Value(0)}};
    if (i > 0) loop.emplace_back("previtem", items[i - 1]);
    if (i + 1 < items.size()) loop.emplace_back("nextitem", items[i + 1]);
    loop.emplace_back("cycle",
                      Value(Callable{"loop.cycle", [k](CallArgs& args) -> absl::StatusOr<Value> {
                                       if (args.positional.empty())
                                         return TypeError("no items for cycling given");
                                       return args.positional[k % args.positional.size()];
                                     }}));
    return Value(std::move(loop));
  }

  absl::StatusOr<Flow> ExecFor(const Stmt& s, Frame& frame, std::string* out) {
    KV_ASSIGN_OR_RETURN(Value seq, Eval(*s.expr, frame));
    KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
    if (s.cond != nullptr) {
      std::vector<Value> kept;
      for (Value& item : items) {
        KV_RETURN_IF_ERROR(CountIteration());
        Frame f{&frame, {}};
        KV_RETURN_IF_ERROR(Bind(s.targets, item, f));
        KV_ASSIGN_OR_RETURN(Value keep, Eval(*s.cond, f));
        if (keep.Truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return Exec(s.else_body, frame, out);
    for (size_t i = 0; i < items.size(); ++i) {
      KV_RETURN_IF_ERROR(CountIteration());
      Frame f{&frame, {}};
      KV_RETURN_IF_ERROR(Bind(s.targets, items[i], f));
      f.Set("loop", LoopValue(items, i));
      KV_ASSIGN_OR_RETURN(Flow flow, Exec(s.body, f, out));
      if (flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value MakeMacro(const Stmt& s) {
    const Stmt* macro = &s;
    return Value(
        Callable{"macro " + s.name, [this, macro](CallArgs& args) -> absl::StatusOr<Value> {
                   return CallMacro(*macro, args);
                 }});
  }

  absl::StatusOr<Value> CallMacro(const Stmt& m, const CallArgs& args) {
    if (args.positional.size() > m.params.size()) {
      return TypeError(absl::StrCat("macro '", m.name, "' takes not more than ", m.params.size(),
                                    " argument(s)"));
    }
    Frame f{root_, {}};
    for (size_t i = 0; i < m.params.size(); ++i) {
      const std::string& name = m.params[i].first;
      const Value* given = i < args.positional.size() ? &args.positional[i] : nullptr;
      for (const auto& [k, v] : args.named) {
        if (k == name) given = &v;
      }
      if (given != nullptr) {
        f.Set(name, *given);
      } else if (m.params[i].second != nullptr) {
        KV_ASSIGN_OR_RETURN(Value d, Eval(*m.params[i].second, f));
        f.Set(name, std::move(d));
      } else {
        f.Set(name, Value(Undefined{absl::StrCat("'", name, "' is undefined")}));
      }
    }
    for (const auto& [k, v] : args.named) {
      bool known = false;
      for (const auto& p : m.params) known = known || p.first == k;
      if (!known)
        return TypeError(absl::StrCat("macro '", m.name, "' takes no keyword argument '", k, "'"));
    }
    std::string text;
    KV_RETURN_IF_ERROR(Exec(m.body, f, &text).status());
    return Value(std::move(text));
  }

  absl::StatusOr<Value> Eval(const Expr& e, Frame& frame) {
    DepthGuard guard(&depth_);
    KV_RETURN_IF_ERROR(WithLine(CheckDepth(), e.line));
    absl::StatusOr<Value> v = EvalImpl(e, frame);
    if (!v.ok()) return WithLine(v.status(), e.line);
    return v;
  }

  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first, Frame& frame) {
    CallArgs args;
    for (size_t i = first; i < e.args.size(); ++i) {
      KV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i], frame));
      args.positional.push_back(std::move(v));
    }
    for (const auto& [k, x] : e.kwargs) {
      KV_ASSIGN_OR_RETURN(Value v, Eval(*x, frame));
      args.named.emplace_back(k, std::move(v));
    }
    return args;
  }

  absl::StatusOr<Value> EvalImpl(const Expr& e, Frame& frame) {
    switch (e.kind) {
      case EK::kLiteral:
        return e.literal;
      case EK::kName: {
        const Value* v = frame.Lookup(e.name);
        if (v != nullptr) return *v;
        return Value(Undefined{absl::StrCat("'", e.name, "' is undefined")});
      }
      case EK::kList:
      case EK::kTuple: {
        KV_ASSIGN_OR_RETURN(CallArgs items, EvalArgs(e, 0, frame));
        return e.kind == EK::kTuple ? Value::Tuple(std::move(items.positional))
                                    : Value(List(std::move(items.positional)));
      }
      case EK::kDict:
        return EvalDict(e, frame);
      case EK::kAttr: {
        KV_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
        return GetAttr(obj, e.name);
      }
      case EK::kItem:
        return EvalItem(e, frame);
      case EK::kSlice:
        return TypeError("a slice is only valid inside []");
      case EK::kCall:
        return EvalCall(e, frame);
      case EK::kFilter: {
        KV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
        KV_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
        return ApplyFilter(e.name, v, args, limits_.max_output_bytes);
      }
      case EK::kTest: {
        KV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
        KV_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
        KV_ASSIGN_OR_RETURN(bool r, ApplyTest(e.name, v, args));
        return Value(r != e.negated);
      }
      case EK::kUnary:
        return EvalUnary(e, frame);
      case EK::kBinary:
        return EvalBinary(e, frame);
      case EK::kCompare:
        return EvalCompare(e, frame);
      case EK::kCond: {
        KV_ASSIGN_OR_RETURN(Value c, Eval(*e.args[1], frame));
        if (c.Truthy()) return Eval(*e.args[0], frame);
        if (e.args[2] != nullptr) return Eval(*e.args[2], frame);
        return Value(Undefined{"the inline if expression evaluated to false and has no else"});
      }
    }
    return TypeError("unknown expression");
  }

  absl::StatusOr<Value> EvalDict(const Expr& e, Frame& frame) {
    Dict d;
    for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
      KV_ASSIGN_OR_RETURN(Value k, Eval(*e.args[i], frame));
      if (!k.is_string()) return TypeError("dict keys must be strings in chat templates");
      KV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i + 1], frame));
      bool replaced = false;
      for (auto& kv : d) {
        if (kv.first == k.as_string()) kv.second = v, replaced = true;
      }
      if (!replaced) d.emplace_back(k.as_string(), std::move(v));
    }
    return Value(std::move(d));
  }

  absl::StatusOr<Value> EvalItem(const Expr& e, Frame& frame) {
    KV_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
    const Expr& index = *e.args[1];
    if (index.kind != EK::kSlice) {
      KV_ASSIGN_OR_RETURN(Value key, Eval(index, frame));
      return GetItem(obj, key);
    }
    Value bounds[3];
    for (int i = 0; i < 3; ++i) {
      if (index.args[i] != nullptr) {
        KV_ASSIGN_OR_RETURN(bounds[i], Eval(*index.args[i], frame));
      }
    }
    return GetSlice(obj, bounds[0], bounds[1], bounds[2]);
  }

  absl::StatusOr<Value> EvalCall(const Expr& e, Frame& frame) {
    KV_ASSIGN_OR_RETURN(Value fn, Eval(*e.args[0], frame));
    KV_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
    if (fn.is_undefined()) return TypeError(fn.as_undefined().reason);
    if (!fn.is_callable()) {
      return TypeError(absl::StrCat("'", fn.TypeName(), "' object is not callable"));
    }
    return fn.as_callable().fn(args);
  }

  absl::StatusOr<Value> EvalUnary(const Expr& e, Frame& frame) {
    KV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
    if (e.name == "not") return Value(!v.Truthy());
    if (v.is_undefined()) return TypeError(v.as_undefined().reason);
    if (!v.is_number()) {
      return TypeError(
          absl::StrCat("bad operand type for unary ", e.name, ": '", v.TypeName(), "'"));
    }
    if (e.name == "+") return v.is_float() ? v : Value(v.as_int());
    if (v.is_float()) return Value(-v.as_float());
    if (v.as_int() == INT64_MIN) return TypeError("integer overflow");
    return Value(-v.as_int());
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e, Frame& frame) {
    KV_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0], frame));
    if (e.name == "and" && !a.Truthy()) return a;
    if (e.name == "or" && a.Truthy()) return a;
    KV_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1], frame));
    if (e.name == "and" || e.name == "or") return b;
    return BinaryOp(e.name, a, b, limits_.max_output_bytes);
  }

  absl::StatusOr<Value> EvalCompare(const Expr& e, Frame& frame) {
    KV_ASSIGN_OR_RETURN(Value left, Eval(*e.args[0], frame));
    for (size_t i = 0; i < e.ops.size(); ++i) {
      KV_ASSIGN_OR_RETURN(Value right, Eval(*e.args[i + 1], frame));
      const std::string& op = e.ops[i];
      bool r = false;
      if (op == "==" || op == "!=") {
        r = Equal(left, right) == (op == "==");
      } else if (op == "in" || op == "notin") {
        KV_ASSIGN_OR_RETURN(bool in, Contains(right, left));
        r = in == (op == "in");
      } else {
        for (const Value* v : {&left, &right}) {
          if (v->is_undefined()) return TypeError(v->as_undefined().reason);
        }
        const bool swap = op == ">" || op == "<=";
        KV_ASSIGN_OR_RETURN(bool less, swap ? Less(right, left) : Less(left, right));
        r = (op == "<" || op == ">") ? less : !less;
      }
      if (!r) return Value(false);
      left = std::move(right);
    }
    return Value(true);
  }

  const RenderLimits& limits_;
  Frame* root_;
  int depth_ = 0;
  int64_t iterations_ = 0;
};

// jinja2 rejects an unknown filter or test when it compiles the template, except inside an if
// statement or an inline if ("soft" frames), where the error waits until it is evaluated; a for
// loop body, macro or block set starts a new, non-soft frame.
absl::Status CheckExprNames(const Expr* e, bool soft) {
  if (e == nullptr) return absl::OkStatus();
  if (!soft && e->kind == EK::kFilter && !IsKnownFilter(e->name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template line ", e->line, ": no filter named '", e->name, "'"));
  }
  if (!soft && e->kind == EK::kTest && !IsKnownTest(e->name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template line ", e->line, ": no test named '", e->name, "'"));
  }
  soft = soft || e->kind == EK::kCond;
  for (const auto& a : e->args) KV_RETURN_IF_ERROR(CheckExprNames(a.get(), soft));
  for (const auto& [k, a] : e->kwargs) KV_RETURN_IF_ERROR(CheckExprNames(a.get(), soft));
  return absl::OkStatus();
}

absl::Status CheckBodyNames(const Body& body, bool soft) {
  for (const auto& s : body) {
    if (s->kind == SK::kIf) {
      for (const auto& c : s->conds) KV_RETURN_IF_ERROR(CheckExprNames(c.get(), true));
      for (const Body& b : s->bodies) KV_RETURN_IF_ERROR(CheckBodyNames(b, true));
      KV_RETURN_IF_ERROR(CheckBodyNames(s->else_body, true));
      continue;
    }
    KV_RETURN_IF_ERROR(CheckExprNames(s->expr.get(), soft));
    KV_RETURN_IF_ERROR(CheckExprNames(s->cond.get(), false));
    for (const auto& [k, d] : s->params) KV_RETURN_IF_ERROR(CheckExprNames(d.get(), false));
    KV_RETURN_IF_ERROR(CheckBodyNames(s->body, false));
    KV_RETURN_IF_ERROR(CheckBodyNames(s->else_body, false));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckNames(const Template& t) { return CheckBodyNames(t.body, false); }

absl::StatusOr<std::string> Render(const Template& t, const Dict& context,
                                   const RenderLimits& limits) {
  Frame globals{nullptr, Globals()};
  Frame root{&globals, context};
  Interpreter interpreter(limits, &root);
  std::string out;
  KV_RETURN_IF_ERROR(interpreter.Exec(t.body, root, &out).status());
  return out;
}

}  // namespace kvasir::jinja
