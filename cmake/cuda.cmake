# The optional CUDA back-end of the fused loss: a second extension module, hbt_fast._C_cuda,
# imported lazily, so that _C (and the whole package) never depends on CUDA libraries.
#
#   HBT_CUDA=AUTO (default)  build it when a CUDA compiler and cuBLAS are found
#   HBT_CUDA=ON              the same, but fail the build when they are not
#   HBT_CUDA=OFF             never build it
#
# cuBLAS comes from the PyPI wheel nvidia-cublas (CUDA 13) in the building Python's
# environment, else from a CUDA toolkit. Sets HBT_CUDA_STATUS, which _C reports through
# hbt_fast.info(): "built for sm_80,... with ..." or "not built: <why>".
set(HBT_CUDA AUTO CACHE STRING "Build the CUDA loss back-end _C_cuda: AUTO, ON or OFF")
set_property(CACHE HBT_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${HBT_CUDA}" HBT_CUDA)
if(NOT HBT_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "HBT_CUDA must be AUTO, ON or OFF, got '${HBT_CUDA}'")
endif()

# pip builds in an isolated environment without nvidia-cublas: point HBT_CUBLAS_ROOT (cache
# variable or environment variable) at an installed wheel's site-packages/nvidia/cu13.
set(HBT_CUBLAS_ROOT "$ENV{HBT_CUBLAS_ROOT}" CACHE PATH
    "Directory holding include/cublas_v2.h and lib/libcublas.so.13; empty: ask Python")

# Locates cuBLAS: sets HBT_CUBLAS_INCLUDE_DIR, HBT_CUBLAS_LIBRARY and HBT_CUBLAS_SOURCE, or
# leaves HBT_CUBLAS_LIBRARY empty.
function(hbt_find_cublas)
  set(root "${HBT_CUBLAS_ROOT}")
  if(NOT root)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c
        "import importlib.util as u; print(list(u.find_spec('nvidia.cu13').submodule_search_locations)[0])"
      OUTPUT_VARIABLE root OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE failed)
    if(failed)
      set(root "")
    endif()
  endif()
  if(root)
    set(include_dir "${root}/include")
    set(lib_dir "${root}/lib")
    if(EXISTS "${include_dir}/cublas_v2.h" AND EXISTS "${lib_dir}/libcublas.so.13")
      set(HBT_CUBLAS_INCLUDE_DIR "${include_dir}" PARENT_SCOPE)
      set(HBT_CUBLAS_LIBRARY "${lib_dir}/libcublas.so.13" PARENT_SCOPE)
      set(HBT_CUBLAS_SOURCE "the nvidia-cublas wheel" PARENT_SCOPE)
      return()
    endif()
  endif()
  find_package(CUDAToolkit QUIET)
  if(TARGET CUDA::cublas)
    get_target_property(library CUDA::cublas IMPORTED_LOCATION)
    set(HBT_CUBLAS_INCLUDE_DIR "${CUDAToolkit_INCLUDE_DIRS}" PARENT_SCOPE)
    set(HBT_CUBLAS_LIBRARY "${library}" PARENT_SCOPE)
    set(HBT_CUBLAS_SOURCE "the CUDA toolkit" PARENT_SCOPE)
  endif()
endfunction()

set(HBT_CUDA_STATUS "")
if(HBT_CUDA STREQUAL "OFF")
  set(HBT_CUDA_STATUS "not built: disabled at build time (HBT_CUDA=OFF)")
else()
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    set(HBT_CUDA_STATUS "not built: no CUDA compiler found at build time")
  else()
    hbt_find_cublas()
    if(NOT HBT_CUBLAS_LIBRARY)
      set(HBT_CUDA_STATUS
          "not built: cuBLAS not found at build time (pip install nvidia-cublas, or a CUDA toolkit with cuBLAS)")
    endif()
  endif()
  if(HBT_CUDA_STATUS AND HBT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "HBT_CUDA=ON but the CUDA back-end cannot be built: ${HBT_CUDA_STATUS}")
  endif()
endif()

if(HBT_CUDA_STATUS)
  message(STATUS "hbt_fast CUDA loss: ${HBT_CUDA_STATUS}")
  return()
endif()

# CUDA 13 supports sm_75 and newer: Turing to Blackwell as real code (sm_80 A100, sm_90
# H100/H200), plus PTX of the newest for later GPUs. Override with CMAKE_CUDA_ARCHITECTURES.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES 75-real 80-real 86-real 89-real 90-real 100-real 120)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)  # cudart_static

# Kernels and host code of the CUDA loss: no Python, no libtorch; cudart linked statically so
# the module needs only libcublas (and the driver) at run time.
add_library(hbt_cuda_core STATIC csrc/loss/info_nce_cuda.cu)
target_include_directories(hbt_cuda_core PUBLIC csrc PRIVATE "${HBT_CUBLAS_INCLUDE_DIR}")
target_link_libraries(hbt_cuda_core PUBLIC "${HBT_CUBLAS_LIBRARY}" CUDA::cudart_static)
set_target_properties(hbt_cuda_core PROPERTIES POSITION_INDEPENDENT_CODE ON
                                               CUDA_RUNTIME_LIBRARY Static)

pybind11_add_module(_C_cuda csrc/python/_C_cuda.cpp)
target_link_libraries(_C_cuda PRIVATE hbt_cuda_core)
# Installed next to the nvidia-cublas wheel's libraries (site-packages/nvidia/cu13/lib);
# hbt_fast also preloads them from there before importing _C_cuda.
get_filename_component(HBT_CUBLAS_LIB_DIR "${HBT_CUBLAS_LIBRARY}" DIRECTORY)
set_target_properties(_C_cuda PROPERTIES INSTALL_RPATH "$ORIGIN/../nvidia/cu13/lib;${HBT_CUBLAS_LIB_DIR}")
install(TARGETS _C_cuda DESTINATION hbt_fast)

string(REGEX REPLACE "-real|-virtual" "" archs "${CMAKE_CUDA_ARCHITECTURES}")
list(TRANSFORM archs PREPEND "sm_")
list(JOIN archs "," archs)
set(HBT_CUDA_STATUS "built for ${archs} with cuBLAS from ${HBT_CUBLAS_SOURCE}")
message(STATUS "hbt_fast CUDA loss: ${HBT_CUDA_STATUS}")
