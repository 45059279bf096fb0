// The Jinja subset of chat templates: tests/fixtures/chat_templates/jinja_cases.json holds small
// templates with the output (or error) of transformers' jinja environment; plus the messages of
// errors and the limits on a hostile template.
#include <fstream>
#include <sstream>
#include <string>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/jinja_eval.h"
#include "engine/tokenizer/jinja_parser.h"
#include "engine/tokenizer/jinja_value.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvasir::jinja {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

Value FromJson(const Json& j) {
  if (j.is_null()) return Value(None{});
  if (j.is_boolean()) return Value(j.get<bool>());
  if (j.is_number_integer()) return Value(j.get<int64_t>());
  if (j.is_number()) return Value(j.get<double>());
  if (j.is_string()) return Value(j.get<std::string>());
  if (j.is_array()) {
    List l;
    for (const Json& x : j) l.push_back(FromJson(x));
    return Value(std::move(l));
  }
  Dict d;
  for (const auto& [k, v] : j.items()) d.emplace_back(k, FromJson(v));
  return Value(std::move(d));
}

absl::StatusOr<std::string> RenderWith(const std::string& source, const Dict& context,
                                       const RenderLimits& limits = RenderLimits()) {
  auto t = ParseTemplate(source, 200);
  if (!t.ok()) return t.status();
  if (absl::Status s = CheckNames(**t); !s.ok()) return s;
  return Render(**t, context, limits);
}

TEST(JinjaCasesTest, EveryCaseMatchesTransformers) {
  std::ifstream in(std::string(KVASIR_FIXTURES_DIR) + "/chat_templates/jinja_cases.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const Json cases = Json::parse(ss.str());
  ASSERT_GE(cases.size(), 50u);
  for (const Json& c : cases) {
    const std::string source = c["template"];
    absl::StatusOr<std::string> out = RenderWith(source, FromJson(c["context"]).as_dict());
    if (c.contains("error")) {
      EXPECT_FALSE(out.ok()) << source << " rendered " << *out << "; jinja2: " << c["error"];
    } else if (!out.ok()) {
      ADD_FAILURE() << source << ": " << out.status();
    } else {
      EXPECT_EQ(*out, c["expected"].get<std::string>()) << source;
    }
  }
}

TEST(JinjaErrorTest, RaiseExceptionCarriesTheTemplatesMessage) {
  auto t = ChatTemplate::Parse(
      "{% for m in messages %}\n{% if m.role == 'tool' %}"
      "{{ raise_exception('Tool messages are not supported: ' ~ m.content) }}{% endif %}"
      "{% endfor %}");
  ASSERT_TRUE(t.ok()) << t.status();
  ChatTemplateInput in;
  in.messages = {{"tool", "x", std::nullopt}};
  const absl::Status s = t->Render(in).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "chat template line 2: Tool messages are not supported: x");
}

TEST(JinjaErrorTest, UnknownFilterOutsideAnIfFailsAtParse) {
  const absl::Status s = ChatTemplate::Parse("line 1\n{{ x | nope }}").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "chat template line 2: no filter named 'nope'");
}

TEST(JinjaErrorTest, UnknownFilterInsideAnIfFailsWhenEvaluated) {
  auto t = ChatTemplate::Parse("{% if add_generation_prompt %}{{ 1 | nope }}{% endif %}ok");
  ASSERT_TRUE(t.ok()) << t.status();
  ChatTemplateInput in;
  EXPECT_EQ(*t->Render(in), "ok");
  in.add_generation_prompt = true;
  EXPECT_THAT(std::string(t->Render(in).status().message()), HasSubstr("no filter named 'nope'"));
}

TEST(JinjaErrorTest, SyntaxErrorsNameTheLineAndConstruct) {
  struct Case {
    const char* source;
    const char* message;
  };
  const Case cases[] = {
      {"a\n{% if %}{% endif %}",
       "chat template line 2: expected an expression, got end of statement block '%}'"},
      {"{% for x in y %}", "chat template line 1: unexpected end of template, expected 'endfor'"},
      {"{% include 'x' %}", "chat template line 1: unknown or unsupported tag 'include'"},
      {"\n\n{{ 'abc }}", "chat template line 3: unterminated string literal"},
      {"{{ (1 }}", "chat template line 1: unexpected '}'"},
      {"{% break %}", "chat template line 1: 'break' outside of a for loop"},
      {"{# never closed", "chat template line 1: missing end of comment tag"},
  };
  for (const Case& c : cases) {
    const absl::Status s = ChatTemplate::Parse(c.source).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.source;
    EXPECT_EQ(s.message(), c.message) << c.source;
  }
}

TEST(JinjaErrorTest, RenderErrorsNameTheLineAndValue) {
  EXPECT_EQ(RenderWith("\n{{ 'a' + 1 }}", {}).status().message(),
            "chat template line 2: unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(RenderWith("{{ m.content.strip() }}", {{"m", Value(Dict{})}}).status().message(),
            "chat template line 1: 'dict object' has no attribute 'content'");
  EXPECT_EQ(RenderWith("{{ u + 'x' }}", {}).status().message(),
            "chat template line 1: 'u' is undefined");
}

TEST(JinjaLimitsTest, DeepNestingFailsToParseInsteadOfOverflowingTheStack) {
  const std::string source = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  const absl::Status s = ChatTemplate::Parse(source).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("nesting deeper than 200"));
}

TEST(JinjaLimitsTest, InfiniteMacroRecursionStops) {
  const absl::Status s =
      RenderWith("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("recursion deeper than"));
}

TEST(JinjaLimitsTest, LoopIterationsAreBounded) {
  RenderLimits limits;
  limits.max_loop_iterations = 1000;
  const absl::Status s =
      RenderWith("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", {},
                 limits)
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("more than 1000 loop iterations"));
}

TEST(JinjaLimitsTest, OutputAndIntermediateStringsAreBounded) {
  RenderLimits limits;
  limits.max_output_bytes = 1000;
  EXPECT_EQ(RenderWith("{% for i in range(2000) %}x{% endfor %}", {}, limits).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RenderWith("{% set s = 'x' * 100000 %}", {}, limits).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RenderWith("{{ 9223372036854775807 + 1 }}", {}).status().code(),
            absl::StatusCode::kInvalidArgument);  // int64, where Python has bignums
}

TEST(JinjaValueTest, PrintsFloatsAsPython) {
  EXPECT_EQ(PyFloatRepr(1.0), "1.0");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(PyFloatRepr(1e-5), "1e-05");
  EXPECT_EQ(PyFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PyFloatRepr(-0.0), "-0.0");
  EXPECT_EQ(PyFloatRepr(1.2345678901234568e+17), "1.2345678901234568e+17");
  EXPECT_EQ(PyFloatRepr(2.5e-7), "2.5e-07");
}

}  // namespace
}  // namespace kvasir::jinja
