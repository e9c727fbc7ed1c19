import subprocess
import sys

from facelab import cli, doctor


def test_import_facelab_does_not_import_tensorflow():
    code = ("import sys, facelab, facelab.cli, facelab.notebook_runner, facelab.doctor, "
            "facelab.manifest;"
            "import importlib; [importlib.import_module('facelab.' + m) for m in "
            "facelab._SUBMODULES if importlib.util.find_spec('facelab.' + m)];"
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", "importing facelab modules pulled in TensorFlow"


def test_console_entry_keeps_the_status_and_the_output_after_tensorflow(tmp_path):
    # once TensorFlow is loaded, entry() leaves with os._exit: streams must still be flushed
    code = ("import sys, tensorflow; from facelab.cli import entry; sys.argv = ['facelab', "
            "'export', sys.argv[1], '--format', 'tflite']; print('before', end=''); entry()")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "no-model")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == "before"
    assert "facelab export: error:" in out.stderr and "no-model" in out.stderr
    plain = subprocess.run([sys.executable, "-m", "facelab"], capture_output=True, text=True)
    assert plain.returncode == 2 and "COMMAND" in plain.stdout       # no TensorFlow: sys.exit


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 2
    text = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in text


def test_doctor_without_tensorflow(capsys):
    assert cli.main(["doctor", "--no-tensorflow"]) == 0
    assert capsys.readouterr().out.startswith("facelab doctor: ready")   # all well: one line
    assert cli.main(["doctor", "--no-tensorflow", "--verbose"]) == 0
    text = capsys.readouterr().out
    assert "python" in text and "vision credentials" in text


def test_doctor_flags_a_version_that_differs_from_the_pin(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==0.0.1  # deliberately wrong\n")
    pins = doctor.pinned_versions(req)
    assert pins == {"numpy": "0.0.1"}
    checks = {c.name: c for c in doctor._package_checks(pins)}
    assert not checks["numpy"].ok and "pip install 'numpy==0.0.1'" in checks["numpy"].fix


def test_doctor_reports_missing_vision_credentials_with_a_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    result = doctor._vision_check()
    assert not result.ok and result.optional and "GOOGLE_APPLICATION_CREDENTIALS" in result.fix
