"""dlib's face-embedding ResNet as a Keras model: a network pretrained on millions of faces.

The blog post's diagnosis was "too little data"; the field's answer is transfer from a
network trained on many faces.  This is dlib's ``dlib_face_recognition_resnet_model_v1``
(a 29-convolution ResNet, 128-number embeddings, 99.38% on LFW pairs; MIT licence), built
in Keras, its weights read from the file that the ``face-recognition-models`` package
installs (:mod:`facelab.learn.dlib_reader`): no dlib at run time, no download.

* input: 150 x 150 float32 RGB chips in [0, 255] (:mod:`facelab.faces.chips` cuts them
  the way dlib does); dlib's ``(pixel - channel mean) / 256`` happens inside;
* each convolution carries its affine layer (dlib's frozen batch normalisation) folded
  into its kernel and bias, so the Keras model is plain ``Conv2D`` layers; dlib adds a
  residual branch to a shortcut of another size by zero-padding the smaller one
  (channels and, once, a 3 x 3 map into 4 x 4): :func:`pad_add_class` does the same;
* output: the 128-number embedding (dlib's ``compute_face_descriptor``), not normalised.

The weights file is checked by its SHA-256 (an altered or truncated file is an error that
names it), converted once and cached in ``user_cache_dir("face-resnet")``
(``~/.cache/facelab/face-resnet/`` unless ``FACELAB_CACHE`` says otherwise).

Keras is imported inside the functions only.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facelab.io import atomic_write_bytes, user_cache_dir

if TYPE_CHECKING:
    import keras

ARCH = "face-resnet"
PACKAGE = "face-recognition-models"
PACKAGE_PIN = "face-recognition-models==0.3.0"
MODULE = "face_recognition_models"
WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
WEIGHTS_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
NETWORK_KEY = f"dlib-resnet-v1-{WEIGHTS_SHA256[:12]}"
CHIP_SIZE = 150
EMBEDDING_SIZE = 128
CACHE_FORMAT = 1
INPUT_MEANS = (122.782, 117.001, 104.298)   # as stored in the file (float32)
# The open-set score a stranger reaches at each false-accept rate, measured on the real faces
# of half of pubfig83-dev (benchmarks/openset_prior.py: models of 3-15 people, 10-80
# faces each); the floor of a face-network model's threshold (docs/recognize.md).
STRANGER_SCORES = {0.001: 0.7248, 0.002: 0.7220, 0.005: 0.7175, 0.01: 0.7139, 0.02: 0.7098,
                   0.05: 0.7038, 0.1: 0.6984, 0.2: 0.6916}
# the residual stages, input side first: (filters, plain blocks, starts with a down block)
STAGES = ((32, 3, False), (64, 3, True), (128, 2, True), (256, 2, True), (256, 0, True))


class WeightsUnavailable(ImportError):
    """The package that ships the network's weights is not installed (says what to install)."""


class WeightsFileError(ValueError):
    """A weights file that is not the expected one (altered, truncated, another network)."""


def weights_path() -> Path:
    """The weights file that ``face-recognition-models`` installed (the package is not imported).

    Raises:
        WeightsUnavailable: When the package is missing (the message says what to install).
    """
    spec = importlib.util.find_spec(MODULE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    where = f" (found {folders[0]}, without models/{WEIGHTS_FILE})" if folders else ""
    raise WeightsUnavailable(
        f"the pretrained face network needs its weights from the {PACKAGE} package{where}: "
        f"pip install {PACKAGE_PIN}  (about 100 MB; the weights ship inside it, MIT licence)")


def verify_weights(path: str | os.PathLike[str]) -> None:
    """Check the file's SHA-256 against the known release.

    Raises:
        WeightsFileError: Naming the file, when it differs (altered, truncated, another file).
    """
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise WeightsFileError(
            f"{path} is not dlib's face-embedding network as released (SHA-256 {digest[:16]}..., "
            f"expected {WEIGHTS_SHA256[:16]}...): the file is damaged or altered; reinstall "
            f"it with  pip install --force-reinstall {PACKAGE_PIN}")


def convert_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read the dlib file and fold each affine layer into its convolution.

    Returns:
        ``means`` (the input's channel means), ``conv{i}_kernel`` [R, C, in, out] and
        ``conv{i}_bias`` for the 29 convolutions in input order, and ``fc_kernel`` [256, 128].

    Raises:
        facelab.learn.dlib_reader.DlibFormatError: For a file of another layout.
    """
    from facelab.learn.dlib_reader import read_face_resnet

    net = read_face_resnet(path)
    arrays: dict[str, np.ndarray] = {"means": np.asarray(net.input_means, np.float32)}
    convs = [i for i, layer in enumerate(net.layers) if layer.kind == "con"]
    for n, i in enumerate(convs):
        con, affine = net.layers[i], net.layers[i + 1]
        gamma, beta = affine.arrays["gamma"], affine.arrays["beta"]
        kernel = con.arrays["filters"].transpose(2, 3, 1, 0) * gamma
        arrays[f"conv{n}_kernel"] = kernel.astype(np.float32)
        arrays[f"conv{n}_bias"] = (con.arrays["biases"] * gamma + beta).astype(np.float32)
    arrays["fc_kernel"] = net.layers[-1].arrays["weights"]
    return arrays


def cached_weights(path: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """The converted weights, from the user's cache when the source file is unchanged.

    The first call verifies the file (:func:`verify_weights`), converts it
    (:func:`convert_weights`) and writes ``face-resnet/<key>.npz`` in
    :func:`facelab.io.user_cache_dir`; later calls load that unless the source's size or
    modification time changed.

    Raises:
        WeightsUnavailable: When the package is missing.
        WeightsFileError: When the file is not the released one.
    """
    source = Path(path) if path is not None else weights_path()
    stat = source.stat()
    stamp = np.asarray([CACHE_FORMAT, stat.st_size, stat.st_mtime_ns], np.int64)
    cache = Path(user_cache_dir("face-resnet")) / f"{NETWORK_KEY}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as stored:
                if np.array_equal(stored["stamp"], stamp) and \
                        str(stored["source"]) == str(source.resolve()):
                    return {k: stored[k] for k in stored.files if k not in ("stamp", "source")}
        except (OSError, ValueError, KeyError):
            pass                                  # unreadable: convert again
    verify_weights(source)
    arrays = convert_weights(source)
    buffer = io.BytesIO()
    np.savez(buffer, stamp=stamp, source=np.asarray(str(source.resolve())), **arrays)
    atomic_write_bytes(cache, buffer.getvalue())
    return arrays


@functools.cache
def pad_add_class() -> type:
    """Return (defining and registering it once) the ``facelab>PadAdd`` layer.

    dlib's ``add_prev`` adds two tensors of different shapes by zero-padding the smaller one
    at the end of each axis (rows, columns, channels).
    """
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="facelab")
    class PadAdd(keras.layers.Layer):
        """Sum of two feature maps, each zero-padded to the larger rows, columns, channels."""

        def call(self, inputs: Any) -> Any:
            a, b = inputs
            target = [max(int(a.shape[i]), int(b.shape[i])) for i in (1, 2, 3)]

            def padded(x: Any) -> Any:
                pads = [(0, 0)] + [(0, t - int(x.shape[i + 1])) for i, t in enumerate(target)]
                return ops.pad(x, pads) if any(p[1] for p in pads) else x

            return padded(a) + padded(b)

        def compute_output_shape(self, input_shapes: Any) -> tuple:
            a, b = input_shapes
            return (a[0], *(max(int(a[i]), int(b[i])) for i in (1, 2, 3)))

    return PadAdd


def _conv(x: Any, filters: int, size: int, stride: int, name: str) -> Any:
    from keras import layers

    padding = "same" if stride == 1 else "valid"     # dlib pads size // 2 at stride 1 only
    return layers.Conv2D(filters, size, strides=stride, padding=padding, name=name)(x)


def _block(x: Any, filters: int, down: bool, name: str) -> Any:
    """One residual block (dlib's ``ares``/``ares_down``): relu(conv(relu(conv(x))) + x)."""
    from keras import layers

    y = _conv(x, filters, 3, 2 if down else 1, f"{name}_conv1")
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, filters, 3, 1, f"{name}_conv2")
    shortcut = layers.AveragePooling2D(2, 2, padding="valid", name=f"{name}_pool")(x) \
        if down else x
    y = pad_add_class()(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_face_resnet(means: Any = INPUT_MEANS, name: str = "face_resnet") -> keras.Model:
    """Build the network (random weights; :func:`load_face_resnet` gives dlib's).

    Args:
        means: The input's RGB channel means (dlib's input layer subtracts them).
        name: The model's name.

    Returns:
        A ``keras.Model`` from [N, 150, 150, 3] float32 RGB [0, 255] to [N, 128].
    """
    import keras
    from keras import layers

    inputs = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name="chip")
    x = layers.Normalization(mean=[float(m) for m in means], variance=[256.0 ** 2] * 3,
                             name="dlib_input")(inputs)
    x = _conv(x, 32, 7, 2, "stem_conv")
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, 2, padding="valid", name="stem_pool")(x)
    for stage, (filters, plain, down) in enumerate(STAGES):
        if down:
            x = _block(x, filters, True, f"s{stage}_down")
        for i in range(plain):
            x = _block(x, filters, False, f"s{stage}_b{i}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(EMBEDDING_SIZE, use_bias=False, name="embedding")(x)
    return keras.Model(inputs, outputs, name=name)


def conv_layer_names(model: keras.Model) -> list[str]:
    """The model's convolutions in input order (the order of dlib's file)."""
    import keras

    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def load_face_resnet(path: str | os.PathLike[str] | None = None,
                     name: str = "face_resnet") -> keras.Model:
    """Build the network with dlib's weights (converted once, then from the cache).

    Args:
        path: A weights file (default: the one ``face-recognition-models`` installed).
        name: The model's name.

    Raises:
        WeightsUnavailable: When the package is missing (says what to install).
        WeightsFileError: When the file is damaged or altered (names it).
    """
    arrays = cached_weights(path)
    model = build_face_resnet(arrays["means"], name)
    for n, layer_name in enumerate(conv_layer_names(model)):
        model.get_layer(layer_name).set_weights([arrays[f"conv{n}_kernel"],
                                                 arrays[f"conv{n}_bias"]])
    model.get_layer("embedding").set_weights([arrays["fc_kernel"]])
    return model


def stranger_floor(target_far: float) -> float:
    """The face network's stranger score at ``target_far`` (:data:`STRANGER_SCORES`).

    Interpolated in the logarithm of the rate between the measured ones; clamped outside.
    """
    fars = sorted(STRANGER_SCORES)
    x = float(np.clip(np.log(target_far), np.log(fars[0]), np.log(fars[-1])))
    return float(np.interp(x, np.log(fars), [STRANGER_SCORES[f] for f in fars]))
