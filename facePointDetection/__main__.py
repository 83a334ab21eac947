"""`python -m facePointDetection ...`: see facePointDetection/cli.py."""
import sys

from .cli import main

sys.exit(main())
