import sys

from gmemlab.cli import main

sys.exit(main())
