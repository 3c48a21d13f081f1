"""`python -m corelib <verb> ...`."""
import sys

from .cli import main

sys.exit(main())
