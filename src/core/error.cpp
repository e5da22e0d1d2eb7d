#include "kvprime/core/error.h"

namespace kvprime {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace kvprime

namespace kvprime::detail {

void throw_error(const std::string& msg) { throw Error(msg); }

void throw_internal(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(concat("internal error (a kvprime bug, please report it): ", cond, " failed at ",
                     file, ":", line, msg.empty() ? "" : ": ", msg));
}

}  // namespace kvprime::detail
