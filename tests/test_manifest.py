import pandas as pd
import pytest

from facelab import manifest


def test_write_read_roundtrip_keeps_empty_reasons(tmp_path):
    df = pd.DataFrame({"person": ["Zoë Kästner", "NA"], "status": ["ok", "http_error"],
                       "reason": ["", "HTTP 404"], "path": ["images/a.jpg", ""]})
    written = manifest.write_manifest(df, tmp_path)
    assert written == tmp_path / "manifest.csv"
    back = manifest.read_manifest(tmp_path)
    assert back["person"].tolist() == ["Zoë Kästner", "NA"]  # "NA" stays a name
    assert back["reason"].tolist() == ["", "HTTP 404"]
    assert manifest.kept(back)["person"].tolist() == ["Zoë Kästner"]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_write_requires_contract_columns(tmp_path):
    with pytest.raises(ValueError, match="status"):
        manifest.write_manifest(pd.DataFrame({"person": ["a"]}), tmp_path)


def test_read_missing_manifest_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the stage"):
        manifest.read_manifest(tmp_path)


def test_absolute_paths(tmp_path):
    df = pd.DataFrame({"path": ["images/a.jpg", ""]})
    paths = manifest.absolute_paths(df, tmp_path / "manifest.csv")
    assert paths[0] == str((tmp_path / "images" / "a.jpg").resolve())
    assert paths[1] == ""
