"""IAM, as far as functions' execution roles need it: roles with inline and attached policies
(iam/api.py on the front door), kept in the ``kambda_iam`` bucket, and what a role's credentials
may do through the gateway (iam/roles.py)."""
