# The modules of src/, one static library each (acg2vec_<module>), declared lowest first.
#
# A module sees only its own headers and those of the modules it USES (and, through them, what
# they use): each library exports an include directory that holds a single link named after the
# module, pointing at src/<module>. So `#include "server/routes.h"` from src/image/ does not
# compile, and a module can only USE modules declared before it, which keeps the graph acyclic
# and downward. docs/architecture.md draws it; tests/arch/ checks both properties.

# Flags every module shares: dependencies, version, OpenMP and the sanitizers.
add_library(acg2vec_build_flags INTERFACE)
target_link_libraries(acg2vec_build_flags INTERFACE acg2vec::deps)
target_compile_definitions(acg2vec_build_flags INTERFACE ACG2VEC_VERSION="${PROJECT_VERSION}")
# at::parallel_for is a header template: compiled without OpenMP it is a plain serial loop, and
# every kernel of ours that splits work over the intra-op threads ran on one core (a ViT layer's
# split GEMM used 1.0 core of 2). libtorch runs on libgomp, which is GCC's OpenMP; clang (the
# fuzz preset) would bring its own runtime, so there the loops stay serial.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(acg2vec_build_flags INTERFACE -fopenmp)
  target_link_options(acg2vec_build_flags INTERFACE -fopenmp)
endif()
if(ACG2VEC_SANITIZE)
  target_compile_options(acg2vec_build_flags INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                       -fno-sanitize-recover=undefined -D_GLIBCXX_ASSERTIONS)
  target_link_options(acg2vec_build_flags INTERFACE -fsanitize=address,undefined)
endif()

set(ACG2VEC_MODULES "")

# acg2vec_module(NAME [USES module...] [EXCLUDE file...])
function(acg2vec_module name)
  cmake_parse_arguments(M "" "" "USES;EXCLUDE" ${ARGN})
  foreach(dep IN LISTS M_USES)
    if(NOT dep IN_LIST ACG2VEC_MODULES)
      message(FATAL_ERROR "module ${name} uses '${dep}', which is not declared before it: "
                          "modules may only use modules below them (cmake/modules.cmake)")
    endif()
  endforeach()
  set(dir ${PROJECT_SOURCE_DIR}/src/${name})
  file(GLOB sources CONFIGURE_DEPENDS ${dir}/*.cpp)
  foreach(excluded IN LISTS M_EXCLUDE)
    list(REMOVE_ITEM sources ${dir}/${excluded})
  endforeach()
  set(include_root ${PROJECT_BINARY_DIR}/module_include/${name})
  file(MAKE_DIRECTORY ${include_root})
  if(NOT EXISTS ${include_root}/${name})
    file(CREATE_LINK ${dir} ${include_root}/${name} SYMBOLIC)
  endif()
  add_library(acg2vec_${name} STATIC ${sources})
  target_include_directories(acg2vec_${name} PUBLIC ${include_root})
  target_link_libraries(acg2vec_${name} PUBLIC acg2vec_build_flags)
  foreach(dep IN LISTS M_USES)
    target_link_libraries(acg2vec_${name} PUBLIC acg2vec_${dep})
  endforeach()
  target_compile_options(acg2vec_${name} PRIVATE ${ACG2VEC_WARNINGS})
  list(APPEND ACG2VEC_MODULES ${name})
  set(ACG2VEC_MODULES ${ACG2VEC_MODULES} PARENT_SCOPE)
  set(ACG2VEC_MODULE_USES_${name} ${M_USES} PARENT_SCOPE)
endfunction()

acg2vec_module(core)
acg2vec_module(image   USES core)
acg2vec_module(text    USES core)
acg2vec_module(runtime USES core)
# The fused convolutions call oneDNN directly: the libdnnl.so.2 that libtorch itself links.
target_link_libraries(acg2vec_runtime PUBLIC dnnl)
acg2vec_module(store   USES core)
acg2vec_module(index   USES core)
acg2vec_module(models  USES runtime image text)
acg2vec_module(hub     USES models)
acg2vec_module(search  USES models store index)
acg2vec_module(server  USES search)
acg2vec_module(cli     USES server hub EXCLUDE main.cpp)

# The checkout's path is compiled into one small file (core/source_dir.cpp) and nowhere else, so
# every other translation unit is the same in every checkout and ccache (CCACHE_BASEDIR) shares it.
set_source_files_properties(${PROJECT_SOURCE_DIR}/src/core/source_dir.cpp PROPERTIES
  COMPILE_DEFINITIONS ACG2VEC_SOURCE_DIR_PATH="${PROJECT_SOURCE_DIR}")

# The graph as a file, for tests/arch/check_layers.py (every quoted include must follow it).
set(graph "")
foreach(m IN LISTS ACG2VEC_MODULES)
  string(REPLACE ";" " " uses "${ACG2VEC_MODULE_USES_${m}}")
  string(APPEND graph "${m}: ${uses}\n")
endforeach()
file(WRITE ${PROJECT_BINARY_DIR}/module_graph.txt "${graph}")
