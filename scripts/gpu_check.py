"""``scripts/gpu-check``'s entry point: ``googlenet-suite gpu-check`` from a checkout without pip install.

The check is ``googlenet_suite.gpu_check`` (docs/gpu.md); run the ``gpu-check`` wrapper beside this file,
which puts the checkout on PYTHONPATH.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from googlenet_suite.gpu_check import main  # noqa: E402 - after the checkout is on the path

if __name__ == "__main__":
    sys.exit(main())
