import sys

from sftrl.figures.build import main

sys.exit(main())
