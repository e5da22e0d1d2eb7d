#include "test_support.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace kvprime::test {

std::string fixtures_dir() { return KVPRIME_FIXTURES_DIR; }
std::string fixture(const std::string& rel) { return fixtures_dir() + "/" + rel; }
std::string source_dir() { return KVPRIME_SOURCE_DIR; }
std::string npm_dir() {
  const char* env = std::getenv("KVPRIME_NPM_DIR");
  return env ? env : KVPRIME_NPM_DIR;
}
std::string cli_path() { return KVPRIME_CLI_PATH; }

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / ("kvprime-test-" + std::to_string(rd()));
    if (fs::create_directory(p)) {
      path_ = p.string();
      return;
    }
  }
  throw std::runtime_error("could not create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  auto da = a.detach().to(at::kCPU, at::kDouble);
  auto db = b.detach().to(at::kCPU, at::kDouble);
  if (da.numel() == 0) return 0.0;
  return (da - db).abs().max().item<double>();
}

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  auto db = b.detach().to(at::kCPU, at::kDouble);
  double scale = db.numel() ? db.abs().max().item<double>() : 0.0;
  return max_abs_diff(a, b) / std::max(scale, 1e-30);
}

}  // namespace kvprime::test
