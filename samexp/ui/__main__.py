import sys

from samexp.ui import main

sys.exit(main())
