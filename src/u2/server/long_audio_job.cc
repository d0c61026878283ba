#include "u2/server/long_audio_job.h"

#include <spdlog/spdlog.h>

#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "u2/server/kserve_types.h"
#include "u2/vad/speech_segmenter.h"

namespace u2::server {
namespace {

// What the segment tasks share. The last one to finish (or the segmenter, if it finishes last)
// answers.
struct JobState {
  LongAudioRequest request;
  std::mutex mu;
  // Held while results are delivered (on_segment, done): deliveries from different threads go out
  // one at a time, in the order their results were taken under `mu`, and done comes last.
  std::mutex deliver_mu;
  std::map<int, TimedResult> ready;  // finished segments not yet passed on, by index
  std::vector<TimedResult> results;  // passed on, in order
  int submitted = 0;
  int finished = 0;
  bool segmenting_done = false;
  bool answered = false;
  Status error;

  // With mu held: passes on what is ready in order; true if the whole job is now complete.
  bool AdvanceLocked(std::vector<TimedResult>* to_announce) {
    while (true) {
      auto it = ready.find(static_cast<int>(results.size()));
      if (it == ready.end()) break;
      to_announce->push_back(it->second);
      results.push_back(std::move(it->second));
      ready.erase(it);
    }
    return segmenting_done && finished == submitted && !answered;
  }

  void Finish(std::unique_lock<std::mutex>& lock, bool complete, std::vector<TimedResult> announce) {
    if (complete) answered = true;
    StatusOr<std::vector<TimedResult>> outcome =
        error.ok() ? StatusOr<std::vector<TimedResult>>(results) : StatusOr<std::vector<TimedResult>>(error);
    // Taken before `mu` is released (lock order: mu, then deliver_mu), so a later result cannot
    // overtake this one. ThreadSanitizer found the unordered version: a segment's text written
    // by a batcher thread while the segmenting thread finished the response.
    std::lock_guard<std::mutex> deliver(deliver_mu);
    lock.unlock();
    if (request.on_segment && error.ok()) {
      for (const TimedResult& r : announce) request.on_segment(r);
    }
    if (complete) request.done(std::move(outcome));
  }
};

void SubmitSegment(const std::shared_ptr<JobState>& job, int index, AudioSegment segment) {
  auto samples = std::make_shared<std::vector<float>>(std::move(segment.samples));
  const double start = segment.start_seconds(), end = segment.end_seconds();
  OfflineTask task;
  task.waveforms.push_back({*samples, kWireSampleRate});
  task.options = job->request.options;
  task.batch_key = job->request.model->name + "|" + job->request.options.ToString();
  task.cancelled = job->request.cancelled;
  task.deadline = job->request.deadline;
  task.done = [job, index, samples, start, end](OfflineResults results, const OfflineTaskTiming&) {
    std::unique_lock<std::mutex> lock(job->mu);
    ++job->finished;
    if (!results.ok()) {
      if (job->error.ok())
        job->error = results.status().WithContext("segment at " + std::to_string(start) + " s");
    } else {
      RecognitionResult r = std::move(results->front());
      ShiftTimes(&r, static_cast<int64_t>(start * 1000.0 + 0.5));
      job->ready.emplace(index, TimedResult{start, end, std::move(r)});
    }
    std::vector<TimedResult> announce;
    const bool complete = job->AdvanceLocked(&announce);
    job->Finish(lock, complete, std::move(announce));
  };
  if (Status s = job->request.model->batcher->Submit(std::move(task)); !s.ok()) {
    std::unique_lock<std::mutex> lock(job->mu);
    ++job->finished;
    if (job->error.ok()) job->error = s;
    std::vector<TimedResult> announce;
    const bool complete = job->AdvanceLocked(&announce);
    job->Finish(lock, complete, std::move(announce));
  }
}

}  // namespace

void StartLongAudioJob(LongAudioRequest request) {
  auto job = std::make_shared<JobState>();
  job->request = std::move(request);
  std::thread([job] {
    const LongAudioRecognizer& long_audio = *job->request.segmenter;
    SpeechSegmenter segmenter(long_audio.vad(), long_audio.config().vad);
    std::span<const float> samples(job->request.samples);
    int index = 0;
    auto submit = [&](std::vector<AudioSegment> segments) {
      for (AudioSegment& s : segments) {
        {
          std::lock_guard<std::mutex> lock(job->mu);
          if (!job->error.ok()) return;
          ++job->submitted;
        }
        SubmitSegment(job, index++, std::move(s));
      }
    };
    try {
      constexpr size_t kBlock = 1 << 16;
      for (size_t at = 0; at < samples.size(); at += kBlock) {
        submit(segmenter.Accept(samples.subspan(at, std::min(kBlock, samples.size() - at))));
      }
      submit(segmenter.Finish());
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(job->mu);
      if (job->error.ok()) job->error = Internal(std::string("segmenting failed: ") + e.what());
    }
    std::unique_lock<std::mutex> lock(job->mu);
    job->segmenting_done = true;
    std::vector<TimedResult> announce;
    const bool complete = job->AdvanceLocked(&announce);
    job->Finish(lock, complete, std::move(announce));
  }).detach();
}

}  // namespace u2::server
