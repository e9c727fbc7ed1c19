"""Stage 2, face filtering: collected photos in, one aligned crop per kept face out.

``base`` is what detector backends share, ``mtcnn`` and ``vision`` are the backends,
``rule`` is the one-face rule, ``crops`` cuts aligned crops, ``filter`` is the stage
(:func:`filter_faces`); ``plots`` and ``cli`` beside it.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "filter": (
            "FACES_DIR",
            "CACHE_NAME",
            "FACE_COLUMNS",
            "make_detector",
            "DetectionCache",
            "FaceSettings",
            "DEFAULT_MAX_SIDE",
            "read_source",
            "filter_faces",
            "summary",
        ),
        "base": ("LANDMARKS", "Face", "DetectionFailure", "Detector"),
        "rule": (
            "NO_FACE",
            "LOW_CONFIDENCE",
            "MULTIPLE_FACES",
            "RECT_MISMATCH",
            "FACE_TOO_SMALL",
            "UNREADABLE",
            "DETECTOR_ERROR",
            "STATUSES",
            "iou",
            "Decision",
            "apply_rule",
        ),
        "crops": (
            "UnreadablePhoto",
            "to_rgb",
            "load_photo",
            "detection_copy",
            "eye_angle",
            "align_crop",
        ),
        "settings": (
            "SETTINGS_FORMAT",
            "face_settings_dict",
            "write_face_settings",
            "read_face_settings",
            "facelab_version",
        ),
        "mtcnn": ("MTCNNDetector",),
        "vision": (
            "MAX_IMAGES_PER_REQUEST",
            "DEFAULT_CACHE",
            "LANDMARK_NAMES",
            "make_client",
            "faces_from_response",
            "VisionDetector",
        ),
        "plots": (
            "plot_status_counts",
            "plot_rejected",
            "plot_recovered",
            "plot_crops",
            "contact_sheet",
        ),
    },
)
