"""``helm uninstall``'s pre-delete hook (charts/roomgate/templates/operator-uninstall.yaml):
delete the release's GatewayPolicies while the operator still runs, and wait until they are
gone.

kopf puts its finalizer on every GatewayPolicy: the reconcile timer requires one (``kopf.timer``
handlers always do, whatever the delete handler's ``optional``). Helm deletes custom resources
after everything else, the operator's Deployment and RBAC included, so without this hook no
operator is left to remove the finalizer and the policy (and ``helm uninstall --wait``, and a
namespace deletion) hangs for ever. Found on the e2e cluster (tests/e2e/test_uninstall.py).

While the operator runs it handles each deletion (the gateways go back to their own settings)
and releases the policy. A policy still there after ``--timeout`` has no operator to wait
for (not running, or failing): the hook removes kopf's finalizer itself and the policy goes.
Policies of the namespace that are not the release's (a user's) are kept, their finalizer
removed: the operator that put it there is about to go.

    python -m roomgate_operator.uninstall --namespace NS --selector app.kubernetes.io/instance=rg
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from roomgate_common.logs import setup_logging

from roomgate_operator.errors import OperatorError
from roomgate_operator.kube import KubeClient, load_configuration

KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"  # kopf's default (main.py keeps it)
POLL_SECONDS = 1.0
log = logging.getLogger("roomgate_operator.uninstall")


async def release_policies(kube: KubeClient, namespace: str, selector: str, wait: float) -> int:
    """Delete the policies matching ``selector`` (the release's), wait for the operator to
    release them, release what is left after ``wait`` seconds; then release the namespace's
    other policies (a user's: kept, but no longer held by an operator about to go). The number
    of policies the hook released itself."""
    for name in await kube.policy_finalizers(namespace, selector):
        log.info("deleting gatewaypolicy %s/%s", namespace, name)
        await kube.delete_policy(namespace, name)
    deadline = time.monotonic() + wait
    while True:  # polling: a watch would need its own RBAC verb and reconnect handling
        left = await kube.policy_finalizers(namespace, selector)
        if not left or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if left:
        log.warning("the operator did not release %s in %.0f s", sorted(left), wait)
    left |= await kube.policy_finalizers(namespace, "")
    released = 0
    for name, finalizers in left.items():
        if KOPF_FINALIZER in finalizers:
            log.info("removing the operator's finalizer from gatewaypolicy %s/%s", namespace, name)
            await kube.set_policy_finalizers(
                namespace, name, [f for f in finalizers if f != KOPF_FINALIZER]
            )
            released += 1
    return released


async def _main(namespace: str, selector: str, wait: float, kubeconfig: str) -> int:
    kube = KubeClient(await load_configuration(kubeconfig))
    try:
        forced = await release_policies(kube, namespace, selector, wait)
    finally:
        await kube.close()
    log.info("gatewaypolicies released (%d by this hook)", forced)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomgate_operator.uninstall")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True, help="label selector of the policies")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the operator"
    )
    parser.add_argument(
        "--kubeconfig", default="", help="default: the pod's service account, else $KUBECONFIG"
    )
    args = parser.parse_args(argv)
    setup_logging("operator-uninstall")
    try:
        return asyncio.run(_main(args.namespace, args.selector, args.timeout, args.kubeconfig))
    except OperatorError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
