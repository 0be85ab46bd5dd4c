// Test helper (late_writer.cu): copies n bf16 values src -> dst on `stream`, but only `delay_ns`
// after releasing the next kernel through programmatic dependent launch (sm_90 and newer).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace dsa_test {

cudaError_t launch_late_writer(std::uint16_t* dst, const std::uint16_t* src, std::size_t n, long long delay_ns,
                               cudaStream_t stream);

}  // namespace dsa_test
