import sys

from kambda.cli.main import main

sys.exit(main())
