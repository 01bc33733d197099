"""The wireless + compute + energy system model of a round, and the Gymnasium environment over it.

Pure numpy (the environment adds gymnasium); knows nothing of Gradio, the database or the engine.
Every equation and default is written out in docs/system-model.md.
"""
