"""``python -m facelab`` is the same as the ``facelab`` command."""

from facelab.cli import main

if __name__ == "__main__":   # run, not imported
    raise SystemExit(main())
