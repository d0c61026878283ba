#include "u2/engine/transcript.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace u2 {
namespace {

std::string Clock(double seconds, char fraction_separator) {
  const int64_t ms = std::max<int64_t>(0, std::llround(seconds * 1000.0));
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%02lld:%02lld:%02lld%c%03lld", static_cast<long long>(ms / 3600000),
                static_cast<long long>(ms / 60000 % 60), static_cast<long long>(ms / 1000 % 60),
                fraction_separator, static_cast<long long>(ms % 1000));
  return buf;
}

double Round3(double v) { return std::round(v * 1000.0) / 1000.0; }

float MeanConfidence(std::span<const TranscriptWord> words) {
  if (words.empty()) return 1.0f;
  float sum = 0.0f;
  for (const TranscriptWord& w : words) sum += w.confidence;
  return sum / static_cast<float>(words.size());
}

// One stretch's segments, cut at pauses and at max_segment_s.
void AddStretch(const TimedResult& stretch, const CaptionRules& rules, Transcript* t) {
  if (stretch.result.nbest.empty()) return;
  const Hypothesis& best = stretch.result.best();
  if (best.text.empty()) return;
  std::vector<TranscriptWord> words;
  for (const WordPiece& w : best.words)
    words.push_back({w.word, w.start_ms / 1000.0, w.end_ms / 1000.0, w.confidence});
  const double avg_logprob = best.ctc_score / std::max<size_t>(1, best.tokens.size());
  auto add = [&](size_t first, size_t last, std::string text) {  // words [first, last)
    TranscriptSegment s;
    s.id = static_cast<int>(t->segments.size());
    s.start = last > first ? words[first].start : stretch.start;
    s.end = last > first ? words[last - 1].end : stretch.end;
    s.text = std::move(text);
    s.words.assign(words.begin() + first, words.begin() + last);
    s.confidence = last > first ? MeanConfidence(s.words) : best.confidence;
    s.avg_logprob = avg_logprob;
    t->segments.push_back(std::move(s));
  };
  if (words.empty()) {  // text without word times
    add(0, 0, best.text);
    t->segments.back().tokens = best.tokens;
    return;
  }
  size_t first = 0;
  const size_t before = t->segments.size();
  auto text_of = [&](size_t a, size_t b) {
    std::string s;
    for (size_t i = a; i < b; ++i) s += (i > a ? " " : "") + words[i].word;
    return s;
  };
  for (size_t i = 1; i < words.size(); ++i) {
    const bool pause = words[i].start - words[i - 1].end >= rules.pause_s;
    const bool too_long = words[i].end - words[first].start > rules.max_segment_s;
    if (pause || too_long) {
      add(first, i, text_of(first, i));
      first = i;
    }
  }
  add(first, words.size(), text_of(first, words.size()));
  if (t->segments.size() == before + 1) t->segments.back().tokens = best.tokens;
}

}  // namespace

void ShiftTimes(RecognitionResult* result, int64_t offset_ms) {
  for (Hypothesis& h : result->nbest) {
    for (WordPiece& w : h.words) {
      w.start_ms += offset_ms;
      w.end_ms += offset_ms;
    }
  }
}

Transcript MakeTranscript(std::span<const TimedResult> stretches, double duration_seconds,
                          const CaptionRules& rules) {
  Transcript t;
  t.duration = duration_seconds;
  for (const TimedResult& s : stretches) {
    if (s.result.nbest.empty() || s.result.best().text.empty()) continue;
    t.text += (t.text.empty() ? "" : " ") + s.result.best().text;
    AddStretch(s, rules, &t);
  }
  for (const TranscriptSegment& s : t.segments) t.words.insert(t.words.end(), s.words.begin(), s.words.end());
  return t;
}

Transcript MakeTranscript(const RecognitionResult& result, const CaptionRules& rules) {
  const TimedResult whole{0.0, result.audio_seconds, result};
  return MakeTranscript(std::span<const TimedResult>(&whole, 1), result.audio_seconds, rules);
}

std::string SrtTime(double seconds) { return Clock(seconds, ','); }
std::string VttTime(double seconds) { return Clock(seconds, '.'); }

std::string FormatSrt(const Transcript& t) {
  std::string out;
  int cue = 0;
  for (const TranscriptSegment& s : t.segments) {
    if (s.text.empty()) continue;
    out +=
        std::to_string(++cue) + "\n" + SrtTime(s.start) + " --> " + SrtTime(s.end) + "\n" + s.text + "\n\n";
  }
  return out;
}

std::string FormatVtt(const Transcript& t) {
  std::string out = "WEBVTT\n\n";
  for (const TranscriptSegment& s : t.segments) {
    if (s.text.empty()) continue;
    out += VttTime(s.start) + " --> " + VttTime(s.end) + "\n" + s.text + "\n\n";
  }
  return out;
}

std::string FormatTranscriptJson(const Transcript& t, const std::string& key) {
  using json = nlohmann::ordered_json;
  json segments = json::array();
  for (const TranscriptSegment& s : t.segments) {
    json words = json::array();
    for (const TranscriptWord& w : s.words) {
      words.push_back({{"word", w.word},
                       {"start", Round3(w.start)},
                       {"end", Round3(w.end)},
                       {"confidence", Round3(w.confidence)}});
    }
    segments.push_back({{"id", s.id},
                        {"start", Round3(s.start)},
                        {"end", Round3(s.end)},
                        {"text", s.text},
                        {"confidence", Round3(s.confidence)},
                        {"words", words}});
  }
  json j;
  if (!key.empty()) j["key"] = key;
  j["text"] = t.text;
  j["duration"] = Round3(t.duration);
  j["segments"] = std::move(segments);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace u2
