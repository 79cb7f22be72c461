#include "engine/common/plugin_path.h"

#include <cstdlib>
#include <filesystem>

#ifndef SPARSED_PLUGIN_BUILD_DIR
#define SPARSED_PLUGIN_BUILD_DIR ""
#endif

namespace sparsed {

std::vector<std::string> PluginCandidates(const std::string& file_name) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  if (const char* env = std::getenv("SPARSED_PLUGIN_DIR")) out.push_back(fs::path(env) / file_name);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back(exe.parent_path() / file_name);
    out.push_back(exe.parent_path().parent_path() / "lib" / file_name);
    out.push_back(exe.parent_path().parent_path() / "lib" / "sparsed" / file_name);
  }
  if (std::string(SPARSED_PLUGIN_BUILD_DIR).size())
    out.push_back(fs::path(SPARSED_PLUGIN_BUILD_DIR) / file_name);
  return out;
}

}  // namespace sparsed
