"""Use a trained model: who is in this photo (open set), and export it.

``folder`` reads and checks a model folder, ``inputs`` lists photos from paths, folders,
URLs and manifests, ``recognizer`` finds and names every face (:func:`load`), ``export``
writes a SavedModel or TFLite model that loads without facelab, ``samples`` picks photos
to try from a face stage; ``plots`` (annotated
photos, contact sheets, the open-set curve) and ``cli`` (``facelab predict``,
``facelab export``) beside them.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "folder": ("MODEL_NAME", "ModelFolderError", "ModelFolder", "read_model_folder",
                   "resolve_threshold", "detector_from_settings"),
        "inputs": ("Item", "DEFAULT_MAX_PIXELS", "is_url", "expand_inputs", "open_item"),
        "recognizer": ("UNKNOWN", "SKIPPED", "PhotoResult", "Recognizer",
                       "predictions_frame", "load"),
        "export": ("FORMATS", "export_model", "load_export"),
        "samples": ("face_stage_photos", "group_photos", "photos_of"),
        "plots": ("annotate_photo", "contact_sheet", "results_sheet", "plot_openset_curve",
                  "plot_score_histograms"),
    },
)
