# Default CUDA architectures for an nvcc version (what lfdn-edge builds when neither
# CMAKE_CUDA_ARCHITECTURES nor the CUDAARCHS environment variable is given). SASS ("-real") for every
# GPU family we target that this nvcc can compile for, plus PTX ("-virtual") of the newest one, which the
# driver JIT-compiles on newer GPUs:
#   sm_72 Jetson Xavier (JetPack 5): CUDA 11.x and 12.x only (CUDA 13 removed offline compilation for it)
#   sm_75 T4 / RTX 20, sm_80 A100, sm_86 RTX 30 / A10, sm_87 Jetson Orin (CUDA 11.4+)
#   sm_89 RTX 40 / L4 / L40S, sm_90 H100 / H200 (CUDA 11.8+)
# CUDA older than 11.4 is not supported (cudaGraphInstantiateWithFlags and sm_87 need 11.4): the result
# is empty. Usable as a script for tests:  cmake -DLFDN_CUDA_VERSION=11.4.3 -P csrc/cmake/cuda_archs.cmake
function(lfdn_default_cuda_archs version out_var)
  set(_archs "")
  if(version VERSION_GREATER_EQUAL 11.4)
    if(version VERSION_LESS 13.0)
      list(APPEND _archs 72-real)
    endif()
    list(APPEND _archs 75-real 80-real 86-real 87-real)
    if(version VERSION_GREATER_EQUAL 11.8)
      list(APPEND _archs 89-real 90-real 90-virtual)
    else()
      list(APPEND _archs 87-virtual)
    endif()
  endif()
  set(${out_var} "${_archs}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT DEFINED LFDN_CUDA_VERSION)
    message(FATAL_ERROR "usage: cmake -DLFDN_CUDA_VERSION=X.Y -P ${CMAKE_CURRENT_LIST_FILE}")
  endif()
  lfdn_default_cuda_archs("${LFDN_CUDA_VERSION}" _a)
  message("${_a}")
endif()
