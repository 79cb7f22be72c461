#include "tools/neuron_order.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/model/fingerprint.h"
#include "engine/model/safetensors_writer.h"
#include "engine/sparse/sparsity_profile.h"

namespace sparsed {

std::vector<int32_t> NeuronOrder(const LayerMasks& masks, const std::vector<int64_t>& tokens,
                                 NeuronOrderKind kind, int block) {
  const int F = masks.neurons();
  const int64_t N = static_cast<int64_t>(tokens.size());
  // Each neuron's activation count over the tokens.
  std::vector<int> count(F, 0);
  for (int64_t t : tokens) {
    const uint64_t* bits = masks.Bits(t);
    for (int w = 0; w < masks.words(); ++w)
      for (uint64_t b = bits[w]; b != 0; b &= b - 1) ++count[w * 64 + std::countr_zero(b)];
  }
  // Neurons by activation count, most active first: blocks of hot neurons are read by most
  // tokens, blocks of cold ones by few.
  std::vector<int32_t> by_count(F);
  for (int n = 0; n < F; ++n) by_count[n] = n;
  std::stable_sort(by_count.begin(), by_count.end(),
                   [&](int a, int b) { return count[a] > count[b]; });
  if (kind == NeuronOrderKind::kFrequency) return by_count;
  // Each neuron's set of tokens (bit k: active for tokens[k]).
  const int64_t tw = (N + 63) / 64;
  std::vector<uint64_t> sets(static_cast<size_t>(F) * tw, 0);
  for (int64_t k = 0; k < N; ++k) {
    const uint64_t* bits = masks.Bits(tokens[k]);
    for (int w = 0; w < masks.words(); ++w) {
      for (uint64_t b = bits[w]; b != 0; b &= b - 1) {
        const int n = w * 64 + std::countr_zero(b);
        sets[static_cast<size_t>(n) * tw + k / 64] |= uint64_t{1} << (k % 64);
      }
    }
  }
  std::vector<int32_t> perm;
  perm.reserve(F);
  const int window = 4 * block;
  std::vector<bool> placed(F, false);
  std::vector<uint64_t> cover(tw);
  size_t next = 0;  // first unplaced position of by_count
  while (static_cast<int>(perm.size()) < F) {
    while (placed[by_count[next]]) ++next;
    const int seed = by_count[next];
    placed[seed] = true;
    perm.push_back(seed);
    std::copy_n(sets.begin() + static_cast<size_t>(seed) * tw, tw, cover.begin());
    for (int in_block = 1; in_block < block && static_cast<int>(perm.size()) < F; ++in_block) {
      // Among the next `window` unplaced neurons in count order, the one adding fewest tokens.
      int best = -1;
      int64_t best_add = 0;
      int seen = 0;
      for (size_t i = next; i < by_count.size() && seen < window; ++i) {
        const int n = by_count[i];
        if (placed[n]) continue;
        ++seen;
        const uint64_t* s = sets.data() + static_cast<size_t>(n) * tw;
        int64_t add = 0;
        for (int64_t w = 0; w < tw; ++w) add += std::popcount(s[w] & ~cover[w]);
        if (best < 0 || add < best_add) {
          best = n;
          best_add = add;
        }
      }
      placed[best] = true;
      perm.push_back(best);
      const uint64_t* s = sets.data() + static_cast<size_t>(best) * tw;
      for (int64_t w = 0; w < tw; ++w) cover[w] |= s[w];
    }
  }
  return perm;
}

LayerMasks PermuteNeurons(const LayerMasks& masks, const std::vector<int32_t>& perm) {
  const int F = masks.neurons();
  LayerMasks out(F);
  std::vector<uint64_t> row(masks.words());
  // Tokens are re-added in index order, so token t of `out` is token t of `masks`.
  for (int64_t t = 0; t < masks.tokens(); ++t) {
    const uint64_t* bits = masks.Bits(t);
    std::fill(row.begin(), row.end(), 0);
    for (int j = 0; j < F; ++j)
      row[j / 64] |= ((bits[perm[j] / 64] >> (perm[j] % 64)) & 1) << (j % 64);
    out.AddBits(masks.sequence_of(t), row.data());
  }
  return out;
}

bool IsPermutation(const std::vector<int32_t>& perm, int n) {
  if (static_cast<int>(perm.size()) != n) return false;
  std::vector<bool> seen(n, false);
  for (int32_t p : perm) {
    if (p < 0 || p >= n || seen[p]) return false;
    seen[p] = true;
  }
  return true;
}

namespace {

// The layer and projection of an FFN weight name ("model.layers.L.mlp.P_proj.weight").
bool FfnTensor(const std::string& name, int* layer, std::string* proj) {
  int l = -1, used = 0;
  char p[8] = {};
  if (std::sscanf(name.c_str(), "model.layers.%d.mlp.%7[a-z]_proj.weight%n", &l, p, &used) != 2 ||
      used != static_cast<int>(name.size()))
    return false;
  *layer = l;
  *proj = p;
  return *proj == "gate" || *proj == "up" || *proj == "down";
}

}  // namespace

absl::Status WritePermutedCheckpoint(const Checkpoint& src,
                                     const std::vector<std::vector<int32_t>>& perms,
                                     const std::string& out_dir) {
  namespace fs = std::filesystem;
  const ModelConfig& c = src.config();
  if (static_cast<int64_t>(perms.size()) != c.num_layers)
    return absl::InvalidArgumentError(
        absl::StrCat("need one order per layer: ", perms.size(), " for ", c.num_layers));
  for (size_t l = 0; l < perms.size(); ++l) {
    if (!IsPermutation(perms[l], static_cast<int>(c.intermediate_size)))
      return absl::InvalidArgumentError(absl::StrCat(
          "layer ", l, "'s order is not a permutation of ", c.intermediate_size, " neurons"));
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(src.dir(), ec)) {
    const std::string file = entry.path().filename().string();
    if (!entry.is_regular_file() || absl::EndsWith(file, ".safetensors") ||
        file == "model.safetensors.index.json")
      continue;
    fs::copy_file(entry.path(), fs::path(out_dir) / file, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", file, ": ", ec.message()));
  }
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : src.TensorNames()) {
    auto view = src.Get(name);
    if (!view.ok()) return view.status();
    TensorToWrite t{name, view->dtype, view->shape, {}};
    const size_t es = DTypeSize(view->dtype);
    const auto* from = static_cast<const uint8_t*>(view->data);
    t.bytes.assign(from, from + static_cast<size_t>(view->numel()) * es);
    int layer = 0;
    std::string proj;
    if (FfnTensor(name, &layer, &proj) && layer >= 0 && layer < c.num_layers) {
      const std::vector<int32_t>& perm = perms[layer];
      const int64_t F = c.intermediate_size;
      if (view->shape.size() != 2 || view->shape[proj == "down" ? 1 : 0] != F)
        return absl::InvalidArgumentError(
            absl::StrCat(src.FileOf(name), ": tensor ", name, " does not have ", F, " neurons"));
      if (proj == "down") {  // [d × F]: columns
        const int64_t d = view->shape[0];
        for (int64_t r = 0; r < d; ++r)
          for (int64_t j = 0; j < F; ++j)
            std::memcpy(t.bytes.data() + (r * F + j) * es, from + (r * F + perm[j]) * es, es);
      } else {  // [F × d]: rows
        const size_t row = static_cast<size_t>(view->shape[1]) * es;
        for (int64_t j = 0; j < F; ++j)
          std::memcpy(t.bytes.data() + j * row, from + perm[j] * row, row);
      }
    }
    tensors.push_back(std::move(t));
  }
  const std::string out_file = (fs::path(out_dir) / "model.safetensors").string();
  if (auto s = WriteSafetensors(out_file, tensors, {{"format", "pt"}}); !s.ok()) return s;
  const std::string profile_path = (fs::path(src.dir()) / "sparsity.json").string();
  if (fs::exists(profile_path)) {
    auto profile = ReadSparsityProfile(profile_path);
    if (!profile.ok()) return profile.status();
    auto out = Checkpoint::Open(out_dir);
    if (!out.ok()) return out.status();
    auto fp = ModelFingerprint(**out);
    if (!fp.ok()) return fp.status();
    profile->fingerprint = *fp;
    return WriteSparsityProfile(*profile, (fs::path(out_dir) / "sparsity.json").string());
  }
  return absl::OkStatus();
}

}  // namespace sparsed
