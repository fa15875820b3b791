"""``googlenet-suite bench`` for MXNet Gluon: the runner, and a hand-written GoogLeNet.

The runner protocol is in :mod:`googlenet_suite.bench`. Both sources go through the same
runner code, so spec-built / hand-written time measures the models only.

- plain: imperative Gluon (not hybridized): ``net(x)``, ``autograd.record()``, ``loss.backward()``,
  ``gluon.Trainer(..., "sgd").step(batch)``, as a beginner writes it.
- fast: ``hybridize(static_alloc=True, static_shape=True)``. The cached graphs (inference, and
  training when ``train``) are built while the runner is created (``setup_s``), not in the timed calls.

Each call ends with ``mx.nd.waitall()`` (MXNet's engine is asynchronous, on the CPU too).
"""

from __future__ import annotations

import gc

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

import shared_spec

from .bench import DEVICES, check_handwritten, check_options, compile_now

LR = 0.01
SEED = 0


# --------------------------------------------------------------------------- the hand-written model
# torchvision's GoogLeNet (no aux heads) in Gluon. ceil_mode=True is Gluon's pooling_convention="full",
# which gives torch's ceil sizes here: the stride-2 pools have no padding, and at stride 1 ceil and
# floor agree.


class BasicConv2d(nn.HybridBlock):
    """conv (no bias) -> BN (eps 1e-3, torch's momentum 0.1) -> ReLU."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, strides: int = 1, padding: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel_size, strides=strides, padding=padding, use_bias=False,
                                  in_channels=in_channels)
            self.bn = nn.BatchNorm(momentum=0.9, epsilon=0.001, in_channels=channels)
            self.relu = nn.Activation("relu")

    def hybrid_forward(self, F, x):
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.HybridBlock):
    """The paper's Table 1 columns as arguments."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
            self.branch2 = nn.HybridSequential()
            self.branch2.add(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                             BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
            self.branch3 = nn.HybridSequential()
            # kernel 3 instead of 5: torchvision's known bug, kept for weight compatibility
            self.branch3.add(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                             BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
            self.branch4 = nn.HybridSequential()
            self.branch4.add(nn.MaxPool2D(pool_size=3, strides=1, padding=1, ceil_mode=True),
                             BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def hybrid_forward(self, F, x):
        return F.concat(self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x), dim=1)


class GoogLeNet(nn.HybridBlock):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, strides=2, padding=3)
            self.maxpool1 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
            self.conv2 = BasicConv2d(64, 64, kernel_size=1)
            self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)

            self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
            self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
            self.maxpool3 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)

            self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
            self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
            self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
            self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
            self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
            self.maxpool4 = nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True)

            self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
            self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

            self.avgpool = nn.GlobalAvgPool2D()
            self.flatten = nn.Flatten()
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Dense(num_classes, in_units=1024)

    def hybrid_forward(self, F, x):
        # N x 3 x 224 x 224
        x = self.maxpool1(self.conv1(x))                      # N x 64 x 56 x 56
        x = self.maxpool2(self.conv3(self.conv2(x)))          # N x 192 x 28 x 28
        x = self.inception3a(x)                               # N x 256 x 28 x 28
        x = self.maxpool3(self.inception3b(x))                # N x 480 x 14 x 14
        x = self.inception4a(x)                               # N x 512 x 14 x 14
        x = self.inception4b(x)                               # N x 512 x 14 x 14
        x = self.inception4c(x)                               # N x 512 x 14 x 14
        x = self.inception4d(x)                               # N x 528 x 14 x 14
        x = self.maxpool4(self.inception4e(x))                # N x 832 x 7 x 7
        x = self.inception5a(x)                               # N x 832 x 7 x 7
        x = self.inception5b(x)                               # N x 1024 x 7 x 7
        x = self.flatten(self.avgpool(x))                     # N x 1024
        return self.fc(self.dropout(x))                       # N x num_classes


def handwritten(spec: shared_spec.Spec, *, device: str = "auto") -> GoogLeNet:
    """The hand-written GoogLeNet for ``spec``'s classes and input channels, initialised on ``device``:
    normal(0, 0.01) weights (torchvision's trunc_normal at +-200 std), zero biases, BN 1/0/0/1."""
    ctx = resolve_device(device)
    net = GoogLeNet(num_classes=spec.num_classes, in_channels=spec.in_channels)
    mx.random.seed(SEED)
    net.initialize(mx.init.Normal(0.01), ctx=ctx)
    return net


# --------------------------------------------------------------------------- the runner


def resolve_device(device: str) -> mx.Context:
    """``"auto"``: GPU 0 when MXNet sees one, else the CPU (as impl_mxnet.build does)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}. Received: device={device!r}")
    gpus = mx.context.num_gpus()
    if device == "gpu" and not gpus:
        raise ValueError(f"device='gpu' but MXNet sees no GPU. Received: device={device!r}")
    return mx.gpu(0) if device == "gpu" or (device == "auto" and gpus) else mx.cpu()


def trainable_params(net: gluon.Block) -> int:
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")


def _gpu_used(ctx: mx.Context) -> int:
    free, total = mx.context.gpu_memory_info(ctx.device_id)
    return total - free


class Runner:
    def __init__(self, net: gluon.HybridBlock, spec: shared_spec.Spec, *, ctx: mx.Context, mode: str, batch: int,
                 train: bool, aux_weights: tuple[float, ...] = (), gpu_baseline: int = 0):
        self._ctx = ctx
        self._baseline = gpu_baseline
        self.device = "gpu" if ctx.device_type == "gpu" else "cpu"
        self.model = self._net = net
        self._batch = batch
        self._aux_weights = aux_weights
        rng = np.random.default_rng(SEED)
        self._x = mx.nd.array(rng.standard_normal((batch, *spec.input_shape)), ctx=ctx, dtype=np.float32)
        self._y = mx.nd.array(rng.integers(0, spec.num_classes, size=batch), ctx=ctx, dtype=np.float32)
        self._loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self._trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})  # no momentum, no wd
        mx.nd.waitall()
        if mode == "plain":
            self.notes = "imperative (not hybridized)"
            return
        net.hybridize(static_alloc=True, static_shape=True)
        self.notes = "hybridize(static_alloc=True, static_shape=True)"
        compile_now(self, train, "hybridize(static_alloc=True, static_shape=True)")

    def forward(self) -> None:
        self._net(self._x)  # not recording: inference mode (running BN statistics, no dropout)
        mx.nd.waitall()

    def train_step(self) -> None:
        with autograd.record():  # training mode
            out = self._net(self._x)
            main, *aux = out if isinstance(out, (tuple, list)) else (out,)
            loss = self._loss(main, self._y)
            for weight, logits in zip(self._aux_weights, aux, strict=True):
                loss = loss + weight * self._loss(logits, self._y)
        loss.backward()
        self._trainer.step(self._batch)  # gradients of the summed loss / batch: SGD on the mean
        mx.nd.waitall()

    def peak_gpu_bytes(self) -> int | None:
        """On a GPU: device memory taken since the runner was created. MXNet reports no peak, but its
        memory pool keeps what it allocates, so this is its high-water mark (device-wide: another
        process allocating at the same time would count too)."""
        if self.device != "gpu":
            return None
        mx.nd.waitall()
        return max(0, _gpu_used(self._ctx) - self._baseline)


def runner(spec: shared_spec.Spec, *, source: str, mode: str, device: str, batch: int, train: bool) -> Runner:
    check_options(source, mode, batch)
    ctx = resolve_device(device)
    gc.collect()
    baseline = 0
    if ctx.device_type == "gpu":
        mx.nd.zeros((1,), ctx=ctx).wait_to_read()  # the CUDA context exists before the baseline
        mx.nd.waitall()
        ctx.empty_cache()  # give back what earlier runners' pools hold
        baseline = _gpu_used(ctx)
    if source == "spec":
        import impl_mxnet

        net = impl_mxnet.build(spec, device=device, seed=SEED)
        aux_weights = tuple(head.loss_weight for head in spec.aux_heads)
    else:
        net = handwritten(spec, device=device)
        check_handwritten(spec, trainable_params(net))
        aux_weights = ()
    return Runner(net, spec, ctx=ctx, mode=mode, batch=batch, train=train, aux_weights=aux_weights,
                  gpu_baseline=baseline)
