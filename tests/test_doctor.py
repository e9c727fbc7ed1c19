"""facelab doctor: one line when all is well, only the problems otherwise; TensorFlow kept quiet."""

import os
import subprocess
import sys

import pytest

from facelab import doctor

# what TensorFlow 2.21 writes to fd 2 while it loads on a machine without a GPU driver
STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796392842.355248    8268 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1796392842.356282    8268 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796392842.820327    8268 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796392846.437495    8268 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""  # noqa: E501
REAL_ERROR = "E0000 00:00:1796392846.5 8268 op_kernel.cc:1] OUT_OF_RANGE: a real error\n"


def _report(*checks: doctor.Check) -> doctor.Report:
    return doctor.Report(checks=[doctor.Check("python", True, "3.11.7"), *checks])


def test_all_well_is_one_line_that_names_the_gpu_situation():
    report = _report(doctor.Check("tensorflow/keras", True, "TensorFlow 2.21.0, Keras 3.15.1"),
                     doctor.Check("GPUs", True, "no GPU (CPU training)", optional=True))
    assert "\n" not in report.summary()
    assert report.summary().startswith("facelab doctor: ready: Python ")
    assert report.summary().endswith("TensorFlow 2.21.0, Keras 3.15.1, no GPU (CPU training)")
    assert len(report.table().splitlines()) == 4, "--verbose: every check and a verdict"


def test_problems_only_with_their_fixes_wrapped_between_words():
    fix = "pip install 'numpy==2.4.6' (or make install) " + "and a long explanation " * 5
    report = _report(doctor.Check("numpy", False, "2.4.5 installed, 2.4.6 pinned", fix),
                     doctor.Check("pandas", True, "3.1.1"))
    lines = report.summary().splitlines()
    assert lines[0].startswith("[XX ] numpy") and "pandas" not in report.summary()
    assert lines[-1] == "facelab doctor: some required checks failed" and not report.ok
    assert all(len(line) <= doctor.WIDTH for line in lines)
    words = set(fix.split())
    for line in lines[1:-1]:   # the fix, wrapped: every piece is whole words
        assert set(line.replace("fix:", "").split()) <= words


def test_optional_problem_is_a_warning_not_a_failure():
    report = _report(doctor.Check("vision credentials", False, "KEY=/x does not exist",
                                  "set it", optional=True))
    assert report.ok and "ready, with a warning" in report.summary()


def test_vision_credentials_not_set_up_are_not_a_problem(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr(doctor.Path, "home", lambda: tmp_path)
    assert doctor._vision_check().ok


def test_notebook_setup_prints_one_line_or_raises_with_the_fixes(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "check", lambda tensorflow: _report())
    doctor.notebook_setup()
    assert capsys.readouterr().out.count("\n") == 1
    broken = _report(doctor.Check("keras", False, "not installed", "make install"))
    monkeypatch.setattr(doctor, "check", lambda tensorflow: broken)
    with pytest.raises(RuntimeError, match="(?s)keras.*fix: make install"):
        doctor.notebook_setup()


def test_startup_noise_goes_and_real_errors_stay():
    assert doctor.tensorflow_startup_noise_removed(STARTUP) == ""
    assert doctor.tensorflow_startup_noise_removed(STARTUP + REAL_ERROR) == REAL_ERROR
    with_driver = STARTUP.replace("Could not find cuda drivers", "Found the driver")
    kept = doctor.tensorflow_startup_noise_removed(with_driver)
    assert "failed call to cuInit" in kept, "with a driver present, a cuInit failure is real"


def test_filtered_fd2_keeps_what_is_not_startup_noise(capfd):
    with doctor._startup_lines_filtered():
        os.write(2, (STARTUP + REAL_ERROR).encode())
    assert capfd.readouterr().err == REAL_ERROR


@pytest.mark.slow
def test_tensorflow_loads_quietly_after_quiet_tensorflow():
    code = ("import sys, facelab.doctor as d; d.quiet_tensorflow(); import keras; "
            "import tensorflow as tf; tf.config.list_physical_devices('GPU'); "
            "print(tf.reduce_sum(tf.ones(3)).numpy()); print('after', file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and out.stdout == "3.0\n"
    assert not doctor.TF_STARTUP_NOISE.search(out.stderr) and "cuInit" not in out.stderr
    assert out.stderr.endswith("after\n"), "stderr works as before once TensorFlow is loaded"


@pytest.mark.slow
def test_facelab_doctor_says_one_line_and_nothing_on_stderr():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-m", "facelab", "doctor"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.count("\n") == 1 and "GPU" in out.stdout
