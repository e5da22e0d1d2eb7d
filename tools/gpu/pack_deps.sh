#!/usr/bin/env bash
# Packs the header-only and static build dependencies that the GPU machine lacks (it has PyTorch,
# CMake and ninja, but no nlohmann-json, CLI11, PCRE2, SQLite, toml++ or Boost headers, or GoogleTest) from this Debian
# machine's packages into .gpu/deps (gitignored), which `device` calls carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=.gpu/deps
rm -rf "$D" && mkdir -p "$D/include" "$D/lib" "$D/share/cmake" "$D/src"
cp -r /usr/include/nlohmann "$D/include/"
cp -r /usr/include/CLI "$D/include/"
cp /usr/include/pcre2.h "$D/include/"
cp -r /usr/include/toml++ "$D/include/"
cp /usr/lib/x86_64-linux-gnu/libpcre2-8.a "$D/lib/"
# SQLite (results store): header + Debian's static library (needs only libm, libdl and pthreads,
# which CMakeLists.txt links); CMake's FindSQLite3 finds both via CMAKE_PREFIX_PATH. Not
# position-independent: fine for executables; the Python extension links the machine's shared
# libsqlite3 instead (tools/gpu/python_check.sh).
cp /usr/include/sqlite3.h "$D/include/"
cp /usr/lib/x86_64-linux-gnu/libsqlite3.a "$D/lib/"
cp -r /usr/share/cmake/nlohmann_json /usr/share/cmake/CLI11 "$D/share/cmake/"
cp -r /usr/src/googletest "$D/src/googletest"
# Boost.Math for src/analysis/stats.cpp: all of /usr/include/boost is 160 MB, so only the headers
# the preprocessor pulls in here (~4 MB), plus all of boost/config and boost/predef (their
# compiler- and platform-specific branches), which is enough for FindBoost (boost/version.hpp).
g++ -std=c++17 -Iinclude -M src/analysis/stats.cpp | tr ' \\' '\n\n' | grep '^/usr/include/boost/' |
  sort -u | sed 's|^/usr/include/||' | (cd /usr/include && xargs cp --parents -t "$OLDPWD/$D/include")
cp -r /usr/include/boost/config /usr/include/boost/predef "$D/include/boost/"
du -sh "$D"
