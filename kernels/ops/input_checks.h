// Argument checks of the binding layer. Every failure raises a Python exception (TypeError for a dtype,
// ValueError otherwise) that names the op and the argument, before any kernel runs. Shapes are read as SymInts,
// so the same checks run on real tensors, on meta tensors, and on the symbolic tensors torch.compile traces with.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "../common/kv_cache.h"

namespace flash_mla::ops {

// A size as text. Never streamed through torch's operator<< (a std::ostream handed across the library boundary
// crashed with torch 2.11's build on the H200 image); a symbolic size is made concrete, on the error path only.
inline std::string size_string(const c10::SymInt& size) {
  const std::optional<int64_t> value = size.maybe_as_int();
  return std::to_string(value ? *value : size.guard_int(__FILE__, __LINE__));
}

// "[2, 3, 512]".
inline std::string shape_string(const at::Tensor& t) {
  std::string text = "[";
  for (int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + size_string(t.sym_size(i));
  return text + "]";
}

class InputChecker {
 public:
  InputChecker(const char* op, at::Device device) : op_(op), device_(device) {}

  // dims: the documented shape, e.g. "[b, s_q, topk]"; expected: one size per dim, -1 for any.
  void tensor(const at::Tensor& t, const char* name, std::initializer_list<at::ScalarType> dtypes, const char* dims,
              std::initializer_list<c10::SymInt> expected) const {
    bool dtype_ok = false;
    for (at::ScalarType dtype : dtypes) dtype_ok |= t.scalar_type() == dtype;
    if (!dtype_ok) {
      std::string allowed;
      for (at::ScalarType dtype : dtypes)
        allowed += (allowed.empty() ? "" : " or ") + std::string(c10::toString(dtype));
      TORCH_CHECK_TYPE(false, op_, ": ", name, " must have dtype ", allowed, ", got ", c10::toString(t.scalar_type()));
    }
    bool shape_ok = t.dim() == int64_t(expected.size());
    int64_t i = 0;
    for (const c10::SymInt& size : expected) {
      shape_ok = shape_ok && (is_any(size) || t.sym_size(i) == size);
      ++i;
    }
    if (!shape_ok) {
      std::string want = "[";
      i = 0;
      for (const c10::SymInt& size : expected) want += (i++ ? ", " : "") + (is_any(size) ? "*" : size_string(size));
      TORCH_CHECK_VALUE(false, op_, ": ", name, " must have shape ", dims, " = ", want + "]", ", got ",
                        shape_string(t));
    }
    TORCH_CHECK_VALUE(t.device() == device_, op_, ": ", name, " must be on ", device_.str(), " like q, got ",
                      t.device().str());
  }

  // The message is put together only when the check fails, from text parts alone (numbers go through
  // size_string or std::to_string: see size_string).
  template <class... Parts>
  void value(bool ok, const Parts&... parts) const {
    static_assert((std::is_convertible_v<const Parts&, std::string_view> && ...), "message parts are text");
    if (ok) return;
    std::string message = std::string(op_) + ": ";
    ((message += std::string_view(parts)), ...);
    TORCH_CHECK_VALUE(false, message);
  }

 private:
  static bool is_any(const c10::SymInt& size) { return !size.is_heap_allocated() && size == -1; }

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
