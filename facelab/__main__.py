"""``python -m facelab`` is the same as the ``facelab`` command."""

from facelab.cli import entry

if __name__ == "__main__":   # run, not imported
    entry()
