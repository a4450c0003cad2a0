# The browser client (clients/js): Debian's chromium, npm ci from the lockfile, the SDK's
# typecheck, build and unit tests, and the check that the console the gateway serves
# (services/gateway/src/roomgate_gateway/console/, committed) is built from the sources.
# The end-to-end tests (tests/browser) then run under pytest with everything else.
# Added CI time: ~25 s warm (npm ci is skipped while node_modules matches the lockfile),
# plus ~40 s the first time (chromium from apt, npm ci); tests/browser (pytest) ~65 s.

JS_DIR := clients/js
CHROMIUM ?= /usr/bin/chromium

TEST_DEPS += browser-deps

.PHONY: browser-deps
browser-deps: ## chromium (apt), npm ci, typecheck + build + unit tests of @roomgate/client, console freshness
	@command -v node >/dev/null || { echo "node (20 or later) is missing"; exit 1; }
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing: chromium"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) missing after install"; exit 1; }
	@cd $(JS_DIR) && if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  npm ci --no-audit --no-fund; fi
	cd $(JS_DIR) && npm run --silent typecheck
	cd $(JS_DIR) && node scripts/build.mjs --check
	cd $(JS_DIR) && node scripts/build.mjs && node scripts/build.mjs --size
	cd $(JS_DIR) && node --test test/unit/

.PHONY: console
console: ## rebuild @roomgate/client and the console assets of the gateway (commit them)
	cd $(JS_DIR) && node scripts/build.mjs
