#include "engine/model/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace sparsed {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int64_t kMaxElements = int64_t{1} << 48;

// ggml's types: name, elements per block, bytes per block. Ids ggml retired (4, 5, 31–33) or
// never defined are absent.
struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t block;
  int64_t bytes;
};
constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const TypeInfo* FindType(uint32_t id) {
  for (const TypeInfo& t : kTypes)
    if (t.id == id) return &t;
  return nullptr;
}

std::optional<DType> LoadableDType(uint32_t id) {
  switch (id) {
    case 0:
      return DType::kF32;
    case 1:
      return DType::kF16;
    case 2:
      return DType::kQ4_0;
    case 8:
      return DType::kQ8_0;
    case 30:
      return DType::kBF16;
    default:
      return std::nullopt;
  }
}

// Bounds-checked little-endian reads over the file's bytes.
class Reader {
 public:
  Reader(absl::string_view b, absl::string_view file) : b_(b), file_(file) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return b_.size() - pos_; }

  template <class T>
  absl::Status Read(T* v, absl::string_view what) {
    if (left() < sizeof(T)) return Truncated(what);
    std::memcpy(v, b_.data() + pos_, sizeof(T));  // little-endian hosts only (x86-64, arm64)
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  absl::Status Skip(uint64_t n, absl::string_view what) {
    if (left() < n) return Truncated(what);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status String(std::string* s, absl::string_view what) {
    uint64_t n = 0;
    RETURN_IF_ERROR(Read(&n, what));
    if (left() < n) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ": ", what, " claims ", n,
                                                     " bytes at offset ", pos_, "; the file has ",
                                                     left(), " left (truncated or corrupt)"));
    }
    s->assign(b_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status Truncated(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ": file ends inside ", what, " (offset ", pos_, ", truncated?)"));
  }

 private:
  absl::string_view b_;
  absl::string_view file_;
  uint64_t pos_ = 0;
};

// Bytes of one element of a scalar metadata type; 0 for strings and arrays; -1 if unknown.
int ScalarBytes(uint32_t type) {
  switch (type) {
    case 0:
    case 1:
    case 7:
      return 1;
    case 2:
    case 3:
      return 2;
    case 4:
    case 5:
    case 6:
      return 4;
    case 10:
    case 11:
    case 12:
      return 8;
    case 8:
    case 9:
      return 0;
    default:
      return -1;
  }
}

absl::Status ReadScalar(Reader& r, uint32_t type, absl::string_view file, const std::string& what,
                        GgufValue* v) {
  auto as_int = [&](auto x) -> absl::Status {
    RETURN_IF_ERROR(r.Read(&x, what));
    v->kind = GgufValue::Kind::kInt;
    v->i = static_cast<int64_t>(x);
    return absl::OkStatus();
  };
  auto as_float = [&](auto x) -> absl::Status {
    RETURN_IF_ERROR(r.Read(&x, what));
    v->kind = GgufValue::Kind::kFloat;
    v->f = x;
    return absl::OkStatus();
  };
  switch (type) {
    case 0:
      return as_int(uint8_t{});
    case 1:
      return as_int(int8_t{});
    case 2:
      return as_int(uint16_t{});
    case 3:
      return as_int(int16_t{});
    case 4:
      return as_int(uint32_t{});
    case 5:
      return as_int(int32_t{});
    case 11:
      return as_int(int64_t{});
    case 10: {
      uint64_t x = 0;
      RETURN_IF_ERROR(r.Read(&x, what));
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": ", what, " is out of range (", x, ")"));
      v->kind = GgufValue::Kind::kInt;
      v->i = static_cast<int64_t>(x);
      return absl::OkStatus();
    }
    case 6:
      return as_float(float{});
    case 12:
      return as_float(double{});
    case 7: {
      uint8_t x = 0;
      RETURN_IF_ERROR(r.Read(&x, what));
      v->kind = GgufValue::Kind::kBool;
      v->i = x != 0;
      return absl::OkStatus();
    }
    case 8:
      v->kind = GgufValue::Kind::kString;
      return r.String(&v->s, what);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", what, " has unknown value type ", type));
  }
}

}  // namespace

std::string GgufTypeName(uint32_t type) {
  const TypeInfo* t = FindType(type);
  return t ? t->name : absl::StrCat("type ", type);
}

absl::StatusOr<GgufHeader> ParseGguf(absl::string_view bytes, absl::string_view file_name) {
  Reader r(bytes, file_name);
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": ", parts...));
  };
  uint32_t magic = 0;
  RETURN_IF_ERROR(r.Read(&magic, "the magic number"));
  if (magic != kMagic) return bad("not a GGUF file (the first four bytes are not \"GGUF\")");
  GgufHeader h;
  RETURN_IF_ERROR(r.Read(&h.version, "the version"));
  if (h.version == 1) return bad("GGUF version 1 is not supported; re-convert the model");
  if (h.version != 2 && h.version != 3) {
    if ((h.version & 0xffff) == 0)
      return bad("a big-endian GGUF file (version field ", h.version, "); only little-endian");
    return bad("unknown GGUF version ", h.version, " (2 and 3 are supported)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  RETURN_IF_ERROR(r.Read(&n_tensors, "the tensor count"));
  RETURN_IF_ERROR(r.Read(&n_kv, "the metadata count"));
  // Each entry takes at least 8 (a key or name length) + 4 bytes.
  if (n_kv > r.left() / 12 || n_tensors > r.left() / 12)
    return bad(n_tensors, " tensors and ", n_kv, " metadata entries cannot fit in the file");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    RETURN_IF_ERROR(r.String(&key, absl::StrCat("metadata entry ", k, "'s key")));
    const std::string what = absl::StrCat("metadata '", key, "'");
    uint32_t type = 0;
    RETURN_IF_ERROR(r.Read(&type, what));
    GgufValue v;
    if (type == 9) {
      v.kind = GgufValue::Kind::kArray;
      RETURN_IF_ERROR(r.Read(&v.array_type, what));
      RETURN_IF_ERROR(r.Read(&v.array_count, what));
      const int eb = ScalarBytes(v.array_type);
      if (v.array_type == 9) return bad(what, " is an array of arrays (not supported)");
      if (eb < 0) return bad(what, " is an array of unknown value type ", v.array_type);
      if (eb > 0) {
        if (v.array_count > r.left() / static_cast<uint64_t>(eb))
          return bad(what, " claims ", v.array_count, " elements; the file is too short");
        RETURN_IF_ERROR(r.Skip(v.array_count * static_cast<uint64_t>(eb), what));
      } else {
        if (v.array_count > r.left() / 8)
          return bad(what, " claims ", v.array_count, " strings; the file is too short");
        v.strings.resize(v.array_count);
        for (std::string& s : v.strings) RETURN_IF_ERROR(r.String(&s, what));
      }
    } else {
      RETURN_IF_ERROR(ReadScalar(r, type, file_name, what, &v));
    }
    if (!h.metadata.emplace(key, std::move(v)).second) return bad(what, " appears twice");
  }
  if (auto it = h.metadata.find("general.alignment"); it != h.metadata.end()) {
    const GgufValue& a = it->second;
    if (a.kind != GgufValue::Kind::kInt || a.i < 8 || a.i > (1 << 20) || (a.i & (a.i - 1)) != 0)
      return bad("metadata 'general.alignment' must be a power of two from 8 to 2^20");
    h.alignment = static_cast<uint64_t>(a.i);
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    std::string name;
    RETURN_IF_ERROR(r.String(&name, absl::StrCat("tensor info ", k, "'s name")));
    const std::string what = absl::StrCat("tensor '", name, "'");
    GgufTensorInfo t;
    uint32_t n_dims = 0;
    RETURN_IF_ERROR(r.Read(&n_dims, what));
    if (n_dims < 1 || n_dims > 4) return bad(what, " has ", n_dims, " dimensions (1 to 4)");
    int64_t numel = 1;
    for (uint32_t i = 0; i < n_dims; ++i) {
      uint64_t ne = 0;
      RETURN_IF_ERROR(r.Read(&ne, what));
      if (ne < 1 || ne > static_cast<uint64_t>(kMaxElements) ||
          numel > kMaxElements / static_cast<int64_t>(ne))
        return bad(what, " has dimension ", i, " of ", ne, " (elements must be 1 to 2^48)");
      t.ne.push_back(static_cast<int64_t>(ne));
      numel *= static_cast<int64_t>(ne);
    }
    RETURN_IF_ERROR(r.Read(&t.type, what));
    RETURN_IF_ERROR(r.Read(&t.offset, what));
    const TypeInfo* ti = FindType(t.type);
    if (ti == nullptr) return bad(what, " has unknown tensor type id ", t.type);
    if (t.ne[0] % ti->block != 0) {
      return bad(what, " is ", ti->name, " with rows of ", t.ne[0], " elements, not a multiple of ",
                 ti->block);
    }
    t.bytes = static_cast<uint64_t>(numel / ti->block * ti->bytes);
    t.dtype = LoadableDType(t.type);
    if (t.offset % h.alignment != 0)
      return bad(what, " starts at data offset ", t.offset, ", not a multiple of the alignment ",
                 h.alignment);
    if (!h.tensors.emplace(name, std::move(t)).second) return bad(what, " appears twice");
  }
  h.data_start = (r.pos() + h.alignment - 1) / h.alignment * h.alignment;
  if (h.data_start > bytes.size() && !h.tensors.empty())
    return bad("the data section starts past the end of the file");
  const uint64_t data_size = bytes.size() > h.data_start ? bytes.size() - h.data_start : 0;
  std::vector<std::pair<uint64_t, const std::string*>> by_offset;
  for (const auto& [name, t] : h.tensors) {
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      return bad("tensor '", name, "' (", GgufTypeName(t.type), ", ", t.bytes,
                 " bytes at data offset ", t.offset,
                 ") runs past the end of the file (data section of ", data_size,
                 " bytes; truncated?)");
    }
    by_offset.emplace_back(t.offset, &name);
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = h.tensors.at(*by_offset[i - 1].second);
    if (prev.offset + prev.bytes > by_offset[i].first)
      return bad("tensors '", *by_offset[i - 1].second, "' and '", *by_offset[i].second,
                 "' overlap");
  }
  return h;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  auto f = std::unique_ptr<GgufFile>(new GgufFile());
  ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  ASSIGN_OR_RETURN(f->header_, ParseGguf(f->file_.bytes(), path));
  return f;
}

absl::StatusOr<TensorView> GgufFile::Get(const std::string& name) const {
  auto it = header_.tensors.find(name);
  if (it == header_.tensors.end())
    return absl::NotFoundError(absl::StrCat(path(), ": missing tensor '", name, "'"));
  const GgufTensorInfo& t = it->second;
  if (!t.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        path(), ": tensor '", name, "' is ", GgufTypeName(t.type),
        ", which sparsed does not load (F32, F16, BF16, Q8_0 and Q4_0 are loaded); re-quantize "
        "the file with llama-quantize --pure to Q8_0 or Q4_0, or serve the Hugging Face "
        "checkpoint with --weights"));
  }
  TensorView v;
  v.data = file_.bytes().data() + header_.data_start + t.offset;
  v.dtype = *t.dtype;
  v.shape.assign(t.ne.rbegin(), t.ne.rend());
  return v;
}

}  // namespace sparsed
