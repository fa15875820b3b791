"""``googlenet-suite``: list, inspect, compare, run, export, check, convert, predict, bench, gpu-check, train and
evaluate GoogLeNet variants.

The CLI only reads the spec, the builders and the harness results; it never
builds a model its own way. Bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import shared_spec
from shared_spec import contract

from . import commands
from . import data as datasets
from . import frameworks as fw_registry
from . import render
from .commands import EXIT_BAD_INPUT
from .console import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        raise UsageError(f"{self.prog}: {message}")


class _IntermixedParser(_Parser):
    """Positionals before and after options (``convert SRC --from F ... VARIANT``): argparse's intermixed parse."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


# --------------------------------------------------------------------------- helpers


def _seed(text: str) -> int:
    """``--seed``: an integer >= 0 (numpy's and the frameworks' generators take no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _variant_parent(variants: str = "one") -> argparse.ArgumentParser:
    """The variant, named the same way in every command: positional (``compare d2l``). ``train`` and
    ``evaluate`` also keep their older ``--variant NAME``."""
    parent = argparse.ArgumentParser(add_help=False)
    if variants == "one":
        parent.add_argument("variant", nargs="?", help="variant name (default: the spec's default variant)")
    else:
        parent.add_argument("variants", nargs="*", metavar="VARIANT", help="variants (default: the default variant)")
    return parent


def _spec_parent(*, overrides: bool = True) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--spec", metavar="FILE", help="use this spec file instead of the built-in one")
    if overrides:
        parent.add_argument("--num-classes", type=int, metavar="N")
        parent.add_argument("--in-channels", type=int, metavar="C")
        parent.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
        parent.add_argument("--aux", action="store_true", default=None, help="turn the aux heads on")
        parent.add_argument("--transform-input", action="store_true", default=None,
                            help="torchvision's transform_input: re-normalise ImageNet-normalised input first")
    return parent


def _report_parent(formats=("table", "markdown", "json"), *, output: bool = True) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--format", choices=formats, default=formats[0])
    if output:
        parent.add_argument("--output", metavar="FILE", help="write the report here instead of stdout")
    return parent


def _device_parent(default: str | None = "auto") -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--device", choices=contract.DEVICES, default=default)
    return parent


# --------------------------------------------------------------------------- commands


def _tolerance(text: str) -> float:
    """``--tolerance``: a number > 0 (max abs difference, relative to a layer's scale above 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _ci_options(p) -> None:
    """compare's and check's options for CI: a JUnit XML report and the tolerance."""
    from .harness import TOLERANCE

    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report here (one test case per "
                                                   "framework or layer, the finding in each failure)")
    p.add_argument("--tolerance", type=_tolerance, default=TOLERANCE, metavar="T",
                   help=f"max abs difference, relative to a layer's scale above 1 (default {TOLERANCE:g})")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="googlenet-suite", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"googlenet-suite {shared_spec.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    one, many, spec, report = _variant_parent("one"), _variant_parent("many"), _spec_parent(), _report_parent()
    trainable = fw_registry.with_capability("train")

    p = sub.add_parser("list", help="variants with provenance and parameter counts",
                       parents=[_spec_parent(overrides=False), _report_parent(output=False)])
    p.set_defaults(func=commands.cmd_list)

    p = sub.add_parser("inspect", help="per-layer shapes, parameters and MACs from the oracle",
                       parents=[one, spec, _report_parent(output=False)])
    p.add_argument("--all", action="store_true", help="also list the layers inside blocks")
    p.set_defaults(func=commands.cmd_inspect)

    p = sub.add_parser("compare", help="build in every framework, share weights, compare side by side",
                       parents=[many, spec, _device_parent(), report])
    p.add_argument("--frameworks", metavar="LIST",
                   help=f"comma-separated: {','.join(fw_registry.FRAMEWORKS)} (default: all)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--stages", action="store_true", help="one row per stage instead of per layer")
    p.add_argument("--require-all", action="store_true",
                   help="a framework of --frameworks that is not installed fails the check (exit 1) "
                        "instead of being left out")
    _ci_options(p)
    p.set_defaults(func=commands.cmd_compare)

    p = sub.add_parser("run", help="run one framework's model on your own channels-first .npy input",
                       parents=[one, spec, _device_parent()])
    p.add_argument("--framework", required=True, choices=list(fw_registry.FRAMEWORKS))
    p.add_argument("--weights", metavar="FILE", help="safetensors weights (googlenet-suite layout)")
    p.add_argument("--seed", type=_seed, help="initialise with this seed instead of loading weights")
    p.add_argument("--save-weights", metavar="FILE")
    p.add_argument("--input", required=True, metavar="X.npy")
    p.add_argument("--output", required=True, metavar="LOGITS.npy")
    p.set_defaults(func=commands.cmd_run)

    p = sub.add_parser("export", help="write an ONNX file from any framework's model, verified in onnxruntime",
                       parents=[one, spec])
    p.add_argument("--framework", required=True, choices=list(fw_registry.FRAMEWORKS))
    p.add_argument("--weights", metavar="FILE", help="safetensors weights (default: seeded, BatchNorm calibrated)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: 17; 13 for MXNet's mx2onnx)")
    p.add_argument("--batch", type=int, default=2, help="examples in the verification batch")
    p.add_argument("--output", required=True, metavar="MODEL.onnx")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser("check", help="hold your own model (nn.Module, keras.Model, Gluon Block, ONNX file) to a "
                       "variant, layer by layer, and name the trap where it diverges", parents=[one, spec, report])
    from .check import OPTIONS as check_options
    for key in fw_registry.with_capability("check"):
        p.add_argument(check_options[key], dest=f"model_{key}", metavar="FILE" if key == "onnx" else "MODULE:FACTORY",
                       help=f"your {fw_registry.FRAMEWORKS[key].label} model: " + (
                           "an ONNX file" if key == "onnx" else "path/to/file.py:NAME or package.module:NAME "
                           "(a factory called with no arguments, or the model itself)"))
    p.add_argument("--map", metavar="FILE", help="JSON rules: regex on your parameter names -> spec keys")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=_seed, default=0)
    _ci_options(p)
    p.set_defaults(func=commands.cmd_check)
    sub._parser_class = _IntermixedParser  # SRC and VARIANT on either side of the options
    p = sub.add_parser("convert", help="weights between the suite's format, torchvision's state_dict, GluonCV's / "
                                       "MXNet's .params and Keras's InceptionV3 weights", parents=[spec])
    sub._parser_class = _Parser
    p.add_argument("src", metavar="SRC", help="the weight file to convert")
    p.add_argument("variant", nargs="?", help="variant name (default: the spec's default variant; "
                                              "inception-v3-keras for the keras format)")
    p.add_argument("--from", dest="from_format", required=True, choices=("torchvision", "gluoncv", "keras", "suite"))
    p.add_argument("--to", dest="to_format", required=True, choices=("suite", "torchvision", "gluoncv", "keras"))
    p.add_argument("--output", required=True, metavar="FILE")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="convert Inception v3 weights into a network that computes something else (the notes say what)")
    p.set_defaults(func=commands.cmd_convert)

    sub._parser_class = _IntermixedParser
    p = sub.add_parser("predict", help="top-k ImageNet classes of images, in one framework or all side by side",
                       parents=[spec, _device_parent(), _report_parent()])
    sub._parser_class = _Parser
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, then optionally VARIANT (default: the "
                                                              "weight file's)")
    p.add_argument("--weights", required=True, metavar="FILE", help="safetensors weights (googlenet-suite layout)")
    p.add_argument("--framework", default="torch", choices=[*fw_registry.FRAMEWORKS, "all"])
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=commands.cmd_predict)

    p = sub.add_parser("bench", help="speed of the frameworks side by side, each in a process of its own",
                       parents=[many, spec, _device_parent(), report])
    p.add_argument("--frameworks", metavar="LIST",
                   help=f"comma-separated: {','.join(fw_registry.with_capability('bench'))} (default: all of them)")
    p.add_argument("--long", action="store_true",
                   help="the full comparison: --batch 1 8 --mode all --repeats 60 --time-budget 60 --handwritten "
                        "--exports (tens of minutes on 2 cores; without it, about two minutes: --batch 8 --mode fast "
                        "--repeats 10 --time-budget 10); options given explicitly win")
    p.add_argument("--batch", type=int, nargs="+")
    p.add_argument("--mode", choices=("plain", "fast", "bf16", "both", "all"),
                   help="plain: eager fp32; fast: the framework's fastest fp32 path (default); bf16: fast computing "
                        "in bfloat16, with its logits against fp32 (a CPU with AVX512_BF16 or AMX, or a GPU); "
                        "both: plain and fast; all: the three")
    p.add_argument("--repeats", type=int,
                   help="at least this many timed calls per measurement, then more until the spread settles or "
                        "--time-budget ends (default 10; judge the spec/hand-written ratio on 60 or more)")
    p.add_argument("--time-budget", type=float, metavar="S",
                   help="seconds of timed calls per measurement before it stops unsettled (default 10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads of every framework (default: the cores this process may use)")
    p.add_argument("--inter-threads", type=int, metavar="M", default=1,
                   help="inter-op threads of every framework (default 1: one operator at a time, each on all the "
                        "intra-op threads)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    p.add_argument("--handwritten", action=argparse.BooleanOptionalAction,
                   help="also the hand-written reference models (googlenet; Inception v3: torchvision's and "
                        "pytorch-fid's in torch, keras.applications' in Keras, the model zoo's in Gluon), timed "
                        "against the spec-built ones")
    p.add_argument("--exports", action=argparse.BooleanOptionalAction,
                   help="onnxruntime rows for each framework's ONNX export beside the spec-built graph")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=commands.cmd_bench)

    p = sub.add_parser("gpu-check", help="the GPU check: PyTorch on CUDA against the CPU, Keras's JAX and torch "
                       "backends, a torch benchmark; a markdown report (--cpu --quick: rehearsed on the CPU)")
    from .gpu_check import add_options as gpu_check_options
    gpu_check_options(p)
    p.set_defaults(func=commands.cmd_gpu_check)

    p = sub.add_parser("train", help="train one framework's model (d2l's recipe by default), with logs and checkpoints",
                       parents=[one, _spec_parent(overrides=False), _device_parent(None)])
    p.add_argument("--framework", choices=[*trainable, "all"], help="required unless --resume; all: the same recipe "
                   "in each, from the same start, and an overlay plot of the runs in --out (default runs)")
    p.add_argument("--variant", dest="variant_option", metavar="VARIANT", help="the same as the positional VARIANT "
                   "(default: d2l; googlenet with --data synthetic)")
    p.add_argument("--data", choices=datasets.DATASETS, help="default: fashion-mnist")
    p.add_argument("--data-dir", metavar="DIR")
    p.add_argument("--download", action="store_true", help="fetch the data set into --data-dir if it is missing")
    p.add_argument("--epochs", type=int, help="total epochs (default 10)")
    p.add_argument("--batch", type=int, help="default 128")
    p.add_argument("--lr", type=float, help="default for sgd 0.1 x batch / 128 (d2l's 0.1 at its batch 128, "
                   "scaled linearly), 0.001 for adam")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="default sgd (plain: no momentum, no weight decay)")
    p.add_argument("--resize", type=int, help="input size, square (default 96)")
    p.add_argument("--aux", action="store_true", default=None, help="turn the aux heads on (their loss is weighted)")
    p.add_argument("--seed", type=_seed, help="weights and batch order (default 0)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N training and N test examples")
    p.add_argument("--out", metavar="DIR", help="logs and checkpoints (default runs/FRAMEWORK-VARIANT-DATA; "
                                                "with --resume, the checkpoint's directory)")
    p.add_argument("--resume", metavar="CKPT", help="continue from OUT/epoch_K.safetensors or OUT/last.safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy and loss of a checkpoint, in any framework",
                       parents=[one, _spec_parent(overrides=False), _device_parent(),
                                _report_parent(("text", "json"))])
    p.add_argument("--framework", required=True, choices=[*fw_registry.FRAMEWORKS, "all"],
                   help="all: every installed framework, one table")
    p.add_argument("--variant", dest="variant_option", metavar="VARIANT",
                   help="the same as the positional VARIANT (default: the checkpoint's)")
    p.add_argument("--weights", required=True, metavar="CKPT", help="a .safetensors checkpoint from any framework")
    p.add_argument("--data", choices=datasets.DATASETS, default="fashion-mnist")
    p.add_argument("--data-dir", metavar="DIR")
    p.add_argument("--download", action="store_true")
    p.add_argument("--resize", type=int, help="default: the checkpoint's recipe's, else 96")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test examples")
    p.set_defaults(func=commands.cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up info lines, unless asked for
    if sys.stdout.isatty():
        render.COLOR["enabled"] = True
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except shared_spec.SuiteError as exc:
        # the suite's own errors (spec, weights, options, a missing framework): one line, exit 2
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
