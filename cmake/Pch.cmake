# saes_use_pch(target): precompiles cmake/pch.h (ATen core, common ops, fmt, std) when SAES_PCH=ON.
# ccache needs sloppiness=pch_defines,time_macros for PCH builds; scripts/build.sh sets it.
function(saes_use_pch target)
  if(SAES_PCH)
    target_precompile_headers(${target} PRIVATE "${PROJECT_SOURCE_DIR}/cmake/pch.h")
  endif()
endfunction()
