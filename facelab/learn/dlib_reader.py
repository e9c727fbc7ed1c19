"""facelab's own reader of dlib's network file format (no dlib needed).

dlib (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``dlib/dnn/layers.h``) writes a network
as nested layers: every ``add_layer`` writes its version, then *its sub-network*, then its
own layer's details, so the file holds first a run of versions from the loss layer
inwards, then the input layer, then each layer's details from the input outwards.  The
pieces:

* integers: one control byte (low 4 bits: how many little-endian bytes follow; bit 7:
  negative), then those bytes;
* floats (outside tensors): a mantissa then an exponent, both such integers
  (``mantissa * 2**exponent``);
* strings: a length, then the bytes; booleans: the character ``'1'`` or ``'0'``;
* tensors: version 2, four dimensions (samples, k, rows, columns), then little-endian
  float32 values; "alias tensors" (views into a layer's ``params``): version 1 and the
  four dimensions only.

:func:`read_face_resnet` reads the one network facelab uses, dlib's face-embedding ResNet
(``dlib_face_recognition_resnet_model_v1.dat``), checking every layer against the known
architecture, and returns its parameters in input-to-output order.  A truncated file or one
of another network raises :class:`DlibFormatError` naming the file; an altered one is
caught by its SHA-256 (:mod:`facelab.learn.face_resnet`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """A file that is not the expected dlib network (the message names the file and byte)."""


@dataclass
class Layer:
    """One layer's parameters, as dlib stores them.

    Attributes:
        kind: ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev`` or
            ``fc``.
        arrays: ``filters`` [N, K, R, C] and ``biases`` [N] of a ``con``; ``gamma`` and
            ``beta`` [K] of an ``affine``; ``weights`` [inputs, outputs] of an ``fc``.
        options: Sizes, strides and paddings as stored.
    """

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    options: dict[str, int] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """The parsed network: the input layer's channel means and the layers in order."""

    input_means: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[Layer]


class _Reader:
    """Sequential reads of dlib's serialised values from bytes."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos} of {len(self.data)}: "
                               "not dlib's face-embedding network file, or a damaged copy")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"the file ends early (wanted {n} more bytes)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        specials = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return specials[exponent] if exponent in specials else math.ldexp(mantissa, exponent)

    def str(self) -> str:
        size = self.int()
        if not 0 <= size <= 256:
            raise self.fail(f"implausible string length {size}")
        return self.take(size).decode("latin-1")

    def bool(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"bad boolean {char!r}")
        return char == b"1"

    def expect(self, value: int, what: str) -> None:
        found = self.int()
        if found != value:
            raise self.fail(f"{what} is {found}, expected {value}")

    def version(self, allowed: tuple[str, ...]) -> str:
        found = self.str()
        if found not in allowed:
            raise self.fail(f"layer {found!r} where {' or '.join(allowed)} was expected")
        return found

    def tensor(self) -> np.ndarray:
        self.expect(2, "tensor version")
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims) or math.prod(dims) > 50_000_000:
            raise self.fail(f"bad tensor shape {dims}")
        values = np.frombuffer(self.take(4 * math.prod(dims)), dtype="<f4")
        return values.reshape(dims).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        self.expect(1, "alias tensor version")
        return tuple(self.int() for _ in range(4))


# ------------------------------------------------------------------ layer details
def _con(r: _Reader) -> Layer:
    version = r.version(("con_4", "con_5", "con_6"))
    params = r.tensor().ravel()
    filters, rows, cols = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    shape = r.alias()
    bias_shape = r.alias()
    for _ in range(4):                           # learning-rate / weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.bool()                                 # use_relu (a fused relu: not used here)
    size = math.prod(shape)
    if shape[0] != filters or shape[2:] != (rows, cols) or params.size < size:
        raise r.fail(f"convolution filters {shape} do not match {filters}x{rows}x{cols}")
    biases = params[size:size + filters] if use_bias else np.zeros(filters, np.float32)
    if biases.size != filters or bias_shape[1] != filters:
        raise r.fail("convolution biases do not match the filters")
    return Layer("con", {"filters": params[:size].reshape(shape), "biases": biases},
                 {"stride": stride_y, "stride_x": stride_x, "padding": pad_y,
                  "padding_x": pad_x})


def _affine(r: _Reader) -> Layer:
    version = r.version(("affine_", "affine_2"))
    params = r.tensor().ravel()
    gamma, beta = r.alias(), r.alias()
    r.int()                                      # mode (conv or fc): per channel either way
    if version == "affine_2" and r.bool():
        raise r.fail("a disabled affine layer")
    n = math.prod(gamma)
    if n != math.prod(beta) or params.size != 2 * n:
        raise r.fail("affine parameters do not match their shapes")
    return Layer("affine", {"gamma": params[:n], "beta": params[n:]})


def _relu(r: _Reader) -> Layer:
    if r.version(("relu_", "relu_2")) == "relu_2" and r.bool():
        raise r.fail("a disabled relu layer")
    return Layer("relu")


def _pool(kind: str) -> Callable[[_Reader], Layer]:
    def read(r: _Reader) -> Layer:
        r.version((f"{kind}_2",))
        keys = ("rows", "cols", "stride", "stride_x", "padding", "padding_x")
        return Layer(kind, options={k: r.int() for k in keys})

    return read


def _add_prev(r: _Reader) -> Layer:
    r.version(("add_prev_",))
    return Layer("add_prev")


def _fc(r: _Reader) -> Layer:
    version = r.version(("fc_2", "fc_3"))
    outputs, inputs = r.int(), r.int()
    params = r.tensor().ravel()
    weights, _ = r.alias(), r.alias()
    bias_mode = r.int()
    for _ in range(4):
        r.float()
    if version == "fc_3":
        r.bool()
    size = math.prod(weights)
    if bias_mode != 1 or size != inputs * outputs or params.size != size:
        raise r.fail("the fully connected layer is not the expected one without bias")
    return Layer("fc", {"weights": params.reshape(inputs, outputs)})


_DETAILS = {"con": _con, "affine": _affine, "relu": _relu, "max_pool": _pool("max_pool"),
            "avg_pool": _pool("avg_pool"), "add_prev": _add_prev, "fc": _fc}


# ------------------------------------------------------------------ the architecture
def _residual(down: bool) -> list[str]:
    """One residual block's wrappers, outermost first (``tag``/``skip`` have no details)."""
    block = ["affine", "con", "relu", "affine", "con", "tag"]
    if down:     # relu(add_prev2(avg_pool(skip1(tag2(block(tag1(x)))))))
        return ["relu", "add_prev", "avg_pool", "skip", "tag", *block]
    return ["relu", "add_prev", *block]      # relu(add_prev1(block(tag1(x))))


def face_resnet_wrappers() -> list[str]:
    """Return the wrappers of dlib's ``anet_type`` (dnn_face_recognition_ex.cpp), outermost first.

    loss_metric(fc_no_bias 128(avg_pool_everything(level0(level1(level2(level3(level4(
    max_pool 3x3/2(relu(affine(con 32 7x7/2(input_rgb_image_sized 150)))))))))))), where
    level0 = one 256 down block, level1 = two 256 blocks on a 256 down block, level2 = two
    128 blocks on a 128 down block, level3 = three 64 blocks on a 64 down block, level4 =
    three 32 blocks.
    """
    wrappers = ["fc", "avg_pool"]
    for plain, down in ((0, True), (2, True), (2, True), (3, True), (3, False)):
        for _ in range(plain):
            wrappers += _residual(False)
        if down:
            wrappers += _residual(True)
    return wrappers + ["max_pool", "relu", "affine", "con"]


def read_face_resnet(path: str | os.PathLike[str]) -> DlibNetwork:
    """Read dlib's face-embedding ResNet file (``dlib_face_recognition_resnet_model_v1.dat``).

    Args:
        path: The ``.dat`` file (``face-recognition-models`` installs it).

    Returns:
        The input layer's channel means and size, and every layer with details
        (convolutions, affines, relus, pools, additions, the last fully connected layer),
        from the input to the output.

    Raises:
        DlibFormatError: For a file that ends early, has trailing bytes, or holds another
            network (the message names the file and the byte).
        OSError: When the file cannot be read.
    """
    name = str(path)
    r = _Reader(Path(path).read_bytes(), name)
    r.expect(1, "loss layer version")
    r.version(("loss_metric_", "loss_metric_2"))
    r.float()                                   # margin
    r.float()                                   # distance threshold
    wrappers = face_resnet_wrappers()
    versions = []
    for kind in wrappers[:-1]:
        versions.append(r.int())
        wanted = (1,) if kind in ("tag", "skip") else (2,)
        if versions[-1] not in wanted:
            raise r.fail(f"{kind} layer version {versions[-1]}")
    first_version = r.int()
    if first_version not in (2, 3):
        raise r.fail(f"input add_layer version {first_version}")
    r.version(("input_rgb_image_sized", "input_rgb_image"))
    means = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers = [_DETAILS["con"](r)]
    _trailer(r, first_version, input_layer=True)
    for kind, version in zip(reversed(wrappers[:-1]), reversed(versions), strict=True):
        if kind in ("tag", "skip"):
            continue
        layers.append(_DETAILS[kind](r))
        _trailer(r, version, input_layer=False)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return DlibNetwork(means, size, layers)


def _trailer(r: _Reader, version: int, input_layer: bool) -> None:
    """The state an ``add_layer`` writes after its details (flags and empty buffers)."""
    for _ in range(3):
        r.bool()
    r.tensor()                                  # x_grad
    r.tensor()                                  # cached_output
    if input_layer or version == 2:
        r.tensor()                              # grad_final / params_grad
    if input_layer and version == 3:
        r.int()                                 # _sample_expansion_factor
