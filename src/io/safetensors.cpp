// Reader and writer of the safetensors format (see include/kvprime/io/safetensors.h for the
// layout). Reading never copies tensor data unless it must (unaligned data, empty tensors);
// all validation happens in open(), so tensor() can trust the header.
#include "kvprime/io/safetensors.h"

#include "kvprime/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/mapped_file.h"
#include "kvprime/core/error.h"
#include "kvprime/core/hash.h"

namespace kvprime {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Tensor bytes are handed to ATen in place and the header length is read with memcpy, both of
// which assume the host stores numbers little-endian like the format does.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "kvprime reads safetensors data in place, which needs a little-endian host");

// The reference implementation refuses headers above 100 MB too; a bigger length field means a
// wrong or corrupt file, and refusing it early avoids copying gigabytes into a std::string.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

constexpr const char* kCorrupt = "the file is truncated or corrupt; re-download or re-convert it";

struct DtypeEntry {
  const char* name;  // as written in headers
  at::ScalarType type;
};

// The dtypes kvprime reads and writes. The format also has U16/U32/U64 and FP8 types, which
// LibTorch 1.13 cannot represent, so they are rejected with a message saying so.
const DtypeEntry kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};
constexpr const char* kSupported = "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL";

const DtypeEntry* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeEntry* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return &d;
  return nullptr;
}

// Up to `limit` names, quoted, for "did you mean" style messages.
template <typename Range>
std::string some_names(const Range& names, size_t total, size_t limit = 5) {
  std::ostringstream os;
  size_t i = 0;
  for (const auto& n : names) {
    if (i == limit) break;
    os << (i++ ? ", " : "") << "'" << n << "'";
  }
  if (total > limit) os << ", ... (" << total << " in all)";
  return os.str();
}

// Parses JSON text, rejecting duplicate keys in any object: nlohmann would silently keep the
// last one, which would hide a second entry for the same tensor name.
json parse_json_strict(const std::string& text, const std::string& where, const char* fix) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far, one set per open object
  std::string duplicate;
  json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case json::parse_event_t::object_end: open_objects.pop_back(); break;
      case json::parse_event_t::key:
        if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default: break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    KVP_FAIL(where, ": not valid JSON (", e.what(), "); ", fix);
  }
  KVP_CHECK(duplicate.empty(), where, ": the key '", duplicate,
            "' appears twice in one JSON object, so one entry would be silently lost; ", fix);
  return j;
}

// A JSON number that is a non-negative integer, as uint64_t; `what` describes it in errors.
uint64_t non_negative_int(const json& v, const std::string& what, const std::string& context) {
  KVP_CHECK(v.is_number_integer(), what, ": expected a non-negative integer, found ", v.dump(),
            context, "; ", kCorrupt);
  // nlohmann stores every integer written without '-' as unsigned, so a signed one is negative
  // (or "-0", which is harmless and read as 0).
  if (!v.is_number_unsigned()) {
    KVP_CHECK(v.get<int64_t>() >= 0, what, ": expected a non-negative integer, found the negative ",
              v.dump(), context, "; ", kCorrupt);
    return 0;
  }
  return v.get<uint64_t>();
}

// One header entry {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, validated
// against itself and the size of the data section (the overlap check needs all entries).
TensorInfo parse_entry(const std::string& name, const json& v, const std::string& file_where,
                       uint64_t data_size) {
  const std::string where = file_where + ", tensor '" + name + "'";
  TensorInfo info;
  info.name = name;
  KVP_CHECK(v.is_object(), where,
            ": expected an object {dtype, shape, data_offsets}, found a JSON ", v.type_name(), "; ",
            kCorrupt);

  auto it = v.find("dtype");
  KVP_CHECK(it != v.end() && it->is_string(), where, ": \"dtype\" is missing or not a string; ",
            kCorrupt);
  info.dtype = it->get<std::string>();
  const DtypeEntry* dt = dtype_by_name(info.dtype);
  KVP_CHECK(dt, where, ": dtype '", info.dtype, "' is not supported (expected one of ", kSupported,
            "); convert the checkpoint to a supported dtype, e.g. load it in Python and save it "
            "again as bfloat16 or float32");
  info.scalar_type = dt->type;
  const uint64_t elem_size = c10::elementSize(dt->type);

  it = v.find("shape");
  KVP_CHECK(it != v.end() && it->is_array(), where,
            ": \"shape\" is missing or not an array of integers; ", kCorrupt);
  const std::string shape_context = " in shape " + it->dump();
  // The element count may overflow 64 bits for absurd shapes; a zero dimension still makes it 0.
  uint64_t numel = 1;
  bool overflow = false, has_zero = false;
  for (const json& d : *it) {
    const uint64_t dim = non_negative_int(d, where + ": shape", shape_context);
    KVP_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where,
              ": dimension ", dim, shape_context, " does not fit in int64; ", kCorrupt);
    info.shape.push_back(static_cast<int64_t>(dim));
    has_zero |= dim == 0;
    overflow |= __builtin_mul_overflow(numel, dim, &numel);
  }
  if (has_zero) numel = 0, overflow = false;
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, elem_size, &nbytes);
  KVP_CHECK(!overflow, where, ": shape ", shape_str(info.shape), " of ", info.dtype,
            " is too large to address (its byte size overflows 64 bits); ", kCorrupt);

  it = v.find("data_offsets");
  KVP_CHECK(it != v.end() && it->is_array() && it->size() == 2, where,
            ": \"data_offsets\" must be an array [begin, end], found ",
            it == v.end() ? std::string("nothing") : it->dump(), "; ", kCorrupt);
  const std::string offsets_context = " in data_offsets " + it->dump();
  info.begin = non_negative_int((*it)[0], where + ": data_offsets begin", offsets_context);
  info.end = non_negative_int((*it)[1], where + ": data_offsets end", offsets_context);
  KVP_CHECK(info.begin <= info.end, where, ": data_offsets [", info.begin, ", ", info.end,
            "] end before they begin; ", kCorrupt);
  KVP_CHECK(info.end - info.begin == nbytes, where, ": shape ", shape_str(info.shape), " x ",
            info.dtype, " (", elem_size, " bytes each) needs ", nbytes,
            " bytes, but its byte range data_offsets [", info.begin, ", ", info.end, "] spans ",
            info.end - info.begin, " bytes; ", kCorrupt);
  KVP_CHECK(info.end <= data_size, where, ": its bytes [", info.begin, ", ", info.end,
            ") reach beyond the end of the data section, which has only ", data_size, " bytes; ",
            kCorrupt);
  return info;
}


}  // namespace

// ---------------------------------------------------------------------------------------------
// SafeTensorsFile

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  SafeTensorsFile f;
  f.path_ = path;
  const std::string where = "safetensors file '" + path + "'";
  f.file_ = MappedFile::open(path);
  const uint8_t* base = f.file_->data();
  const uint64_t size = f.file_->size();

  // Layout: [u64 little-endian N][N bytes of JSON header][data section].
  KVP_CHECK(size >= 8, where, ": the file is only ", size,
            " bytes, shorter than the 8-byte header length every safetensors file starts with; ",
            kCorrupt);
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  KVP_CHECK(header_len <= kMaxHeaderBytes, where, ": the header length field says ", header_len,
            " bytes, more than the ", kMaxHeaderBytes,
            "-byte limit; this is not a safetensors file, or ", kCorrupt);
  KVP_CHECK(header_len <= size - 8, where, ": the header length field says ", header_len,
            " bytes, but only ", size - 8, " bytes follow it; ", kCorrupt);
  f.header_json_.assign(reinterpret_cast<const char*>(base + 8), header_len);
  f.data_offset_ = 8 + header_len;
  const uint64_t data_size = size - f.data_offset_;

  const json header = parse_json_strict(f.header_json_, where + ": header", kCorrupt);
  KVP_CHECK(
      header.is_object(), where,
      ": the header must be a JSON object {name: {dtype, shape, data_offsets}}, found a JSON ",
      header.type_name(), "; ", kCorrupt);

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      KVP_CHECK(value.is_object(), where,
                ": \"__metadata__\" must be an object of string -> string, found a JSON ",
                value.type_name(), "; ", kCorrupt);
      for (const auto& [mk, mv] : value.items()) {
        KVP_CHECK(mv.is_string(), where, ": \"__metadata__\" entry '", mk,
                  "' must be a string, found ", mv.dump(),
                  "; the writer did not follow the format; re-convert the file");
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(key, value, where, data_size));
  }

  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  // Sorted by begin, non-empty ranges are disjoint iff each starts at or after the previous one's
  // end. Empty ranges own no bytes and so cannot overlap anything.
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : f.tensors_) {
    if (t.begin == t.end) continue;
    KVP_CHECK(!prev || t.begin >= prev->end, where, ": tensors '", prev ? prev->name : "",
              "' (bytes [", prev ? prev->begin : 0, ", ", prev ? prev->end : 0, ")) and '", t.name,
              "' (bytes [", t.begin, ", ", t.end,
              ")) overlap in the data section, but each tensor must own its bytes; ", kCorrupt);
    prev = &t;
  }
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
  return f;
}

bool SafeTensorsFile::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafeTensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    std::vector<std::string> names;
    for (const auto& kv : index_) names.push_back(kv.first);
    KVP_FAIL("safetensors file '", path_, "' has no tensor '", name, "' (it has ",
             names.empty() ? std::string("none") : some_names(names, names.size()),
             "); check the tensor name and that this is the right file");
  }
  return tensors_[it->second];
}

at::Tensor SafeTensorsFile::tensor(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto options = at::TensorOptions().dtype(t.scalar_type).device(at::kCPU);
  const uint64_t nbytes = t.end - t.begin;
  // An empty tensor has no bytes to view (its offset may even be the end of the mapping).
  if (nbytes == 0) return at::empty(t.shape, options);
  const uint8_t* p = file_->data() + data_offset_ + t.begin;

  if (t.scalar_type == at::kBool) {
    // ATen assumes bool bytes are exactly 0 or 1; anything else gives undefined results.
    const uint8_t* bad = std::find_if(p, p + nbytes, [](uint8_t b) { return b > 1; });
    KVP_CHECK(bad == p + nbytes, "safetensors file '", path_, "', tensor '", name,
              "': BOOL element ", bad - p, " has byte value ", static_cast<int>(*bad),
              ", but booleans must be stored as 0 or 1; ", kCorrupt);
  }

  // The mapping is page-aligned, so this only fails when the header length or the offsets are
  // not multiples of the element size (an oddly padding writer). ATen kernels may assume natural
  // alignment, so hand out an aligned copy instead of a misaligned view.
  if (reinterpret_cast<uintptr_t>(p) % c10::elementSize(t.scalar_type) != 0) {
    at::Tensor copy = at::empty(t.shape, options);
    std::memcpy(copy.data_ptr(), p, nbytes);
    return copy;
  }
  // The deleter owns a reference to the mapping: the file stays mapped while the tensor lives.
  std::shared_ptr<MappedFile> keep_mapped = file_;
  return at::from_blob(
      const_cast<uint8_t*>(p), t.shape, [keep_mapped](void*) {}, options);
}

const uint8_t* SafeTensorsFile::mapped_data() const { return file_->data(); }
size_t SafeTensorsFile::mapped_size() const { return file_->size(); }

// ---------------------------------------------------------------------------------------------
// Checkpoint

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  KVP_CHECK(in, "cannot read ", what, " '", path, "': ", std::strerror(errno),
            "; check that it exists and is readable");
  std::ostringstream ss;
  ss << in.rdbuf();
  KVP_CHECK(!in.bad(), "error while reading ", what, " '", path, "'; check the disk");
  return ss.str();
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint c;
  c.dir_ = dir;
  std::error_code ec;
  KVP_CHECK(fs::is_directory(dir, ec), "checkpoint directory '", dir,
            "' does not exist or is not a directory; pass the folder that holds ", kSingleName,
            " or ", kIndexName);
  const fs::path index_path = fs::path(dir) / kIndexName;
  const fs::path single_path = fs::path(dir) / kSingleName;

  if (fs::exists(index_path, ec)) {
    // Sharded: {"metadata": {...}, "weight_map": {tensor: shard file name}}.
    const std::string idx = index_path.string();
    const std::string fix = "re-download the checkpoint (index and shards together)";
    const json j = parse_json_strict(read_text_file(idx, "checkpoint index"),
                                     "checkpoint index '" + idx + "'", fix.c_str());
    KVP_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
              "checkpoint index '", idx,
              "' must be a JSON object with a \"weight_map\" object {tensor: shard file}; ", fix);
    std::map<std::string, std::string> weight_map;  // tensor -> shard file name
    for (const auto& [tensor, shard] : j["weight_map"].items()) {
      KVP_CHECK(shard.is_string(), "checkpoint index '", idx, "': tensor '", tensor, "' maps to ",
                shard.dump(), " instead of a shard file name; ", fix);
      const std::string s = shard.get<std::string>();
      // Hugging Face indexes name files next to the index; refusing paths keeps a crafted index
      // from pointing at files outside the checkpoint.
      KVP_CHECK(!s.empty() && s.find('/') == std::string::npos && s != "." && s != "..",
                "checkpoint index '", idx, "': tensor '", tensor, "' maps to '", s,
                "', which is not a plain file name in the checkpoint directory; ", fix);
      weight_map[tensor] = s;
    }
    KVP_CHECK(!weight_map.empty(), "checkpoint index '", idx,
              "' has an empty \"weight_map\" (no tensors); ", fix);

    std::set<std::string> shard_names;
    for (const auto& kv : weight_map) shard_names.insert(kv.second);
    std::vector<std::string> missing;
    for (const auto& s : shard_names)
      if (!fs::is_regular_file(fs::path(dir) / s, ec)) missing.push_back(s);
    KVP_CHECK(missing.empty(), "checkpoint index '", idx, "' names ", missing.size(),
              " shard file(s) missing from '", dir, "': ", some_names(missing, missing.size(), 10),
              "; download all shards listed in the index");

    std::map<std::string, size_t> shard_slot;  // shard file name -> index into files_
    for (const auto& s : shard_names) {
      shard_slot[s] = c.files_.size();
      c.files_.push_back(SafeTensorsFile::open((fs::path(dir) / s).string()));
    }
    for (const auto& [tensor, shard] : weight_map) {
      const SafeTensorsFile& f = c.files_[shard_slot.at(shard)];
      KVP_CHECK(f.contains(tensor), "checkpoint index '", idx, "' says tensor '", tensor,
                "' is in shard '", f.path(),
                "', but that shard has no such tensor; the index and shards do not belong "
                "together; ",
                fix);
    }
  } else if (fs::exists(single_path, ec)) {
    c.files_.push_back(SafeTensorsFile::open(single_path.string()));
  } else {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir, ec)) found.push_back(e.path().filename());
    std::sort(found.begin(), found.end());
    KVP_FAIL(
        "checkpoint directory '", dir, "' has neither ", kSingleName, " nor ", kIndexName,
        " (it holds ", found.empty() ? std::string("nothing") : some_names(found, found.size(), 10),
        "); expected a Hugging Face checkpoint saved as safetensors: one ", kSingleName,
        " or shards listed by ", kIndexName, ". Convert .bin checkpoints to safetensors first");
  }

  // Every tensor of every shard is reachable, also ones the index forgot; a name stored in two
  // shards would make the choice depend on load order, so it is an error.
  for (size_t i = 0; i < c.files_.size(); ++i) {
    for (const TensorInfo& t : c.files_[i].tensors()) {
      auto [it, inserted] = c.where_.emplace(t.name, i);
      KVP_CHECK(inserted, "checkpoint '", dir, "': tensor '", t.name,
                "' is stored in two shards, '", c.files_[it->second].path(), "' and '",
                c.files_[i].path(),
                "', so which copy is meant is ambiguous; remove the stale shard or re-download the "
                "checkpoint");
    }
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);  // std::map: already sorted
  return out;
}

bool Checkpoint::contains(const std::string& name) const { return where_.count(name) > 0; }

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    const std::vector<std::string> n = names();
    KVP_FAIL("checkpoint '", dir_, "' has no tensor '", name, "' (it has ",
             n.empty() ? std::string("none") : some_names(n, n.size()),
             "); check the tensor name and that this checkpoint is the model you meant");
  }
  return files_[it->second].info(name);
}

at::Tensor Checkpoint::tensor(const std::string& name) const {
  info(name);  // throws a checkpoint-level error for unknown names
  return files_[where_.at(name)].tensor(name);
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  info(name);
  return files_[where_.at(name)].path();
}

std::string Checkpoint::fingerprint() const {
  // Sorting makes the hash independent of shard names and order; each text is length-prefixed
  // so that moving bytes from one header to the next changes the hash.
  std::vector<const std::string*> headers;
  for (const auto& f : files_) headers.push_back(&f.header_json());
  std::sort(headers.begin(), headers.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  uint64_t h = fnv1a64({});
  for (const std::string* s : headers) {
    const uint64_t len = s->size();
    h = fnv1a64(std::string_view(reinterpret_cast<const char*>(&len), sizeof len), h);
    h = fnv1a64(*s, h);
  }
  return hex64(h);
}

// ---------------------------------------------------------------------------------------------
// Writing

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = "saving safetensors file '" + path + "'";
  // ordered_json keeps the header in the given order, matching the order of the data.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::set<std::string> seen;
  std::vector<at::Tensor> cpu;  // contiguous CPU tensors, in file order
  cpu.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    KVP_CHECK(name != "__metadata__", where,
              ": \"__metadata__\" is reserved for the metadata map; rename the tensor");
    KVP_CHECK(seen.insert(name).second, where, ": tensor name '", name,
              "' is given twice; names in a file must be unique");
    KVP_CHECK(t.defined(), where, ": tensor '", name, "' is undefined; pass a real tensor");
    KVP_CHECK(t.layout() == at::kStrided, where, ": tensor '", name, "' has layout ", t.layout(),
              "; convert it to a dense tensor (to_dense()) first");
    const DtypeEntry* dt = dtype_by_type(t.scalar_type());
    KVP_CHECK(dt, where, ": tensor '", name, "' has dtype ", t.scalar_type(),
              ", which kvprime cannot store; convert it to one of float64, float32, float16, "
              "bfloat16, int64, int32, int16, int8, uint8, bool");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const uint64_t nbytes = c.numel() * c.element_size();
    nlohmann::ordered_json entry;
    entry["dtype"] = dt->name;
    entry["shape"] = c.sizes().vec();
    entry["data_offsets"] = {offset, offset + nbytes};
    header[name] = std::move(entry);
    offset += nbytes;
    cpu.push_back(std::move(c));
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    KVP_FAIL(where, ": cannot encode the header (", e.what(),
             "); tensor names and metadata must be valid UTF-8");
  }
  // Pad with spaces (still valid JSON) so the data section starts 8-byte aligned, as the
  // reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  AtomicFile file(path, where);
  file.write(&header_len, 8);  // little-endian host, see static_assert
  file.write(text.data(), text.size());
  for (const at::Tensor& c : cpu)
    if (c.numel() > 0) file.write(c.data_ptr(), c.numel() * c.element_size());
  file.commit();
}

}  // namespace kvprime
