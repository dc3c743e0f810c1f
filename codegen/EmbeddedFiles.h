//===- EmbeddedFiles.h - the runtime headers kiln carries -------*- C++ -*-===//
#ifndef KILN_CODEGEN_EMBEDDEDFILES_H
#define KILN_CODEGEN_EMBEDDEDFILES_H

namespace kiln {

/// A header a generated model includes: its include path and its text.
struct EmbeddedFile {
  const char *path;
  const char *text;
};

// Defined in the generated EmbeddedHeaders.cpp.
extern const EmbeddedFile kEmbeddedFiles[];
extern const int kNumEmbeddedFiles;

} // namespace kiln

#endif
