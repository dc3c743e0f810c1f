//===- MixedPrecision.h - int8 where the accuracy bound allows --*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_MIXEDPRECISION_H
#define KILN_TOOLS_KILN_MIXEDPRECISION_H

#include "Accuracy.h"

namespace kiln {

/// kiln compile --quantize auto: int8 dense layers and int8 tables, except
/// the few that cost the most accuracy, which stay f32.
///
/// Every layer and table is quantised and checked against the f32 model
/// (compileQuantized's check). Outside the bound, each one's sensitivity is
/// measured: the worst ratio of a difference to its bound with only that
/// one quantised. The most sensitive are then kept f32, in that order,
/// until the sensitivities left predict a model inside the bound, which a
/// compile then checks (adding one more while it is not). The model
/// written is the first inside the bound; the report names what was kept,
/// each unit's sensitivity, the weight bytes and the latency of both
/// models. Probes are built for the largest bucket only. Returns the exit
/// code.
int compileMixedPrecision(const CompileOptions &options, const AccuracyOptions &accuracy);

} // namespace kiln

#endif
