// Argument checks of the binding layer. Every failure raises a Python exception (TypeError for a dtype,
// ValueError otherwise) that names the op and the argument, before any kernel runs. Shapes are read as SymInts,
// so the same checks run on real tensors, on meta tensors, and on the symbolic tensors torch.compile traces with.
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>
#include <sstream>
#include <string>

#include "../common/kv_cache.h"

namespace flash_mla::ops {

// "[2, 3, 512]" (a symbolic size prints as its symbol). Formatted here, not streamed as an IntArrayRef: that
// crashed inside torch 2.11's string helpers on the H200 image.
inline std::string shape_string(const at::Tensor& t) {
  std::ostringstream text;
  text << "[";
  for (int64_t i = 0; i < t.dim(); ++i) text << (i ? ", " : "") << t.sym_size(i);
  text << "]";
  return text.str();
}

class InputChecker {
 public:
  InputChecker(const char* op, at::Device device) : op_(op), device_(device) {}

  // dims: the documented shape, e.g. "[b, s_q, topk]"; expected: one size per dim, -1 for any.
  void tensor(const at::Tensor& t, const char* name, std::initializer_list<at::ScalarType> dtypes, const char* dims,
              std::initializer_list<c10::SymInt> expected) const {
    bool dtype_ok = false;
    std::string allowed;
    for (at::ScalarType dtype : dtypes) {
      dtype_ok |= t.scalar_type() == dtype;
      allowed += (allowed.empty() ? "" : " or ") + std::string(c10::toString(dtype));
    }
    TORCH_CHECK_TYPE(dtype_ok, op_, ": ", name, " must have dtype ", allowed, ", got ", t.scalar_type());
    bool shape_ok = t.dim() == int64_t(expected.size());
    std::ostringstream want;
    want << "[";
    int i = 0;
    for (const c10::SymInt& size : expected) {
      const bool any = size.is_heap_allocated() ? false : size == -1;
      want << (i ? ", " : "");
      if (any) {
        want << "*";
      } else {
        want << size;
      }
      shape_ok = shape_ok && (any || t.sym_size(i) == size);
      ++i;
    }
    want << "]";
    TORCH_CHECK_VALUE(shape_ok, op_, ": ", name, " must have shape ", dims, " = ", want.str(), ", got ",
                      shape_string(t));
    TORCH_CHECK_VALUE(t.device() == device_, op_, ": ", name, " must be on ", device_, " like q, got ", t.device());
  }

  void value(bool ok, const std::string& message) const { TORCH_CHECK_VALUE(ok, op_, ": ", message); }

 private:
  const char* op_;
  at::Device device_;
};

inline constexpr std::initializer_list<at::ScalarType> kFp8CacheDtypes = {at::kByte, at::ScalarType::Float8_e4m3fnuz,
                                                                          at::ScalarType::Float8_e4m3fn};

// uint8 carries e4m3fnuz bytes (the seed's quantizer); the float8 dtypes name their own format.
inline Fp8Format fp8_format_of(at::ScalarType dtype) {
  return dtype == at::ScalarType::Float8_e4m3fn ? Fp8Format::kE4M3FN : Fp8Format::kE4M3FNUZ;
}

}  // namespace flash_mla::ops
