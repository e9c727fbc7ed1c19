"""Stage 8, bias analysis: is the model wrong evenly, or does one class take the others.

``predictions`` of a model on one split, ``bias`` (confusion, shares, per-class table, and
the verdict: dominant classes, swallowed classes, one-way confused pairs); ``labels`` takes
names or ids in any usual container; ``reports`` (``report()``: one call from a predictions
table to the verdict, tables and figures); ``explorer`` (``explore()``: the confusion matrix
as a JupyterLab widget); ``plots`` and ``cli`` (``facelab bias``) beside them.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "bias": (
            "DEFAULT_THRESHOLD",
            "confusion",
            "share_table",
            "per_class_table",
            "confused_pairs",
            "Alarm",
            "dominant_class_alarm",
            "SwallowedAlarm",
            "swallowed_class_alarm",
            "PairAlarm",
            "one_way_pair_alarm",
            "Verdict",
            "bias_verdict",
            "summarise",
        ),
        "labels": ("Labels", "encode_labels"),
        "reports": ("Report", "report", "read_predictions"),
        "explorer": ("Explorer", "explore"),
        "predictions": ("predict_probs", "predict_split", "predictions_frame", "portraits"),
        "plots": (
            "plot_confusion",
            "plot_shares",
            "plot_recall",
            "plot_misclassified",
            "plot_top_losses",
            "plot_swallowed",
            "plot_cell",
            "report_figures",
        ),
    },
)
