# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NLPTOOL_DATA_DIR ?= $(abspath ../shared/data)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test bench lint docs notebooks package clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python recipes/sentiment.py --config sst2 --config demo \
		--init-from preset:english-small --run-dir runs/demo --overwrite

# two processes, each test file whole on one of them (its module fixtures built once)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/gru.py
	$(BIN)/python benchmarks/tokenizers.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy nlptool

# the generated pages first (benchmark tables from benchmarks/results, the config reference
# from the config classes), then the site, strict: a broken link or any warning fails it
docs: $(STAMP)
	$(BIN)/python benchmarks/render_docs.py
	$(BIN)/python -m nlptool.config_reference docs/configuration.md
	$(BIN)/mkdocs build --strict --quiet
	@echo "site/index.html"

# the tutorials at full size: each notebooks/NN-*.py executed into the .ipynb beside it, with its outputs
# (one of them: make notebooks NOTEBOOKS=02-tokenizers.py)
NOTEBOOKS ?= $(notdir $(wildcard notebooks/[0-9][0-9]-*.py))
notebooks: $(STAMP)
	cd notebooks && for notebook in $(NOTEBOOKS); do \
		../$(BIN)/jupytext --to ipynb --execute "$$notebook" || exit 1; done

# the wheel and the sdist, into dist/
package: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist site *.egg-info runs
