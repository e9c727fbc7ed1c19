"""Stages 3-6: labels and split, class balancing, the tf.data pipeline, augmentation.

``labels`` (names -> integers), ``split`` (stratified, made once, first), ``balance``,
``pipeline`` (:func:`make_dataset`), ``augment``; ``plots`` and ``cli`` beside them.
TensorFlow loads only when a function that needs it runs.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "labels": ("UnknownLabelError", "LabelMap", "load_faces", "add_labels", "relative_to"),
        "split": (
            "SPLIT_NAMES",
            "SPLIT_INFO",
            "normalise_fractions",
            "min_class_size",
            "stratified_split",
            "naive_split",
            "split_report",
            "leaked_groups",
            "write_split",
            "split_stage",
            "read_split",
            "carry_face_settings",
        ),
        "balance": (
            "STRATEGIES",
            "class_counts",
            "imbalance_ratio",
            "BalanceReport",
            "report",
            "undersample",
            "oversample",
            "class_weights",
            "sampled_counts",
            "summarise",
        ),
        "pipeline": (
            "BALANCE_MODES",
            "TRAIN",
            "check_files",
            "make_dataset",
            "dataset_labels",
            "label_counts",
            "expected_distinct_classes",
            "batch_stats",
            "label_order_scenarios",
            "label_order_table",
        ),
        "augment": (
            "make_augmentation",
            "load_image",
            "augment_examples",
            "fused_layer_class",
            "fused_augmentation",
        ),
        "plots": (
            "plot_split_shares",
            "plot_counts",
            "plot_label_order",
            "plot_batch",
            "preview_grid",
            "image_grid",
        ),
    },
)
