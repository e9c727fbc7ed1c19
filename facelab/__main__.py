"""``python -m facelab`` is the same as the ``facelab`` command."""

from facelab.cli import main

raise SystemExit(main())
