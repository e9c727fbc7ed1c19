"""``facelab run-notebooks --source``: the series on your own data, ``-p name=value``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelab import notebook_runner as runner

NOTEBOOKS = runner.list_notebooks(runner.project_root() / "notebooks")


def _crops(root: Path, people: int = 4, per_person: int = 10, side: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for k in range(people):
        folder = root / f"Person {k}"
        folder.mkdir(parents=True)
        base = rng.uniform(0, 255, (4, 4, 3))
        for i in range(per_person):
            img = np.kron(base, np.ones((side // 4, side // 4, 1)))
            img = img + rng.normal(0, 15, (side, side, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg")
    return root


def test_parse_overrides() -> None:
    assert runner.parse_overrides(["epochs=30", "backend=vision", "source=None",
                                   "fractions=[0.8, 0.1, 0.1]", "name=Zoë K"]) == {
        "epochs": 30, "backend": "vision", "source": None, "fractions": [0.8, 0.1, 0.1],
        "name": "Zoë K"}
    with pytest.raises(ValueError, match="name=value"):
        runner.parse_overrides(["epochs"])


def test_source_kinds_and_plan(tmp_path: Path) -> None:
    crops = _crops(tmp_path / "crops", people=2, per_person=3)
    photos = tmp_path / "photos" / "Anna"
    photos.mkdir(parents=True)
    Image.new("RGB", (640, 480)).save(photos / "1.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text("# person\timagenum\turl\trect\tmd5sum\n")
    assert runner.source_kind(crops) == "crops"
    assert runner.source_kind(tmp_path / "photos") == "photos"
    assert runner.source_kind(listing) == "list"
    with pytest.raises(FileNotFoundError, match="--source"):
        runner.source_kind(tmp_path / "nowhere")

    kept, extra = runner.plan_source(NOTEBOOKS, crops)
    assert [nb.name[:2] for nb in kept] == [nb.name[:2] for nb in NOTEBOOKS
                                             if nb.name[:2] not in ("00", "01", "02", "09")]
    assert list(extra) == [nb.name for nb in kept if nb.name.startswith("03")]
    kept, extra = runner.plan_source(NOTEBOOKS, listing)
    assert "00" not in [nb.name[:2] for nb in kept]
    assert extra == {next(nb.name for nb in NOTEBOOKS if nb.name.startswith("01")):
                     {"source": str(listing.resolve())}}
    assert runner.plan_source(NOTEBOOKS, None) == (NOTEBOOKS, {})
    with pytest.raises(ValueError, match="source kind"):
        runner.plan_source(NOTEBOOKS, crops, "videos")


def test_overrides_reach_only_declaring_notebooks(tmp_path: Path) -> None:
    params = runner.notebook_parameters("smoke", {"workdir": {}, "epochs": {}, "backend": {}},
                                        tmp_path, {"backend": "vision", "epochs": 5, "x": 1})
    assert params == {"workdir": str(tmp_path), "epochs": 5, "backend": "vision"}


@pytest.mark.slow
def test_source_run_on_a_folder_of_crops(tmp_path: Path) -> None:
    """Notebooks 03 and 07 on ready crops: the split and the models come from them."""
    from facelab.cli import main
    from tests.conftest import SHARED_DATA
    from tests.test_fit import _crops as real_crops

    if not (SHARED_DATA / "pubfig83-dev").is_dir():
        pytest.skip("needs real face crops (../shared/data/pubfig83-dev): notebook 07's "
                    "pretrained network finds landmarks in them to cut its chips")
    crops = real_crops(tmp_path / "my crops")          # 4 PubFig83 people, 20 crops each
    status = main(["run-notebooks", "--profile", "smoke", "--source", str(crops),
                   "--only", "03", "07", "--out", str(tmp_path / "runs"),
                   "-p", "epochs=1", "-p", "image_size=32", "-p", "set_aside_people=0"])
    assert status == 0
    out = tmp_path / "runs" / "own-smoke"
    assert sorted(p.name[:2] for p in out.glob("*.ipynb")) == ["03", "07"]
    split = json.loads((out / "work" / "split" / "split.json").read_text())
    assert split["source"] == str(crops.resolve())
    metrics = json.loads((out / "work" / "model" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["num_classes"] == 4
    info = json.loads((out / "work" / "model" / "recognizer.json").read_text())
    assert info["face_settings"] is None        # ready crops: predict takes crops only
    pretrained = json.loads((out / "work" / "pretrained" / "metrics.json").read_text())
    assert pretrained["num_classes"] == 4 and pretrained["recipe"]["arch"] == "face-resnet"
