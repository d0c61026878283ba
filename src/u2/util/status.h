// Error handling for library code: functions return Status or StatusOr<T> instead of
// throwing or aborting, so a bad input never takes the process down.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace u2 {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller handed us something malformed
  kNotFound,         // a named thing (file, model, tensor, sequence) does not exist
  kFailedPrecondition,
  kResourceExhausted,  // a queue or pool is full
  kUnavailable,        // shutting down, not ready
  kUnimplemented,
  kInternal,
  kDataLoss,          // a file is truncated or corrupt
  kUnauthenticated,   // no valid credentials (API key) with the request
  kDeadlineExceeded,  // the request's time ran out before it could run
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : v_(status) { assert(!status.ok()); }  // NOLINT: implicit by design
  StatusOr(Status&& status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT
  StatusOr(const T& value) : v_(value) {}                                                    // NOLINT
  StatusOr(T&& value) : v_(std::move(value)) {}                                              // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace u2

#define U2_CONCAT_INNER_(a, b) a##b
#define U2_CONCAT_(a, b) U2_CONCAT_INNER_(a, b)

#define U2_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::u2::Status u2_status_ = (expr);        \
    if (!u2_status_.ok()) return u2_status_; \
  } while (0)

#define U2_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

// U2_ASSIGN_OR_RETURN(auto x, MakeX()); returns the error from the enclosing function.
#define U2_ASSIGN_OR_RETURN(lhs, expr) \
  U2_ASSIGN_OR_RETURN_IMPL_(U2_CONCAT_(u2_statusor_, __LINE__), lhs, expr)
