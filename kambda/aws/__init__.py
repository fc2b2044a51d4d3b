"""The AWS side of the kernel: errors, SigV4, policies, authentication, and the wire protocols."""
