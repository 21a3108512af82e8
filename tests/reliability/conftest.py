"""The reliability suite: hostile files, bad data, nonsense config and diverging runs.

Each module holds one table of cases (`CASES`, a list of pytest.param with a readable id) and
one test that runs every row: read the table to know what samexp refuses and what it says.
"""
