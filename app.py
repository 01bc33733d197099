"""RLLI Studio web app (Hugging Face Spaces entry point): `python app.py`."""

import sys

from rlli.cli import describe_user_error


def main() -> int:
    from rlli.config import Settings
    from rlli.ui import launch

    try:
        settings = Settings()
        settings.check_device()
    except Exception as e:
        message = describe_user_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    launch(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
