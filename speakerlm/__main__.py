import sys

from speakerlm.cli import main

sys.exit(main())
