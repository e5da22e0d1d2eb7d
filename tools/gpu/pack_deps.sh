#!/usr/bin/env bash
# Packs the header-only and static build dependencies that the GPU machine lacks (it has PyTorch,
# CMake and ninja, but no nlohmann-json, CLI11, PCRE2 or SQLite headers, or GoogleTest) from this Debian
# machine's packages into .gpu/deps (gitignored), which `device` calls carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=.gpu/deps
rm -rf "$D" && mkdir -p "$D/include" "$D/lib" "$D/share/cmake" "$D/src"
cp -r /usr/include/nlohmann "$D/include/"
cp -r /usr/include/CLI "$D/include/"
cp /usr/include/pcre2.h "$D/include/"
cp /usr/lib/x86_64-linux-gnu/libpcre2-8.a "$D/lib/"
# SQLite (results store): header + Debian's static library (position-independent, needs only libm,
# libdl and pthreads, which CMakeLists.txt links); CMake's FindSQLite3 finds both via CMAKE_PREFIX_PATH.
cp /usr/include/sqlite3.h "$D/include/"
cp /usr/lib/x86_64-linux-gnu/libsqlite3.a "$D/lib/"
cp -r /usr/share/cmake/nlohmann_json /usr/share/cmake/CLI11 "$D/share/cmake/"
cp -r /usr/src/googletest "$D/src/googletest"
du -sh "$D"
