import sys

from sftrl.surgery import main

sys.exit(main())
