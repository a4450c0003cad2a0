# End-to-end tests on a real single-node cluster (tests/e2e, roomgate_tools.cluster; issue 15).
# Not part of `make test`: they need root, a few minutes, and the service images `make images`
# built (exported from the Docker data root $ROOMGATE_DOCKER_DATA_ROOT, default this clone's
# .cache/images/docker).

.PHONY: e2e
e2e: cluster-tools images ## end-to-end tests on a real cluster (root; ROOMGATE_E2E=1 pytest tests/e2e)
	ROOMGATE_E2E=1 $(BIN)/pytest -q -p no:randomly tests/e2e
