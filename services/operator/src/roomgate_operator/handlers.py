"""kopf handlers: thin, they translate between kopf and ``Reconciler`` (reconcile.py).

* login: the credentials kube.load_configuration finds (the same as our own client's);
* startup/cleanup: the Redis client, the Kubernetes client and a ``Lifecycle``
  (lifecycle.py) live in kopf's memo. kopf hands each GatewayPolicy's handlers a shallow
  copy of that memo, taken when it first sees the policy: what the handlers share with
  cleanup must be put there by startup (the copies refer to the same objects); a key set
  by cleanup, or created lazily by a handler, is per object. Cleanup stops the Lifecycle
  (handlers that start later do nothing) and waits, bounded, for the handlers in flight
  before it closes the clients under them;
* create/update/resume of a GatewayPolicy: publish its limits at once (seconds count: the
  gateways apply them to live connections);
* a timer per policy: the whole level-based reconcile (limits again, status, scaling);
* delete (optional): the gateways go back to their own settings. kopf still puts its
  finalizer on every policy, because the timer needs one (``kopf.timer`` always does); helm
  uninstall's pre-delete hook (``uninstall.py``) deletes the release's policies while this
  operator still runs to release them.

A policy's own state (``PolicyState``: its stabilisation windows, drain, caches, and the
lock that runs its handlers one at a time) is per object on purpose: it lives in that
policy's memo copy, shared by all its handlers and dropped by kopf with the object.

Transient failures (Redis down or this process's Redis pool busy, the API server) raise
``kopf.TemporaryError``; a policy that
cannot be applied is reported ``Degraded`` and raises ``kopf.PermanentError`` in change
handlers (kopf stops retrying that change; the timer keeps looking, so a fix is seen).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.metrics import MetricsServer
from roomgate_common.redis_adapter import connect

from roomgate_operator.bus import PolicyBus
from roomgate_operator.errors import InvalidPolicy, KubeUnavailable, NotFound, OperatorError
from roomgate_operator.kube import (
    GROUP,
    PLURAL,
    VERSION,
    KubeClient,
    bearer_token,
    load_configuration,
)
from roomgate_operator.lifecycle import Lifecycle
from roomgate_operator.metrics import OperatorMetrics
from roomgate_operator.reconcile import Meta, PolicyState, Reconciler
from roomgate_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

RETRY_DELAY = 2.0
TARGET_RETRY_DELAY = 15.0
# At shutdown, how long cleanup waits for handlers in flight before it closes the clients
# (a reconcile's calls are bounded well below it; under a pod's 30 s termination grace).
STOP_GRACE = 10.0


def _state(memo: kopf.Memo) -> PolicyState:
    """The policy's state, in its own memo copy (one per object: see the module doc)."""
    state = memo.get("policy_state")
    if state is None:
        state = memo["policy_state"] = PolicyState()
    return state


def _lifecycle(memo: kopf.Memo) -> Lifecycle:
    """The operator's one Lifecycle (startup put it on the memo every copy comes from)."""
    lifecycle: Lifecycle = memo["lifecycle"]
    return lifecycle


def build_registry(config: OperatorSettings) -> kopf.OperatorRegistry:
    """The operator's handlers, bound to its settings (the timer interval is one)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        cfg = await load_configuration(config.kubeconfig)
        return kopf.ConnectionInfo(
            server=str(cfg.host),
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            token=await bearer_token(cfg),
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            trust_env=settings.networking.trust_env,
        )

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.peering.standalone = True
        settings.posting.level = logging.WARNING
        # GatewayPolicy's status has a schema: keep kopf's bookkeeping in annotations.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
        settings.watching.server_timeout = 300
        # On this memo, before any resource handler runs: every policy's memo copy (taken
        # from this one) then refers to the same instance as cleanup.
        memo["lifecycle"] = Lifecycle()
        try:
            kube = KubeClient(await load_configuration(config.kubeconfig))
        except OperatorError as exc:  # a configuration error: fail fast, do not retry
            raise kopf.PermanentError(str(exc)) from exc
        memo["kube"] = kube
        memo["redis"] = redis = connect(config.redis_url, name="roomgate-operator")
        metrics = OperatorMetrics()
        memo["metrics_server"] = server = MetricsServer(metrics.registry, config.metrics_listen)
        server.start()
        memo["reconciler"] = Reconciler(config, kube, PolicyBus(redis), metrics)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        # kopf leaves a timer tick in flight running ("orphaned") when it cleans up, and
        # may start handlers meanwhile: they see the stopped Lifecycle and return; the ones
        # in flight finish before the clients close under them.
        if "lifecycle" in memo:
            await memo["lifecycle"].stop(STOP_GRACE)
        if "metrics_server" in memo:
            memo["metrics_server"].stop()
        if "kube" in memo:
            await memo["kube"].close()
        if "redis" in memo:
            await memo["redis"].aclose()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def limits_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        reconciler: Reconciler = memo["reconciler"]
        state = _state(memo)
        try:
            # The lock first: a handler waiting for it does not hold up cleanup, and once
            # it has the lock work() tells it whether the clients are still open.
            async with state.lock, _lifecycle(memo).work() as running:
                if not running:
                    return
                try:
                    await reconciler.apply_limits(body, state)
                except (InvalidPolicy, NotFound) as exc:
                    # Reported inside work(): cleanup closes the clients only after it
                    # (a report after it could meet a closed Kubernetes client).
                    await _degrade(reconciler, body, exc)
                    raise
        except InvalidPolicy as exc:
            raise kopf.PermanentError(f"{exc.reason}: {exc.message}") from None
        except NotFound as exc:
            # The Deployment may come later (e.g. a policy applied before the chart).
            raise kopf.TemporaryError(str(exc), delay=TARGET_RETRY_DELAY) from None
        except (KubeUnavailable, BusUnavailable, BusBusy) as exc:
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc

    @kopf.timer(GROUP, VERSION, PLURAL, interval=config.reconcile_interval, registry=registry)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
        reconciler: Reconciler = memo["reconciler"]
        state = _state(memo)
        try:
            async with state.lock, _lifecycle(memo).work() as running:
                if not running:
                    return
                await reconciler.reconcile(body, state)
        except (InvalidPolicy, NotFound):
            # Reported as Degraded in status (and logged once); looked at next tick.
            reconciler.metrics.errors.labels("degraded").inc()
        except (KubeUnavailable, BusUnavailable, BusBusy) as exc:
            reconciler.metrics.errors.labels("transient").inc()
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc

    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry)
    async def deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        try:
            async with _state(memo).lock, _lifecycle(memo).work() as running:
                if not running:
                    return
                await memo["reconciler"].forget(body)
        except (BusUnavailable, BusBusy) as exc:
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc

    return registry


async def _degrade(reconciler: Reconciler, body: kopf.Body, exc: InvalidPolicy | NotFound) -> None:
    try:
        await reconciler.degrade(Meta.of(body), body.get("status") or {}, exc)
    except KubeUnavailable as err:
        log.warning("could not report Degraded: %s", err)
