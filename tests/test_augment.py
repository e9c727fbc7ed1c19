import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
from facelab.data import augment  # noqa: E402
from facelab.data import plots as data_plots  # noqa: E402


def _face():
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([xx * 8, yy * 8, (xx + yy) * 4], axis=-1).astype("float32")
    return np.clip(img, 0, 255)


def test_layers_and_modes():
    layer = augment.make_augmentation(seed=1)
    names = [type(lyr).__name__ for lyr in layer.layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                     "RandomBrightness", "RandomContrast", "RandomSaturation", "RandomHue"]
    batch = np.repeat(_face()[None], 4, axis=0)
    same = np.asarray(layer(batch, training=False))
    assert np.allclose(same, batch)
    out = np.asarray(layer(batch, training=True))
    assert out.shape == batch.shape and not np.allclose(out, batch)
    assert out.min() >= -1 and out.max() <= 256
    assert len(augment.make_augmentation(rotation=0, hue=0, saturation=0).layers) == 5


def test_inside_model_saved_and_identity_at_inference(tmp_path):
    model = keras.Sequential([keras.Input((32, 32, 3)), augment.make_augmentation(seed=0),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    x = _face()[None]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert "augmentation" in [lyr.name for lyr in loaded.layers]
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_in_pipeline_and_preview(tmp_path):
    import pandas as pd

    from facelab.data.pipeline import make_dataset

    rows = []
    for c in range(2):
        for i in range(6):
            p = tmp_path / f"{c}_{i}.jpg"
            Image.fromarray(_face().astype("uint8")).save(p)
            rows.append({"person": f"p{c}", "path": str(p), "split": "train"})
    ds = make_dataset(pd.DataFrame(rows), image_size=32, batch_size=4, augment=True)
    x, _ = next(iter(ds))
    assert x.shape == (4, 32, 32, 3)
    fig = data_plots.preview_grid(str(rows[0]["path"]), n=7, ncols=4)
    assert sum(1 for ax in fig.axes if ax.images) == 8


def test_fused_layer():
    layer = augment.fused_augmentation(seed=2)
    batch = np.repeat(_face()[None], 6, axis=0)
    assert np.allclose(np.asarray(layer(batch, training=False)), batch)
    out = np.asarray(layer(batch, training=True))
    assert out.shape == batch.shape and not np.allclose(out, batch)
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out[0], out[1])                 # each image its own draw
    still = augment.fused_augmentation(rotation=0, zoom=0, translation=0, flip=False,
                                       brightness=0, contrast=0, saturation=0, hue=0)
    assert np.allclose(np.asarray(still(batch, training=True)), batch, atol=0.5)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config()["rotation"] == config["rotation"] == 0.03


def test_fused_layer_saved_in_model(tmp_path):
    model = keras.Sequential([keras.Input((32, 32, 3)), augment.fused_augmentation(seed=0),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    augment.fused_layer_class()              # registers facelab>FaceAugment (idempotent)
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = _face()[None]
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
