# saes_set_warnings(target): the project's warning set (style.md §B10); third-party headers are SYSTEM.
function(saes_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Woverloaded-virtual -Wimplicit-fallthrough -Wformat=2)
  if(SAES_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
