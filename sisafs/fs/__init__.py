"""The FUSE side: syscall translation (operations), inode bookkeeping, the mount loop."""
