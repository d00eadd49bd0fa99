"""Editing a zone file that an operator owns: `editor.edit_zone` rewrites only the managed
A/AAAA records and the SOA serial, `masterfile` finds where each entry sits in the text,
`serial` holds the serial policies and `atomic.atomic_write` replaces the file on disk.

Import the modules themselves: this package loads nothing, so that code which never edits a
zone file never pays for dnspython's zone parser.
"""
