"""Editing a zone file that an operator owns: `editor.edit_zone` rewrites only the managed
A/AAAA records and the SOA serial, `masterfile` finds where each entry sits in the text,
`serial` holds the serial policies, `includes` reads $INCLUDE files confined to one directory,
and `atomic` reads and replaces a file in an opened directory that another user may write.

Import the modules themselves: this package loads nothing, so that code which never edits a
zone file never pays for dnspython's zone parser.
"""
