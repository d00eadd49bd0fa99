"""Tests of the mail-log sensor: parsing and following."""
