#include "server/http/http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>  // evhttp_request::major/minor: 2.1 has no accessor
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvasir::server::http {

namespace {

// Listen backlog: a thousand clients may connect at once (the kernel caps it at somaxconn).
constexpr int kListenBacklog = 4096;

const char* MethodName(evhttp_cmd_type command) {
  switch (command) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    case EVHTTP_REQ_CONNECT:
      return "CONNECT";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
  }
  return "OTHER";
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
  }
  return status < 400 ? "OK" : "Error";
}

}  // namespace

// --- LoopExecutor ---------------------------------------------------------------------------

bool LoopExecutor::Post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || wake_ == nullptr) return false;
  const bool wake = tasks_.empty();
  tasks_.push_back(std::move(task));
  if (wake) event_active(wake_, EV_READ, 0);
  return true;
}

void LoopExecutor::RunPending() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(tasks_);
  }
  for (std::function<void()>& task : tasks) task();
}

void LoopExecutor::Close() {
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    dropped.swap(tasks_);
    if (wake_ != nullptr) event_free(wake_);
    wake_ = nullptr;
  }
  // `dropped` is destroyed here, outside the lock (closures may own exchanges).
}

// --- HttpExchange ---------------------------------------------------------------------------

HttpExchange::~HttpExchange() { StopWatching(); }

std::optional<std::string> HttpExchange::RequestHeader(const char* name) const {
  if (request_ == nullptr) return std::nullopt;
  const char* value = evhttp_find_header(evhttp_request_get_input_headers(request_), name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::shared_ptr<LoopExecutor> HttpExchange::executor() const { return server_->executor(); }

void HttpExchange::AddHeader(std::string name, std::string value) {
  headers_.emplace_back(std::move(name), std::move(value));
}

void HttpExchange::Reply(int status, absl::string_view content_type, absl::string_view body) {
  if (done()) return;
  evhttp_request* request = request_;
  evkeyvalq* out = evhttp_request_get_output_headers(request);
  evhttp_add_header(out, "Content-Type", std::string(content_type).c_str());
  for (const auto& [name, value] : headers_) evhttp_add_header(out, name.c_str(), value.c_str());
  if (server_->options_.on_response) {
    server_->options_.on_response(method_, route_.empty() ? "unmatched" : route_, status);
  }
  const std::shared_ptr<HttpExchange> keep = shared_from_this();
  Finish();
  evbuffer* buffer = evbuffer_new();
  evbuffer_add(buffer, body.data(), body.size());
  evhttp_send_reply(request, status, ReasonPhrase(status), buffer);
  evbuffer_free(buffer);
}

void HttpExchange::StartStream(int status, absl::string_view content_type) {
  if (done() || streaming_) return;
  evkeyvalq* out = evhttp_request_get_output_headers(request_);
  evhttp_add_header(out, "Content-Type", std::string(content_type).c_str());
  for (const auto& [name, value] : headers_) evhttp_add_header(out, name.c_str(), value.c_str());
  if (server_->options_.on_response) {
    server_->options_.on_response(method_, route_.empty() ? "unmatched" : route_, status);
  }
  if (request_->major == 1 && request_->minor == 0) {
    // HTTP/1.0 has no chunked encoding: the stream ends when the connection closes. Forget the
    // client's keep-alive wish, else libevent announces an empty body (Content-Length: 0).
    evhttp_remove_header(evhttp_request_get_input_headers(request_), "Connection");
    evhttp_add_header(out, "Connection", "close");
  }
  streaming_ = true;
  evhttp_send_reply_start(request_, status, ReasonPhrase(status));
}

void HttpExchange::Send(absl::string_view data) {
  if (done() || !streaming_ || data.empty()) return;
  evbuffer* buffer = evbuffer_new();
  evbuffer_add(buffer, data.data(), data.size());
  evhttp_send_reply_chunk(request_, buffer);
  evbuffer_free(buffer);
}

void HttpExchange::EndStream() {
  if (done() || !streaming_) return;
  evhttp_request* request = request_;
  const std::shared_ptr<HttpExchange> keep = shared_from_this();
  Finish();
  evhttp_send_reply_end(request);
}

void HttpExchange::Finish() {
  StopWatching();
  evhttp_request_set_on_complete_cb(request_, &HttpExchange::OnFlushed, this);
  request_ = nullptr;
  flushing_ = true;
}

void HttpExchange::OnFlushed(evhttp_request* request, void* arg) {
  auto* self = static_cast<HttpExchange*>(arg);
  if (evhttp_connection* connection = evhttp_request_get_connection(request)) {
    evhttp_connection_set_closecb(connection, nullptr, nullptr);
  }
  self->flushing_ = false;
  self->server_->Untrack(self);  // may destroy *self
}

// libevent calls this from evhttp_connection_free: the client went away (a read or write failed,
// or our disconnect watcher saw EOF) or the server is stopping. If the connection still holds
// the request, libevent frees it right after; if a failed write detached it (libevent leaves a
// request the user has not finished to the user), it is ours to free.
void HttpExchange::OnConnectionClosed(evhttp_connection* connection) {
  const std::shared_ptr<HttpExchange> keep = shared_from_this();
  if (flushing_) {  // the response had ended; the client did not read all of it
    flushing_ = false;
    server_->Untrack(this);
    return;
  }
  if (done()) return;
  evhttp_request* request = request_;
  StopWatching();
  request_ = nullptr;
  client_gone_ = true;
  if (evhttp_request_get_connection(request) != connection) evhttp_request_free(request);
  server_->Untrack(this);
  if (on_client_gone_) {
    std::function<void()> callback = std::move(on_client_gone_);
    on_client_gone_ = nullptr;
    callback();
  }
}

// evhttp stops reading a connection once it has read a request, so a client that closes while
// its response is pending (waiting in the queue, or a non-streamed completion) would only be
// noticed at the next write. This watcher peeks at the socket instead: EOF or an error means the
// client is gone (a half-closed client counts as gone); bytes (a pipelined request) end the
// watch, leaving detection to the writes.
void HttpExchange::WatchForDisconnect() {
  if (done() || watch_ != nullptr) return;
  evhttp_connection* connection = evhttp_request_get_connection(request_);
  if (connection == nullptr) return;
  const evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(connection));
  if (fd < 0) return;
  watch_ = event_new(server_->base_, fd, EV_READ | EV_PERSIST, &HttpExchange::OnReadable, this);
  if (watch_ != nullptr) event_add(watch_, nullptr);
}

void HttpExchange::StopWatching() {
  if (watch_ == nullptr) return;
  event_free(watch_);
  watch_ = nullptr;
}

void HttpExchange::OnReadable(int fd, short events, void* arg) {  // NOLINT(runtime/int)
  auto* self = static_cast<HttpExchange*>(arg);
  char byte;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    self->StopWatching();
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  evhttp_connection* connection = evhttp_request_get_connection(self->request_);
  self->StopWatching();
  // Runs CloseCallback -> OnConnectionClosed, which may destroy *self: do not touch it after.
  if (connection != nullptr) evhttp_connection_free(connection);
}

void HttpExchange::CloseCallback(evhttp_connection* connection, void* arg) {
  static_cast<HttpExchange*>(arg)->OnConnectionClosed(connection);
}

// --- HttpServer -----------------------------------------------------------------------------

HttpServer::HttpServer(HttpServerOptions options)
    : options_(std::move(options)), executor_(std::make_shared<LoopExecutor>()) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  static std::once_flag threads_once;
  std::call_once(threads_once, [] { evthread_use_pthreads(); });
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(options)));
  server->base_ = event_base_new();
  if (server->base_ == nullptr) return absl::InternalError("cannot create a libevent event_base");
  server->http_ = evhttp_new(server->base_);
  if (server->http_ == nullptr) return absl::InternalError("cannot create a libevent evhttp");
  // Every method reaches the router, which answers 405 itself (libevent would answer 501).
  evhttp_set_allowed_methods(server->http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                                EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_max_body_size(server->http_,
                           static_cast<ev_ssize_t>(2 * server->options_.max_body_bytes));
  evhttp_set_max_headers_size(server->http_,
                              static_cast<ev_ssize_t>(server->options_.max_header_bytes));
  evhttp_set_timeout(server->http_, server->options_.idle_timeout_s);
  evhttp_set_gencb(server->http_, &HttpServer::OnRequest, server.get());
  if (absl::Status bound = server->Bind(); !bound.ok()) return bound;
  {
    LoopExecutor* executor = server->executor_.get();
    std::lock_guard<std::mutex> lock(executor->mu_);
    executor->wake_ = event_new(
        server->base_, -1, 0,
        [](evutil_socket_t, short, void* arg) {  // NOLINT(runtime/int)
          static_cast<LoopExecutor*>(arg)->RunPending();
        },
        executor);
  }
  server->thread_ = std::thread([s = server.get()] { s->Run(); });
  return server;
}

absl::Status HttpServer::Bind() {
  const std::string requested = absl::StrCat(options_.host, ":", options_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options_.port);
  if (const int rc = getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-host ", options_.host, ": ", gai_strerror(rc)));
  }
  evconnlistener* listener = evconnlistener_new_bind(
      base_, nullptr, nullptr, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
      kListenBacklog, found->ai_addr, static_cast<int>(found->ai_addrlen));
  const int bind_errno = errno;
  freeaddrinfo(found);
  if (listener == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", requested, " for HTTP: ", std::strerror(bind_errno)));
  }
  bound_ = evhttp_bind_listener(http_, listener);
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  getsockname(evconnlistener_get_fd(listener), reinterpret_cast<sockaddr*>(&local), &length);
  port_ = ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  const bool v6 = options_.host.find(':') != std::string::npos;
  address_ =
      v6 ? absl::StrCat("[", options_.host, "]:", port_) : absl::StrCat(options_.host, ":", port_);
  return absl::OkStatus();
}

void HttpServer::Run() { event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY); }

HttpServer::~HttpServer() {
  Stop();
  if (http_ != nullptr) evhttp_free(http_);  // Start failed before the loop ran
  executor_->Close();
  if (base_ != nullptr) event_base_free(base_);
}

void HttpServer::Stop() {
  if (stopped_ || !thread_.joinable()) return;
  stopped_ = true;
  executor_->Post([this] {
    // Closes the listener and every connection; live exchanges see their client go.
    evhttp_free(http_);
    http_ = nullptr;
    bound_ = nullptr;
    event_base_loopbreak(base_);
  });
  thread_.join();
  executor_->Close();
  live_.clear();
}

void HttpServer::OnRequest(evhttp_request* request, void* arg) {
  static_cast<HttpServer*>(arg)->Dispatch(request);
}

void HttpServer::Track(const std::shared_ptr<HttpExchange>& exchange) {
  live_[exchange.get()] = exchange;
  num_live_.fetch_add(1);
  evhttp_connection_set_closecb(evhttp_request_get_connection(exchange->request_),
                                &HttpExchange::CloseCallback, exchange.get());
}

std::shared_ptr<HttpExchange> HttpServer::Untrack(HttpExchange* exchange) {
  auto it = live_.find(exchange);
  if (it == live_.end()) return nullptr;
  std::shared_ptr<HttpExchange> kept = std::move(it->second);
  live_.erase(it);
  num_live_.fetch_sub(1);
  return kept;
}

void HttpServer::ReplyError(const std::shared_ptr<HttpExchange>& exchange, int status,
                            absl::string_view message) {
  if (options_.error_body) {
    auto [content_type, body] = options_.error_body(status, message);
    exchange->Reply(status, content_type, body);
  } else {
    exchange->Reply(status, "text/plain; charset=utf-8", absl::StrCat(message, "\n"));
  }
}

void HttpServer::Dispatch(evhttp_request* request) {
  std::shared_ptr<HttpExchange> exchange(new HttpExchange(this, request));
  exchange->method_ = MethodName(evhttp_request_get_command(request));
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  exchange->path_ = (path == nullptr || *path == '\0') ? "/" : path;
  evbuffer* input = evhttp_request_get_input_buffer(request);
  exchange->body_.resize(evbuffer_get_length(input));
  evbuffer_copyout(input, exchange->body_.data(), exchange->body_.size());
  Track(exchange);

  const HttpRoute* match = nullptr;
  std::vector<std::string> allowed;
  for (const HttpRoute& route : options_.routes) {
    if (route.path != exchange->path_) continue;
    allowed.push_back(route.method);
    if (route.method == exchange->method_) match = &route;
  }
  if (allowed.empty()) {
    return ReplyError(exchange, 404, absl::StrCat("no such endpoint: ", exchange->path_));
  }
  exchange->route_ = exchange->path_;
  if (match == nullptr) {
    exchange->AddHeader("Allow", absl::StrJoin(allowed, ", "));
    return ReplyError(exchange, 405,
                      absl::StrCat(exchange->method_, " is not allowed on ", exchange->path_,
                                   "; use ", absl::StrJoin(allowed, " or ")));
  }
  if (exchange->body_.size() > options_.max_body_bytes) {
    return ReplyError(exchange, 413,
                      absl::StrCat("the request body is ", exchange->body_.size(),
                                   " bytes; the limit is ", options_.max_body_bytes));
  }
  match->handler(exchange);
  exchange->WatchForDisconnect();  // a no-op when the handler already replied
}

}  // namespace kvasir::server::http
