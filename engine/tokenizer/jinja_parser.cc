#include "engine/tokenizer/jinja_parser.h"

#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_lexer.h"
#include "engine/util/status_macros.h"

namespace kvasir::jinja {
namespace {

using Kind = Expr::Kind;

ExprPtr MakeExpr(Kind kind, int line, std::string name = "") {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  e->name = std::move(name);
  return e;
}

std::string Describe(const Token& t) {
  switch (t.type) {
    case TokenType::kData:
      return "template text";
    case TokenType::kVarBegin:
      return "'{{'";
    case TokenType::kVarEnd:
      return "end of print statement '}}'";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "end of statement block '%}'";
    case TokenType::kName:
    case TokenType::kOp:
      return absl::StrCat("'", t.text, "'");
    case TokenType::kString:
      return "string literal";
    case TokenType::kInt:
    case TokenType::kFloat:
      return "number";
    case TokenType::kEof:
      return "end of template";
  }
  return "token";
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, int max_depth)
      : tokens_(std::move(tokens)), max_depth_(max_depth) {}

  absl::StatusOr<std::unique_ptr<Template>> Run() {
    auto t = std::make_unique<Template>();
    std::string end;
    KV_ASSIGN_OR_RETURN(t->body, ParseBody({}, &end));
    return t;
  }

 private:
  // Counts nesting (statements and sub-expressions) against max_depth_.
  struct DepthGuard {
    explicit DepthGuard(int* d) : depth(d) { ++*depth; }
    ~DepthGuard() { --*depth; }
    int* depth;
  };

  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  void Next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const { return Cur().type == TokenType::kOp && Cur().text == op; }
  bool IsName(std::string_view n) const {
    return Cur().type == TokenType::kName && Cur().text == n;
  }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template line ", Cur().line, ": ", std::string(what)));
  }
  absl::Status Unexpected(std::string_view expected) const {
    return Error(absl::StrCat("expected ", std::string(expected), ", got ", Describe(Cur())));
  }
  absl::Status CheckDepth() const {
    if (depth_ > max_depth_) return Error(absl::StrCat("nesting deeper than ", max_depth_));
    return absl::OkStatus();
  }
  absl::Status ExpectOp(std::string_view op) {
    if (!IsOp(op)) return Unexpected(absl::StrCat("'", std::string(op), "'"));
    Next();
    return absl::OkStatus();
  }
  absl::Status Expect(TokenType type, std::string_view what) {
    if (Cur().type != type) return Unexpected(what);
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() { return Expect(TokenType::kBlockEnd, "'%}'"); }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != TokenType::kName) return Unexpected("a name");
    std::string n = Cur().text;
    Next();
    return n;
  }

  // Parses statements until {% <one of end_names> (consumed; its name stored in *end) or, when
  // end_names is empty, the end of the template.
  absl::StatusOr<Body> ParseBody(std::initializer_list<std::string_view> end_names,
                                 std::string* end) {
    DepthGuard guard(&depth_);
    KV_RETURN_IF_ERROR(CheckDepth());
    Body body;
    while (true) {
      const Token& t = Cur();
      if (t.type == TokenType::kEof) {
        if (end_names.size() == 0) return body;
        return Error(absl::StrCat("unexpected end of template, expected '",
                                  std::string(*end_names.begin()), "'"));
      }
      auto stmt = std::make_unique<Stmt>();
      stmt->line = t.line;
      if (t.type == TokenType::kData) {
        stmt->kind = Stmt::Kind::kText;
        stmt->text = t.text;
        Next();
      } else if (t.type == TokenType::kVarBegin) {
        Next();
        stmt->kind = Stmt::Kind::kOutput;
        KV_ASSIGN_OR_RETURN(stmt->expr, ParseTuple(true, false));
        KV_RETURN_IF_ERROR(Expect(TokenType::kVarEnd, "'}}'"));
      } else if (t.type == TokenType::kBlockBegin) {
        Next();
        for (std::string_view n : end_names) {
          if (IsName(n)) {
            *end = std::string(n);
            Next();
            return body;
          }
        }
        KV_RETURN_IF_ERROR(ParseStatement(stmt.get()));
      } else {
        return Unexpected("template text, '{{' or '{%'");
      }
      body.push_back(std::move(stmt));
    }
  }

  absl::Status ParseStatement(Stmt* s) {
    KV_ASSIGN_OR_RETURN(std::string tag, ExpectName());
    if (tag == "for") return ParseFor(s);
    if (tag == "if") return ParseIf(s);
    if (tag == "set") return ParseSet(s);
    if (tag == "macro") return ParseMacro(s);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return Error(absl::StrCat("'", tag, "' outside of a for loop"));
      s->kind = tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      return ExpectBlockEnd();
    }
    if (tag == "generation") {
      s->kind = Stmt::Kind::kScope;
      KV_RETURN_IF_ERROR(ExpectBlockEnd());
      std::string end;
      KV_ASSIGN_OR_RETURN(s->body, ParseBody({"endgeneration"}, &end));
      return ExpectBlockEnd();
    }
    return absl::InvalidArgumentError(
        absl::StrCat("chat template line ", s->line, ": unknown or unsupported tag '", tag, "'"));
  }

  // A for/set target: a name or a tuple of names ("a, b" or "(a, b)").
  absl::Status ParseTargets(std::vector<std::string>* names) {
    const bool parens = IsOp("(");
    if (parens) Next();
    do {
      if (!names->empty()) Next();  // the comma
      KV_ASSIGN_OR_RETURN(std::string n, ExpectName());
      names->push_back(std::move(n));
    } while (IsOp(","));
    return parens ? ExpectOp(")") : absl::OkStatus();
  }

  absl::Status ParseFor(Stmt* s) {
    s->kind = Stmt::Kind::kFor;
    KV_RETURN_IF_ERROR(ParseTargets(&s->targets));
    if (!IsName("in")) return Unexpected("'in'");
    Next();
    KV_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, false));
    if (IsName("if")) {
      Next();
      KV_ASSIGN_OR_RETURN(s->cond, ParseExpression(true));
    }
    if (IsName("recursive")) return Error("recursive for loops are not supported");
    KV_RETURN_IF_ERROR(ExpectBlockEnd());
    ++loop_depth_;
    std::string end;
    auto body = ParseBody({"endfor", "else"}, &end);
    --loop_depth_;
    if (!body.ok()) return body.status();
    s->body = *std::move(body);
    KV_RETURN_IF_ERROR(ExpectBlockEnd());
    if (end == "else") {
      KV_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endfor"}, &end));
      KV_RETURN_IF_ERROR(ExpectBlockEnd());
    }
    return absl::OkStatus();
  }

  absl::Status ParseIf(Stmt* s) {
    s->kind = Stmt::Kind::kIf;
    std::string end = "elif";
    while (end == "elif") {
      KV_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false, false));
      KV_RETURN_IF_ERROR(ExpectBlockEnd());
      KV_ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}, &end));
      s->conds.push_back(std::move(cond));
      s->bodies.push_back(std::move(body));
    }
    KV_RETURN_IF_ERROR(ExpectBlockEnd());
    if (end == "else") {
      KV_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endif"}, &end));
      KV_RETURN_IF_ERROR(ExpectBlockEnd());
    }
    return absl::OkStatus();
  }

  absl::Status ParseSet(Stmt* s) {
    s->kind = Stmt::Kind::kSet;
    KV_RETURN_IF_ERROR(ParseTargets(&s->targets));
    if (s->targets.size() == 1 && IsOp(".")) {
      Next();
      KV_ASSIGN_OR_RETURN(s->attr, ExpectName());
    }
    if (IsOp("=")) {
      Next();
      KV_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
      return ExpectBlockEnd();
    }
    if (s->targets.size() != 1 || !s->attr.empty()) return Unexpected("'='");
    if (Cur().type != TokenType::kBlockEnd) return Error("filtered block set is not supported");
    Next();
    s->kind = Stmt::Kind::kSetBlock;
    std::string end;
    KV_ASSIGN_OR_RETURN(s->body, ParseBody({"endset"}, &end));
    return ExpectBlockEnd();
  }

  absl::Status ParseMacro(Stmt* s) {
    s->kind = Stmt::Kind::kMacro;
    KV_ASSIGN_OR_RETURN(s->name, ExpectName());
    KV_RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (!s->params.empty()) KV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(")")) break;
      KV_ASSIGN_OR_RETURN(std::string param, ExpectName());
      ExprPtr def;
      if (IsOp("=")) {
        Next();
        KV_ASSIGN_OR_RETURN(def, ParseExpression(true));
      }
      s->params.emplace_back(std::move(param), std::move(def));
    }
    Next();
    KV_RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    std::string end;
    auto body = ParseBody({"endmacro"}, &end);
    loop_depth_ = saved_loops;
    if (!body.ok()) return body.status();
    s->body = *std::move(body);
    return ExpectBlockEnd();
  }

  bool IsTupleEnd() const {
    return Cur().type == TokenType::kVarEnd || Cur().type == TokenType::kBlockEnd || IsOp(")") ||
           Cur().type == TokenType::kEof;
  }

  // jinja2 parse_tuple: "a" -> a; "a, b" / "a," -> tuple; "()" only with explicit parentheses.
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens) {
    const int line = Cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) KV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd()) break;
      KV_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(with_condexpr));
      items.push_back(std::move(e));
      if (!IsOp(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) return Unexpected("an expression");
    }
    ExprPtr t = MakeExpr(Kind::kTuple, line);
    t->args = std::move(items);
    return t;
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    DepthGuard guard(&depth_);
    KV_RETURN_IF_ERROR(CheckDepth());
    KV_ASSIGN_OR_RETURN(ExprPtr e, ParseOr());
    while (with_condexpr && IsName("if")) {
      ExprPtr cond = MakeExpr(Kind::kCond, Cur().line);
      Next();
      KV_ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      ExprPtr otherwise;
      if (IsName("else")) {
        Next();
        KV_ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
      }
      cond->args.push_back(std::move(e));
      cond->args.push_back(std::move(test));
      cond->args.push_back(std::move(otherwise));
      e = std::move(cond);
    }
    return e;
  }

  // Left-associative binary levels: or, and, + -, ~, * / // %, **.
  using Level = absl::StatusOr<ExprPtr> (Parser::*)();
  absl::StatusOr<ExprPtr> ParseBinary(Level next, std::initializer_list<std::string_view> ops,
                                      bool word_ops) {
    KV_ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    while (true) {
      std::string op;
      for (std::string_view o : ops) {
        if (word_ops ? IsName(o) : IsOp(o)) op = std::string(o);
      }
      if (op.empty()) return left;
      ExprPtr b = MakeExpr(Kind::kBinary, Cur().line, op);
      Next();
      KV_ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      b->args.push_back(std::move(left));
      b->args.push_back(std::move(right));
      left = std::move(b);
    }
  }
  absl::StatusOr<ExprPtr> ParseOr() { return ParseBinary(&Parser::ParseAnd, {"or"}, true); }
  absl::StatusOr<ExprPtr> ParseAnd() { return ParseBinary(&Parser::ParseNot, {"and"}, true); }
  absl::StatusOr<ExprPtr> ParseMath1() {
    return ParseBinary(&Parser::ParseConcat, {"+", "-"}, false);
  }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseBinary(&Parser::ParseMath2, {"~"}, false); }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseBinary(&Parser::ParsePow, {"*", "/", "//", "%"}, false);
  }
  absl::StatusOr<ExprPtr> ParsePow() { return ParseBinary(&Parser::ParseUnaryF, {"**"}, false); }
  absl::StatusOr<ExprPtr> ParseUnaryF() { return ParseUnary(true); }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (!IsName("not")) return ParseCompare();
    ExprPtr n = MakeExpr(Kind::kUnary, Cur().line, "not");
    Next();
    DepthGuard guard(&depth_);
    KV_RETURN_IF_ERROR(CheckDepth());
    KV_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    n->args.push_back(std::move(operand));
    return n;
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Cur().line;
    KV_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr cmp = MakeExpr(Kind::kCompare, line);
    cmp->args.push_back(std::move(first));
    while (true) {
      std::string op;
      if (Cur().type == TokenType::kOp &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">="))) {
        op = Cur().text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Peek().type == TokenType::kName && Peek().text == "in") {
        op = "notin";
        Next();
        Next();
      } else {
        break;
      }
      KV_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      cmp->ops.push_back(std::move(op));
      cmp->args.push_back(std::move(operand));
    }
    if (cmp->ops.empty()) return std::move(cmp->args[0]);
    return cmp;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(&depth_);
    KV_RETURN_IF_ERROR(CheckDepth());
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      e = MakeExpr(Kind::kUnary, Cur().line, Cur().text);
      Next();
      KV_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      e->args.push_back(std::move(operand));
    } else {
      KV_ASSIGN_OR_RETURN(e, ParsePrimary());
    }
    KV_ASSIGN_OR_RETURN(e, ParsePostfix(std::move(e)));
    if (!with_filter) return e;
    return ParseFilterExpr(std::move(e));
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Cur();
    ExprPtr e = MakeExpr(Kind::kLiteral, t.line);
    switch (t.type) {
      case TokenType::kName:
        if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
          e->literal = Value(t.text[0] == 't' || t.text[0] == 'T');
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value(None{});
        } else {
          e->kind = Kind::kName;
          e->name = t.text;
        }
        Next();
        return e;
      case TokenType::kString: {
        std::string s;
        while (Cur().type == TokenType::kString) {  // adjacent literals concatenate
          s += Cur().text;
          Next();
        }
        e->literal = Value(std::move(s));
        return e;
      }
      case TokenType::kInt:
        e->literal = Value(t.int_value);
        Next();
        return e;
      case TokenType::kFloat:
        e->literal = Value(t.float_value);
        Next();
        return e;
      default:
        break;
    }
    if (IsOp("(")) {
      Next();
      KV_ASSIGN_OR_RETURN(e, ParseTuple(true, true));
      KV_RETURN_IF_ERROR(ExpectOp(")"));
      return e;
    }
    if (IsOp("[")) return ParseList();
    if (IsOp("{")) return ParseDict();
    return Unexpected("an expression");
  }

  absl::StatusOr<ExprPtr> ParseList() {
    ExprPtr e = MakeExpr(Kind::kList, Cur().line);
    Next();
    while (!IsOp("]")) {
      if (!e->args.empty()) KV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("]")) break;
      KV_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
      e->args.push_back(std::move(item));
    }
    Next();
    return e;
  }

  absl::StatusOr<ExprPtr> ParseDict() {
    ExprPtr e = MakeExpr(Kind::kDict, Cur().line);
    Next();
    while (!IsOp("}")) {
      if (!e->args.empty()) KV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("}")) break;
      KV_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
      KV_RETURN_IF_ERROR(ExpectOp(":"));
      KV_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      e->args.push_back(std::move(key));
      e->args.push_back(std::move(value));
    }
    Next();
    return e;
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr e) {
    while (true) {
      const int line = Cur().line;
      if (IsOp(".")) {
        Next();
        ExprPtr a;
        if (Cur().type == TokenType::kName) {
          a = MakeExpr(Kind::kAttr, line, Cur().text);
          a->args.push_back(std::move(e));
        } else if (Cur().type == TokenType::kInt) {  // foo.0 is foo[0]
          a = MakeExpr(Kind::kItem, line);
          ExprPtr index = MakeExpr(Kind::kLiteral, line);
          index->literal = Value(Cur().int_value);
          a->args.push_back(std::move(e));
          a->args.push_back(std::move(index));
        } else {
          return Unexpected("an attribute name");
        }
        Next();
        e = std::move(a);
      } else if (IsOp("[")) {
        Next();
        ExprPtr item = MakeExpr(Kind::kItem, line);
        KV_ASSIGN_OR_RETURN(ExprPtr index, ParseSubscript());
        KV_RETURN_IF_ERROR(ExpectOp("]"));
        item->args.push_back(std::move(e));
        item->args.push_back(std::move(index));
        e = std::move(item);
      } else if (IsOp("(")) {
        KV_ASSIGN_OR_RETURN(e, ParseCall(std::move(e), Kind::kCall, ""));
      } else {
        return e;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript() {
    const int line = Cur().line;
    ExprPtr start;
    if (!IsOp(":")) {
      KV_ASSIGN_OR_RETURN(start, ParseExpression(true));
      if (!IsOp(":")) return start;
    }
    Next();
    ExprPtr slice = MakeExpr(Kind::kSlice, line);
    slice->args.push_back(std::move(start));
    ExprPtr stop, step;
    if (!IsOp("]") && !IsOp(":")) {
      KV_ASSIGN_OR_RETURN(stop, ParseExpression(true));
    }
    if (IsOp(":")) {
      Next();
      if (!IsOp("]")) {
        KV_ASSIGN_OR_RETURN(step, ParseExpression(true));
      }
    }
    slice->args.push_back(std::move(stop));
    slice->args.push_back(std::move(step));
    return slice;
  }

  // Parses "(args)" at the current "(" into a kCall/kFilter/kTest node applied to `target`.
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr target, Kind kind, std::string name) {
    ExprPtr call = MakeExpr(kind, Cur().line, std::move(name));
    call->args.push_back(std::move(target));
    KV_RETURN_IF_ERROR(ParseCallArgs(call.get()));
    return call;
  }

  absl::Status ParseCallArgs(Expr* call) {
    KV_RETURN_IF_ERROR(ExpectOp("("));
    bool first = true;
    while (!IsOp(")")) {
      if (!first) KV_RETURN_IF_ERROR(ExpectOp(","));
      first = false;
      if (IsOp(")")) break;
      if (IsOp("*") || IsOp("**")) return Error("*args and **kwargs in calls are not supported");
      if (Cur().type == TokenType::kName && Peek().type == TokenType::kOp && Peek().text == "=") {
        std::string key = Cur().text;
        Next();
        Next();
        KV_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
        call->kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!call->kwargs.empty()) return Error("positional argument follows keyword argument");
        KV_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression(true));
        call->args.push_back(std::move(v));
      }
    }
    Next();
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ParseDottedName() {
    KV_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (IsOp(".")) {
      Next();
      KV_ASSIGN_OR_RETURN(std::string part, ExpectName());
      absl::StrAppend(&name, ".", part);
    }
    return name;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr e) {
    while (true) {
      if (IsOp("|")) {
        Next();
        KV_ASSIGN_OR_RETURN(std::string name, ParseDottedName());
        if (IsOp("(")) {
          KV_ASSIGN_OR_RETURN(e, ParseCall(std::move(e), Kind::kFilter, name));
        } else {
          ExprPtr f = MakeExpr(Kind::kFilter, Cur().line, name);
          f->args.push_back(std::move(e));
          e = std::move(f);
        }
      } else if (IsName("is")) {
        KV_ASSIGN_OR_RETURN(e, ParseTest(std::move(e)));
      } else if (IsOp("(")) {
        KV_ASSIGN_OR_RETURN(e, ParseCall(std::move(e), Kind::kCall, ""));
      } else {
        return e;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr e) {
    Next();  // "is"
    bool negated = false;
    if (IsName("not")) {
      negated = true;
      Next();
    }
    KV_ASSIGN_OR_RETURN(std::string name, ParseDottedName());
    ExprPtr test;
    if (IsOp("(")) {
      KV_ASSIGN_OR_RETURN(test, ParseCall(std::move(e), Kind::kTest, name));
    } else {
      test = MakeExpr(Kind::kTest, Cur().line, name);
      test->args.push_back(std::move(e));
      const TokenType ty = Cur().type;
      const bool arg_start = ty == TokenType::kName || ty == TokenType::kString ||
                             ty == TokenType::kInt || ty == TokenType::kFloat || IsOp("[") ||
                             IsOp("{");
      if (arg_start && !IsName("else") && !IsName("or") && !IsName("and")) {
        if (IsName("is")) return Error("you cannot chain multiple tests with 'is'");
        KV_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
        KV_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
        test->args.push_back(std::move(arg));
      }
    }
    test->negated = negated;
    return test;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int max_depth_;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Template>> ParseTemplate(std::string_view source, int max_depth) {
  KV_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source));
  return Parser(std::move(tokens), max_depth).Run();
}

}  // namespace kvasir::jinja
