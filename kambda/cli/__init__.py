"""The kambda command line: deploy and manage functions, run a platform (`kambda up`), watch it (`kambda top`)."""
