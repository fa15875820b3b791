"""googlenet-suite's shared spec: one JSON architecture spec, its schema, loader and oracle.

Imports no deep-learning framework::

    import shared_spec
    spec = shared_spec.load("googlenet", num_classes=10)
    report = shared_spec.analyze(spec)
    report.params, report.layer("inception3a").out_shape
"""

from .errors import InputError, SuiteError
from .jsonfile import MAX_DEPTH, MAX_SPEC_BYTES
from .loader import MAX_MEMORY_BYTES, check_memory, default_variant, list_variants, load, read_document
from .oracle import (Analysis, LayerInfo, MemoryEstimate, analyze, ceil_extra_padding, memory_estimate, min_input_size,
                     pool_output_size)
from .resolver import MAX_LAYERS
from .spec import (BUILTIN_SPEC, BUILTIN_SPECS, IMAGENET_EVAL, OVERRIDES, SCHEMA_FILE, AdaptiveAvgPool, Aux, BatchNorm,
                   Branch, Concat, Conv, Dense, Dropout, Flatten, GlobalAvgPool, Init, Layer, LRN, Pool, Preprocess, Spec,
                   SpecError, TransformInput,
                   is_buffer, with_bn_momentum)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveAvgPool", "Analysis", "Aux", "BUILTIN_SPEC", "BUILTIN_SPECS", "BatchNorm", "Branch", "Concat", "Conv",
    "Dense", "Dropout", "Flatten", "GlobalAvgPool", "IMAGENET_EVAL", "Init", "LRN", "Layer", "LayerInfo", "OVERRIDES",
    "Pool", "Preprocess",
    "SCHEMA_FILE", "Spec", "SpecError", "TransformInput", "__version__", "analyze", "ceil_extra_padding",
    "default_variant", "is_buffer", "list_variants", "load", "min_input_size", "pool_output_size", "read_document",
    "with_bn_momentum",
    # the suite's exception root and its bad-input branch (errors.py)
    "InputError", "SuiteError",
    # limits and the memory estimate (every bad input is a one-line SpecError)
    "MAX_DEPTH", "MAX_LAYERS", "MAX_MEMORY_BYTES", "MAX_SPEC_BYTES", "MemoryEstimate", "check_memory",
    "memory_estimate",
]
