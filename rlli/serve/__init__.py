"""Where rounds run (the backend seam): in-process, batched over a window (the default), or on Ray Serve
(``RLLI_BACKEND=ray``). See :mod:`rlli.serve.backend`."""
