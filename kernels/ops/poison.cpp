#include <cstdlib>
#include <cstring>
#include <limits>

#include "ops.h"

namespace flash_mla::ops {

void poison_if_requested(at::Tensor& output) {
  static const bool enabled = [] {
    const char* value = std::getenv("FLASH_MLA_POISON_OUTPUTS");
    return value != nullptr && std::strcmp(value, "0") != 0 && value[0] != '\0';
  }();
  if (enabled) output.fill_(std::numeric_limits<float>::quiet_NaN());
}

}  // namespace flash_mla::ops
