# End-to-end tests on a real single-node cluster (tests/e2e, roomgate_tools.cluster; issue 15),
# run by `make test` after the main suite (TEST_LAST) and alone by `make e2e`. They need root,
# about 3 minutes, the node's tools (`make cluster-tools`) and the service images `make images`
# built (exported from the Docker data root $ROOMGATE_DOCKER_DATA_ROOT, default this clone's
# .cache/images/docker). The main suite does not collect them (ROOMGATE_E2E unset).

TEST_LAST += e2e

.PHONY: e2e
e2e: cluster-tools images ## end-to-end tests on a real cluster (root; ROOMGATE_E2E=1 pytest tests/e2e)
	ROOMGATE_E2E=1 $(BIN)/pytest -q -p no:randomly --durations=0 -rP tests/e2e
