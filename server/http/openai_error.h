// OpenAI-style error objects and the one place where an absl::Status becomes an HTTP status.
//
//   {"error": {"message": "temperature must be a number, got string", "type":
//   "invalid_request_error", "param": "temperature", "code": null}}
#ifndef KVASIR_SERVER_HTTP_OPENAI_ERROR_H_
#define KVASIR_SERVER_HTTP_OPENAI_ERROR_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvasir::server::http {

// An InvalidArgument error about request field `field` (a JSON path such as "messages[2].role"):
// the field is carried as the error object's `param`.
absl::Status FieldError(absl::string_view field, absl::string_view message);
// NotFound for a model the server does not serve (404, code "model_not_found", param "model").
absl::Status ModelNotFoundError(absl::string_view requested);

struct HttpError {
  int status = 500;
  std::string type;                 // OpenAI's error type, e.g. "invalid_request_error"
  std::optional<std::string> code;  // e.g. "model_not_found"; null when none
  std::optional<std::string> param;
  std::string message;
};

// InvalidArgument 400, NotFound 404, ResourceExhausted 429 (queue full; the reply adds
// Retry-After), FailedPrecondition and Unavailable 503 (shutting down or draining), Unimplemented
// 501, Cancelled 499, DeadlineExceeded 504, anything else 500.
HttpError ToHttpError(const absl::Status& status);
// The error for a status the HTTP server itself answers (404 route, 405, 413, 503).
HttpError HttpErrorFor(int http_status, absl::string_view message);

// {"error": {...}} as JSON text.
std::string ErrorJson(const HttpError& error);

}  // namespace kvasir::server::http

#endif  // KVASIR_SERVER_HTTP_OPENAI_ERROR_H_
