# Container images: the five services (services/<svc>/Dockerfile) and the Redis/HAProxy image
# of the container stack, built with a real engine (docs/deploy.md, "Images").
#
# `make images` uses the Docker daemon that `docker` reaches, else starts a dockerd of its own
# (Debian's docker.io; data root .cache/images/docker, so images and BuildKit's caches persist)
# and stops it after. Tags are the chart's defaults (<image.registry>/<repository>:<appVersion>).
# The base is the Dockerfiles' PYTHON_IMAGE (python:3.11-slim-bookworm); when it cannot be
# pulled, an equivalent is built once from Debian packages with mmdebstrap.
# ROOMGATE_PYTHON_IMAGE=<ref> forces a base.

TEST_DEPS += images

# Only what is missing: a host with Docker CE keeps its engine (docker.io would conflict).
# docker-compose (v1, Debian's) runs compose.yaml in tests/images when no compose plugin is.
.PHONY: images-deps
images-deps:
	@missing=""; \
	command -v dockerd >/dev/null 2>&1 || docker info >/dev/null 2>&1 || missing="$$missing docker.io"; \
	command -v mmdebstrap >/dev/null 2>&1 || missing="$$missing mmdebstrap"; \
	command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	$(APT_INSTALL_MISSING)

.PHONY: images
images: setup images-deps ## build the five service images (and the base, when it cannot be pulled); prints sizes and times
	$(BIN)/python -m roomgate_tools.images build

.PHONY: images-env
images-env: ## the build arguments of `make images` as ROOMGATE_* exports (skaffold.yaml reads them)
	@$(BIN)/python -m roomgate_tools.images env

.PHONY: image-refs
image-refs: ## the image references the chart renders (what `make images` tags)
	@$(BIN)/python -m roomgate_tools.images refs

.PHONY: dev-containers
dev-containers: images ## `make dev` with every part in a container of these images (Ctrl-C stops everything)
	$(BIN)/roomgate dev --containers
