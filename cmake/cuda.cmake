# The CUDA backend (src/u2/backend/cuda), its GPU tests (tests/gpu) and benchmark driver.
#
# U2_WITH_CUDA: AUTO builds it when a CUDA compiler is found (nvcc on PATH or the usual
# /usr/local/cuda), ON requires one, OFF never builds it. Without it the CPU-only build is exactly
# what it was: CreateBackend(kCuda) returns Unimplemented.
#
# Architectures: sm_90 (H100/H200) only by default to keep CI compile time low; pass e.g.
# -DCMAKE_CUDA_ARCHITECTURES="80;90" for more.
#
# GPU tests are always *built* with the CUDA backend (so CI compile-tests them) but registered with
# ctest only under -DU2_GPU_TESTS=ON (label "gpu"): CI has no GPU.
option(U2_GPU_TESTS "Register the GPU tests (tests/gpu) with ctest (needs a GPU to pass)" OFF)

set(U2_CUDA_ENABLED OFF)
string(TOUPPER "${U2_WITH_CUDA}" _u2_with_cuda)
if(NOT _u2_with_cuda STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(_u2_nvcc nvcc PATHS /usr/local/cuda/bin NO_CACHE)
    if(_u2_nvcc)
      set(CMAKE_CUDA_COMPILER ${_u2_nvcc})
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc 13's C++20 dialect (ops.h needs std::span): teach it the flag.
    if(NOT CMAKE_CUDA20_COMPILE_FEATURES)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
      list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
    endif()
    find_package(CUDAToolkit REQUIRED)
    set(U2_CUDA_ENABLED ON)
  elseif(_u2_with_cuda STREQUAL "ON")
    message(FATAL_ERROR "U2_WITH_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
endif()
message(STATUS "u2serve CUDA backend: ${U2_CUDA_ENABLED} (U2_WITH_CUDA=${U2_WITH_CUDA})")

if(U2_CUDA_ENABLED)
  file(GLOB u2_cuda_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/u2/backend/cuda/*.cu
       ${CMAKE_CURRENT_SOURCE_DIR}/src/u2/backend/cuda/*.cc)
  add_library(u2_backend_cuda STATIC ${u2_cuda_srcs})
  target_include_directories(u2_backend_cuda PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_compile_options(u2_backend_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${U2_WARNINGS} ${U2_OPT_FLAGS}>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)
  set_target_properties(u2_backend_cuda PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  # Kernels use expf/logf/sqrtf with full accuracy (no --use_fast_math): parity with the CPU.
  # u2_backend_cpu defines Workspace and Backend's non-virtual helpers; u2_backend_cpu calls
  # CreateCudaBackend: a cycle of two static libraries, which CMake links in repeated order.
  target_link_libraries(u2_backend_cuda PUBLIC u2_util u2_frontend CUDA::cudart CUDA::cublas CUDA::cublasLt
                                        CUDA::cufft PRIVATE u2_backend_cpu)
  target_compile_definitions(u2_backend_cpu PRIVATE U2_HAVE_CUDA)
  target_link_libraries(u2_backend_cpu PUBLIC u2_backend_cuda)

  # tests/gpu links u2_test_support (defined later by tests/cpp: target names resolve at generate
  # time).
  if(U2_BUILD_TESTS)
    add_subdirectory(${CMAKE_CURRENT_SOURCE_DIR}/tests/gpu ${CMAKE_CURRENT_BINARY_DIR}/tests/gpu)
  endif()
endif()

# The GPU benchmark driver (bench/gpu/run_gpu.sh runs it).
if(U2_CUDA_ENABLED AND U2_BUILD_BENCH)
  add_executable(u2gpubench ${CMAKE_CURRENT_SOURCE_DIR}/bench/gpu/u2gpubench.cc)
  target_link_libraries(u2gpubench PRIVATE u2_engine u2_backend_cuda CLI11::CLI11 nlohmann_json::nlohmann_json)
  target_compile_options(u2gpubench PRIVATE ${U2_WARNINGS})
endif()
