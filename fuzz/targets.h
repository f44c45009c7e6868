// The fuzz targets: the first input byte picks one (fuzz_capi.cpp), the rest is its program.
#pragma once

#include "fuzz_common.h"

namespace fz {

void target_api(Reader &r);  // every entry point, valid and invalid arguments (target_api.cpp)
void target_threads(
    Reader &r);  // thread counts and per-layer budgets, results bit-identical (target_serving.cpp)
void target_alias(Reader &r);  // outputs overlapping inputs, exactly adjacent buffers (target_alias.cpp)
void target_lifecycle(
    Reader &r);                 // stale and foreign layer handles, trim, memory, budgets (target_serving.cpp)
void target_cache(Reader &r);   // many forwards of one shifted layer: bounded memory (target_serving.cpp)
void target_layer(Reader &r);   // layer == stateless bit for bit, float64 reference (target_layer.cpp)
void target_shapes(Reader &r);  // large valid shapes, sizes at the overflow boundary (target_shapes.cpp)
void target_concurrency(
    Reader &r);                 // forwards on one layer from several threads at once (target_serving.cpp)
void target_faults(Reader &r);  // allocation failures injected into a call (target_faults.cpp)
void target_model(Reader &r);   // whole models from mutated state_dicts and files (target_model.cpp)

constexpr int kTargets = 10;

}  // namespace fz
