"""The vault: its config and keys, and the view of the backing directory that the
filesystem serves (what a file is, how it is read, written and replaced)."""
