// dsa-indexer error type: every argument or CUDA error the library reports is a dsa_indexer::Error.
#pragma once

#include <stdexcept>
#include <string>

namespace dsa_indexer {

// Thrown for invalid arguments (the message names the argument, what was expected and what was
// given) and for CUDA failures (the message carries the CUDA error string). Derives from
// std::invalid_argument so callers that map argument errors to ValueError-like types can catch it.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace dsa_indexer
