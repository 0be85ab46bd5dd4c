// Internal checking macros: argument checks that throw dsa_indexer::Error with file:line and the
// argument's name, and CUDA call checks that carry the CUDA error string.
#pragma once

#include <sstream>
#include <string>

#include "dsa_indexer/error.h"

namespace dsa_indexer::detail {

[[noreturn]] inline void throw_error(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << "dsa_indexer: " << msg << " (" << file << ":" << line << ")";
  throw Error(os.str());
}

}  // namespace dsa_indexer::detail

// DSA_CHECK(cond, stream-expression): throws Error("dsa_indexer: <message> (file:line)") when
// cond is false. Usage: DSA_CHECK(K >= 1, "K must be >= 1, got " << K);
#define DSA_CHECK(cond, msg)                                                 \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::ostringstream dsa_check_os_;                                      \
      dsa_check_os_ << msg;                                                  \
      ::dsa_indexer::detail::throw_error(__FILE__, __LINE__, dsa_check_os_.str()); \
    }                                                                        \
  } while (0)
