// kvprime's version. CMakeLists.txt checks that it equals project(... VERSION ...).
#pragma once

namespace kvprime {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace kvprime
