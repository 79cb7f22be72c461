// The model's Hugging Face tokenizer files as one zip archive, the form in which the gateway
// worker's GetTokenizer hands them to a gateway that tokenizes for it (server/vllm_service.h).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sparsed::server {

struct TokenizerBundle {
  std::string zip;                 // the archive's bytes
  std::string sha256;              // lowercase hex SHA-256 of `zip`
  std::vector<std::string> files;  // the names it holds, in archive order
};

// Reads `dir`'s tokenizer.json (required) and whichever of tokenizer_config.json,
// special_tokens_map.json, generation_config.json, config.json and chat_template.jinja exist, and
// zips them (deflated, at the archive's top level). FAILED_PRECONDITION naming the file and the
// tool that makes it (tools/make_hf_tokenizer.py) when tokenizer.json is missing; the I/O error
// naming the file when one cannot be read.
absl::StatusOr<TokenizerBundle> MakeTokenizerBundle(const std::string& dir);

}  // namespace sparsed::server
