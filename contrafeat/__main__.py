"""`python -m contrafeat` runs the command line (also under torchrun)."""
import sys

from contrafeat.cli import main

sys.exit(main())
