// Writing a whole text file so that readers never see half of it: the content goes to "<path>.tmp", which is
// renamed over `path` only once it is complete.
#pragma once

#include <string>

namespace oscar {

/// Throws oscar::InputError("<path>: <problem>") when the file cannot be written (the temporary is removed).
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace oscar
