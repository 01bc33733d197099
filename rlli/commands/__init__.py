"""`python -m rlli ...`: the command line, apart from the libraries it drives.

:mod:`rlli.commands.main` builds the parser and maps user-caused errors to ``error: ...`` (exit code 2);
:mod:`rlli.commands.io` holds the argument types, :func:`~rlli.commands.io.fail` and the one JSON printer;
one module per area adds its subcommands (``personas``, ``policy``, ``store``) and :mod:`rlli.commands.bench`
holds the benchmarks.
"""
