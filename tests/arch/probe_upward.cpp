// Built only by tests/arch/test_module_graph.py, which expects this file NOT to compile: it sits in
// a target that uses the image module alone and includes a header of the server module above it.
#include "image/decode.h"
#include "server/routes.h"

int acg2vec_arch_probe_upward() { return 0; }
