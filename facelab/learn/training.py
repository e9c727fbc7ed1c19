"""Training that survives interruption: backup/restore, best checkpoint, history.

The blog post lost training runs to the screen saver and sleep mode.  :func:`train` runs
``model.fit`` with

* ``keras.callbacks.BackupAndRestore`` in ``OUT/backup/`` (every ``backup_every`` batches
  and at every epoch end, double-buffered): a run killed at any moment - even mid-epoch,
  even with SIGKILL - continues when the same call is made again: the weights, the
  optimiser state (and so the learning-rate schedule) come back, and training restarts at
  the epoch that was running (completed epochs are never redone, the total stays
  ``epochs``);
* a best-model checkpoint ``OUT/best.keras`` (written atomically; the best value so far
  survives a restart, so a resumed run never overwrites a better model);
* the history as ``OUT/history.csv`` and ``OUT/history.json`` (one row per completed
  epoch, rewritten atomically, rows of a re-run epoch replaced), plus
  ``OUT/train_state.json`` (completed?, epochs, the epoch each run started at);
* early stopping, seeds, and ``tf.distribute.MirroredStrategy`` when more than one GPU is
  visible (the model is then built inside the strategy's scope); the CPU otherwise.

When ``OUT`` already holds a completed run of the same number of epochs, :func:`train`
loads it instead of training again.  TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from facelab.io import atomic_write_bytes

if TYPE_CHECKING:
    import keras


BACKUP_DIR = "backup"


BEST_NAME = "best.keras"


FINAL_NAME = "model.keras"


HISTORY_CSV = "history.csv"


HISTORY_JSON = "history.json"


STATE_NAME = "train_state.json"


class TrainingInterrupted(RuntimeError):
    """Raised by :class:`InterruptAfter` to simulate a crash (the backup is kept)."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: The model with the best checkpoint's weights (the last weights when there
            was no validation data or the run was interrupted before any checkpoint).
        history: One row per completed epoch (``epoch`` 0-based, losses, metrics, ``lr``).
        out_dir: The run folder.
        initial_epoch: The epoch this call started at (> 0 when it resumed a backup).
        interrupted: True when the run was interrupted (simulated) before finishing.
        completed: True when all epochs ran (or early stopping ended the run).
        best_epoch: The 0-based epoch of the best checkpoint (None without one).
        best_value: The monitored value at ``best_epoch``.
        seconds: Wall time of this call.
        strategy: The distribution strategy's class name.
    """

    model: Any
    history: pd.DataFrame
    out_dir: Path
    initial_epoch: int = 0
    interrupted: bool = False
    completed: bool = False
    best_epoch: int | None = None
    best_value: float | None = None
    seconds: float = 0.0
    strategy: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)


def get_strategy() -> Any:
    """Return the distribution strategy for the visible devices.

    ``MirroredStrategy`` when TensorFlow sees more than one GPU, else the default strategy
    (one GPU, or the CPU).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def device_summary() -> str:
    """One line naming the devices TensorFlow trains on (GPU names, or the CPU model)."""
    import platform

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get(
                    "device_name", gpu.name))
            except (ValueError, RuntimeError):
                names.append(gpu.name)
        return f"{len(gpus)} GPU(s): {', '.join(names)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu} ({os.cpu_count()} cores), no GPU"


def read_history(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the history of a run folder (empty DataFrame when none)."""
    path = Path(out_dir) / HISTORY_JSON
    if not path.is_file():
        return pd.DataFrame(columns=["epoch"])
    return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))


def read_state(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``train_state.json`` of a run folder (empty dict when none)."""
    path = Path(out_dir) / STATE_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=float) + "\n").encode())


def _callbacks_module() -> Any:
    import keras

    class HistoryLogger(keras.callbacks.Callback):
        """Keeps history.json/csv: one row per completed epoch, rows >= restart replaced."""

        def __init__(self, out_dir: Path, start: int) -> None:
            super().__init__()
            self.out_dir = out_dir
            old = read_history(out_dir)
            self.rows: list[dict[str, Any]] = [r for r in old.to_dict("records")
                                               if int(r["epoch"]) < start]

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            row: dict[str, Any] = {"epoch": int(epoch)}
            for key, value in (logs or {}).items():
                row[key] = float(value)
            try:
                row["lr"] = float(self.model.optimizer.learning_rate)
            except (TypeError, ValueError, AttributeError):
                pass
            self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
            _write_json(self.out_dir / HISTORY_JSON, self.rows)
            atomic_write_bytes(self.out_dir / HISTORY_CSV,
                               pd.DataFrame(self.rows).to_csv(index=False).encode())

    class BestCheckpoint(keras.callbacks.Callback):
        """Saves the model atomically when ``monitor`` improves on the best so far."""

        def __init__(self, path: Path, monitor: str, mode: str, best: float | None) -> None:
            super().__init__()
            self.path, self.monitor, self.mode, self.best = path, monitor, mode, best
            self.best_epoch: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(self.monitor)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return
            value = float(value)
            better = self.best is None or (value > self.best if self.mode == "max"
                                           else value < self.best)
            if better:
                self.best, self.best_epoch = value, int(epoch)
                tmp = self.path.with_name(f".{self.path.stem}.tmp.keras")
                self.model.save(tmp)
                os.replace(tmp, self.path)

    return HistoryLogger, BestCheckpoint


def InterruptAfter(batches: int) -> Any:  # noqa: N802 - reads like a class in notebooks
    """Return a callback that simulates the laptop going to sleep.

    It raises :class:`TrainingInterrupted` after ``batches`` training batches of this run.
    """
    import keras

    class _Interrupt(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.seen += 1
            if self.seen >= batches:
                raise TrainingInterrupted(f"simulated interruption after {batches} batches")

    return _Interrupt()


@dataclass
class _Run:
    """One call of :func:`train`: its folder, length, monitored metric and start time.

    Attributes:
        out: The run folder.
        epochs: Total epochs of the run.
        monitor: The metric of the best checkpoint and early stopping.
        mode: ``"min"`` for a loss, ``"max"`` otherwise.
        start: ``time.perf_counter()`` when the call started.
        strategy: The distribution strategy's class name.
    """

    out: Path
    epochs: int
    monitor: str
    mode: str
    start: float
    strategy: str = ""


def _check_train_args(epochs: int, monitor: str, val_data: Any) -> None:
    """Raise ValueError for epochs < 1 or a ``val_*`` monitor without validation data."""
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if monitor.startswith("val_") and val_data is None:
        raise ValueError(f"monitor={monitor!r} needs val_data; pass val data or "
                         "monitor='loss'")


def _clear_run(out: Path) -> None:
    """Delete what a run wrote in ``out`` (backup, models, history, state)."""
    for name in (BACKUP_DIR, BEST_NAME, FINAL_NAME, HISTORY_CSV, HISTORY_JSON, STATE_NAME):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _load_completed(run: _Run, state: dict[str, Any]) -> TrainResult | None:
    """The finished run of ``run.epochs`` epochs in the folder, loaded (None when none)."""
    from facelab.learn.model import load_model

    if not (state.get("completed") and int(state.get("epochs", -1)) == run.epochs
            and (run.out / FINAL_NAME).is_file()):
        return None
    loaded = load_model(run.out / FINAL_NAME)
    return TrainResult(loaded, read_history(run.out), run.out, initial_epoch=run.epochs,
                       completed=True, best_epoch=state.get("best_epoch"),
                       best_value=state.get("best_value"),
                       seconds=time.perf_counter() - run.start,
                       strategy=state.get("strategy", ""), runs=state.get("runs", []))


def _built_model(model: keras.Model | Callable[[], keras.Model], strategy: Any) -> Any:
    """The model, made inside the strategy's scope when a function is given; built."""
    import keras

    if callable(model) and not isinstance(model, keras.Model):
        with strategy.scope():
            model = model()
    if not model.built:
        raise ValueError("the model must be built (a functional model, or call it once)")
    return model


def _best_value(history: pd.DataFrame, run: _Run) -> float | None:
    """The best monitored value in the history (None when it has none)."""
    if run.monitor not in history.columns or not len(history):
        return None
    values = history[run.monitor].astype(float)
    return float(values.max() if run.mode == "max" else values.min())


def _callbacks(run: _Run, initial_epoch: int, val_data: Any, patience: int | None,
               backup_every: int, callbacks: Sequence[Any],
               interrupt_after_batches: int | None) -> tuple[list[Any], Any]:
    """The call's callbacks, in order, and its best-model checkpoint (used with val data).

    History logger, best checkpoint, early stopping, the backup (after those, see the
    module doc), the epoch-end backup, the caller's callbacks, the simulated interruption.
    The checkpoint starts from the best value of the epochs before ``initial_epoch``.
    """
    import keras

    history_logger, best_checkpoint = _callbacks_module()
    history = read_history(run.out)
    if len(history):
        history = history[history["epoch"].astype(int) < initial_epoch]
    backup = keras.callbacks.BackupAndRestore(
        str(run.out / BACKUP_DIR), save_freq=int(backup_every) if backup_every else "epoch",
        double_checkpoint=True)
    checkpoint = best_checkpoint(run.out / BEST_NAME, run.monitor, run.mode,
                                 _best_value(history, run))
    cbs: list[Any] = [history_logger(run.out, initial_epoch)]
    if val_data is not None:
        cbs.append(checkpoint)
    if patience is not None and val_data is not None:
        cbs.append(keras.callbacks.EarlyStopping(monitor=run.monitor, mode=run.mode,
                                                 patience=int(patience)))
    cbs.append(backup)      # after the history logger and checkpoint (see module doc)
    if backup_every:
        # BackupAndRestore saves mid-epoch only; also save at each epoch end
        cbs.append(_EpochEndBackup(backup))
    cbs.extend(callbacks)
    if interrupt_after_batches:
        cbs.append(InterruptAfter(int(interrupt_after_batches)))
    return cbs, checkpoint


def _start_runs(run: _Run, state: dict[str, Any], initial_epoch: int) -> list[dict[str, Any]]:
    """Record this call's start in ``train_state.json``; return the list of calls so far."""
    runs = list(state.get("runs", []))
    if not (run.out / BACKUP_DIR).exists() and not state.get("completed"):
        runs = []   # a fresh run: earlier incomplete state without a backup is stale
    runs.append({"started_at_epoch": initial_epoch, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    _write_json(run.out / STATE_NAME, {"completed": False, "epochs": run.epochs, "runs": runs,
                                       "strategy": run.strategy})
    return runs


def _finish(run: _Run, model: Any, checkpoint: Any, val_data: Any, initial_epoch: int,
            interrupted: bool, runs: list[dict[str, Any]]) -> TrainResult:
    """After ``fit``: the best weights back, ``model.keras`` when complete, the final state."""
    from facelab.learn.model import load_model

    out = run.out
    history = read_history(out)
    best_epoch, best_value = checkpoint.best_epoch, checkpoint.best
    if run.monitor in history.columns and len(history):
        values = history[run.monitor].astype(float)
        best_epoch = int(history["epoch"].iloc[int(values.argmax() if run.mode == "max"
                                                   else values.argmin())])
        best_value = _best_value(history, run)
    if val_data is not None and (out / BEST_NAME).is_file():
        best_model = load_model(out / BEST_NAME)
        model.set_weights(best_model.get_weights())
    completed = not interrupted
    runs[-1]["seconds"] = round(time.perf_counter() - run.start, 2)
    if completed:
        tmp = out / f".{FINAL_NAME}.tmp.keras"
        model.save(tmp)
        os.replace(tmp, out / FINAL_NAME)
    _write_json(out / STATE_NAME, {"completed": completed, "epochs": run.epochs, "runs": runs,
                                   "strategy": run.strategy,
                                   "best_epoch": best_epoch, "best_value": best_value,
                                   "monitor": run.monitor,
                                   "seconds": sum(float(r.get("seconds", 0)) for r in runs)})
    return TrainResult(model, history, out, initial_epoch=initial_epoch,
                       interrupted=interrupted, completed=completed, best_epoch=best_epoch,
                       best_value=best_value, seconds=time.perf_counter() - run.start,
                       strategy=run.strategy, runs=runs)


def train(model: keras.Model | Callable[[], keras.Model], train_data: Any, val_data: Any,
          out_dir: str | os.PathLike[str], *, epochs: int = 30,
          steps_per_epoch: int | None = None, batch_size: int | None = None,
          class_weight: dict[int, float] | None = None,
          monitor: str = "val_accuracy", patience: int | None = None,
          backup_every: int = 20, seed: int = 0, callbacks: Sequence[Any] = (),
          interrupt_after_batches: int | None = None, verbose: int | str = "auto",
          retrain: bool = False) -> TrainResult:
    """Train (or resume, or load) a run in ``out_dir``.

    Args:
        model: A compiled model, or a function returning one (needed for
            MirroredStrategy, which must build the model inside its scope; a function is
            called inside the strategy's scope).
        train_data: Training data: a ``tf.data.Dataset`` of (images, one-hot) batches,
            or an ``(x, y)`` tuple of arrays.
        val_data: Validation data (or ``None``: no best checkpoint, no early stopping).
        out_dir: Run folder: backup/, best.keras, model.keras, history.csv/json,
            train_state.json.
        epochs: Total epochs of the run (a resumed run ends at the same epoch).
        steps_per_epoch: Batches per epoch (``None``: one pass over ``train_data``).
        batch_size: Batch size for array data (``None`` for datasets).
        class_weight: Per-class loss weights (``facelab.data.balance.class_weights``).
        monitor: Metric for the best checkpoint and early stopping (``val_*`` needs val
            data; ``loss``/``accuracy`` otherwise).
        patience: Early-stopping patience in epochs (``None``: no early stopping).
        backup_every: Save the backup every this many batches as well as at epoch ends
            (``0``: epoch ends only).
        seed: Seed of Python, NumPy and TensorFlow (``keras.utils.set_random_seed``).
        callbacks: Extra Keras callbacks.
        interrupt_after_batches: Simulate an interruption after this many batches (for
            demonstrations): the call returns with ``interrupted=True`` and the backup
            kept; call again without it to resume.
        verbose: ``model.fit`` verbosity.
        retrain: Delete an existing run in ``out_dir`` and start over.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: For epochs < 1 or a ``val_*`` monitor without validation data.
    """
    import keras

    _check_train_args(epochs, monitor, val_data)
    out = Path(out_dir)
    if retrain and out.exists():
        _clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(out, epochs, monitor, "min" if "loss" in monitor else "max",
               time.perf_counter())
    state = read_state(out)
    done = _load_completed(run, state)
    if done is not None:
        return done

    keras.utils.set_random_seed(seed)
    strategy = get_strategy()
    run.strategy = type(strategy).__name__
    model = _built_model(model, strategy)
    initial_epoch = _backup_epoch(out / BACKUP_DIR)
    if initial_epoch == 0:
        (out / BEST_NAME).unlink(missing_ok=True)   # stale, from an earlier fresh start
    cbs, checkpoint = _callbacks(run, initial_epoch, val_data, patience, backup_every,
                                 callbacks, interrupt_after_batches)
    runs = _start_runs(run, state, initial_epoch)
    interrupted = False
    try:
        x, y = train_data if isinstance(train_data, tuple) else (train_data, None)
        model.fit(x, y, batch_size=batch_size, validation_data=val_data, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, class_weight=class_weight,
                  callbacks=cbs, verbose=verbose,
                  shuffle=y is not None)   # a dataset comes shuffled (Keras warns otherwise)
    except TrainingInterrupted:
        interrupted = True
    return _finish(run, model, checkpoint, val_data, initial_epoch, interrupted, runs)


def _backup_epoch(backup_dir: Path) -> int:
    """Return the epoch a run restarts at, from BackupAndRestore's metadata (0 when none)."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = backup_dir / name
        if path.is_file():
            try:
                return int(json.loads(path.read_text())["epoch"])
            except (ValueError, KeyError):
                continue
    return 0


def _EpochEndBackup(backup: Any) -> Any:  # noqa: N802
    """Make a batch-frequency BackupAndRestore also save at every epoch end."""
    import keras

    class _Saver(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            backup._save_model()

    return _Saver()
