import sys

from sisafs.cli import main

sys.exit(main())
