// model.json text (ModelConfig::FromJsonText, as the model loader reads it) and everything derived
// from an accepted configuration: subsampling, right context, encoder frame counts, printing.
#include <string>

#include "fuzz_support.h"
#include "u2/model/model_config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = u2::ModelConfig::FromJsonText(std::string(u2::fuzz::AsText(data, size)));
  if (!config.ok()) return 0;
  // FromJson validates: an accepted configuration passes Validate again.
  U2_FUZZ_CHECK(config->Validate().ok());
  (void)config->ToString();
  (void)config->encoder.head_dim();
  (void)config->SubsamplingRate();
  (void)config->RightContext();
  (void)config->SubsampledFeatureDim();
  for (int frames : {0, 1, 7, 67, 1000, 1 << 20}) U2_FUZZ_CHECK(config->NumEncoderFrames(frames) >= 0);
  return 0;
}
