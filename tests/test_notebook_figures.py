"""README figures from executed notebooks: which output is taken, and what is written."""

import base64
import io

import nbformat
import pytest
from PIL import Image

from facelab import notebook_runner as runner


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 20), dpi: int = 100) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG", dpi=(dpi, dpi))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(*colours: tuple[int, int, int], tags: tuple[str, ...] = (), **png_options):
    cell = nbformat.v4.new_code_cell("plot()")
    cell.metadata["tags"] = list(tags)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="some text\n")]
    cell.outputs += [nbformat.v4.new_output("display_data", data={
        "image/png": _png(c, **png_options), "text/plain": "<Figure>"}) for c in colours]
    return cell


def _write(folder, name: str, cells) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), *cells]
    nbformat.write(nb, str(folder / name))


def _colour(path) -> tuple[int, int, int]:
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((0, 0))


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def test_last_png_of_the_notebook_without_a_tag(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "03_split.ipynb", [_cell(RED), _cell(GREEN, BLUE), _cell()])
    written = runner.extract_figures(runs, tmp_path / "figures")
    assert written == {"03": tmp_path / "figures" / "03.png"}
    assert _colour(written["03"]) == BLUE


def test_the_tagged_cell_wins(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "01_collection.ipynb",
           [_cell(RED), _cell(GREEN, tags=("readme-figure",)), _cell(BLUE)])
    # a tagged cell without an image does not count: the last PNG is taken
    _write(runs, "02_faces.ipynb", [_cell(RED), _cell(tags=("readme-figure",)), _cell(BLUE)])
    written = runner.extract_figures(runs, tmp_path / "figures")
    assert _colour(written["01"]) == GREEN
    assert _colour(written["02"]) == BLUE


def test_figures_are_shrunk_to_the_target_dpi_and_width(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "07_training.ipynb", [_cell(RED, size=(500, 300), dpi=100)])
    _write(runs, "08_bias.ipynb", [_cell(RED, size=(3000, 300), dpi=100)])
    _write(runs, "09_small.ipynb", [_cell(RED, size=(50, 30), dpi=50)])
    written = runner.extract_figures(runs, tmp_path / "figures", dpi=80, max_width=1000)
    sizes = {number: Image.open(path).size for number, path in written.items()}
    assert sizes == {"07": (400, 240), "08": (1000, 100), "09": (50, 30)}  # never enlarged


def test_notebooks_without_a_png_and_other_files_are_skipped(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "04_balance.ipynb", [_cell()])
    _write(runs, "05_pipeline.ipynb", [_cell(GREEN)])
    _write(runs, "notes.ipynb", [_cell(RED)])
    written = runner.extract_figures(runs, tmp_path / "figures")
    assert sorted(written) == ["05"]
    assert "04_balance.ipynb: no PNG output" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["05.png"]


def test_an_empty_runs_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make demo"):
        runner.extract_figures(tmp_path / "missing", tmp_path / "figures")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="run them first"):
        runner.extract_figures(tmp_path / "empty", tmp_path / "figures")


def test_run_notebooks_option_names_the_figures_folder():
    import argparse

    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    args = parser.parse_args(["--profile", "smoke", "--figures", "docs/figures"])
    assert args.figures == "docs/figures"


def test_transparent_figures_are_laid_over_white_with_a_palette():
    buffer = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(buffer, format="PNG")
    with Image.open(io.BytesIO(runner.shrink_png(buffer.getvalue()))) as image:
        assert image.mode == "P"
        assert image.convert("RGB").getpixel((5, 5)) == (255, 255, 255)
