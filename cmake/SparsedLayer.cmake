# Layers as build targets (docs/ARCHITECTURE.md, "Layers"). There is no include path to the
# source root: each layer library sees only the headers of its own folders and of the layer
# libraries it links, so an #include that reaches upward (the model layer naming
# engine/engine.h, say) fails to compile with "No such file or directory".
#
# sparsed_layer(<target> <path>...): publishes each source-tree <path> (a folder or a header,
# relative to the repository root) to <target> and to every target that links it, through a tree
# of symbolic links under ${CMAKE_BINARY_DIR}/layers/<target> that holds those paths only.
function(sparsed_layer target)
  set(root ${CMAKE_BINARY_DIR}/layers/${target})
  foreach(path IN LISTS ARGN)
    if(NOT EXISTS ${CMAKE_SOURCE_DIR}/${path})
      message(FATAL_ERROR "sparsed_layer(${target}): ${path} does not exist")
    endif()
    get_filename_component(parent ${root}/${path} DIRECTORY)
    file(MAKE_DIRECTORY ${parent})
    # Made afresh at every configure, so a moved source tree never leaves a stale link.
    file(REMOVE ${root}/${path})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${path} ${root}/${path} SYMBOLIC)
  endforeach()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    target_include_directories(${target} INTERFACE ${root})
  else()
    target_include_directories(${target} PUBLIC ${root})
  endif()
endfunction()
