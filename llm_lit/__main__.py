"""`python -m llm_lit` runs the `llm_lit` command line."""

import sys

from llm_lit.cli import main

sys.exit(main())
