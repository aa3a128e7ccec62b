"""Low-level helpers every stage may use: one-line errors, fault points, file locks and atomic
writes, URLs without their passwords, the command-line plumbing."""
