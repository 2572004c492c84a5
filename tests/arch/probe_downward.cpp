// Built only by tests/arch/test_module_graph.py, which expects this file to compile: a target that
// uses the models module may include models and everything below it.
#include "core/error.h"
#include "image/decode.h"
#include "models/registry.h"
#include "runtime/executor.h"
#include "text/wordpiece.h"

int acg2vec_arch_probe_downward() { return 0; }
