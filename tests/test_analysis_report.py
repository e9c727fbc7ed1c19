"""analysis.report and ``facelab bias``: any classifier's predictions to a verdict and files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab import analysis, cli

NAMES = [f"Person {c}" for c in "ABCDEFGH"]


def _predictions(tmp_path, swallowed: bool) -> pd.DataFrame:
    """Eight people, 10 faces each, 10% of the answers wrong (spread); with ``swallowed``,
    Person C's faces go to Person D."""
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(8), 10)
    pred = true.copy()
    wrong = rng.random(len(true)) < 0.1
    pred[wrong] = (true[wrong] + rng.integers(1, 8, wrong.sum())) % 8
    if swallowed:
        pred[true == 2] = np.r_[[3] * 9, 2]
    folder = tmp_path / "faces"
    folder.mkdir(exist_ok=True)
    paths = []
    for i, person in enumerate(true):
        path = folder / f"{i}.png"
        Image.fromarray(np.full((12, 12, 3), 30 * person, np.uint8)).save(path)
        paths.append(f"faces/{i}.png")                      # relative to the CSV's folder
    return pd.DataFrame({"file": paths, "label": [NAMES[i] for i in true],
                         "guess": [NAMES[i] for i in pred],
                         "score": rng.uniform(0.3, 1.0, len(true)).round(3)})


def test_report_from_a_predictions_table(tmp_path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    df = _predictions(tmp_path, swallowed=True)
    df["file"] = [str(tmp_path / p) for p in df["file"]]
    result = analysis.report(df, true="label", pred="guess", image="file", score="score")
    assert result.verdict.fired and "swallowed" in result.verdict.fired_checks
    assert result.names == NAMES and result.worst_cell == ("Person C", "Person D")
    assert result.per_class.index[0] == "Person C"           # worst recall first
    assert result.confused_pairs.iloc[0]["count"] == 9
    assert set(result.figures) == {"confusion", "confusion_counts", "shares", "recall",
                                   "worst_cell"}
    gallery = result.figures["worst_cell"]
    assert sum(bool(ax.images) for ax in gallery.axes) == 9
    assert "'Person C' predicted as 'Person D': 9" in gallery._suptitle.get_text()
    assert "ALARM" in result._repr_html_() and "ALARM" in repr(result)
    written = result.save(tmp_path / "out", meta={"split": "test"})
    data = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert data["split"] == "test" and data["fired"] and data["worst_cell"]["count"] == 9
    assert "worst_cell.png" in written and (tmp_path / "out" / "per_class.csv").is_file()
    plt.close("all")

    plain = analysis.report(df, "label", "guess", figures=False)     # no image: no gallery
    assert plain.figures == {} and plain.verdict.message == result.verdict.message
    with pytest.raises(ValueError, match=r"no column 'person' \(true\)"):
        analysis.report(df)


def _bias(*args: str) -> int:
    return cli.main(["bias", *map(str, args)])


def test_facelab_bias_exit_statuses_and_files(tmp_path, capsys) -> None:
    quiet = tmp_path / "quiet.csv"
    _predictions(tmp_path, swallowed=False).to_csv(quiet, index=False)
    assert _bias(quiet, "--true", "label", "--pred", "guess", "--out", tmp_path / "q") == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert not (tmp_path / "q" / "worst_cell.png").exists()          # no --image

    fired = tmp_path / "fired.csv"
    _predictions(tmp_path, swallowed=True).to_csv(fired, index=False)
    (tmp_path / "faces" / "0.png").unlink()                 # a lost image: a blank panel
    out = tmp_path / "f"
    assert _bias(fired, "--true", "label", "--pred", "guess", "--image", "file",
                 "--score", "score", "--out", out) == 1
    printed, warned = capsys.readouterr()
    assert "warning: 1 of 80 images in column 'file' are missing" in warned
    assert printed.startswith("ALARM (") and "swallowed" in printed.split(":")[0]
    assert "'Person C'" in printed
    for name in ("verdict.json", "per_class.csv", "confused_pairs.csv", "confusion.png",
                 "confusion_counts.png", "shares.png", "recall.png", "worst_cell.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "verdict.json").read_text())
    assert data["true_column"] == "label" and data["worst_cell"]["true"] == "Person C"
    pairs = pd.read_csv(out / "confused_pairs.csv")
    assert pairs.iloc[0][["true", "predicted", "count"]].tolist() == ["Person C", "Person D", 9]


@pytest.mark.parametrize("case, options, message", [
    ("missing column", ["--true", "person"], "has no column 'person' (--true)"),
    ("empty file", [], "is empty"),
    ("no rows", [], "has no rows"),
    ("no such file", [], "no such file"),
    ("a name missing", [], "column 'guess' has 1 missing label"),
    ("mixed kinds", [], "column 'label' holds names but column 'guess' holds ids"),
    ("no image found", ["--image", "file"], "none of the 80 images in column 'file'"),
])
def test_facelab_bias_bad_input_exits_2_naming_it(tmp_path, capsys, case: str,
                                                  options: list[str], message: str) -> None:
    csv = tmp_path / "p.csv"
    df = _predictions(tmp_path, swallowed=False)
    if case == "empty file":
        csv.write_text("")
    elif case == "no rows":
        df.head(0).to_csv(csv, index=False)
    elif case == "a name missing":
        df.loc[5, "guess"] = ""
        df.to_csv(csv, index=False)
    elif case == "mixed kinds":
        df.assign(guess=np.arange(len(df)) % 8).to_csv(csv, index=False)
    elif case == "no image found":
        df.assign(file="nowhere/" + df["file"]).to_csv(csv, index=False)
    elif case != "no such file":
        df.to_csv(csv, index=False)
    args = ["--true", "label", "--pred", "guess", *options, "--out", tmp_path / "o"]
    if "--true" in options:
        args = args[2:]
    assert _bias(csv, *args) == 2
    error = capsys.readouterr().err
    assert error.startswith("facelab bias: error: ") and message in error
    assert (case == "no such file") == ("p.csv: no such file" in error)
