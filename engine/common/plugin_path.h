// Where the engine's dlopen'ed plugins (tokenizer, CUDA backend) are looked for.
#pragma once

#include <string>
#include <vector>

namespace sparsed {

// Candidate paths for `file_name`, in order: $SPARSED_PLUGIN_DIR, the executable's directory,
// ../lib and ../lib/sparsed beside it, then the build tree's lib/ (set at compile time).
std::vector<std::string> PluginCandidates(const std::string& file_name);

}  // namespace sparsed
