"""`python -m geanstalk serve ...`."""

import sys

from geanstalk.cli import main

sys.exit(main())
