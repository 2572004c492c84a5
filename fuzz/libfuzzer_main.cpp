// libFuzzer glue: compiled once per target with -DACG2VEC_FUZZ_ENTRY=fuzz_<name>.
#include "targets.h"

#ifndef ACG2VEC_FUZZ_ENTRY
#error "define ACG2VEC_FUZZ_ENTRY to one of the fuzz_* functions of targets.h"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return acg2vec::fuzz::ACG2VEC_FUZZ_ENTRY(data, size);
}
