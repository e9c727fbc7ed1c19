"""Stage 1, collection: a URL list or photo folder in, ``images/`` and ``manifest.csv`` out.

One manifest row per input row; failures are statuses, not exceptions.

``sources`` reads the inputs, ``fetch`` does the per-photo work (download, decode, hash,
store), ``workers`` runs it in threads and worker processes, ``dedup`` finds placeholders and
duplicates, ``run`` is the resumable loop (:func:`collect`); ``plots`` and ``cli`` beside it.
"""

from facelab.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "run": (
            "DUPLICATE",
            "PLACEHOLDER",
            "MD5_MISMATCH",
            "STATUSES",
            "TRANSIENT",
            "MANIFEST_COLUMNS",
            "IMAGES_DIR",
            "JOURNAL_NAME",
            "SCHEMES",
            "summary",
            "collect",
            "compare_with_truth",
        ),
        "sources": (
            "PUBFIG_COLUMNS",
            "BAD_ROW",
            "IMAGE_SUFFIXES",
            "parse_pubfig_text",
            "read_pubfig_list",
            "write_pubfig_list",
            "read_folder",
        ),
        "fetch": (
            "HTTP_ERROR",
            "TIMEOUT",
            "CONNECTION_ERROR",
            "TOO_MANY_REDIRECTS",
            "NOT_IMAGE",
            "CORRUPT",
            "TOO_LARGE",
            "UNSUPPORTED_URL",
            "PHOTO_STATUSES",
            "FORMAT_EXTENSIONS",
            "RETRY_STATUSES",
            "CHUNK",
            "USER_AGENT",
            "HASH_SIDE",
            "CollectSettings",
            "Outcome",
            "image_hashes",
            "inspect_image",
            "store",
            "make_session",
            "fetch_url",
            "import_file",
            "run_job",
            "worker_process",
            "workers_supported",
            "start_worker",
            "worker_main",
        ),
        "journal": ("read_journal", "Journal"),
        "dedup": (
            "hash_array",
            "hamming",
            "near_pairs",
            "cluster",
            "KnownPlaceholder",
            "load_known_placeholders",
            "mark_placeholders_and_duplicates",
        ),
        "workers": (
            "PROCESS_MIN_JOBS",
            "MAX_PROCESSES",
            "usable_cpus",
            "choose_processes",
            "run_jobs",
        ),
        "plots": (
            "plot_status_counts",
            "plot_photos_per_person",
            "plot_placeholders",
            "plot_duplicate_groups",
        ),
    },
)
