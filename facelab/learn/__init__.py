"""Stage 7, model and training.

``model`` (the CNN), ``training`` (a run that survives interruption), ``fitting``
(:func:`fit`: split, balance, train, score the test split once), ``pairs`` (the remedy for
swallowed classes: refine on look-alike pairs drawn together); ``plots`` and ``cli``
beside them.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "fitting": ("FIGURES", "Recipe", "FitResult", "FittedModel", "prepare", "fit",
                    "load_fit", "resolved_recipe"),
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
        "openset": (
            "OPENSET_NAME",
            "CURVE_NAME",
            "SCORES_NAME",
            "CENTROIDS_NAME",
            "GALLERY_NAME",
            "ScoreModel",
            "scored_table",
            "RECOGNIZER_NAME",
            "SCORE_DEFINITION",
            "threshold_for_far",
            "rates",
            "openset_curve",
            "operating_points",
            "stranger_summary",
            "leave_one_out_far",
            "two_headed",
            "probs_and_embeddings",
            "unit",
            "class_centroids",
            "open_scores",
            "calibrate",
            "write_recognizer_info",
        ),
        "pairs": ("pairs_to_refine", "pair_aware_dataset", "refine"),
        "folds": ("identity_folds", "fold_strangers", "people_aside"),
        "compare": ("score_faces", "openset_roc", "compare_fits", "choose_model"),
        "face_resnet": ("load_face_resnet", "build_face_resnet", "weights_path"),
        "embeddings": ("chip_embeddings",),
        "plots": ("plot_history", "save_fit_figures", "plot_model_comparison"),
    },
)
