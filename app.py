"""RLLI Studio web app (Hugging Face Spaces entry point): `python app.py`."""

from rlli.config import Settings
from rlli.ui import build_demo, launch

settings = Settings()
demo = build_demo(settings)

if __name__ == "__main__":
    launch(settings, demo)
