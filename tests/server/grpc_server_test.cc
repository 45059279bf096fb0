// GrpcServer lifecycle in process: listening before the model is loaded, then serving.
#include "server/grpc_server.h"

#include <memory>

#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvasir/v1/kvasir.grpc.pb.h"

namespace kvasir::server {
namespace {

std::unique_ptr<Engine> TinyEngine() {
  EngineOptions o;
  o.model_path = std::string(KVASIR_FIXTURES_DIR) + "/models/llama_tiny";
  o.num_threads = 1;
  o.max_batched_tokens = 64;
  o.max_num_seqs = 4;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

TEST(GrpcServerTest, ListensWhileTheModelLoadsAndServesOnceTheEngineIsSet) {
  GrpcServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  auto server = GrpcServer::Start(options, nullptr);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::Kvasir::NewStub(channel);

  v1::GenerateRequest request;
  request.mutable_token_ids()->add_ids(1);
  request.set_max_tokens(2);
  {
    grpc::ClientContext context;
    v1::GenerateResponse reply;
    const grpc::Status status = stub->Complete(&context, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(status.error_message().find("loading"), std::string::npos) << status.error_message();
  }
  {
    grpc::ClientContext context;
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }

  std::unique_ptr<Engine> engine = TinyEngine();
  ASSERT_NE(engine, nullptr);
  (*server)->SetEngine(engine.get());
  grpc::ClientContext context;
  v1::GenerateResponse reply;
  const grpc::Status status = stub->Complete(&context, request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.complete().usage().completion_tokens(), 2);
  (*server)->Shutdown(absl::ZeroDuration());
  engine->Shutdown();
}

}  // namespace
}  // namespace kvasir::server
