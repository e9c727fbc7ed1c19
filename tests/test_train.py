"""facelab.learn.training: a SIGKILLed run resumes at the next epoch, with the same epochs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import keras
    from facelab.learn.training import train

    out, epochs = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 8)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)

    def make():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        return model

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.04)

    result = train(make, (x, y), (x[:32], y[:32]), out, epochs=epochs, batch_size=8, backup_every=3,
                   callbacks=[Slow()], verbose=0)
    print("RESULT " + json.dumps({"initial_epoch": result.initial_epoch,
                                  "epochs": result.history["epoch"].tolist(),
                                  "completed": result.completed}))
""")


def _run(script: Path, out: Path, epochs: int, **kwargs: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, str(script), str(out), str(epochs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True, **kwargs)


def _result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _completed_epochs(out: Path) -> int:
    path = out / "history.json"
    try:
        return len(json.loads(path.read_text()))
    except (OSError, ValueError):
        return 0


def test_sigkill_mid_epoch_then_resume(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    epochs = 5
    proc = _run(script, out, epochs)
    deadline = time.monotonic() + 180
    while _completed_epochs(out) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the first run did not reach 2 epochs in time"
        time.sleep(0.02)
    time.sleep(0.3)                      # well inside the next epoch (24 batches x 40 ms)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _completed_epochs(out)
    assert 2 <= done < epochs
    assert (out / "backup").is_dir(), "the killed run left no backup"
    assert not json.loads((out / "train_state.json").read_text())["completed"]

    resumed = _result(_run(script, out, epochs))
    assert resumed["initial_epoch"] == done          # the epoch after the last completed
    assert resumed["epochs"] == list(range(epochs))  # same total, no epoch twice
    assert resumed["completed"]
    assert (out / "model.keras").is_file() and (out / "best.keras").is_file()
    assert not (out / "backup").exists()
    state = json.loads((out / "train_state.json").read_text())
    assert [r["started_at_epoch"] for r in state["runs"]] == [0, done]
    assert (out / "history.csv").read_text().count("\n") == epochs + 1


def test_simulated_interrupt_and_errors(tmp_path: Path) -> None:
    import keras
    import numpy as np

    from facelab.learn.plots import plot_history
    from facelab.learn.training import train

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)

    def make() -> keras.Model:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        return model

    first = train(make, (x, y), (x, y), tmp_path / "r", epochs=3, backup_every=1,
                  interrupt_after_batches=5, verbose=0)   # 2 batches per epoch
    assert first.interrupted and not first.completed
    assert first.history["epoch"].tolist() == [0, 1]
    second = train(make, (x, y), (x, y), tmp_path / "r", epochs=3, verbose=0)
    assert second.completed and second.initial_epoch == 2
    assert second.history["epoch"].tolist() == [0, 1, 2]
    assert second.best_epoch in (0, 1, 2)
    again = train(make, (x, y), (x, y), tmp_path / "r", epochs=3, verbose=0)
    assert again.completed and again.initial_epoch == 3     # loaded, not trained again
    assert again.history["epoch"].tolist() == [0, 1, 2]
    fig = plot_history(second.history, resumed_at=[2])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="epochs"):
        train(make, (x, y), (x, y), tmp_path / "s", epochs=0)
    with pytest.raises(ValueError, match="val_data"):
        train(make, (x, y), None, tmp_path / "s", epochs=1)
