"""``googlenet-suite check``: hold a user's own GoogLeNet (an nn.Module, keras.Model, Gluon Block or ONNX file) to a
variant of the spec.

Framework-neutral: the framework's part (loading a model, reading and setting its parameters, recording every
intermediate output, reading its data flow where the graph can be read) is ``impl_X/check.py``, found through the
registry (capability ``check``). The rooms here:

- :mod:`.user_code`: the user's factory or file and the ``--map`` rules (misuse: one line, exit 2);
- :mod:`.graph`: the spec's layers and the user's data flow in one canonical order;
- :mod:`.mapping`: the suite's weights onto the user's parameters (a misfit is an architecture finding);
- :mod:`.matching`: the user's tensors matched to the spec's layers, the first divergence;
- :mod:`.traps` and :mod:`.diagnosis`: the trap catalogue, and the trap that reproduces the user's tensor;
- :mod:`.report`: the result as records (rendered by :mod:`googlenet_suite.render`);
- :mod:`.run`: all of it, in order.
"""

from .report import CheckResult
from .run import OPTIONS, TOLERANCE, reference, reference_key, run_check
from .user_code import CheckInputError, MappingError

__all__ = ["CheckInputError", "CheckResult", "MappingError", "OPTIONS", "TOLERANCE", "reference", "reference_key",
           "run_check"]
