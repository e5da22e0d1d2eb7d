#include <sstream>

#include "commands.h"
#include "kvprime/core/error.h"

namespace kvprime::cli {

void ModelArgs::add_to(CLI::App& app) {
  app.add_option("-m,--model", model_dir, "Hugging Face checkpoint directory (config.json + *.safetensors)")
      ->required();
  app.add_option("--dtype", dtype, "Compute dtype: float32, bfloat16, float16")->capture_default_str();
  app.add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--weights", weights, "linear layers: native (the checkpoint's, in --dtype), nf4 "
                 "(4-bit NormalFloat, blocks of 64, quantized at load time) or nf4-dq (nf4 with "
                 "8-bit block scales: double quantization)")
      ->capture_default_str();
}

std::vector<int64_t> parse_id_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    KVP_CHECK(b != std::string::npos, what, ": empty entry in '", text,
              "'; write comma-separated token ids like 1,15043,3186");
    item = item.substr(b, e - b + 1);
    KVP_CHECK(item.find_first_not_of("0123456789") == std::string::npos && item.size() < 19, what,
              ": '", item, "' is not a token id; write comma-separated non-negative integers");
    ids.push_back(std::stoll(item));
  }
  return ids;
}

}  // namespace kvprime::cli
