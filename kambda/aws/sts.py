"""STS, as far as kambda needs it: ``GetCallerIdentity``, which every SDK and the AWS CLI use to ask "who am I"
(``aws sts get-caller-identity``, SAM CLI, Terraform's provider at start-up).

The caller is who the gateway authenticated (``request[auth.PRINCIPAL]``), not the key a request merely claims:
a verified credential is the IAM user named by its access key, ``arn:aws:iam::<account>:user/<access key>``; the
platform's admin when no credentials are configured (unsigned, or signed with any key, on loopback) is the
account's root, ``arn:aws:iam::<account>:root``, with the account id as its user id, as AWS answers for root.
"""

from __future__ import annotations

from typing import Any

from kambda.aws import auth
from kambda.aws.front import Context, Front


def identity(account: str, access_key: str | None) -> dict[str, str]:
    if access_key is None:
        return {"Account": account, "Arn": f"arn:aws:iam::{account}:root", "UserId": account}
    return {"Account": account, "Arn": f"arn:aws:iam::{account}:user/{access_key}", "UserId": access_key}


def register(front: Front, account: str) -> None:
    """Serve STS's GetCallerIdentity through ``front`` for ``account``."""

    @front.operation("sts", "GetCallerIdentity", public=True)  # no permission needed, as on AWS
    async def get_caller_identity(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        principal = ctx.request.get(auth.PRINCIPAL)
        return identity(account, principal.access_key or None if principal is not None else ctx.access_key)
