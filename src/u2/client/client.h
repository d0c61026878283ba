// A small synchronous client for u2serve (or any server speaking the same Triton protocol),
// over gRPC or HTTP; used by u2client and u2perf. One AsrClient per thread.
//
// Offline: Recognize() sends a whole utterance as one batch-1 request. Streaming (a sequence
// model such as streaming_wenet): the audio is cut into chunks (PlanChunks) and each chunk is one
// request carrying Triton's sequence parameters (sequence_id, sequence_start, sequence_end),
// sent through a SequenceChannel one at a time; every chunk's response is the partial transcript
// so far and the response to the sequence_end chunk is the final one. Chunks sent as separate
// requests (unary gRPC, HTTP) carry the header `x-u2-sequence-id: <sequence_id>`, on which a load
// balancer keeps a sequence on one replica (docs/streaming.md, "Behind a load balancer").
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpc_service.pb.h"
#include "u2/server/kserve_types.h"
#include "u2/util/status.h"

namespace u2::server {

enum class Protocol { kGrpc, kHttp };
StatusOr<Protocol> ParseProtocol(const std::string& name);  // "grpc" | "http"

// A request parameter given on a command line as KEY=VALUE: integers go as int64, other numbers
// as double, true/false as bool, anything else as a string.
StatusOr<std::pair<std::string, Parameter>> ParseParameterArg(const std::string& arg);

// ---- Streaming: how an utterance is cut into chunks --------------------------------------------

// Chunk lengths in milliseconds. WeNet's speech_client.py (runtime/gpu) uses, for decoding chunk
// size C, subsampling R = 4, right context 6 and 25/10 ms frames: later chunks C·R·10 ms (640 ms
// for C = 16) and a first chunk that also carries the encoder's right context and the frame
// overlap, ((C-1)·R + 7 + 2)·10 ms = later + 50 ms (690 ms). Sizes that are multiples of the 10 ms
// frame shift keep WeNet's Triton feature extractor aligned; u2serve accepts any size.
struct ChunkingOptions {
  int chunk_ms = 640;        // every chunk after the first
  int first_chunk_ms = 690;  // the first chunk
  int sample_rate = 16000;

  // first_chunk_ms for a given chunk_ms, as speech_client.py derives it (chunk_ms + 50).
  static int DefaultFirstChunkMs(int chunk_ms) { return chunk_ms + 50; }
  // Both sizes in 1..60000 ms and at least one sample long.
  Status Validate() const;
  size_t chunk_samples() const;
  size_t first_chunk_samples() const;
};

// One chunk of an utterance: samples [offset, offset + length) of it, sent zero-padded to
// padded_length samples with WAV_LENS = length (as speech_client.py pads every chunk, the short
// last one included).
struct AudioChunk {
  size_t offset = 0;
  size_t length = 0;
  size_t padded_length = 0;
  bool first = false;
  bool last = false;
};

// Cuts `total_samples` into a first chunk and later chunks; the last one may be shorter (it is
// padded). Always at least one chunk, so an empty utterance still opens and ends its sequence.
std::vector<AudioChunk> PlanChunks(size_t total_samples, const ChunkingOptions& options);

// One request of a sequence.
struct SequenceRequest {
  int64_t sequence_id = 0;         // non-zero; sent as int64_param
  bool start = false;              // sequence_start
  bool end = false;                // sequence_end
  std::span<const float> samples;  // the chunk's real samples (WAV_LENS)
  size_t padded_length = 0;        // WAV's length; >= samples.size() (the rest is zeros)
  std::string request_id;
  std::map<std::string, Parameter> parameters;  // extra request parameters
};

// How chunk requests travel: kStream: one gRPC ModelStreamInfer call kept open for the whole
// channel (several sequences one after another), one request in flight; kUnary: one ModelInfer
// (gRPC) or POST .../infer (HTTP) per chunk.
enum class SequenceTransport { kStream, kUnary };

// Sends the chunks of one sequence at a time, in order, each waiting for its response. Not
// thread-safe: one channel per concurrent sequence.
class SequenceChannel {
 public:
  virtual ~SequenceChannel() = default;
  // Returns the TRANSCRIPTS text of the chunk's response (a partial, or the final after
  // `end`). A request the server refuses is an error of that request only; the channel stays
  // usable (a broken stream is reopened on the next Send).
  virtual StatusOr<std::string> Send(const SequenceRequest& request) = 0;
};

class AsrClient {
 public:
  // url: "host:port" (default ports 8001 gRPC, 8000 HTTP when ":port" is omitted).
  static StatusOr<std::unique_ptr<AsrClient>> Create(Protocol protocol, const std::string& url,
                                                     const std::string& model);
  virtual ~AsrClient() = default;

  // Recognises one utterance (float samples in [-1, 1] at 16 kHz) as a batch-1 request;
  // returns the transcript. `parameters` become request parameters (e.g. beam).
  virtual StatusOr<std::string> Recognize(std::span<const float> samples,
                                          const std::map<std::string, Parameter>& parameters,
                                          const std::string& request_id) = 0;
  // Server-side statistics of the model, as the protocol returns them (gRPC proto).
  virtual StatusOr<inference::ModelStatisticsResponse> Statistics() = 0;
  virtual Status WaitUntilReady(double timeout_s) = 0;
  // A channel for sequence (streaming) requests. kStream needs gRPC (Unimplemented over HTTP).
  virtual StatusOr<std::unique_ptr<SequenceChannel>> OpenSequenceChannel(SequenceTransport transport) = 0;
};

}  // namespace u2::server
