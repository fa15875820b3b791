"""``googlenet-suite``: list, inspect, compare, run, export, check, convert, predict, bench, gpu-check, train and
evaluate GoogLeNet variants.

The CLI only reads the spec, the builders and the harness results; it never
builds a model its own way. Bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

import shared_spec
from shared_spec import arrays, contract

from . import data as datasets
from . import frameworks as fw_registry
from . import render
from .console import UsageError, check_output, progress as _progress, write_file as _atomic_write

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2


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


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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


def _overrides(args) -> dict:
    return {
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
        "input_size": tuple(args.input_size) if args.input_size else None,
        "aux_logits": args.aux,
        "transform_input": args.transform_input,
    }


def _load(name, args, **extra) -> shared_spec.Spec:
    overrides = {k: v for k, v in {**_overrides(args), **extra}.items() if v is not None}
    return shared_spec.load(name, spec_file=args.spec, **overrides)


def _write_output(text: str, path: str | None) -> None:
    """Write to stdout, or atomically to ``path`` (no half-written file on failure)."""
    if path is None:
        sys.stdout.write(text)
        return
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {path}", file=sys.stderr)


# --------------------------------------------------------------------------- commands


def cmd_list(args) -> int:
    rows = []
    for name in shared_spec.list_variants(args.spec):
        spec = shared_spec.load(name, spec_file=args.spec)
        report = shared_spec.analyze(spec)
        with_aux = shared_spec.analyze(shared_spec.load(name, spec_file=args.spec, aux_logits=True)).params \
            if spec.has_aux else None
        rows.append({
            "variant": name,
            "input": list(spec.input_shape),
            "num_classes": spec.num_classes,
            "params": report.params,
            "params_with_aux": with_aux,
            "buffers": report.buffers,
            "macs": report.macs,
            "min_input_size": list(report.min_input_size),
            "source": spec.provenance["source"],
            "reproduces": spec.provenance["reproduces"],
        })
    if args.format == "json":
        _write_output(json.dumps(rows, indent=2) + "\n", None)
        return EXIT_OK
    header = ["variant", "input", "classes", "params", "with aux", "MACs", "min input", "source"]
    table = [[r["variant"], render.shape_text(r["input"]), r["num_classes"], f"{r['params']:,}",
              f"{r['params_with_aux']:,}" if r["params_with_aux"] else "-", f"{r['macs'] / 1e9:.2f} G",
              "x".join(map(str, r["min_input_size"])), _short(r["source"])] for r in rows]
    _write_output(render.render_table("GoogLeNet variants", header, table, args.format), None)
    return EXIT_OK


def _short(source: str, limit: int = 48) -> str:
    head = source.replace(";", ",").split(",")[0]
    return head if len(head) <= limit else head[: limit - 1] + "…"


def cmd_inspect(args) -> int:
    spec = _load(args.variant, args)
    report = shared_spec.analyze(spec)
    data = {
        "variant": spec.variant,
        "input": list(spec.input_shape),
        "num_classes": spec.num_classes,
        "aux_logits": spec.aux_logits,
        "params": {"trainable": report.params, "buffers": report.buffers},
        "macs": report.macs,
        "min_input_size": list(report.min_input_size),
        "provenance": dict(spec.provenance),
        "layers": [{"name": i.name, "op": i.op, "depth": i.depth, "in_shape": list(i.in_shape),
                    "out_shape": list(i.out_shape), "params": i.params, "buffers": i.buffers, "macs": i.macs}
                   for i in report.layers],
    }
    if args.format == "json":
        _write_output(json.dumps(data, indent=2) + "\n", None)
        return EXIT_OK
    rows = [["  " * i.depth + i.name, i.op, render.shape_text(i.out_shape), f"{i.params:,}",
             f"{i.buffers:,}" if i.buffers else "", f"{i.macs:,}" if i.macs else ""]
            for i in report.layers if args.all or i.depth == 0]
    rows.append(["total", "", "", f"{report.params:,}", f"{report.buffers:,}", f"{report.macs:,}"])
    title = (f"{spec.variant}: input {render.shape_text(spec.input_shape)}, {spec.num_classes} classes, "
             f"aux {'on' if spec.aux_logits else 'off'}, minimum input "
             f"{report.min_input_size[0]}x{report.min_input_size[1]}")
    _write_output(render.render_table(title, ["layer", "op", "output (C, H, W)", "params", "buffers", "MACs"],
                                      rows, args.format), None)
    return EXIT_OK


def cmd_compare(args) -> int:
    from . import harness

    keys = fw_registry.parse_frameworks(args.frameworks)
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1. Received: --batch {args.batch}")
    _report_files(args)
    names = args.variants or [None]
    specs = [_load(name, args) for name in names]
    result = harness.compare(specs, keys, batch=args.batch, device=args.device, seed=args.seed,
                             tolerance=args.tolerance, require_all=args.require_all, progress=_progress())
    _write_output(render.render_compare(result, args.format, stages=args.stages), args.output)
    if args.junit:
        _write_output(render.junit_compare(result), args.junit)
    return EXIT_OK if result["agree"] else EXIT_DISAGREE


def _tolerance(text: str) -> float:
    """``--tolerance``: a number > 0 (max abs difference, relative to a layer's scale above 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _report_files(args) -> None:
    """--output and --junit: writable, and not the same file (checked before any work)."""
    given = [(option, Path(path)) for option, path in (("--output", args.output), ("--junit", args.junit)) if path]
    for option, path in given:
        check_output(path, option)
    if len(given) == 2 and given[0][1].resolve() == given[1][1].resolve():
        raise UsageError(f"--output and --junit name the same file: {given[0][1]}")


def _ci_options(p) -> None:
    """compare's and check's options for CI: a JUnit XML report and the tolerance."""
    from .harness import TOLERANCE

    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report here (one test case per "
                                                   "framework or layer, the finding in each failure)")
    p.add_argument("--tolerance", type=_tolerance, default=TOLERANCE, metavar="T",
                   help=f"max abs difference, relative to a layer's scale above 1 (default {TOLERANCE:g})")


def cmd_run(args) -> int:
    if args.weights and args.seed is not None:
        raise UsageError("run: give --weights FILE or --seed S, not both")
    outputs = [Path(args.output)] + ([Path(args.save_weights)] if args.save_weights else [])
    for option, out in zip(("--output", "--save-weights"), outputs):  # before any work: all or nothing
        check_output(out, option)
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise UsageError(f"--output and --save-weights name the same file: {outputs[0]}")
    path = Path(args.input)
    x = arrays.read_array(path, what="input")  # messages: "input FILE: ..."
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.number):
        raise UsageError(f"{path}: expected a numeric channels-first array (N, C, H, W) or (C, H, W), "
                         f"got shape {x.shape} dtype {x.dtype}")
    spec = _load(args.variant, args, input_size=args.input_size and tuple(args.input_size) or tuple(x.shape[2:]))
    if x.shape[1:] != spec.input_shape:
        raise UsageError(f"{path}: shape {x.shape} does not fit variant {spec.variant!r}, which takes "
                         f"(N, {', '.join(map(str, spec.input_shape))}); channels-first input expected")
    try:
        mod = fw_registry.load(args.framework)
    except fw_registry.FrameworkMissing as exc:
        raise UsageError(str(exc)) from None
    model = mod.build(spec, device=args.device, seed=args.seed if args.seed is not None else 0)
    if args.weights:
        mod.load_weights(model, args.weights)
    logits = mod.forward(model, x.astype(np.float32), training=False)
    logits = np.asarray(logits, dtype=np.float32)
    with tempfile.TemporaryDirectory(dir=outputs[0].parent, prefix=".googlenet-suite-") as tmp:
        if args.save_weights:  # written to a temporary file first: both outputs appear, or neither
            staged = Path(tmp) / "weights.safetensors"
            mod.save_weights(model, staged)
        _atomic_write(Path(args.output), lambda out: np.save(open(out, "wb"), logits))
        if args.save_weights:
            os.replace(staged, args.save_weights)
    print(f"{args.framework} {spec.variant}: {tuple(x.shape)} -> {tuple(logits.shape)} written to {args.output}",
          file=sys.stderr)
    return EXIT_OK


def cmd_export(args) -> int:
    """Write an ONNX file from one framework's model and verify it in onnxruntime on the same command."""
    from . import harness

    output = Path(args.output)
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory")
    if output.suffix != ".onnx":
        raise UsageError(f"--output {output}: expected a .onnx file name")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: directory {output.parent} does not exist")
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1. Received: --batch {args.batch}")
    spec = _load(args.variant, args)
    label = fw_registry.FRAMEWORKS[args.framework].label
    try:
        result = harness.export_verified(spec, args.framework, output, weights=args.weights, seed=args.seed,
                                         opset=args.opset, batch=args.batch)
    except fw_registry.FrameworkMissing as exc:
        raise UsageError(f"export --framework {args.framework}: {exc}") from None
    except shared_spec.InputError as exc:
        raise UsageError(f"export --framework {args.framework}: {exc}") from None
    if not result.agree:
        print(f"error: {args.framework} {spec.variant}: onnxruntime differs from {label} by "
              f"{result.max_abs_diff:.2e} > {result.tolerance:g}; {output} not written", file=sys.stderr)
        return EXIT_DISAGREE
    print(f"wrote {output}: {label} {spec.variant} ({result.source}), opset {result.opset}, outputs "
          f"{', '.join(result.outputs)}; onnxruntime vs {label} on a batch of {args.batch}: max abs diff "
          f"{result.max_abs_diff:.2e} <= {result.tolerance:g}", file=sys.stderr)
    return EXIT_OK


def cmd_predict(args) -> int:
    from . import predict

    images, variant = predict.split_variant(args.inputs, args.spec)
    named, overrides = predict.spec_request(args.weights)  # the network the weight file was saved from
    chosen = {**overrides, **{k: v for k, v in _overrides(args).items() if v is not None}}  # the command line wins
    spec = shared_spec.load(variant or named, spec_file=args.spec, **chosen)
    result = predict.predict(spec, images=images, weights=args.weights, framework=args.framework, top=args.top,
                             device=args.device)
    _write_output(predict.render_prediction(result, args.format), args.output)
    return EXIT_OK


def cmd_convert(args) -> int:
    from . import convert

    spec = _load(args.variant, args)
    with_aux = _load(args.variant, args, aux_logits=True) if spec.has_aux and not spec.aux_logits else None
    done = convert.convert(spec, src=args.src, output=args.output, from_format=args.from_format,
                           to_format=args.to_format, spec_with_aux=with_aux)
    print("\n".join([*done.notes, done.summary()]), file=sys.stderr)
    return EXIT_OK


def cmd_check(args) -> int:
    """Hold your own model to a variant: the suite's weights loaded into it, layer by layer, traps diagnosed."""
    from . import check

    given = [(key, getattr(args, f"model_{key}")) for key in check.OPTIONS if getattr(args, f"model_{key}", None)]
    if len(given) != 1:
        raise UsageError("check: give exactly one of " + ", ".join(check.OPTIONS[k] for k in check.OPTIONS))
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1. Received: --batch {args.batch}")
    _report_files(args)
    (key, target), = given
    result = check.run_check(_load(args.variant, args), key, target, batch=args.batch, seed=args.seed,
                             map_file=args.map, tolerance=args.tolerance, progress=_progress())
    _write_output(render.render_check(result, args.format), args.output)
    if args.junit:
        _write_output(render.junit_check(result), args.junit)
    return EXIT_OK if result.agree else EXIT_DISAGREE


def cmd_bench(args) -> int:
    from . import bench

    keys = fw_registry.parse_frameworks(args.frameworks, capability="bench")
    preset = bench.PRESETS["long" if args.long else "quick"]
    options = {name: preset[name] if getattr(args, name) is None else getattr(args, name) for name in preset}
    if any(b < 1 for b in options["batch"]):
        raise UsageError(f"--batch must be >= 1. Received: --batch {' '.join(map(str, options['batch']))}")
    if options["repeats"] < 1 or args.warmup < 0 or options["time_budget"] < 0:
        raise UsageError(f"--repeats must be >= 1, --warmup >= 0 and --time-budget >= 0. Received: --repeats "
                         f"{options['repeats']} --warmup {args.warmup} --time-budget {options['time_budget']}")
    if (args.threads is not None and args.threads < 1) or args.inter_threads < 1:
        raise UsageError(f"--threads and --inter-threads must be >= 1. Received: --threads {args.threads} "
                         f"--inter-threads {args.inter_threads}")
    if args.plot and not args.plot.endswith(".png"):
        raise UsageError(f"--plot: expected a .png file name. Received: --plot {args.plot}")
    specs = [_load(name, args) for name in (args.variants or [None])]
    modes = {"both": ["plain", "fast"], "all": list(bench.MODES)}.get(options["mode"], [options["mode"]])
    timing = bench.Timing(min_repeats=options["repeats"], warmup=args.warmup, budget_s=options["time_budget"])
    result = bench.run(specs, keys, batches=options["batch"], modes=modes, device=args.device, timing=timing,
                       threads=args.threads, inter_threads=args.inter_threads, train=not args.no_train,
                       handwritten=options["handwritten"], exports=options["exports"], progress=_progress())
    _write_output(bench.render_result(result, args.format), args.output)
    if args.plot:
        _atomic_write(Path(args.plot), lambda tmp: bench.plot(result, tmp), "--plot")
    return EXIT_OK


def cmd_gpu_check(args) -> int:
    """The PyTorch builder on CUDA against the CPU, Keras's other backends, a torch benchmark (--cpu: rehearsed)."""
    from . import gpu_check

    return gpu_check.execute(Path(args.out), cpu=args.cpu, quick=args.quick)


def _train_errors():
    """The data layer's and the trainer's input errors are one line and exit 2, like every other bad input."""
    from . import train

    return (datasets.DatasetError, train.TrainError)


def cmd_train(args) -> int:
    from . import train

    given = {"framework": args.framework, "variant": _one_variant(args), "data": args.data, "epochs": args.epochs,
             "batch": args.batch, "lr": args.lr, "optimizer": args.optimizer, "resize": args.resize,
             "seed": args.seed, "aux": args.aux, "limit": args.limit, "device": args.device}
    if not args.resume and not args.framework:
        raise UsageError("train: --framework is required (unless --resume continues a checkpoint)")
    every = args.framework == "all"  # the same recipe in each framework that trains (side_by_side.train_all)
    if every and args.resume:
        raise UsageError("train: --resume continues one framework's checkpoint; give it without --framework all")
    if every:
        given["framework"] = "torch"  # the recipe's first framework
    if not args.resume and not given["variant"]:
        given["variant"] = train.default_variant(args.data)
    try:
        if args.resume:
            recipe = train.resume_recipe(train.read_checkpoint(args.resume), given)
        else:
            optimizer = args.optimizer or "sgd"
            lr = args.lr if args.lr is not None else train.default_lr(optimizer, args.batch or train.Recipe().batch)
            recipe = train.Recipe(**{**{k: v for k, v in given.items() if v is not None}, "lr": lr}).check()
        if (every or not args.out) and not args.resume and not _SAFE_NAME.fullmatch(recipe.variant):
            # the default directory is made from the variant's name: it must stay one plain name under runs/
            raise UsageError(f"train: variant name {recipe.variant[:60]!r} cannot name a directory under runs/; "
                             f"give --out DIR")
        out = args.out or (str(Path(args.resume).parent) if args.resume  # go on writing beside the checkpoint
                           else "runs" if every else f"runs/{recipe.framework}-{recipe.variant}-{recipe.data}")
        if Path(out).exists() and not Path(out).is_dir():
            raise UsageError(f"--out {out}: exists and is not a directory")
        if every:
            from . import side_by_side

            side_by_side.train_all(recipe, out, data_dir=args.data_dir, download=args.download, spec_file=args.spec,
                                   progress=not args.quiet, log=lambda message: print(message, file=sys.stderr, flush=True))
            return EXIT_OK
        train.train(recipe, out, data_dir=args.data_dir, download=args.download, resume=args.resume,
                    spec_file=args.spec, progress=not args.quiet,
                    log=lambda message: print(message, file=sys.stderr, flush=True))
    except _train_errors() as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from . import side_by_side, train

    options = dict(variant=_one_variant(args), data_name=args.data, data_dir=args.data_dir, download=args.download,
                   resize=args.resize, limit=args.limit, device=args.device, spec_file=args.spec)
    try:
        if args.framework == "all":
            result = side_by_side.evaluate_all(args.weights, log=lambda line: print(line, file=sys.stderr), **options)
        else:
            result = train.evaluate_checkpoint(args.framework, args.weights, **options)
    except _train_errors() as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if args.framework == "all":
        text = json.dumps(result, indent=2) + "\n" if args.format == "json" else side_by_side.render_table(result)
    elif args.format == "json":
        text = json.dumps(result, indent=2) + "\n"
    else:
        text = (f"{result['framework']} {result['variant']} on {result['data']} test ({result['examples']} examples, "
                f"{result['resize']}x{result['resize']}): accuracy {result['accuracy']:.4f}, "
                f"loss {result['loss']:.4f}\n")
    _write_output(text, args.output)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="googlenet-suite", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"googlenet-suite {shared_spec.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    one, many, spec, report = _variant_parent("one"), _variant_parent("many"), _spec_parent(), _report_parent()
    trainable = fw_registry.with_capability("train")

    p = sub.add_parser("list", help="variants with provenance and parameter counts",
                       parents=[_spec_parent(overrides=False), _report_parent(output=False)])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("inspect", help="per-layer shapes, parameters and MACs from the oracle",
                       parents=[one, spec, _report_parent(output=False)])
    p.add_argument("--all", action="store_true", help="also list the layers inside blocks")
    p.set_defaults(func=cmd_inspect)

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
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("run", help="run one framework's model on your own channels-first .npy input",
                       parents=[one, spec, _device_parent()])
    p.add_argument("--framework", required=True, choices=list(fw_registry.FRAMEWORKS))
    p.add_argument("--weights", metavar="FILE", help="safetensors weights (googlenet-suite layout)")
    p.add_argument("--seed", type=_seed, help="initialise with this seed instead of loading weights")
    p.add_argument("--save-weights", metavar="FILE")
    p.add_argument("--input", required=True, metavar="X.npy")
    p.add_argument("--output", required=True, metavar="LOGITS.npy")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("export", help="write an ONNX file from any framework's model, verified in onnxruntime",
                       parents=[one, spec])
    p.add_argument("--framework", required=True, choices=list(fw_registry.FRAMEWORKS))
    p.add_argument("--weights", metavar="FILE", help="safetensors weights (default: seeded, BatchNorm calibrated)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: 17; 13 for MXNet's mx2onnx)")
    p.add_argument("--batch", type=int, default=2, help="examples in the verification batch")
    p.add_argument("--output", required=True, metavar="MODEL.onnx")
    p.set_defaults(func=cmd_export)

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
    p.set_defaults(func=cmd_check)
    sub._parser_class = _IntermixedParser  # SRC and VARIANT on either side of the options
    p = sub.add_parser("convert", help="weights between the suite's format, torchvision's state_dict and GluonCV's "
                                       ".params", parents=[spec])
    sub._parser_class = _Parser
    p.add_argument("src", metavar="SRC", help="the weight file to convert")
    p.add_argument("variant", nargs="?", help="variant name (default: the spec's default variant)")
    p.add_argument("--from", dest="from_format", required=True, choices=("torchvision", "gluoncv", "suite"))
    p.add_argument("--to", dest="to_format", required=True, choices=("suite", "torchvision", "gluoncv"))
    p.add_argument("--output", required=True, metavar="FILE")
    p.set_defaults(func=cmd_convert)

    sub._parser_class = _IntermixedParser
    p = sub.add_parser("predict", help="top-k ImageNet classes of images, in one framework or all side by side",
                       parents=[spec, _device_parent(), _report_parent()])
    sub._parser_class = _Parser
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, then optionally VARIANT (default: the "
                                                              "weight file's)")
    p.add_argument("--weights", required=True, metavar="FILE", help="safetensors weights (googlenet-suite layout)")
    p.add_argument("--framework", default="torch", choices=[*fw_registry.FRAMEWORKS, "all"])
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=cmd_predict)

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
                   help="also the hand-written reference models (googlenet), timed against the spec-built ones")
    p.add_argument("--exports", action=argparse.BooleanOptionalAction,
                   help="onnxruntime rows for each framework's ONNX export beside the spec-built graph")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("gpu-check", help="the GPU check: PyTorch on CUDA against the CPU, Keras's JAX and torch "
                       "backends, a torch benchmark; a markdown report (--cpu --quick: rehearsed on the CPU)")
    from .gpu_check import add_options as gpu_check_options
    gpu_check_options(p)
    p.set_defaults(func=cmd_gpu_check)

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
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_evaluate)
    return parser


def _one_variant(args) -> str | None:
    """``train``/``evaluate``: the positional VARIANT or the older ``--variant``, not two different ones."""
    if args.variant and args.variant_option and args.variant != args.variant_option:
        raise UsageError(f"{args.command}: variant given twice: {args.variant!r} and --variant {args.variant_option!r}")
    return args.variant or args.variant_option


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
