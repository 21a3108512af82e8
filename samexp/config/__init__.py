"""The floor every layer stands on: options and their schema, checks, paths, errors, limits on files."""
