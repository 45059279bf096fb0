// A small HTTP/1.1 server over libevent's evhttp: one event loop thread (epoll) serves every
// connection, so thousands of concurrent streaming responses cost a socket and a little memory
// each, not a thread. (cpp-httplib, the other Debian option, is thread-per-connection and its
// prebuilt library polls with select(), limited to FD_SETSIZE = 1024 descriptors: it cannot hold
// more than about a thousand streams.)
//
// Threads:
//   - The loop thread runs every route handler, every HttpExchange method and every task posted
//     with LoopExecutor::Post. Nothing here blocks it except what handlers themselves do.
//   - Any thread may call LoopExecutor::Post (it takes a small mutex and wakes the loop with
//     event_active); this is how engine outputs reach a response.
//   - Start/Stop/num_live_exchanges are for the owning (main) thread.
//
// Lifetimes: an HttpExchange is shared (shared_ptr) by the server, while its response is open,
// and by whoever the handler gave it to. It holds the libevent request until the response ends
// or the client goes away; after that every response method is a no-op, so a holder may keep
// and use it safely for as long as it likes (on the loop thread).
#ifndef KVASIR_SERVER_HTTP_HTTP_SERVER_H_
#define KVASIR_SERVER_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_connection;
struct evhttp_request;

namespace kvasir::server::http {

class HttpServer;

// Runs closures on the loop thread; shared by everyone who needs to reach the loop from another
// thread. Outlives the server safely: after Stop, Post drops the closure and returns false.
class LoopExecutor {
 public:
  // Queues `task` for the loop thread and wakes it. Thread-safe; never blocks on the loop.
  bool Post(std::function<void()> task);

 private:
  friend class HttpServer;
  void RunPending();  // loop thread
  void Close();       // after the loop has stopped: drop what is queued, refuse the rest

  std::mutex mu_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  event* wake_ ABSL_GUARDED_BY(mu_) = nullptr;  // made active by Post
};

// One request and its response. Loop thread only.
class HttpExchange : public std::enable_shared_from_this<HttpExchange> {
 public:
  HttpExchange(const HttpExchange&) = delete;
  HttpExchange& operator=(const HttpExchange&) = delete;
  ~HttpExchange();

  const std::string& method() const { return method_; }
  const std::string& path() const { return path_; }    // decoded path, without the query
  const std::string& route() const { return route_; }  // the matched route ("" for none)
  const std::string& body() const { return body_; }
  // A request header (case-insensitive name); nullopt when absent or the exchange is over.
  std::optional<std::string> RequestHeader(const char* name) const;

  // Adds a response header; call before Reply or StartStream.
  void AddHeader(std::string name, std::string value);
  // Sends a whole response with Content-Length and ends the exchange.
  void Reply(int status, absl::string_view content_type, absl::string_view body);
  // Sends the status and headers of a chunked response (Transfer-Encoding: chunked).
  void StartStream(int status, absl::string_view content_type);
  // Sends one chunk of a started stream. Writes are buffered by libevent (never blocking).
  void Send(absl::string_view data);
  // Ends a started stream (the terminating chunk) and the exchange.
  void EndStream();

  // True once the response has ended or the client has gone: responses are then no-ops.
  bool done() const { return request_ == nullptr; }
  bool client_gone() const { return client_gone_; }
  // The server's executor, for reaching this exchange's loop from another thread.
  std::shared_ptr<LoopExecutor> executor() const;
  // Called once if the client disconnects (or the server stops) before the response ended.
  void SetOnClientGone(std::function<void()> callback) { on_client_gone_ = std::move(callback); }

 private:
  friend class HttpServer;
  HttpExchange(HttpServer* server, evhttp_request* request) : server_(server), request_(request) {}

  // The response is ending: called just before its last bytes are handed to libevent. The
  // exchange stays tracked (flushing) until libevent has written them (OnFlushed) or the
  // connection closes, so that Stop after a drain does not cut a response short.
  void Finish();
  static void OnFlushed(evhttp_request* request, void* arg);
  void OnConnectionClosed(evhttp_connection* connection);  // from libevent's close callback
  static void CloseCallback(evhttp_connection* connection, void* arg);
  void WatchForDisconnect();  // see http_server.cc
  void StopWatching();
  static void OnReadable(int fd, short events, void* arg);  // NOLINT(runtime/int)

  HttpServer* const server_;
  evhttp_request* request_;  // null once done
  std::string method_;
  std::string path_;
  std::string route_;
  std::string body_;
  std::vector<std::pair<std::string, std::string>> headers_;  // response headers to add
  bool streaming_ = false;
  bool flushing_ = false;  // ended; libevent is still writing it
  bool client_gone_ = false;
  event* watch_ = nullptr;  // the disconnect watcher while a response is pending
  std::function<void()> on_client_gone_;
};

using HttpHandler = std::function<void(std::shared_ptr<HttpExchange>)>;

struct HttpRoute {
  std::string method;  // "GET", "POST", ...
  std::string path;    // exact match
  HttpHandler handler;
};

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0 = pick a free one (see HttpServer::port)
  // Larger request bodies are answered 413 by the server (body from error_body). libevent itself
  // refuses bodies over twice this, with its own short page, before they are read whole.
  size_t max_body_bytes = 8 << 20;
  size_t max_header_bytes = 64 << 10;
  int idle_timeout_s = 120;  // read/write inactivity on a connection (not while a stream waits)
  std::vector<HttpRoute> routes;
  // The body of the server's own errors (404, 405, 413, 503 while stopping): (status, message) ->
  // (content type, body).
  std::function<std::pair<std::string, std::string>(int status, absl::string_view message)>
      error_body;
  // Called for every response when its status is sent: (method, route or "unmatched", status).
  std::function<void(std::string_view method, std::string_view route, int status)> on_response;
};

class HttpServer {
 public:
  // Binds host:port and starts the loop thread. Unavailable naming the address when it cannot
  // be bound; InvalidArgument for a host that is not an address.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  const std::string& address() const { return address_; }
  const std::shared_ptr<LoopExecutor>& executor() const { return executor_; }
  // Exchanges whose response has not been written out yet (requests being answered, open
  // streams, responses still being flushed). Thread-safe.
  int num_live_exchanges() const { return num_live_.load(); }

  // Stops accepting connections, closes every connection (live exchanges see their client go,
  // which is where their owners abort work), ends the loop and joins it. Idempotent.
  void Stop();

 private:
  friend class HttpExchange;
  explicit HttpServer(HttpServerOptions options);

  absl::Status Bind();
  static void OnRequest(evhttp_request* request, void* arg);
  void Dispatch(evhttp_request* request);
  void ReplyError(const std::shared_ptr<HttpExchange>& exchange, int status,
                  absl::string_view message);
  void Track(const std::shared_ptr<HttpExchange>& exchange);
  std::shared_ptr<HttpExchange> Untrack(HttpExchange* exchange);  // null if not tracked
  void Run();

  HttpServerOptions options_;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  evhttp_bound_socket* bound_ = nullptr;
  std::shared_ptr<LoopExecutor> executor_;
  std::thread thread_;
  int port_ = 0;
  std::string address_;
  bool stopped_ = false;
  std::atomic<int> num_live_{0};
  // Loop thread only: exchanges whose response is open or flushing, keeping them alive for
  // libevent's callbacks, which hold raw pointers.
  absl::flat_hash_map<HttpExchange*, std::shared_ptr<HttpExchange>> live_;
};

}  // namespace kvasir::server::http

#endif  // KVASIR_SERVER_HTTP_HTTP_SERVER_H_
