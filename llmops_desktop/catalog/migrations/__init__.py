"""The catalog's schema steps, in order: ``NNNN_name.sql`` and, where a step must transform
data, ``NNNN_name.py`` with ``upgrade(conn)`` (run after the step's SQL, same transaction).

Released steps never change; a new one takes the next number. The catalog owns every
table here; the features keep their queries.
"""
