"""python -m numconv …: the same as the ``numconv`` command."""
import sys

from numconv.cli import main

sys.exit(main())
