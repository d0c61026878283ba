#include "u2/server/audio_inputs.h"

#include <cmath>
#include <cstring>

namespace u2::server {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

StatusOr<std::vector<std::vector<float>>> DecodeAudioInputs(const InferRequest& r, const std::string& model,
                                                            int max_batch_size, int64_t max_samples) {
  const InputTensor* wav = nullptr;
  const InputTensor* lens = nullptr;
  for (const InputTensor& t : r.inputs) {
    const InputTensor** slot = t.name == "WAV" ? &wav : t.name == "WAV_LENS" ? &lens : nullptr;
    if (!slot) {
      return InvalidArgument("unexpected inference input '" + t.name + "' for model '" + model +
                             "' (it takes WAV and WAV_LENS)");
    }
    if (*slot) return InvalidArgument("input '" + t.name + "' is given more than once");
    *slot = &t;
  }
  if (!wav || !lens) {
    return InvalidArgument("expected 2 inputs but got " + std::to_string(r.inputs.size()) +
                           " inputs for model '" + model + "': missing required input '" +
                           std::string(wav ? "WAV_LENS" : "WAV") + "'");
  }
  if (wav->datatype != "FP32") {
    return InvalidArgument("inference input 'WAV' data-type is '" + wav->datatype + "', but model '" + model +
                           "' expects 'FP32'");
  }
  if (lens->datatype != "INT32") {
    return InvalidArgument("inference input 'WAV_LENS' data-type is '" + lens->datatype + "', but model '" +
                           model + "' expects 'INT32'");
  }
  if (wav->shape.size() != 2 || wav->shape[0] < 0 || wav->shape[1] < 0) {
    return InvalidArgument("unexpected shape for input 'WAV' for model '" + model +
                           "'. Expected [-1,-1], got " + ShapeString(wav->shape));
  }
  if (lens->shape.size() != 2 || lens->shape[1] != 1 || lens->shape[0] < 0) {
    return InvalidArgument("unexpected shape for input 'WAV_LENS' for model '" + model +
                           "'. Expected [-1,1], got " + ShapeString(lens->shape));
  }
  const int64_t batch = wav->shape[0];
  const int64_t width = wav->shape[1];
  if (lens->shape[0] != batch) {
    return InvalidArgument("inputs 'WAV' and 'WAV_LENS' have different batch sizes (" +
                           std::to_string(batch) + " and " + std::to_string(lens->shape[0]) + ")");
  }
  if (batch < 1 || batch > max_batch_size) {
    return InvalidArgument("inference request batch-size must be in [1, " + std::to_string(max_batch_size) +
                           "] for '" + model + "', got " + std::to_string(batch));
  }
  if (width > (int64_t{1} << 31) / 4)
    return InvalidArgument("input 'WAV' is too wide: " + ShapeString(wav->shape));
  const uint64_t wav_bytes = static_cast<uint64_t>(batch) * static_cast<uint64_t>(width) * 4;
  if (wav->data().size() != wav_bytes) {
    return InvalidArgument("unexpected total byte size " + std::to_string(wav->data().size()) +
                           " for input 'WAV', expecting " + std::to_string(wav_bytes));
  }
  if (lens->data().size() != static_cast<uint64_t>(batch) * 4) {
    return InvalidArgument("unexpected total byte size " + std::to_string(lens->data().size()) +
                           " for input 'WAV_LENS', expecting " + std::to_string(batch * 4));
  }
  std::vector<std::vector<float>> audio(batch);
  for (int64_t b = 0; b < batch; ++b) {
    int32_t n;
    std::memcpy(&n, lens->data().data() + 4 * b, 4);
    if (n < 0 || n > width) {
      return InvalidArgument("WAV_LENS[" + std::to_string(b) + "] = " + std::to_string(n) +
                             " is outside [0, " + std::to_string(width) + "] (the WAV row length)");
    }
    if (n > max_samples) {
      return InvalidArgument("WAV_LENS[" + std::to_string(b) + "] = " + std::to_string(n) + " samples (" +
                             std::to_string(n / static_cast<double>(kWireSampleRate)) +
                             " s) exceeds this model's limit of " + std::to_string(max_samples) +
                             " samples; segment the audio first");
    }
    if (n == 0) continue;  // an empty row (memcpy to an empty vector's null data() is undefined)
    audio[b].resize(n);
    std::memcpy(audio[b].data(), wav->data().data() + 4 * b * width, 4 * static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) {
      if (!std::isfinite(audio[b][i])) {
        return InvalidArgument("input 'WAV' has a non-finite sample (NaN or Inf) in utterance " +
                               std::to_string(b) + " at index " + std::to_string(i));
      }
    }
  }
  return audio;
}

Status CheckRequestedOutputs(const InferRequest& request, const std::string& model) {
  for (const std::string& out : request.requested_outputs) {
    if (out != "TRANSCRIPTS" && out != "SEGMENTS") {
      return InvalidArgument("unexpected inference output '" + out + "' for model '" + model + "'");
    }
  }
  return Status::Ok();
}

}  // namespace u2::server
