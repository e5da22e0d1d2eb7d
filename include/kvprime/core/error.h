// Errors: the library throws kvprime::Error, only the command line prints.
//
// KVP_CHECK(cond, parts...) is for bad input (a file, an argument, a config): the message must
// name what was wrong (the file, the tensor, the argument), expected vs actual, and the fix.
// KVP_ASSERT(cond, parts...) is for internal invariants: failing it is a kvprime bug.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvprime {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "[2, 8, 24, 16]": shapes in error messages.
std::string shape_str(const std::vector<int64_t>& shape);

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const std::string& msg);
[[noreturn]] void throw_internal(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace kvprime

#define KVP_CHECK(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) ::kvprime::detail::throw_error(::kvprime::detail::concat(__VA_ARGS__)); \
  } while (0)

#define KVP_FAIL(...) ::kvprime::detail::throw_error(::kvprime::detail::concat(__VA_ARGS__))

#define KVP_ASSERT(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond))                                                               \
      ::kvprime::detail::throw_internal(__FILE__, __LINE__, #cond,             \
                                        ::kvprime::detail::concat("", ##__VA_ARGS__)); \
  } while (0)
