"""`python -m gateway` serves, like `huiyin serve`."""

import sys

from gateway.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
