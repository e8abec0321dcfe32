"""Plumbing every other package may import, and which imports none of them.

- :mod:`utils.errors`: :class:`UserError`, the one exception type for mistakes in what a user gave
  (the CLIs print it as one line, exit code 2); everything else keeps its traceback.
- :mod:`utils.io`: atomic writes (temp file in the same folder, then ``os.replace``).
- :mod:`utils.runs`: run folders ``<out_dir>/<name>/<stamp>/`` and how path arguments resolve.
- :mod:`utils.cli`: :func:`run_cli`, the wrapper of every entry point.
- :mod:`utils.seeding`: seeding and saving/restoring the global random states.
- :mod:`utils.registry`: name -> ``"module:attribute"`` registries, imported on first use.
"""
