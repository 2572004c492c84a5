# Every third-party dependency comes from Debian 12 packages (see scripts/setup.sh).
# They are gathered into one INTERFACE target and marked SYSTEM so -Werror applies to our code only.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(Torch REQUIRED)
find_package(faiss REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(Protobuf REQUIRED)
find_package(ONNX REQUIRED)
find_package(ZLIB REQUIRED)
# models pull: the Hugging Face Hub and GitHub release downloads (libcurl4-openssl-dev).
find_library(ACG2VEC_CURL_LIBRARY NAMES curl REQUIRED)
pkg_check_modules(VIPS REQUIRED IMPORTED_TARGET vips-cpp)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
# Debian builds cpp-httplib as a shared library with OpenSSL, zlib and brotli enabled;
# the .pc file carries the matching CPPHTTPLIB_* defines.
pkg_check_modules(CRYPTO REQUIRED IMPORTED_TARGET libcrypto)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

add_library(acg2vec_deps INTERFACE)
add_library(acg2vec::deps ALIAS acg2vec_deps)
target_link_libraries(acg2vec_deps INTERFACE
  nlohmann_json::nlohmann_json fmt::fmt spdlog::spdlog CLI11::CLI11 PkgConfig::HTTPLIB
  SQLite::SQLite3 ${TORCH_LIBRARIES} faiss ${HDF5_C_LIBRARIES} onnx onnx_proto
  PkgConfig::VIPS PkgConfig::UTF8PROC PkgConfig::HIREDIS PkgConfig::CRYPTO ZLIB::ZLIB Threads::Threads)
# The library file only: curl's headers are in the default multiarch include path, and an extra
# -isystem flag would change every compile command (and miss the shared compiler cache).
target_link_libraries(acg2vec_deps INTERFACE ${ACG2VEC_CURL_LIBRARY})
target_include_directories(acg2vec_deps SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS} ${HDF5_C_INCLUDE_DIRS})
