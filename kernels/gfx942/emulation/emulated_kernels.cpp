// The gfx942 kernel sources as one host C++ translation unit for the emulation build (hip_emulation.h stands in
// for HIP and the AMDGPU builtins; FLASH_MLA_GFX942_EMULATION selects it).
#include "../combine.hip"
#include "../decode.hip"
#include "../sparse_attn_decode.hip"
