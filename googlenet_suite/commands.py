"""What each ``googlenet-suite`` command does once its options are parsed (:mod:`googlenet_suite.cli` builds the
parser): load the spec once, call the library with a ``Spec`` and keyword arguments, render the result. Bad input
is a :class:`shared_spec.SuiteError` (one line, exit 2 in ``cli.main``); a disagreement is exit 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

import shared_spec
from shared_spec import arrays

from . import data as datasets
from . import frameworks as fw_registry
from . import render
from .console import UsageError, check_output, progress as _progress, write_file as _atomic_write

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
        "preprocess": spec.preprocess.as_dict() if spec.preprocess else None,
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
    pipeline = (f"preprocess: {spec.preprocess.describe()} ({spec.preprocess.source})\n" if spec.preprocess else
                "preprocess: none declared (predict uses torchvision's ImageNet evaluation transform)\n")
    _write_output(render.render_table(title, ["layer", "op", "output (C, H, W)", "params", "buffers", "MACs"],
                                      rows, args.format) + pipeline, None)
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


def _report_files(args) -> None:
    """--output and --junit: writable, and not the same file (checked before any work)."""
    given = [(option, Path(path)) for option, path in (("--output", args.output), ("--junit", args.junit)) if path]
    for option, path in given:
        check_output(path, option)
    if len(given) == 2 and given[0][1].resolve() == given[1][1].resolve():
        raise UsageError(f"--output and --junit name the same file: {given[0][1]}")


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
    rule = f"{result.tolerance:g} x max(1, scale)"
    if not result.agree:
        print(f"error: {args.framework} {spec.variant}: onnxruntime differs from {label} by "
              f"{result.max_abs_diff:.2e} in {result.worst} of scale {result.scale:.3g} > {rule}; "
              f"{output} not written", file=sys.stderr)
        return EXIT_DISAGREE
    print(f"wrote {output}: {label} {spec.variant} ({result.source}), opset {result.opset}, outputs "
          f"{', '.join(result.outputs)}; onnxruntime vs {label} on a batch of {args.batch}: max abs diff "
          f"{result.max_abs_diff:.2e} in {result.worst} of scale {result.scale:.3g} <= {rule}", file=sys.stderr)
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

    keras = "keras" in (args.from_format, args.to_format) and not args.spec
    variant = args.variant or (convert.KERAS_VARIANT if keras else None)
    spec = _load(variant, args)
    # the weights do not depend on the input size; Inception v3's aux head needs 299x299 (--input-size 75 75)
    with_aux = _load(variant, args, aux_logits=True, input_size=None) if spec.has_aux and not spec.aux_logits else None
    done = convert.convert(spec, src=args.src, output=args.output, from_format=args.from_format,
                           to_format=args.to_format, spec_with_aux=with_aux, allow_mismatch=args.allow_mismatch)
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

    return gpu_check.execute(Path(args.out), cpu=args.cpu, quick=args.quick, variant=args.variant)


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
        # a resumed run's network is the one its checkpoint records (its spec file too, unless --spec names another)
        request = (train.checkpoint_spec(args.resume, spec_file=args.spec, option="--resume") if args.resume
                   else train.SpecRequest(recipe.variant, args.spec))
        spec = shared_spec.load(request.variant, spec_file=request.spec_file, **request.overrides)
        options = dict(data_dir=args.data_dir, download=args.download, progress=not args.quiet,
                       log=lambda message: print(message, file=sys.stderr, flush=True))
        if every:
            from . import side_by_side

            side_by_side.train_all(spec, recipe, out, **options)
            return EXIT_OK
        train.train(spec, recipe, out, resume=args.resume, **options)
    except _train_errors() as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from . import side_by_side, train

    options = dict(data_name=args.data, data_dir=args.data_dir, download=args.download, resize=args.resize,
                   limit=args.limit, device=args.device)
    try:
        # the network the checkpoint records (its variant, spec file and overrides), or the variant and --spec given
        request = train.checkpoint_spec(args.weights, variant=_one_variant(args), spec_file=args.spec)
        spec = shared_spec.load(request.variant, spec_file=request.spec_file, **request.overrides)
        if args.framework == "all":
            result = side_by_side.evaluate_all(spec, args.weights, log=lambda line: print(line, file=sys.stderr),
                                               **options)
        else:
            result = train.evaluate_checkpoint(spec, args.framework, args.weights, **options)
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


def _one_variant(args) -> str | None:
    """``train``/``evaluate``: the positional VARIANT or the older ``--variant``, not two different ones."""
    if args.variant and args.variant_option and args.variant != args.variant_option:
        raise UsageError(f"{args.command}: variant given twice: {args.variant!r} and --variant {args.variant_option!r}")
    return args.variant or args.variant_option
