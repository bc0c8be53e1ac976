"""Data: synthetic processes with known answers (MD data sets come in issue #3)."""
