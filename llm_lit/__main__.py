"""`python -m llm_lit` runs the `llm_lit` command line."""

import sys

from llm_lit.commands.cli import main

# The guard matters: processes started by "forkserver"/"spawn" (the tokenizer's counting pool)
# import this module again and must not run the CLI a second time.
if __name__ == "__main__":
    sys.exit(main())
