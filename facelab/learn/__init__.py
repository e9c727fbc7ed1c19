"""Stage 7, model and training.

``model`` (the CNN), ``training`` (a run that survives interruption), ``fitting``
(:func:`fit`: split, balance, train, score the test split once); ``plots`` and ``cli``
beside them.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "fitting": ("FIGURES", "Recipe", "FitResult", "prepare", "fit"),
        "training": (
            "BACKUP_DIR",
            "BEST_NAME",
            "FINAL_NAME",
            "HISTORY_CSV",
            "HISTORY_JSON",
            "STATE_NAME",
            "TrainingInterrupted",
            "TrainResult",
            "get_strategy",
            "device_summary",
            "read_history",
            "read_state",
            "InterruptAfter",
            "train",
        ),
        "model": (
            "DEFAULT_WIDTHS",
            "DEFAULT_BLOCKS",
            "BACKBONES",
            "build_cnn",
            "build_backbone_model",
            "build_model",
            "load_model",
            "lr_schedule",
            "compile_model",
        ),
        "plots": ("plot_history", "save_fit_figures"),
    },
)
