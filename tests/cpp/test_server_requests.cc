// The server stage's parsers and formatters, without a network: the KServe HTTP body parser,
// gzip/deflate, the one request-parameter overlay every front end uses, Triton's reserved keys,
// the WAV/WAV_LENS decoder, multipart/form-data, OpenAI's response formats, API keys and the
// option registry behind the composed server config.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "u2/server/api_keys.h"
#include "u2/server/audio_inputs.h"
#include "u2/server/formats.h"
#include "u2/server/http_compression.h"
#include "u2/server/kserve_http.h"
#include "u2/server/multipart.h"
#include "u2/server/request_parameters.h"
#include "u2/server/server_config.h"

namespace u2::server {
namespace {

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

TEST(KServeHttp, ParsesJsonAndBinaryInputs) {
  const std::vector<float> wav = {0.5f, -0.25f, 0.125f};
  const int32_t len = 3;
  nlohmann::json head = {
      {"id", "r1"},
      {"parameters", {{"beam", 4}, {"binary_data_output", true}}},
      {"inputs",
       {{{"name", "WAV"},
         {"datatype", "FP32"},
         {"shape", {1, 3}},
         {"parameters", {{"binary_data_size", 12}}}},
        {{"name", "WAV_LENS"}, {"datatype", "INT32"}, {"shape", {1, 1}}, {"data", {len}}}}},
      {"outputs", {{{"name", "TRANSCRIPTS"}, {"parameters", {{"binary_data", false}}}}}}};
  const std::string json = head.dump();
  const std::string body = json + Bytes(wav);
  InferRequest r;
  HttpOutputChoice choice;
  ASSERT_TRUE(ParseHttpInferRequest(body, static_cast<int64_t>(json.size()), &r, &choice).ok());
  EXPECT_EQ(r.id, "r1");
  EXPECT_EQ(std::get<int64_t>(r.parameters.at("beam")), 4);
  ASSERT_EQ(r.inputs.size(), 2u);
  EXPECT_EQ(r.inputs[0].data(), Bytes(wav));
  EXPECT_EQ(r.inputs[1].data().size(), 4u);
  EXPECT_TRUE(choice.binary_default);
  EXPECT_FALSE(choice.BinaryFor("TRANSCRIPTS"));

  auto audio = DecodeAudioInputs(r, "m", 8, 1000);
  ASSERT_TRUE(audio.ok()) << audio.status().ToString();
  EXPECT_EQ((*audio)[0], wav);
}

TEST(KServeHttp, RefusesMalformedBodies) {
  InferRequest r;
  HttpOutputChoice c;
  EXPECT_FALSE(ParseHttpInferRequest("{\"inputs\": [", -1, &r, &c).ok());
  EXPECT_FALSE(ParseHttpInferRequest("[1]", -1, &r, &c).ok());
  EXPECT_FALSE(ParseHttpInferRequest("{}", 10, &r, &c).ok());  // header length beyond the body
  const std::string big = R"({"inputs":[{"name":"WAV","datatype":"FP32","shape":[1,1],
      "parameters":{"binary_data_size":1000000000000}}]})";
  Status s = ParseHttpInferRequest(big, static_cast<int64_t>(big.size()), &r, &c);
  EXPECT_NE(s.message().find("binary_data_size"), std::string::npos) << s.ToString();
}

TEST(KServeHttp, AudioInputsAreChecked) {
  InferRequest r;
  r.inputs.resize(2);
  r.inputs[0].name = "WAV";
  r.inputs[0].datatype = "FP32";
  r.inputs[0].shape = {1, 2};
  r.inputs[0].Own(Bytes({0.1f, std::nanf("")}));
  r.inputs[1].name = "WAV_LENS";
  r.inputs[1].datatype = "INT32";
  r.inputs[1].shape = {1, 1};
  const int32_t two = 2;
  r.inputs[1].Own(std::string(reinterpret_cast<const char*>(&two), 4));
  EXPECT_NE(DecodeAudioInputs(r, "m", 8, 100).status().message().find("non-finite"), std::string::npos);
  r.inputs[0].Own(Bytes({0.1f, 0.2f}));
  EXPECT_TRUE(DecodeAudioInputs(r, "m", 8, 100).ok());
  EXPECT_NE(DecodeAudioInputs(r, "m", 8, 1).status().message().find("limit"), std::string::npos);
  r.inputs[1].datatype = "INT64";
  EXPECT_NE(DecodeAudioInputs(r, "m", 8, 100).status().message().find("WAV_LENS"), std::string::npos);
}

// Found by fuzz/kserve_http_fuzzer: JSON data was cast to integer datatypes unchecked, so 1e300 as
// INT8 (or 1e30 as INT64) was undefined behaviour. Values a datatype cannot hold are now refused.
TEST(KServeHttp, JsonDataOutsideTheDatatypeIsRefused) {
  auto parse = [](const std::string& datatype, const std::string& data) {
    const std::string body =
        R"({"inputs":[{"name":"x","datatype":")" + datatype + R"(","shape":[1],"data":[)" + data + "]}]}";
    InferRequest r;
    HttpOutputChoice c;
    Status s = ParseHttpInferRequest(body, -1, &r, &c);
    return s.ok() ? std::optional<std::string>(std::string(r.inputs.at(0).data())) : std::nullopt;
  };
  for (const auto& [dt, bad] :
       std::vector<std::pair<std::string, std::string>>{{"INT8", "1e300"},
                                                        {"INT8", "128"},
                                                        {"INT8", "-129"},
                                                        {"INT8", "0.5"},
                                                        {"UINT8", "-1"},
                                                        {"UINT16", "65536"},
                                                        {"INT32", "2147483648"},
                                                        {"UINT32", "-1.0"},
                                                        {"INT64", "1e30"},
                                                        {"INT64", "9223372036854775808"},
                                                        {"UINT64", "-1"},
                                                        {"UINT64", "1.8446744073709552e19"},
                                                        {"FP32", "1e300"}}) {
    EXPECT_FALSE(parse(dt, bad)) << dt << " " << bad;
  }
  auto bytes = [](auto v) { return std::string(reinterpret_cast<const char*>(&v), sizeof(v)); };
  EXPECT_EQ(parse("INT8", "-128"), bytes(int8_t{-128}));
  EXPECT_EQ(parse("INT8", "127.0"), bytes(int8_t{127}));
  EXPECT_EQ(parse("UINT16", "65535"), bytes(uint16_t{65535}));
  EXPECT_EQ(parse("INT32", "-2147483648"), bytes(int32_t{-2147483647 - 1}));
  EXPECT_EQ(parse("INT64", "-9223372036854775808"), bytes(std::numeric_limits<int64_t>::min()));
  EXPECT_EQ(parse("UINT64", "18446744073709551615"), bytes(std::numeric_limits<uint64_t>::max()));
  EXPECT_EQ(parse("FP32", "0.5"), bytes(0.5f));
  EXPECT_EQ(parse("FP64", "1e300"), bytes(1e300));
}

// Found by fuzz/grpc_infer_request_fuzzer: a WAV_LENS of 0 copied 0 bytes into an empty vector's
// null data(), undefined for memcpy (UBSan). An empty row is an empty utterance.
TEST(KServeHttp, EmptyAudioRowDecodes) {
  InferRequest r;
  r.inputs.resize(2);
  r.inputs[0].name = "WAV";
  r.inputs[0].datatype = "FP32";
  r.inputs[0].shape = {2, 1};
  r.inputs[0].Own(Bytes({0.5f, 0.25f}));
  r.inputs[1].name = "WAV_LENS";
  r.inputs[1].datatype = "INT32";
  r.inputs[1].shape = {2, 1};
  const int32_t lens[2] = {0, 1};
  r.inputs[1].Own(std::string(reinterpret_cast<const char*>(lens), 8));
  auto audio = DecodeAudioInputs(r, "m", 8, 100);
  ASSERT_TRUE(audio.ok()) << audio.status().ToString();
  ASSERT_EQ(audio->size(), 2u);
  EXPECT_TRUE((*audio)[0].empty());
  EXPECT_EQ((*audio)[1], std::vector<float>{0.25f});
}

TEST(HttpCompression, InflatesWhatItDeflatesAndRefusesGarbage) {
  const std::string text(5000, 'x');
  for (bool gzip : {true, false}) {
    auto packed = Deflate(text, gzip);
    ASSERT_TRUE(packed.ok());
    EXPECT_LT(packed->size(), text.size());
    auto back = Inflate(*packed, 1 << 20);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text);
    EXPECT_FALSE(Inflate(*packed, 100).ok());                                    // over the limit
    EXPECT_FALSE(Inflate(packed->substr(0, packed->size() / 2), 1 << 20).ok());  // truncated
  }
  EXPECT_FALSE(Inflate("not compressed", 1 << 20).ok());
}

TEST(RequestParameters, OneOverlayForOfflineOptions) {
  DecodingOptions o;
  o.beam = 10;
  o.nbest = 5;
  ParameterMap p = {{"beam", int64_t{4}},
                    {"ctc_weight", 0.25},
                    {"decoding_mode", std::string("ctc_greedy")},
                    {"chunk_size", int64_t{8}},
                    {"custom", std::string("ignored")}};
  ASSERT_TRUE(ApplyRequestParameters(p, &o).ok());
  EXPECT_EQ(o.beam, 4);
  EXPECT_EQ(o.nbest, 4);  // capped at the new beam
  EXPECT_FLOAT_EQ(o.ctc_weight, 0.25f);
  EXPECT_EQ(o.mode, DecodingMode::kCtcGreedy);
  EXPECT_EQ(o.decoding_chunk_size, 8);
  // Types are checked here, bounds by the struct's Validate.
  DecodingOptions same = o;
  EXPECT_NE(ApplyRequestParameters({{"beam", std::string("4")}}, &same)
                .message()
                .find("integer is expected for beam"),
            std::string::npos);
  EXPECT_FALSE(ApplyRequestParameters({{"beam", 2.5}}, &same).ok());
  EXPECT_FALSE(ApplyRequestParameters({{"ctc_weight", std::string("x")}}, &same).ok());
  EXPECT_FALSE(ApplyRequestParameters({{"decoding_mode", std::string("viterbi")}}, &same).ok());
  EXPECT_EQ(same.beam, 4);  // a failed overlay changes nothing
  EXPECT_TRUE(ApplyRequestParameters({{"beam", int64_t{0}}}, &same).ok());  // a bound: Validate's job
  EXPECT_EQ(same.beam, 0);
}

TEST(RequestParameters, StreamOverlayAndWeNetStartKeys) {
  StreamOptions o;
  auto start = ParametersFromJson(nlohmann::json::parse(
      R"({"signal":"start","nbest":2,"continuous_decoding":true,"decoding_chunk_size":8,"hotwords":["a"]})"));
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(start->count("hotwords"), 0u);  // arrays are not decoding parameters
  ASSERT_TRUE(ApplyRequestParameters(*start, &o).ok());
  EXPECT_EQ(o.nbest, 2);
  EXPECT_TRUE(o.continuous_decoding);
  EXPECT_TRUE(o.endpointing);  // follows continuous_decoding unless given
  EXPECT_EQ(o.decoding_chunk_size, 8);
  ASSERT_TRUE(ApplyRequestParameters({{"rescoring", int64_t{0}}, {"endpointing", false}}, &o).ok());
  EXPECT_FALSE(o.rescoring);
  EXPECT_FALSE(o.endpointing);
  EXPECT_NE(ApplyRequestParameters({{"continuous_decoding", int64_t{1}}}, &o)
                .message()
                .find("boolean true or false"),
            std::string::npos);
  EXPECT_FALSE(ApplyRequestParameters({{"decoding_mode", std::string("ctc_greedy")}}, &o).ok());
  EXPECT_FALSE(ApplyRequestParameters({{"rescoring", int64_t{2}}}, &o).ok());
  // The VAD gate's keys; a new threshold moves the negative threshold with it.
  o.vad.neg_threshold = 0.2f;
  ASSERT_TRUE(ApplyRequestParameters(
                  {{"vad_gate", true}, {"vad_threshold", 0.7}, {"vad_min_silence_ms", int64_t{800}}}, &o)
                  .ok());
  EXPECT_TRUE(o.vad_gate);
  EXPECT_FLOAT_EQ(o.vad.threshold, 0.7f);
  EXPECT_FLOAT_EQ(o.vad.negative_threshold(), 0.55f);
  EXPECT_EQ(o.vad.min_silence_ms, 800);
  EXPECT_FALSE(ApplyRequestParameters({{"vad_gate", int64_t{1}}}, &o).ok());
  EXPECT_FALSE(ApplyRequestParameters({{"vad_min_silence_ms", 0.5}}, &o).ok());
}

TEST(RequestParameters, TritonReservedKeys) {
  EXPECT_TRUE(CheckTritonParameters({{"sequence_id", int64_t{5}}, {"sequence_start", true}}).ok());
  EXPECT_TRUE(CheckTritonParameters({{"triton_enable_empty_final_response", true}}).ok());
  EXPECT_FALSE(CheckTritonParameters({{"sequence_id", uint64_t{5}}}).ok());
  EXPECT_FALSE(CheckTritonParameters({{"sequence_end", int64_t{1}}}).ok());
  EXPECT_FALSE(CheckTritonParameters({{"triton_x", true}}).ok());
}

TEST(Multipart, SplitsFieldsAndFiles) {
  const std::string body =
      "--b0\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nattention_rescoring\r\n"
      "--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a;b.wav\"\r\nContent-Type: "
      "audio/wav\r\n\r\n"
      "RIFF\r\n--b0x\r\n--b0--\r\n";
  auto boundary = MultipartBoundary("multipart/form-data; charset=utf-8; boundary=\"b0\"");
  ASSERT_TRUE(boundary.ok());
  EXPECT_EQ(*boundary, "b0");
  auto parts = ParseMultipart(body, *boundary);
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].name, "model");
  EXPECT_EQ((*parts)[0].data, "attention_rescoring");
  EXPECT_EQ((*parts)[1].filename, "a;b.wav");
  EXPECT_EQ((*parts)[1].content_type, "audio/wav");
  EXPECT_EQ((*parts)[1].data, "RIFF\r\n--b0x");  // a near-delimiter inside the data stays data
  EXPECT_FALSE(MultipartBoundary("multipart/form-data").ok());
  EXPECT_FALSE(MultipartBoundary("application/json").ok());
  EXPECT_FALSE(ParseMultipart(body.substr(0, 60), "b0").ok());
  EXPECT_FALSE(ParseMultipart("no delimiter here", "b0").ok());
  EXPECT_FALSE(
      ParseMultipart("--b0\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0--", "b0").ok());  // no name
}

RecognitionResult ResultWithWords() {
  RecognitionResult r;
  r.audio_seconds = 12.5;
  Hypothesis h;
  h.text = "one two three four";
  h.tokens = {5, 6, 7};
  h.ctc_score = -3.0f;
  h.words = {{"one", 100, 400}, {"two", 500, 900}, {"three", 2000, 2400}, {"four", 2500, 11900}};
  for (WordPiece& w : h.words) w.confidence = 0.5f;
  r.nbest.push_back(h);
  return r;
}

TEST(Formats, TranscriptSegmentsAndCaptions) {
  const Transcript t = MakeTranscript(ResultWithWords(), CaptionRules{.pause_s = 0.6, .max_segment_s = 8.0});
  ASSERT_EQ(t.segments.size(), 3u);  // a pause after "two", and "four" alone passes 8 s
  EXPECT_EQ(t.segments[0].text, "one two");
  EXPECT_DOUBLE_EQ(t.segments[0].start, 0.1);
  EXPECT_DOUBLE_EQ(t.segments[1].end, 2.4);
  EXPECT_EQ(t.segments[2].text, "four");
  EXPECT_EQ(SrtTime(3723.4567), "01:02:03,457");
  EXPECT_EQ(VttTime(0.0), "00:00:00.000");
  EXPECT_EQ(FormatTranscript(t, TranscriptFormat::kSrt, "en"),
            "1\n00:00:00,100 --> 00:00:00,900\none two\n\n2\n00:00:02,000 --> 00:00:02,400\nthree\n\n"
            "3\n00:00:02,500 --> 00:00:11,900\nfour\n\n");
  EXPECT_EQ(FormatTranscript(t, TranscriptFormat::kText, "en"), "one two three four\n");
  auto v = nlohmann::json::parse(FormatTranscript(t, TranscriptFormat::kVerboseJson, "en", true, true));
  EXPECT_EQ(v["words"].size(), 4u);
  EXPECT_EQ(v["segments"].size(), 3u);
  EXPECT_DOUBLE_EQ(v["duration"].get<double>(), 12.5);
  EXPECT_EQ(v["language"], "en");
  auto j = nlohmann::json::parse(FormatTranscript(t, TranscriptFormat::kJson, "en"));
  EXPECT_EQ(j["text"], "one two three four");
  EXPECT_FALSE(ParseTranscriptFormat("docx").ok());
  auto e = nlohmann::json::parse(OpenAiError("bad", "invalid_request_error", "file"));
  EXPECT_EQ(e["error"]["param"], "file");
  EXPECT_TRUE(e["error"]["code"].is_null());
}

TEST(Formats, StretchesOfALongRecordingKeepTheirTimes) {
  RecognitionResult a = ResultWithWords(), b = ResultWithWords();
  ShiftTimes(&b, 60000);  // a second stretch one minute in
  std::vector<TimedResult> stretches = {{0.0, 12.5, a}, {60.0, 72.5, b}};
  const Transcript t = MakeTranscript(stretches, 80.0);
  EXPECT_EQ(t.text, "one two three four one two three four");
  ASSERT_EQ(t.segments.size(), 6u);
  EXPECT_DOUBLE_EQ(t.segments[3].start, 60.1);
  EXPECT_EQ(t.words.size(), 8u);
  auto j = nlohmann::json::parse(FormatTranscriptJson(t, "utt"));
  EXPECT_EQ(j["key"], "utt");
  EXPECT_EQ(j["segments"][3]["words"][0]["start"], 60.1);
  EXPECT_DOUBLE_EQ(j["duration"].get<double>(), 80.0);
}

TEST(Formats, WeNetMessages) {
  StreamResult r;
  r.is_final = true;
  r.nbest = ResultWithWords().nbest;
  EXPECT_EQ(nlohmann::json::parse(nlohmann::json::parse(WeNetResultMessage(r))["nbest"].get<std::string>())[0]
                .count("confidence"),
            0u);  // WeNet's exact fields unless asked
  auto m = nlohmann::json::parse(WeNetResultMessage(r, /*confidence=*/true));
  EXPECT_EQ(m["type"], "final_result");
  auto nbest = nlohmann::json::parse(m["nbest"].get<std::string>());  // a string holding JSON, as WeNet
  EXPECT_EQ(nbest[0]["sentence"], "one two three four");
  EXPECT_EQ(nbest[0]["word_pieces"][2]["start"], 2000);
  EXPECT_EQ(nbest[0]["word_pieces"][2]["confidence"], 0.5);
}

TEST(ApiKeys, FileIsCheckedAndReread) {
  const auto path = std::filesystem::temp_directory_path() / ("u2_keys_" + std::to_string(::getpid()));
  std::ofstream(path) << "# comment\nkey-one  \n\nkey-two # trailing comment\n";
  AuthConfig c;
  c.api_keys_file = path.string();
  auto keys = ApiKeys::Create(c);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_TRUE((*keys)->CheckAuthorization("Bearer key-one").ok());
  EXPECT_TRUE((*keys)->CheckAuthorization("bearer key-two").ok());
  EXPECT_EQ((*keys)->CheckAuthorization("Bearer nope").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ((*keys)->CheckAuthorization("").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ((*keys)->CheckAuthorization("Basic a2V5").code(), StatusCode::kUnauthenticated);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  std::ofstream(path) << "key-three\n";
  EXPECT_TRUE((*keys)->CheckKey("key-three").ok());
  EXPECT_FALSE((*keys)->CheckKey("key-one").ok());
  std::filesystem::remove(path);
  AuthConfig off;
  auto open = ApiKeys::Create(off);
  ASSERT_TRUE(open.ok());
  EXPECT_TRUE((*open)->CheckAuthorization("").ok());
  c.api_keys_file = path.string() + ".missing";
  EXPECT_FALSE(ApiKeys::Create(c).ok());
}

TEST(ServerConfig, ComposedFromComponentsForFlagsAndYaml) {
  ServerConfig config;
  OptionRegistry options;
  config.Register(&options);
  ASSERT_TRUE(
      options
          .LoadYaml(YAML::Load("model_dir: [a, b=c]\nmax_streams: 7\nstream-chunk-size: 8\nbeam: 4\n"
                               "websocket_idle_timeout_s: 9\napi_keys_file: k.txt\ngrpc_use_ssl: true\n"),
                    "test.yaml")
          .ok());
  EXPECT_EQ(config.model_dirs, (std::vector<std::string>{"a", "b=c"}));
  EXPECT_EQ(config.streams.max_streams, 7);
  EXPECT_EQ(config.stream_defaults.chunk_size, 8);
  EXPECT_EQ(config.recognizer.beam, 4);
  EXPECT_FALSE(config.recognizer.ctc_weight.has_value());  // unset: the model's own
  EXPECT_EQ(config.websocket.idle_timeout_s, 9);
  EXPECT_EQ(config.auth.api_keys_file, "k.txt");
  EXPECT_TRUE(config.grpc.use_ssl);
  EXPECT_NE(config.Validate().message().find("--grpc-server-cert"), std::string::npos);

  CLI::App app;
  options.AddTo(&app);
  const char* argv[] = {"u2serve", "--max-streams", "3", "--ctc-weight", "0.5", "--http-port", "-1"};
  app.parse(7, const_cast<char**>(argv));
  EXPECT_EQ(config.streams.max_streams, 3);  // flags win over the file
  EXPECT_FLOAT_EQ(*config.recognizer.ctc_weight, 0.5f);
  EXPECT_EQ(config.http.port, -1);
  EXPECT_NE(options.ToString().find("max_streams=3"), std::string::npos);

  EXPECT_NE(options.LoadYaml(YAML::Load("no_such_option: 1"), "x.yaml").message().find("no_such_option"),
            std::string::npos);
  EXPECT_NE(options.LoadYaml(YAML::Load("max_streams: many"), "x.yaml").message().find("max_streams"),
            std::string::npos);
  EXPECT_FALSE(options.LoadYaml(YAML::Load("[1, 2]"), "x.yaml").ok());
}

}  // namespace
}  // namespace u2::server
