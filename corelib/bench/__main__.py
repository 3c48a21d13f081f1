"""`python -m corelib.bench`."""
import sys

from corelib.bench.command import main

sys.exit(main())
