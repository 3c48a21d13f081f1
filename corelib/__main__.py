"""`python -m corelib <verb> ...`."""
import sys

from corelib.cli import main

sys.exit(main())
