// InferenceService, the KServe core, with a fake recognizer behind a real OfflineBatcher: the
// offline request path end to end without a network (options, tensors, batching, statistics,
// metrics), and a worker that survives an exception in one batch.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <new>
#include <thread>

#include "u2/server/inference.h"
#include "u2/server/metrics.h"

namespace u2::server {
namespace {

class InferenceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OfflineBatcherConfig bc;
    bc.max_batch_size = 4;
    bc.max_queue_delay_us = 0;
    bc.num_workers = 1;
    auto batcher = OfflineBatcher::Create(
        bc,
        [this](std::span<const Waveform> batch, const DecodingOptions& o) { return Recognize(batch, o); });
    ASSERT_TRUE(batcher.ok());
    batcher_ = std::move(batcher).value();
    auto m = std::make_unique<ServedModel>();
    m->name = "ctc_prefix_beam_search";
    m->model_dir = "/models/fake";
    m->defaults.mode = DecodingMode::kCtcPrefixBeamSearch;
    m->defaults.beam = 10;
    m->batcher = batcher_.get();
    m->max_samples = 16000;
    model_ = m.get();
    models_.Add(std::move(m));
    service_.SetReady(true);
  }
  void TearDown() override { batcher_->Shutdown(); }

  OfflineResults Recognize(std::span<const Waveform> batch, const DecodingOptions& o) {
    last_beam_ = o.beam;
    if (o.beam == kBlockingBeam) gate_.wait();
    if (throw_next_.exchange(false)) throw std::bad_alloc();
    std::vector<RecognitionResult> out;
    for (const Waveform& w : batch) {
      RecognitionResult r;
      r.nbest.push_back({});
      r.nbest[0].text =
          "samples " + std::to_string(w.samples.size()) + " at " + std::to_string(w.sample_rate);
      r.audio_seconds = w.samples.size() / 16000.0;
      out.push_back(std::move(r));
    }
    return out;
  }

  static InferRequest Request(const std::string& model, size_t n, ParameterMap params = {}) {
    InferRequest r;
    r.model_name = model;
    r.parameters = std::move(params);
    r.inputs.resize(2);
    r.inputs[0].name = "WAV";
    r.inputs[0].datatype = "FP32";
    r.inputs[0].shape = {1, static_cast<int64_t>(n)};
    r.inputs[0].Own(std::string(n * 4, '\0'));
    r.inputs[1].name = "WAV_LENS";
    r.inputs[1].datatype = "INT32";
    r.inputs[1].shape = {1, 1};
    const int32_t len = static_cast<int32_t>(n);
    r.inputs[1].Own(std::string(reinterpret_cast<const char*>(&len), 4));
    return r;
  }

  std::pair<Status, InferResponse> Infer(InferRequest r) {
    std::promise<std::pair<Status, InferResponse>> done;
    auto f = done.get_future();
    service_.Infer(std::move(r), [&](const Status& s, InferResponse resp) {
      done.set_value({s, std::move(resp)});
    });
    return f.get();
  }

  ModelRepository models_;
  InferenceService service_{&models_};
  std::unique_ptr<OfflineBatcher> batcher_;
  ServedModel* model_ = nullptr;
  static constexpr int kBlockingBeam = 77;  // such a batch waits for gate_
  std::shared_future<void> gate_;
  std::atomic<int> last_beam_{0};
  std::atomic<bool> throw_next_{false};
};

TEST_F(InferenceServiceTest, OfflineRequestEndToEnd) {
  auto [status, response] = Infer(Request("ctc_prefix_beam_search", 800));
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(response.outputs.size(), 1u);
  EXPECT_EQ(response.outputs[0].name, "TRANSCRIPTS");
  EXPECT_EQ(response.outputs[0].strings, std::vector<std::string>{"samples 800 at 16000"});
  EXPECT_EQ(response.model_version, "1");
  EXPECT_EQ(last_beam_, 10);
  const ModelStats::Snapshot s = model_->stats.Get();
  EXPECT_EQ(s.success.count, 1u);
  EXPECT_EQ(s.inference_count, 1u);
  EXPECT_DOUBLE_EQ(s.audio_seconds, 0.05);
  // The request leaves in_flight only after its reply callback returns (a drain must not end
  // while a reply is being written), so the count may lag the response by a moment.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (service_.in_flight() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(service_.in_flight(), 0);
}

TEST_F(InferenceServiceTest, ParametersGoThroughTheOverlayAndValidate) {
  auto [ok, r1] = Infer(Request("ctc_prefix_beam_search", 160, {{"beam", int64_t{3}}}));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(last_beam_, 3);
  auto [bad, r2] = Infer(Request("ctc_prefix_beam_search", 160, {{"beam", int64_t{0}}}));
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("beam must be in [1, 1000]"), std::string::npos) << bad.message();
  auto [reserved, r3] = Infer(Request("ctc_prefix_beam_search", 160, {{"triton_x", true}}));
  EXPECT_EQ(reserved.code(), StatusCode::kInvalidArgument);
  auto [rescoring, r4] =
      Infer(Request("ctc_prefix_beam_search", 160, {{"decoding_mode", std::string("attention_rescoring")}}));
  EXPECT_NE(rescoring.message().find("attention decoder"), std::string::npos) << rescoring.message();
  EXPECT_EQ(model_->stats.Get().fail.count, 3u);
}

TEST_F(InferenceServiceTest, RefusalsUnknownModelTooLongAndDraining) {
  EXPECT_EQ(Infer(Request("nope", 160)).first.code(), StatusCode::kNotFound);
  auto [tooLong, r] = Infer(Request("ctc_prefix_beam_search", 16001));
  EXPECT_NE(tooLong.message().find("limit"), std::string::npos);
  service_.StartDraining();
  EXPECT_EQ(Infer(Request("ctc_prefix_beam_search", 160)).first.code(), StatusCode::kUnavailable);
}

TEST_F(InferenceServiceTest, WorkerSurvivesAnExceptionInOneBatch) {
  throw_next_ = true;
  auto [failed, r1] = Infer(Request("ctc_prefix_beam_search", 160));
  EXPECT_EQ(failed.code(), StatusCode::kInternal);
  EXPECT_NE(failed.message().find("recognition failed"), std::string::npos) << failed.message();
  auto [ok, r2] = Infer(Request("ctc_prefix_beam_search", 160));
  EXPECT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_EQ(r2.outputs[0].strings[0], "samples 160 at 16000");
}

TEST_F(InferenceServiceTest, QueuedRequestsPastTheirTimeoutAreRefused) {
  std::promise<void> open;
  gate_ = open.get_future().share();
  // The only worker is busy with a blocked batch; a request with a 1 ms timeout waits behind it.
  std::promise<Status> first_done;
  service_.Infer(Request("ctc_prefix_beam_search", 160, {{"beam", int64_t{kBlockingBeam}}}),
                 [&](const Status& s, InferResponse) { first_done.set_value(s); });
  std::promise<Status> late_done;
  service_.Infer(Request("ctc_prefix_beam_search", 160, {{"timeout", int64_t{1000}}}),
                 [&](const Status& s, InferResponse) { late_done.set_value(s); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  open.set_value();
  EXPECT_TRUE(first_done.get_future().get().ok());
  const Status late = late_done.get_future().get();
  EXPECT_EQ(late.code(), StatusCode::kDeadlineExceeded) << late.ToString();
  // Without a timeout it runs; a malformed timeout is refused.
  EXPECT_TRUE(Infer(Request("ctc_prefix_beam_search", 160)).first.ok());
  EXPECT_EQ(Infer(Request("ctc_prefix_beam_search", 160, {{"timeout", std::string("soon")}})).first.code(),
            StatusCode::kInvalidArgument);
}

TEST_F(InferenceServiceTest, MetricsAndStatistics) {
  ASSERT_TRUE(Infer(Request("ctc_prefix_beam_search", 320)).first.ok());
  WebSocketCounters ws;
  ws.connections_total = 7;
  const std::string text = PrometheusText(models_, &ws);
  EXPECT_NE(text.find("nv_inference_request_success{model=\"ctc_prefix_beam_search\",version=\"1\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("u2_websocket_connections_total 7"), std::string::npos);
  EXPECT_EQ(PrometheusText(models_, nullptr).find("u2_websocket"), std::string::npos);
  auto stats = models_.Statistics("ctc_prefix_beam_search", "1");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->model_stats(0).inference_stats().success().count(), 1u);
  EXPECT_FALSE(models_.Statistics("ctc_prefix_beam_search", "2").ok());
  const auto config = models_.Config(*model_);
  EXPECT_EQ(config.max_batch_size(), 4);
  EXPECT_EQ(config.parameters().at("beam").string_value(), "10");
}

}  // namespace
}  // namespace u2::server
