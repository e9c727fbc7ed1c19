"""The offline demo: synthetic celebrities and a local web that misbehaves like 2017's.

Synthetic celebrities (``photos``, drawn by ``render``) and a local web that serves them
the way the 2017 web did (``urls`` plans it, ``web`` serves it).
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "photos": (
            "PHOTOS_CSV",
            "IDENTITIES_CSV",
            "PHOTO_COLUMNS",
            "generate",
            "read_photos",
            "read_identities",
            "lookalike_people",
            "face_crop",
            "identity_faces",
            "portraits",
        ),
        "identities": (
            "SCALES",
            "NAMES",
            "SKIN_TONES",
            "HAIR_COLOURS",
            "EYE_COLOURS",
            "HAIR_STYLES",
            "seeded_rng",
            "photo_path",
            "Identity",
            "PhotoPlan",
            "check_scale",
            "make_identities",
            "plan_photos",
            "plan",
        ),
        "web": (
            "KINDS",
            "MISBEHAVING",
            "URLS_NAME",
            "TRUTH_NAME",
            "CACHE_NAME",
            "ensure_demo",
            "DemoWeb",
            "serve",
            "read_truth",
            "kind_table",
            "misbehaving_sample",
            "probe",
        ),
        "urls": (
            "PLACEHOLDER_PATH",
            "Shares",
            "UrlMaker",
            "plan_urls",
            "placeholder_jpeg",
            "html_page",
            "reencode",
        ),
        "render": ("Box", "render_photo"),
        "plots": ("plot_identities", "identity_grid", "photos_per_identity_plot"),
    },
)
