import sys

from rnnkit.cli import console

sys.exit(console())
