"""The parse worker process (see codegraph.parse.worker): python -m codegraph.parse BYTES."""

import sys

from codegraph.parse import PARSERS
from codegraph.parse.worker import serve

serve(int(sys.argv[1]), PARSERS)
