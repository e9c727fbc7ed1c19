"""facelab.learn.model: the from-scratch CNN, the offline backbone option, the optimiser recipe."""

from __future__ import annotations

import sys

import numpy as np
import pytest


def test_importing_model_does_not_import_tensorflow() -> None:
    import subprocess

    code = "import sys, facelab.learn.model, facelab.learn.training, facelab.analysis.bias, " \
           "facelab.analysis.predictions, facelab.learn.fitting; " \
           "print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_cnn_trains_saves_and_loads_with_augmentation_inside(tmp_path) -> None:
    import keras

    from facelab.data.augment import fused_augmentation, make_augmentation
    from facelab.learn.model import build_cnn, compile_model, load_model, lr_schedule

    model = build_cnn(5, 32, widths=(8, 16), blocks=(1, 1), augmentation=make_augmentation(0))
    assert model.output_shape == (None, 5)
    assert model.input_shape == (None, 32, 32, 3)
    compile_model(model, total_steps=4, warmup_steps=1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 5, 5)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    probs = model.predict(x, verbose=0)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(loaded.predict(x, verbose=0), probs, atol=1e-5)  # aug off at inference

    fused = build_cnn(5, 32, widths=(8,), blocks=(1,), augmentation=fused_augmentation(0))
    compile_model(fused, total_steps=2)
    fused.fit(x, y, batch_size=4, epochs=1, verbose=0)
    fused.save(tmp_path / "f.keras")
    assert np.allclose(load_model(tmp_path / "f.keras").predict(x, verbose=0),
                       fused.predict(x, verbose=0), atol=1e-5)

    schedule = lr_schedule(100, peak_lr=1e-2, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(10)) == pytest.approx(1e-2)
    assert float(schedule(100)) == pytest.approx(1e-4, rel=1e-3)


def test_backbone_offline_path_and_errors() -> None:
    from facelab.learn.model import build_model

    model = build_model(3, 32, arch="MobileNetV3Small", weights=None)
    assert model.output_shape == (None, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (2, 3)
    with pytest.raises(ValueError, match="backbone"):
        build_model(3, 64, arch="NoSuchNet")
    with pytest.raises(ValueError, match="weights"):
        build_model(3, 64, weights="imagenet")          # the CNN has no pretrained weights
    with pytest.raises(ValueError, match="2 classes"):
        build_model(1, 64)
    with pytest.raises(ValueError, match="too small"):
        build_model(3, 16)


def test_cosine_head_loss_is_cosface_and_softmax_head_is_kept(tmp_path) -> None:
    import keras

    from facelab.learn.heads import add_head, margin_loss_class
    from facelab.learn.model import build_cnn, compile_model, load_model

    # the loss from probabilities equals CosFace computed from the cosines directly
    rng = np.random.default_rng(1)
    cos = rng.uniform(-0.5, 0.5, (6, 4)).astype("float32")
    scale, margin = 30.0, 0.35
    y = np.eye(4, dtype="float32")[[0, 1, 2, 3, 0, 1]]
    logits = scale * (cos - margin * y)
    expected = -np.log((np.exp(logits - logits.max(1, keepdims=True))
                        / np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)
                        * y).sum(1))
    probs = np.exp(scale * cos) / np.exp(scale * cos).sum(1, keepdims=True)
    loss = margin_loss_class()(scale=scale, margin=margin, reduction=None)
    assert np.allclose(np.asarray(loss(y, probs)), expected, rtol=1e-4, atol=1e-4)

    model = build_cnn(4, 32, widths=(8,), blocks=(1,), head="cosine")
    assert model.get_layer("embedding").output.shape[-1] == 128
    assert model.get_layer("softmax").input.shape[-1] == 128     # the embedding feeds it
    compile_model(model, total_steps=2)
    assert type(model.loss).__name__ == "CosineMarginLoss"
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, np.eye(4)[np.arange(8) % 4], batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "c.keras")
    assert np.allclose(load_model(tmp_path / "c.keras").predict(x, verbose=0),
                       model.predict(x, verbose=0), atol=1e-5)

    plain = compile_model(build_cnn(4, 32, widths=(8,), blocks=(1,)), 2)     # the default
    assert isinstance(plain.loss, keras.losses.CategoricalCrossentropy)
    with pytest.raises(ValueError, match="unknown head"):
        add_head(keras.Input((8,)), 4, head="arcface")
