#include "server/http/openai_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace kvasir::server::http {

namespace {
constexpr char kParamPayload[] = "kvasir.dev/openai-param";
constexpr char kCodePayload[] = "kvasir.dev/openai-code";

std::optional<std::string> Payload(const absl::Status& status, const char* key) {
  auto value = status.GetPayload(key);
  if (!value.has_value()) return std::nullopt;
  return std::string(*value);
}
}  // namespace

absl::Status FieldError(absl::string_view field, absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kParamPayload, absl::Cord(field));
  return status;
}

absl::Status ModelNotFoundError(absl::string_view requested) {
  absl::Status status = absl::NotFoundError(
      absl::StrCat("The model `", requested, "` does not exist; GET /v1/models lists it"));
  status.SetPayload(kParamPayload, absl::Cord("model"));
  status.SetPayload(kCodePayload, absl::Cord("model_not_found"));
  return status;
}

HttpError ToHttpError(const absl::Status& status) {
  HttpError error;
  error.message = std::string(status.message());
  error.param = Payload(status, kParamPayload);
  error.code = Payload(status, kCodePayload);
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      error.status = 400;
      break;
    case absl::StatusCode::kNotFound:
      error.status = 404;
      break;
    case absl::StatusCode::kResourceExhausted:
      error.status = 429;
      error.code = "rate_limit_exceeded";
      break;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnavailable:
      error.status = 503;
      error.code = "service_unavailable";
      break;
    case absl::StatusCode::kUnimplemented:
      error.status = 501;
      break;
    case absl::StatusCode::kCancelled:
      error.status = 499;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.status = 504;
      break;
    default:
      error.status = 500;
      break;
  }
  error.type = error.status == 429   ? "rate_limit_error"
               : error.status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return error;
}

HttpError HttpErrorFor(int http_status, absl::string_view message) {
  HttpError error;
  error.status = http_status;
  error.message = std::string(message);
  error.type = http_status >= 500 ? "server_error" : "invalid_request_error";
  switch (http_status) {
    case 404:
      error.code = "unknown_url";
      break;
    case 405:
      error.code = "method_not_allowed";
      break;
    case 413:
      error.code = "request_too_large";
      break;
    case 503:
      error.code = "service_unavailable";
      break;
  }
  return error;
}

std::string ErrorJson(const HttpError& error) {
  nlohmann::json body = {
      {"error",
       {{"message", error.message}, {"type", error.type}, {"param", nullptr}, {"code", nullptr}}}};
  if (error.param) body["error"]["param"] = *error.param;
  if (error.code) body["error"]["code"] = *error.code;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kvasir::server::http
