"""RLLI Studio web app (Hugging Face Spaces entry point): `python app.py` = `python -m rlli serve`.

A bad setting prints the same `error: ...` message as the CLI and exits with code 2.
"""

import sys

from rlli.commands.main import main

if __name__ == "__main__":
    sys.exit(main(["serve"]))
