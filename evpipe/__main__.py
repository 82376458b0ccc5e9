import sys

from evpipe.cli import main

sys.exit(main())
